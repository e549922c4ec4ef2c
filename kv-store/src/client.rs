//! An async client for the other components (the URL shortener, the gateway): pipelining,
//! connection reuse and RESP3.
//!
//! ```text
//!  Client::pipeline(commands)
//!     ─▶ take an idle connection (or connect: TCP_NODELAY, then HELLO 3 / AUTH)
//!     ─▶ one write with every command ─▶ read exactly as many replies, in order
//!     ─▶ connection back to the idle list (at most max_idle_connections), unless it failed
//! ```
//!
//! Server errors (`-ERR`, `-WRONGTYPE`) are replies ([`Reply::Error`]), not failures of the
//! call, so a pipeline's answers keep their positions. A call fails ([`ClientError`]) only when
//! the connection does; that connection is then dropped, never reused. Nothing is retried: a
//! command may have run before its connection broke, and only the caller knows whether running
//! it twice is harmless. (Part 2 adds following `MOVED`/`ASK` redirections.)

use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::command::encode_record;
use crate::resp::reply::{Reply, ReplyError, parse_reply};

/// Default most idle connections kept for reuse.
pub const DEFAULT_MAX_IDLE_CONNECTIONS: usize = 8;
/// Default time to establish a connection, handshake included.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time for one call's write and all its replies.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct ClientConfig {
    pub addr: SocketAddr,
    /// Speak RESP3 (`HELLO 3`): maps, sets, doubles and booleans arrive as such. Default true.
    pub resp3: bool,
    /// Password for the `default` user, sent in the handshake. Default none.
    pub password: Option<String>,
    /// Idle connections kept for reuse. Default [`DEFAULT_MAX_IDLE_CONNECTIONS`].
    pub max_idle_connections: usize,
    /// Default [`DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// Default [`DEFAULT_IO_TIMEOUT`].
    pub io_timeout: Duration,
}

/// Shows every field but the password, so that a logged config never carries it.
impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("addr", &self.addr)
            .field("resp3", &self.resp3)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("max_idle_connections", &self.max_idle_connections)
            .field("connect_timeout", &self.connect_timeout)
            .field("io_timeout", &self.io_timeout)
            .finish()
    }
}

impl ClientConfig {
    pub fn new(addr: SocketAddr) -> ClientConfig {
        ClientConfig {
            addr,
            resp3: true,
            password: None,
            max_idle_connections: DEFAULT_MAX_IDLE_CONNECTIONS,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            io_timeout: DEFAULT_IO_TIMEOUT,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connection to {addr}: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{what} to {addr} timed out after {after:?}")]
    Timeout {
        what: &'static str,
        addr: SocketAddr,
        after: Duration,
    },
    #[error("server {addr} closed the connection")]
    Closed { addr: SocketAddr },
    #[error("server {addr} sent a {0}", .source)]
    Malformed {
        addr: SocketAddr,
        source: ReplyError,
    },
    #[error("handshake with {addr} refused: {message}")]
    Handshake { addr: SocketAddr, message: String },
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// One connection to the server.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    addr: SocketAddr,
    input: BytesMut,
}

impl Connection {
    /// Connects and performs the handshake the config asks for.
    pub async fn connect(config: &ClientConfig) -> Result<Connection> {
        let addr = config.addr;
        let connect = async {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|source| ClientError::Io { addr, source })?;
            let _ = stream.set_nodelay(true);
            let mut connection = Connection {
                stream,
                addr,
                input: BytesMut::with_capacity(16 * 1024),
            };
            connection.handshake(config).await?;
            Ok(connection)
        };
        tokio::time::timeout(config.connect_timeout, connect)
            .await
            .map_err(|_| ClientError::Timeout {
                what: "connect",
                addr,
                after: config.connect_timeout,
            })?
    }

    async fn handshake(&mut self, config: &ClientConfig) -> Result<()> {
        let mut hello: Vec<Bytes> = Vec::new();
        if config.resp3 {
            hello.extend([Bytes::from_static(b"HELLO"), Bytes::from_static(b"3")]);
            if let Some(password) = &config.password {
                hello.extend([
                    Bytes::from_static(b"AUTH"),
                    Bytes::from_static(b"default"),
                    Bytes::from(password.clone()),
                ]);
            }
        } else if let Some(password) = &config.password {
            hello.extend([Bytes::from_static(b"AUTH"), Bytes::from(password.clone())]);
        }
        if hello.is_empty() {
            return Ok(());
        }
        match self.exchange(&[hello]).await?.pop() {
            Some(Reply::Error(message)) => Err(ClientError::Handshake {
                addr: self.addr,
                message,
            }),
            _ => Ok(()),
        }
    }

    /// Sends `commands` in one write and reads their replies, in order.
    pub async fn exchange(&mut self, commands: &[Vec<Bytes>]) -> Result<Vec<Reply>> {
        let addr = self.addr;
        let io = |source| ClientError::Io { addr, source };
        let mut output = Vec::new();
        for command in commands {
            output.extend_from_slice(&encode_record(command));
        }
        self.stream.write_all(&output).await.map_err(io)?;
        let mut replies = Vec::with_capacity(commands.len());
        while replies.len() < commands.len() {
            match parse_reply(&mut self.input)
                .map_err(|source| ClientError::Malformed { addr, source })?
            {
                // Out-of-band messages are not answers to our commands.
                Some(Reply::Push(_)) => {}
                Some(reply) => replies.push(reply),
                None => {
                    if self.input.capacity() - self.input.len() < 4096 {
                        self.input.reserve(16 * 1024);
                    }
                    if self.stream.read_buf(&mut self.input).await.map_err(io)? == 0 {
                        return Err(ClientError::Closed { addr });
                    }
                }
            }
        }
        Ok(replies)
    }
}

/// A client with a small pool of reusable connections. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    idle: Mutex<Vec<Connection>>,
}

impl Client {
    pub fn new(config: ClientConfig) -> Client {
        Client {
            config,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs one command.
    pub async fn command<A: AsRef<[u8]>>(&self, args: &[A]) -> Result<Reply> {
        let command = args
            .iter()
            .map(|a| Bytes::copy_from_slice(a.as_ref()))
            .collect();
        let mut replies = self.pipeline(vec![command]).await?;
        Ok(replies.pop().expect("one reply per command"))
    }

    /// Runs `commands` as one pipeline on one connection; the replies are in the same order.
    pub async fn pipeline(&self, commands: Vec<Vec<Bytes>>) -> Result<Vec<Reply>> {
        let mut connection = match self.take_idle() {
            Some(connection) => connection,
            None => Connection::connect(&self.config).await?,
        };
        let timeout = self.config.io_timeout;
        let addr = self.config.addr;
        let replies = tokio::time::timeout(timeout, connection.exchange(&commands))
            .await
            .map_err(|_| ClientError::Timeout {
                what: "request",
                addr,
                after: timeout,
            })??;
        self.put_idle(connection);
        Ok(replies)
    }

    /// Idle connections held for reuse now.
    pub fn idle_connections(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn take_idle(&self) -> Option<Connection> {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
    }

    fn put_idle(&self, connection: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.config.max_idle_connections {
            idle.push(connection);
        }
    }
}
