//! One connection's loop: wait for a request head, run the handler, write the response, and
//! decide whether the connection carries another exchange (the diagram is in the parent
//! module's doc).

use std::any::Any;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use http::{Method, StatusCode, Version};
use tokio::time::{Instant, timeout, timeout_at};
use tracing::{Instrument, debug, debug_span, error};

use super::respond::Exchange;
use super::transport::{
    BodyState, CONNECTION_OWNER, RequestBody, SharedTransport, Transport, lock,
};
use super::{Handler, ServerConfig};
use crate::body::{Body, BodyStream, Frame};
use crate::decode::BodyDecoder;
use crate::error::Result;
use crate::framing::BodyKind;
use crate::head::{self, ParsedRequest, RequestHead};
use crate::limits::Limits;
use crate::message::{Request, Response};
use crate::timer::{IdleTimer, timeout_lazily};
use crate::upgrade::{self, Io, UpgradeSender, Upgraded};

/// Initial size of the write buffer, in bytes: a typical response head and small body.
const WRITE_BUF_BYTES: usize = 8 * 1024;

/// After the last response, how long the connection keeps reading (and discarding) what the
/// client still sends before it is dropped. Closing a socket with unread input makes the
/// kernel send a reset, which can destroy the response before the client has read it
/// (RFC 9112 section 9.6); reading on for a moment lets the client see the response and the
/// close.
const LINGER_TIMEOUT: Duration = Duration::from_secs(2);

/// Most bytes read and discarded while lingering.
const LINGER_MAX_BYTES: usize = 64 * 1024;

/// Serves HTTP/1.1 on one connection until it closes, the client stops sending, a protocol
/// error ends it, or `shutdown` resolves (then an exchange in progress finishes first, with
/// `Connection: close`). Errors are logged here, at debug level for what clients cause;
/// nothing is returned because nothing is left for the caller to do.
pub async fn serve_connection<T: Io, H: Handler>(
    io: T,
    remote_addr: Option<SocketAddr>,
    config: &ServerConfig,
    handler: &H,
    shutdown: impl Future<Output = ()>,
) {
    let shutdown = pin!(shutdown);
    let conn = Connection {
        transport: Arc::new(Mutex::new(Transport::new(io, config.limits.idle_timeout))),
        write_buf: BytesMut::with_capacity(WRITE_BUF_BYTES),
        idle: IdleTimer::new(config.limits.idle_timeout),
        config,
        remote_addr,
        shutdown,
        shutting_down: false,
        exchanges: 0,
    };
    let span = debug_span!("http_conn", peer = ?remote_addr);
    async move {
        if let Err(e) = conn.run(handler).await {
            debug!(error = %e, "connection ended");
        }
    }
    .instrument(span)
    .await;
}

pub(super) struct Connection<'a, T, S> {
    pub(super) transport: SharedTransport<T>,
    /// Responses not yet written; kept between exchanges so that its allocation is reused.
    pub(super) write_buf: BytesMut,
    /// The keep-alive wait's timeout, kept from one wait to the next.
    idle: IdleTimer,
    pub(super) config: &'a ServerConfig,
    remote_addr: Option<SocketAddr>,
    shutdown: Pin<&'a mut S>,
    shutting_down: bool,
    /// Exchanges started on this connection; numbers the owner of each request body.
    exchanges: u64,
}

/// The outcome of waiting for a request head.
enum HeadRead {
    Request(ParsedRequest),
    /// Nothing to answer: the client closed, stayed idle too long, or the server is stopping.
    Closed,
    /// Answer with this status, then close.
    Rejected(StatusCode, String),
}

/// How a wait for the next request ended.
enum Wait {
    Shutdown,
    Idle,
    Read(std::io::Result<usize>),
}

/// What happens to the connection after an exchange.
enum After {
    KeepAlive,
    Close,
    Upgrade(UpgradeSender),
}

impl<T: Io, S: Future<Output = ()>> Connection<'_, T, S> {
    async fn run<H: Handler>(mut self, handler: &H) -> Result<()> {
        loop {
            let parsed = match self.read_head().await? {
                HeadRead::Request(parsed) => parsed,
                HeadRead::Closed => return Ok(()),
                HeadRead::Rejected(status, reason) => {
                    self.write_error(status, &reason).await?;
                    return self.close().await;
                }
            };
            match self.exchange(parsed, handler).await? {
                After::KeepAlive => {}
                After::Close => return self.close().await,
                After::Upgrade(sender) => return self.upgrade(sender),
            }
        }
    }

    /// Waits for a whole request head. The first byte starts the `header_timeout` deadline.
    async fn read_head(&mut self) -> Result<HeadRead> {
        if lock(&self.transport).wire.read_buf.is_empty() {
            // Nothing pipelined is waiting: the responses written so far go out now.
            self.flush().await?;
            if !self.wait_for_request().await? {
                return Ok(HeadRead::Closed);
            }
        }
        let limits = &self.config.limits;
        // The deadline counts from the first byte, which is in the buffer now. Most heads arrive
        // whole, so the clock is read only when one does not.
        let mut deadline = None;
        let mut old_len = 0;
        loop {
            let parsed = {
                let mut transport = lock(&self.transport);
                let buf = &mut transport.wire.read_buf;
                if old_len == 0 || head_worth_parsing(buf, old_len, limits) {
                    head::take_request(buf, limits)
                } else {
                    Ok(None)
                }
            };
            match parsed {
                Ok(Some(parsed)) => return Ok(HeadRead::Request(parsed)),
                Ok(None) => {}
                Err(e) => {
                    debug!(error = %e, "request head refused");
                    return Ok(HeadRead::Rejected(e.status(), e.to_string()));
                }
            }
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + limits.header_timeout);
            // The deadline covers the flush too: a client that sends half a head and does not
            // read its earlier responses is still bounded by it.
            let read = async {
                self.flush().await?;
                old_len = lock(&self.transport).wire.read_buf.len();
                let transport = &self.transport;
                poll_fn(|cx| lock(transport).wire.poll_fill(cx))
                    .await
                    .map_err(crate::error::Error::from)
            };
            match timeout_at(deadline, read).await {
                Err(_) => {
                    debug!("header timeout");
                    let reason = "request header timeout".to_owned();
                    return Ok(HeadRead::Rejected(StatusCode::REQUEST_TIMEOUT, reason));
                }
                Ok(Ok(0)) => {
                    debug!("closed in the middle of a request head");
                    return Ok(HeadRead::Closed);
                }
                Ok(read) => read?,
            };
        }
    }

    /// Waits for the first byte of a request on an idle connection. False when the connection
    /// should close instead: the client closed it, `idle_timeout` passed, or shutdown began
    /// (checked first, so that an idle connection closes at once even if a request came in).
    async fn wait_for_request(&mut self) -> Result<bool> {
        if self.shutting_down {
            return Ok(false);
        }
        let transport = &self.transport;
        let shutdown = &mut self.shutdown;
        let idle = &mut self.idle;
        idle.reset();
        let waited = poll_fn(|cx| {
            if shutdown.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Wait::Shutdown);
            }
            if let Poll::Ready(read) = lock(transport).wire.poll_fill(cx) {
                return Poll::Ready(Wait::Read(read));
            }
            idle.poll_expired(cx).map(|()| Wait::Idle)
        });
        match waited.await {
            Wait::Shutdown => {
                self.shutting_down = true;
                Ok(false)
            }
            Wait::Idle => {
                debug!("idle timeout");
                Ok(false)
            }
            Wait::Read(read) => Ok(read? > 0),
        }
    }

    /// Whether shutdown has begun, without waiting for it. The shutdown future is polled with
    /// the task's own waker, the one [`Self::wait_for_request`] registers too, so that the two
    /// do not swap wakers in the shutdown signal on every request.
    async fn shutdown_requested(&mut self) -> bool {
        if !self.shutting_down {
            let shutdown = &mut self.shutdown;
            self.shutting_down =
                poll_fn(|cx| Poll::Ready(shutdown.as_mut().poll(cx).is_ready())).await;
        }
        self.shutting_down
    }

    /// One request and its response.
    async fn exchange<H: Handler>(&mut self, parsed: ParsedRequest, handler: &H) -> Result<After> {
        self.exchanges += 1;
        let ParsedRequest {
            head,
            body: kind,
            keep_alive,
            ..
        } = parsed;
        let method = head.method.clone();
        let version = head.version;
        let has_body = kind != BodyKind::Empty;
        if has_body && head.expects_continue() {
            // The body's first read writes `100 Continue` straight to the stream: the responses
            // to earlier pipelined requests must be out before it.
            self.flush().await?;
        }
        let body = self.request_body(kind, &head);
        // An upgrade or CONNECT request with a body is served as a plain request: the body
        // would have to be read before switching, and no protocol that switches sends one.
        let can_switch = head.wants_upgrade() || method == Method::CONNECT;
        let (upgrade_tx, upgrade) = match can_switch && !has_body {
            true => {
                let (tx, rx) = upgrade::pending();
                (Some(tx), Some(rx))
            }
            false => (None, None),
        };
        let request = Request {
            head,
            body,
            remote_addr: self.remote_addr,
            upgrade,
        };
        let (mut response, mut handler_ok) = match self.call(handler, request).await? {
            Some(response) => (response, true),
            None => (internal_error(), false),
        };
        let status = response.status();
        // 101 to an upgrade request, or 2xx to CONNECT (RFC 9110 section 9.3.6), ends HTTP on
        // this connection.
        let switching = upgrade_tx.is_some()
            && match method == Method::CONNECT {
                true => status.is_success(),
                false => status == StatusCode::SWITCHING_PROTOCOLS,
            };
        if status.is_informational() && !switching {
            // An interim response would leave the client waiting for a final one that never
            // comes (and 101 is only an answer to an upgrade request).
            error!(%status, "handler answered with an interim status: answering 500 and closing");
            (response, handler_ok) = (internal_error(), false);
        }
        // Without a body no body reader was started: nothing to settle or finish, and no need to
        // take the transport's lock for it.
        let body_ok = !has_body || self.settle_request_body().await?;
        let exchange = Exchange {
            method,
            version,
            keep_alive: keep_alive && handler_ok && body_ok && !self.shutdown_requested().await,
            switching,
        };
        let reusable = self.write_response(response, &exchange).await?;
        match upgrade_tx {
            Some(sender) if switching => {
                self.flush().await?;
                Ok(After::Upgrade(sender))
            }
            _ if reusable && (!has_body || self.finish_request_body().await?) => {
                Ok(After::KeepAlive)
            }
            _ => Ok(After::Close),
        }
    }

    /// The request body as the handler sees it: a stream reading this connection.
    fn request_body(&mut self, kind: BodyKind, head: &RequestHead) -> Body {
        if kind == BodyKind::Empty {
            return Body::empty();
        }
        let decoder = BodyDecoder::new(kind, &self.config.limits);
        let expects_continue = head.expects_continue();
        lock(&self.transport).start_body(self.exchanges, decoder, expects_continue);
        Body::from_stream(RequestBody::new(self.transport.clone(), self.exchanges))
    }

    /// Runs the handler, catching a panic (`None`).
    ///
    /// The handler's future is polled inside `catch_unwind`, in this task, rather than spawned:
    /// no allocation and no cross-task wake-up per request. `AssertUnwindSafe` is sound here
    /// because a future that panicked is dropped and never polled again, so nobody observes its
    /// broken state; state the handler shares between requests is the handler's concern, as it
    /// would be with `tokio::spawn`, which catches panics the same way.
    async fn call<H: Handler>(
        &mut self,
        handler: &H,
        request: Request,
    ) -> Result<Option<Response>> {
        // The handler's future is made inside the first poll, straight into its pinned slot:
        // made outside and then pinned, it was copied whole three times (out of
        // `catch_unwind`, out of its result, into the pin), and a proxy's is kilobytes.
        let mut request = Some(request);
        let mut future = pin!(None);
        let mut poll = |cx: &mut Context<'_>| match catch_unwind(AssertUnwindSafe(|| {
            if let Some(request) = request.take() {
                future.set(Some(handler.call(request)));
            }
            match future.as_mut().as_pin_mut() {
                Some(future) => future.poll(cx),
                None => unreachable!("the future is made at the first poll"),
            }
        })) {
            Ok(Poll::Ready(response)) => Poll::Ready(Some(response)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(log_panic(panic)),
        };
        // A handler that answers at once lets responses to pipelined requests batch up; one
        // that waits must not hold back the responses already written. With nothing written
        // yet, a handler that waits is left to its wake-up: polled again at once, it would
        // run through its whole future for nothing (and a `yield_now` in it would not yield).
        if !self.write_buf.is_empty() {
            if let Poll::Ready(response) = poll_fn(|cx| Poll::Ready(poll(cx))).await {
                return Ok(response);
            }
            self.flush().await?;
        }
        Ok(poll_fn(poll).await)
    }

    /// Settles the request body before the response head is written: a `100 Continue` that a
    /// body read started is finished, one not started is never sent. False when the
    /// connection must close after the response: the body's framing failed, or the client may
    /// still be waiting for the `100 Continue`.
    async fn settle_request_body(&mut self) -> Result<bool> {
        let transport = &self.transport;
        let settle = poll_fn(|cx| lock(transport).poll_settle_continue(cx));
        timeout_lazily(self.config.limits.idle_timeout, settle)
            .await
            .map_err(|_| crate::error::Error::Timeout("100 Continue write stalled"))??;
        let state = lock(transport).body_state();
        Ok(!matches!(state, BodyState::Failed | BodyState::Refused))
    }

    /// After the response: reads and drops what the handler left of the request body, up to
    /// `max_discard_bytes`. False when the connection cannot carry another request.
    async fn finish_request_body(&mut self) -> Result<bool> {
        let state = {
            let mut transport = lock(&self.transport);
            transport.reclaim_body();
            transport.body_state()
        };
        let reusable = match state {
            BodyState::Complete => true,
            BodyState::Failed | BodyState::Refused => false,
            BodyState::Unread { remaining: Some(n) } if n > self.config.max_discard_bytes => false,
            BodyState::Unread { .. } => self.discard_request_body().await,
        };
        lock(&self.transport).end_body();
        Ok(reusable)
    }

    async fn discard_request_body(&mut self) -> bool {
        let mut body = RequestBody::new(self.transport.clone(), CONNECTION_OWNER);
        let mut discarded = 0u64;
        loop {
            match poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
                None => return true,
                Some(Ok(Frame::Data(data))) => {
                    discarded += data.len() as u64;
                    if discarded > self.config.max_discard_bytes {
                        debug!("unread request body over max_discard_bytes: closing");
                        return false;
                    }
                }
                Some(Ok(Frame::Trailers(_))) => {}
                Some(Err(e)) => {
                    debug!(error = %e, "while discarding the request body");
                    return false;
                }
            }
        }
    }

    /// Closes after the last response: flush, send FIN, then linger (see [`LINGER_TIMEOUT`]).
    async fn close(mut self) -> Result<()> {
        // A body still held by the handler must not read what is discarded below.
        lock(&self.transport).end_body();
        self.flush().await?;
        let transport = &self.transport;
        let shutdown = poll_fn(|cx| lock(transport).wire.poll_shutdown(cx));
        let _ = timeout(self.config.limits.idle_timeout, shutdown).await;
        let linger = async {
            let mut discarded = 0;
            while discarded <= LINGER_MAX_BYTES {
                let read = poll_fn(|cx| {
                    let mut transport = lock(transport);
                    transport.wire.read_buf.clear();
                    transport.wire.poll_fill(cx)
                });
                match read.await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => discarded += n,
                }
            }
        };
        let _ = timeout(LINGER_TIMEOUT, linger).await;
        Ok(())
    }

    /// Hands the stream, and what was read past the 101 exchange, to the handler.
    fn upgrade(self, sender: UpgradeSender) -> Result<()> {
        // The request had no body, so no `RequestBody` holds the transport.
        // Dropping the sender and the transport closes the connection; the handler's
        // `OnUpgrade` fails with `Error::Closed`.
        let Ok(transport) = Arc::try_unwrap(self.transport) else {
            error!("upgrade abandoned: the transport is still shared; closing");
            return Ok(());
        };
        let wire = transport
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .wire;
        sender.send(Upgraded {
            io: Box::new(wire.io),
            read_buf: wire.read_buf.freeze(),
        });
        Ok(())
    }

    /// Answers a request that could not be read, before closing.
    async fn write_error(&mut self, status: StatusCode, reason: &str) -> Result<()> {
        let response = Response::text(status, format!("{reason}\n"));
        let exchange = Exchange {
            method: Method::GET,
            version: Version::HTTP_11,
            keep_alive: false,
            switching: false,
        };
        self.write_response(response, &exchange).await?;
        self.flush().await
    }
}

/// Whether bytes that arrived after the first `old_len` can change the parser's answer: a new
/// line ended, or a size limit was just crossed. Re-parsing only then keeps a client that
/// sends one byte at a time from costing a parse of the whole section per byte.
fn head_worth_parsing(buf: &[u8], old_len: usize, limits: &Limits) -> bool {
    let crossed = |limit: usize| old_len <= limit && buf.len() > limit;
    buf[old_len..].contains(&b'\n')
        || crossed(limits.max_request_line_bytes)
        || crossed(limits.max_header_bytes)
}

fn internal_error() -> Response {
    Response::text(StatusCode::INTERNAL_SERVER_ERROR, "internal server error\n")
}

fn log_panic(panic: Box<dyn Any + Send>) -> Option<Response> {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    error!(
        panic = message,
        "handler panicked: answering 500 and closing"
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_waits_for_a_line_end_or_a_limit() {
        let limits = Limits {
            max_request_line_bytes: 8,
            max_header_bytes: 16,
            ..Limits::default()
        };
        assert!(!head_worth_parsing(b"GET /ab", 6, &limits));
        assert!(head_worth_parsing(b"GET / HTTP/1.1\r\n", 15, &limits));
        assert!(head_worth_parsing(b"GET /abcd", 8, &limits));
        assert!(head_worth_parsing(b"GET / HTTP/1.1\r\nHo", 16, &limits));
    }
}
