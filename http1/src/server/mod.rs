//! The HTTP/1.1 server: an accept loop with a connection limit and graceful shutdown, and the
//! request/response loop of one connection (RFC 9112).
//!
//! [`serve`] owns a `TcpListener`; [`serve_connection`] runs one connection over any byte
//! stream (TCP here, TLS in the proxy), so the protocol code is the same for both.
//!
//! # One connection
//!
//! ```text
//!                 ┌───────────────────────── keep-alive ─────────────────────────┐
//!                 v                                                              │
//!  accept ──> [idle] ──first byte──> [reading head] ──head──> [handler runs] ──> [writing response]
//!               │                      │   deadline: header_timeout             │       │
//!               │ idle_timeout,        │   from the first byte                  │       │ then: rest of
//!               │ EOF or shutdown      │                                        │       │ the request body
//!               v                      ├─ malformed / too large ─> 4xx, close   │       │ discarded (up to
//!            close (silently)          ├─ deadline passed ──────> 408, close    │       │ max_discard_bytes)
//!                                      └─ EOF ──────────────────> close         │       v
//!                                                                               │  101 to an upgrade
//!                              handler panicked ──> 500, close <────────────────┤  request, 2xx to
//!                   interim (1xx) final status ──> 500, close <─────────────────┘  CONNECT: hand the
//!                                                                                  stream over, end
//! ```
//!
//! - **Request bodies** are read from the connection on demand by the body the handler holds
//!   (see `transport`): back-pressure is TCP's own, `Expect: 100-continue` is answered when the
//!   handler first reads the body, and a handler that answers before reading it gets no `100`
//!   sent and the connection closed after its response, unless the body was read to the end
//!   by then (a response that streams the request body back still reads it). A body that breaks
//!   its framing or `max_body_bytes` reaches the handler as an `Err` frame (a handler that
//!   collects answers 413 itself: `BodyError::status` says which status), and the connection
//!   closes after the response.
//! - **Response bodies** are framed with Content-Length when [`Body::exact_len`] is known,
//!   chunked (with trailers) otherwise, or delimited by closing the connection for an HTTP/1.0
//!   client. Responses to HEAD, 1xx, 204 and 304 responses, and 2xx responses to CONNECT
//!   carry no body.
//! - **Pipelining.** Requests are answered in order, one at a time. Responses to requests that
//!   were already in the read buffer are written together: the buffer is flushed before the
//!   connection waits (for input or for a handler), not after each response.
//! - **Panics.** The handler's future is polled inside `catch_unwind`; a panic answers 500 and
//!   closes that connection. Anything else that panics takes down only its connection's task.
//!
//! # Shutdown
//!
//! When the `shutdown` future given to [`serve`] resolves, the listener is closed (new
//! connections are refused), idle connections close at once, and a connection in the middle of
//! an exchange finishes it, answers with `Connection: close`, and closes. `serve` returns when
//! every connection is done, or when [`ServerConfig::drain_timeout`] passes; the connections
//! left then are dropped.
//!
//! [`Body::exact_len`]: crate::body::Body::exact_len

mod balance;
mod conn;
mod date;
mod respond;
mod transport;

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::message::{Request, Response};

pub use balance::{AcceptGroup, Accepted, Lease, Member};
pub use conn::serve_connection;

/// Answers requests. Implemented for every `Fn(Request) -> impl Future<Output = Response>`,
/// so a closure returning an `async` block is a handler.
pub trait Handler: Send + Sync + 'static {
    fn call(&self, request: Request) -> impl Future<Output = Response> + Send;
}

impl<F, Fut> Handler for F
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send,
{
    fn call(&self, request: Request) -> impl Future<Output = Response> + Send {
        self(request)
    }
}

/// Configuration of a server. Build with `ServerConfig::default()` and change fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Size and time limits of each connection.
    pub limits: Limits,
    /// Most connections served at once. At the limit the server stops calling `accept`, so
    /// new clients wait in the kernel's backlog instead of being accepted and dropped.
    /// Default 1024.
    pub max_connections: usize,
    /// After shutdown is requested, how long in-flight exchanges may take before their
    /// connections are dropped. Default 30 s.
    pub drain_timeout: Duration,
    /// A request body the handler left unread is read and thrown away, up to this many bytes,
    /// so that the connection can serve the next request; a larger rest closes the connection
    /// instead. Default 256 KiB.
    pub max_discard_bytes: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            limits: Limits::default(),
            max_connections: 1024,
            drain_timeout: Duration::from_secs(30),
            max_discard_bytes: 256 * 1024,
        }
    }
}

impl ServerConfig {
    /// Checks every field; the error names the one at fault.
    pub fn validate(&self) -> Result<(), String> {
        self.limits.validate().map_err(|e| format!("limits: {e}"))?;
        if self.max_connections == 0 || self.max_connections > Semaphore::MAX_PERMITS {
            return Err("max_connections must be positive".into());
        }
        Ok(())
    }
}

/// Serves HTTP/1.1 on `listener` until `shutdown` resolves, then drains (see the module doc).
/// Fails only on an invalid `config`.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    config: ServerConfig,
    handler: H,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    config.validate().map_err(Error::Other)?;
    let member = AcceptGroup::members(config.max_connections, 1).remove(0);
    serve_shared(listener, config, Arc::new(handler), member, shutdown).await
}

/// [`serve`] for one of several accept loops that share a handler and a connection limit: a
/// server running one runtime per worker calls it once per worker, each with its own
/// `listener` (the same socket, registered with that worker's event loop) and its `member` of
/// one [`AcceptGroup`], which holds the limit (`config.max_connections` is not read) and keeps
/// the loops' connection counts level. Fails only on an invalid `config`.
pub async fn serve_shared<H: Handler>(
    listener: TcpListener,
    config: ServerConfig,
    handler: Arc<H>,
    mut member: Member,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    config.validate().map_err(Error::Other)?;
    let config = Arc::new(config);
    let stop = StopSignal::new();
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);

    loop {
        while let Some(finished) = connections.try_join_next() {
            log_task_end(finished);
        }
        let Accepted {
            stream,
            peer,
            lease,
        } = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = member.next(&listener) => accepted,
        };
        let config = config.clone();
        let handler = handler.clone();
        let stopped = stop.subscribe();
        connections.spawn(async move {
            let _lease = lease;
            serve_connection(stream, Some(peer), &config, &*handler, stopped).await;
        });
    }

    drop(listener);
    drop(member);
    stop.stop();
    info!(
        connections = connections.len(),
        "shutting down: draining connections"
    );
    let drained = tokio::time::timeout(config.drain_timeout, async {
        while let Some(finished) = connections.join_next().await {
            log_task_end(finished);
        }
    })
    .await;
    if drained.is_err() {
        warn!(
            connections = connections.len(),
            "drain timeout passed: dropping connections"
        );
        connections.abort_all();
    }
    Ok(())
}

/// Tells the connections that `serve` stops: when [`StopSignal::stop`] is called, or when
/// `serve`'s future is dropped.
struct StopSignal {
    flag: Arc<AtomicBool>,
    tx: watch::Sender<bool>,
}

impl StopSignal {
    fn new() -> Self {
        StopSignal {
            flag: Arc::new(AtomicBool::new(false)),
            tx: watch::channel(false).0,
        }
    }

    /// The flag first: a connection that sees it does not need the wake-up.
    fn stop(&self) {
        self.flag.store(true, Ordering::Release);
        let _ = self.tx.send(true);
    }

    /// The shutdown future of one connection.
    fn subscribe(&self) -> Stopped<impl Future<Output = ()> + use<>> {
        let mut rx = self.tx.subscribe();
        let wait = async move {
            // A dropped sender means `serve` is gone: stop as well.
            let _ = rx.wait_for(|&stopped| stopped).await;
        };
        Stopped {
            flag: self.flag.clone(),
            wait: Box::pin(wait),
            registered: None,
        }
    }
}

impl Drop for StopSignal {
    fn drop(&mut self) {
        // Runs before the fields are dropped: the flag is set before the channel closes.
        self.stop();
    }
}

/// The shutdown future of one connection: ready once `serve` stops.
///
/// A connection polls it at least twice per request (while it waits for the next request, and
/// to decide whether its response says `Connection: close`). Polling the watch channel's future
/// takes the channel's lock every time; here a poll that finds nothing is one atomic load, once
/// the task's waker is registered with the channel. The flag is set before the channel is sent
/// on or closed, so a poll either sees the flag or is woken after it was set.
struct Stopped<F> {
    flag: Arc<AtomicBool>,
    wait: Pin<Box<F>>,
    /// The waker `wait` was last polled with, and is registered with.
    registered: Option<Waker>,
}

impl<F: Future<Output = ()>> Future for Stopped<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.flag.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        let registered = self.registered.as_ref();
        if registered.is_some_and(|waker| waker.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        let polled = self.wait.as_mut().poll(cx);
        if polled.is_pending() {
            self.registered = Some(cx.waker().clone());
        }
        polled
    }
}

fn log_task_end(finished: std::result::Result<(), tokio::task::JoinError>) {
    if let Err(e) = finished
        && e.is_panic()
    {
        warn!("a connection task panicked");
    }
}
