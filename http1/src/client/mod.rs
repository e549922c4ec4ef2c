//! The HTTP/1.1 client: one request at a time per connection, with a keep-alive pool.
//!
//! Used by the reverse proxy to reach its upstreams (by `SocketAddr`) and by services calling
//! each other. The request lifecycle:
//!
//! ```text
//!  Client::send(addr, req)
//!    |  Host added from addr if missing
//!    v
//!  pool.checkout(addr) --none--> connect (connect_timeout, TCP_NODELAY)
//!    |  LIFO, skipping expired and server-closed connections (pool.rs)
//!    v
//!  conn::send: head, body (Content-Length or chunked), 100-continue,
//!              response head within response_header_timeout, 1xx skipped (conn.rs)
//!    |  failed on a reused connection? maybe once more on a fresh one (the retry rule)
//!    v
//!  Response: head now, body streamed from the connection (response_body.rs)
//!    |  body read to its end, kept alive, request fully sent
//!    v
//!  pool.checkin(addr)          anything else: the connection is closed
//! ```
//!
//! **The retry rule.** A pooled connection can be closed by the server at the very moment we
//! send on it; the stale check in the pool cannot see a FIN still in flight. Such a failure
//! looks like "the connection closed (or reset) before any byte of a response arrived". The
//! client then sends the request once more, on a freshly opened connection, if all of these
//! hold:
//!
//! 1. the connection came from the pool (a fresh connection failing is a real failure), and
//!    it failed by being closed or reset (not by a timeout);
//! 2. no byte of a response was read (otherwise the server did act on the request);
//! 3. the request body was not consumed: no frame was taken from it, so we still hold it whole
//!    (an empty body never is; a streamed one is gone once sent);
//! 4. and either not one byte of the request was written, so the server cannot have seen it,
//!    or the request is idempotent: its method is (RFC 9110 section 9.2.2: GET, HEAD, OPTIONS,
//!    TRACE, PUT, DELETE) or it carries an `Idempotency-Key`, so running it twice does no harm.
//!
//! A non-idempotent request that reached the socket is never repeated: the server may have
//! applied it and died before answering, and a duplicated POST is worse than an error.
//!
//! **Errors.** Connection failures are [`Error::Connect`], timeouts [`Error::Timeout`], an
//! upstream that closes or resets the connection without answering gives [`Error::Closed`] or
//! [`Error::Io`], and one that breaks the protocol in its response head gives
//! [`Error::MalformedResponse`] (see [`Error::is_upstream_protocol_error`]). A proxy answers a
//! timeout with 504 and the others with 502. Errors are returned, not logged; the caller logs what it handles.
//!
//! **Limits.** One request per connection at a time (no pipelining, as in every browser and
//! proxy). A final response that arrives while the request body is still being sent ends the
//! upload and the connection is closed after that response. The response header timeout runs
//! from the end of the request head, so it also bounds the upload of the body: set it above the
//! time the largest upload takes.

mod conn;
mod pool;
mod response_body;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpStream;
use tracing::Instrument;

use crate::body::Body;
use crate::error::{Error, Result};
use crate::head::RequestHead;
use crate::head::check_target;
use crate::limits::Limits;
use crate::message::{Request, Response};
use crate::upgrade::Io;

pub use pool::ClientStats;

use conn::{Conn, Failed, Replay};
use pool::{Lease, Parked, Pool};

/// Default for [`ClientConfig::connect_timeout`]: Envoy's default for upstream clusters. A
/// healthy upstream on a LAN answers a SYN in well under a millisecond.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default for [`ClientConfig::response_header_timeout`]: nginx's `proxy_read_timeout`.
pub const DEFAULT_RESPONSE_HEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// Default for [`ClientConfig::max_idle_per_endpoint`]: the size nginx's documentation uses for
/// its upstream `keepalive` cache.
pub const DEFAULT_MAX_IDLE_PER_ENDPOINT: usize = 32;
/// Default for [`ClientConfig::idle_timeout`]: nginx's upstream `keepalive_timeout`. Servers
/// with a shorter one (Apache: 5 s) are covered by the stale check and the retry rule.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default for [`ClientConfig::expect_continue_timeout`]: what curl waits for a 100 Continue.
pub const DEFAULT_EXPECT_CONTINUE_TIMEOUT: Duration = Duration::from_secs(1);

/// Settings of a [`Client`]. Start from `ClientConfig::default()`; `validate` names a bad field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Limits applied to responses. The default is `Limits::default()` except
    /// `max_body_bytes`, which is unlimited: a streamed body is never held in memory (callers
    /// that buffer one bound it with `Body::collect`). `idle_timeout` bounds every stall while
    /// reading a response body or writing a request body; `header_timeout` is not used (see
    /// `response_header_timeout`).
    pub limits: Limits,
    /// Longest wait for a TCP connection to be established. Default
    /// [`DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// Longest time from the end of the request head to the end of the final response head
    /// (it includes sending the body and any interim responses). Default
    /// [`DEFAULT_RESPONSE_HEADER_TIMEOUT`].
    pub response_header_timeout: Duration,
    /// Most idle connections kept per endpoint by each tokio runtime that uses the client
    /// (see the pool); 0 disables pooling. Default [`DEFAULT_MAX_IDLE_PER_ENDPOINT`].
    pub max_idle_per_endpoint: usize,
    /// Pooled connections idle for longer than this are closed, and never reused. Default
    /// [`DEFAULT_IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// With `Expect: 100-continue`, longest wait for a 100 (or a final response) before the
    /// body is sent anyway. Default [`DEFAULT_EXPECT_CONTINUE_TIMEOUT`].
    pub expect_continue_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            limits: Limits {
                max_body_bytes: u64::MAX,
                ..Limits::default()
            },
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_header_timeout: DEFAULT_RESPONSE_HEADER_TIMEOUT,
            max_idle_per_endpoint: DEFAULT_MAX_IDLE_PER_ENDPOINT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            expect_continue_timeout: DEFAULT_EXPECT_CONTINUE_TIMEOUT,
        }
    }
}

impl ClientConfig {
    /// Checks every field; the error names the field at fault.
    pub fn validate(&self) -> Result<(), String> {
        self.limits.validate().map_err(|e| format!("limits: {e}"))?;
        let timeouts = [
            ("connect_timeout", self.connect_timeout),
            ("response_header_timeout", self.response_header_timeout),
            ("idle_timeout", self.idle_timeout),
            ("expect_continue_timeout", self.expect_continue_timeout),
        ];
        for (name, value) in timeouts {
            if value.is_zero() {
                return Err(format!("{name} must be positive"));
            }
        }
        Ok(())
    }
}

/// An HTTP/1.1 client with a connection pool. Cloning is cheap and clones share the pool.
#[derive(Clone)]
pub struct Client {
    config: Arc<ClientConfig>,
    pool: Arc<Pool>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Client {
    /// A client with its own, empty pool. Fails when `config.validate()` does.
    pub fn new(config: ClientConfig) -> Result<Client, String> {
        config.validate()?;
        let pool = Pool::new(config.max_idle_per_endpoint, config.idle_timeout);
        Ok(Client {
            config: Arc::new(config),
            pool,
        })
    }

    /// Sends `req` to `addr`, on a pooled connection when one is alive, and returns the
    /// response as soon as its head has arrived. The body streams from the connection, which
    /// returns to the pool once the body has been read to its end; drop the body early and the
    /// connection is closed instead. A request without `Host` gets one naming `addr`.
    pub async fn send(&self, addr: SocketAddr, req: Request) -> Result<Response> {
        self.send_head(addr, &req.head, req.body).await
    }

    /// [`Client::send`] for a request whose head the caller keeps, to send it again to
    /// another server (a proxy's retry) without copying it first.
    pub async fn send_head(
        &self,
        addr: SocketAddr,
        head: &RequestHead,
        body: Body,
    ) -> Result<Response> {
        check_target(&head.method, &head.target).map_err(Error::InvalidRequest)?;
        let span = tracing::debug_span!(
            "http_client",
            %addr,
            method = %head.method,
            target = %head.target,
        );
        self.send_with_retry(addr, head, body)
            .instrument(span)
            .await
    }

    /// Sends one request on a connection of the caller's (a TLS stream, a Unix socket, a
    /// test duplex). No pooling: the connection is closed once the response has been read.
    /// `Host` is the caller's business here.
    pub async fn send_on(&self, io: impl Io, req: Request) -> Result<Response> {
        self.send_head_on(io, &req.head, req.body).await
    }

    /// [`Client::send_on`] for a request whose head the caller keeps.
    pub async fn send_head_on(
        &self,
        io: impl Io,
        head: &RequestHead,
        body: Body,
    ) -> Result<Response> {
        check_target(&head.method, &head.target).map_err(Error::InvalidRequest)?;
        let parked = Parked::new(Box::new(io), self.config.response_header_timeout);
        let conn = Conn::new(parked, None);
        conn::send(conn, head, body, None, &self.config)
            .await
            .map_err(|failed| failed.error)
    }

    /// The pool's counters, for metrics.
    pub fn stats(&self) -> ClientStats {
        self.pool.stats()
    }

    async fn send_with_retry(
        &self,
        addr: SocketAddr,
        head: &RequestHead,
        body: Body,
    ) -> Result<Response> {
        let (conn, reused) = match self.pool.checkout(addr) {
            Some(parked) => {
                tracing::debug!("reusing a pooled connection");
                (self.lease(addr, parked), true)
            }
            None => (self.connect(addr).await?, false),
        };
        let host = Some(addr);
        let Failed { error, replay } = match conn::send(conn, head, body, host, &self.config).await
        {
            Ok(response) => return Ok(response),
            Err(failed) => failed,
        };
        let replay = match replay {
            Some(replay) if reused && may_retry(&error, head, &replay) => replay,
            _ => return Err(error),
        };
        tracing::debug!(%error, "reused connection failed before any response; retrying once");
        self.pool.retries.fetch_add(1, Ordering::Relaxed);
        let conn = self.connect(addr).await?;
        conn::send(conn, head, replay.body, host, &self.config)
            .await
            .map_err(|failed| failed.error)
    }

    async fn connect(&self, addr: SocketAddr) -> Result<Conn> {
        let stream = tokio::time::timeout(self.config.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| Error::Timeout("connect"))?
            .map_err(Error::Connect)?;
        // Request heads are small and we wait for the answer: Nagle's algorithm would hold a
        // short final segment back until the previous one is acknowledged.
        stream.set_nodelay(true).map_err(Error::Connect)?;
        self.pool.opened.fetch_add(1, Ordering::Relaxed);
        tracing::debug!("connected");
        let parked = Parked::new(Box::new(stream), self.config.response_header_timeout);
        Ok(self.lease(addr, parked))
    }

    fn lease(&self, addr: SocketAddr, parked: Parked) -> Conn {
        let lease = Lease {
            pool: self.pool.clone(),
            addr,
        };
        Conn::new(parked, Some(lease))
    }
}

/// The retry rule of the module documentation, for a failure on a reused connection that
/// gave the request back (no response byte read, body not consumed). Only a closed or reset
/// connection is the race with the server's keep-alive timeout; a timeout is not retried here
/// (that is the caller's policy: it already waited once).
fn may_retry(error: &Error, head: &RequestHead, replay: &Replay) -> bool {
    matches!(error, Error::Closed | Error::Io(_))
        && (replay.nothing_written || head.is_idempotent())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::RequestHead;
    use http::Method;

    #[test]
    fn idempotency_follows_the_method_or_an_idempotency_key() {
        assert!(RequestHead::new(Method::PUT, "/").is_idempotent());
        assert!(!RequestHead::new(Method::POST, "/").is_idempotent());
        let mut keyed = RequestHead::new(Method::POST, "/");
        keyed
            .headers
            .insert("idempotency-key", http::HeaderValue::from_static("k1"));
        assert!(keyed.is_idempotent());
    }

    #[test]
    fn validate_names_the_bad_field() {
        let config = ClientConfig {
            response_header_timeout: Duration::ZERO,
            ..ClientConfig::default()
        };
        assert!(
            config
                .validate()
                .unwrap_err()
                .contains("response_header_timeout")
        );
        assert!(Client::new(ClientConfig::default()).is_ok());
    }
}
