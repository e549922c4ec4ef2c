//! What the server tests share: a server on an ephemeral port, a raw TCP client, and time
//! bounds so that no test can hang.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use http1::server::{Handler, ServerConfig, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The longest any test may take.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(20);

/// The longest a raw read may wait for the server.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `test`, failing if it takes longer than [`TEST_TIMEOUT`].
pub async fn bounded<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_TIMEOUT, test)
        .await
        .expect("test took longer than TEST_TIMEOUT")
}

/// A server on `127.0.0.1:0`.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

pub async fn start<H: Handler>(config: ServerConfig, handler: H) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        serve(listener, config, handler, shutdown).await.unwrap();
    });
    TestServer {
        addr,
        stop: Some(stop),
        task,
    }
}

impl TestServer {
    /// Requests shutdown and returns the task that finishes when `serve` returns.
    pub fn shut_down(mut self) -> JoinHandle<()> {
        let _ = self.stop.take().unwrap().send(());
        self.task
    }
}

/// Small limits for tests that provoke them.
pub fn small_limits_config() -> ServerConfig {
    let mut config = ServerConfig::default();
    config.limits.header_timeout = Duration::from_millis(300);
    config.limits.idle_timeout = Duration::from_secs(2);
    config
}

pub async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

/// Reads until the server closes the connection; panics if it does not within
/// [`READ_TIMEOUT`].
pub async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(READ_TIMEOUT, stream.read_to_end(&mut out))
        .await
        .expect("server did not close the connection")
        .expect("read failed");
    out
}

/// Writes `raw` on a new connection and returns everything the server sends before closing.
pub async fn exchange_raw(addr: SocketAddr, raw: &[u8]) -> Vec<u8> {
    let mut stream = connect(addr).await;
    stream.write_all(raw).await.unwrap();
    read_to_close(&mut stream).await
}

/// Reads one whole response (head plus a Content-Length body) from `stream`, leaving what
/// follows unread.
pub async fn read_response(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    let read = async {
        while !buf.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut byte).await.unwrap();
            assert!(n > 0, "closed before a response head: {buf:?}");
            buf.push(byte[0]);
        }
        let head = String::from_utf8(buf.clone()).unwrap();
        let len = header_value(&head, "content-length")
            .map(|v| v.parse::<usize>().unwrap())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).await.unwrap();
        buf.extend_from_slice(&body);
    };
    tokio::time::timeout(READ_TIMEOUT, read)
        .await
        .expect("no response in time");
    String::from_utf8(buf).unwrap()
}

/// The status code of the first response in `raw`.
pub fn status_of(raw: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(raw);
    let line = text.lines().next().unwrap_or_default();
    line.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

/// The value of the first field called `name` (case-insensitive) in a response head.
pub fn header_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n\r\n")
        .next()?
        .lines()
        .skip(1)
        .find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
}
