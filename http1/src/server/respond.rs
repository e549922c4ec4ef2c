//! Writing a response: choosing its framing (RFC 9112 section 6.3, from the sender's side),
//! completing its head, and streaming its body through a [`BodyEncoder`].
//!
//! ```text
//! status 1xx, 204, 304                -> no body; the handler's Content-Length (304) is kept
//! 2xx to CONNECT                      -> no body and no framing fields (RFC 9110 section 9.3.6);
//!                                        a tunnel follows, or the connection closes
//! response to HEAD                    -> no body; Content-Length of the body it would have had
//! body length known                   -> Content-Length
//! unknown, HTTP/1.1 client            -> chunked, trailers allowed
//! unknown, HTTP/1.0 client            -> no framing header; the connection closes after it
//! ```
//!
//! Responses are written into the connection's write buffer and leave it in as few writes as
//! possible: a response whose body is in memory costs one `write` (the head and the body are
//! copied together; a large piece of data goes out beside the buffer in a vectored write
//! instead of being copied), and the buffer is flushed only before the connection waits or when
//! it reaches [`WRITE_BUF_FLUSH_BYTES`].

use std::future::{Future, poll_fn};
use std::task::{Poll, ready};

use bytes::{Buf, BufMut, Bytes};
use http::header::{self, HeaderMap};
use http::{Method, StatusCode, Version};
use tracing::{debug, warn};

use super::conn::Connection;
use super::date;
use super::transport::{SharedTransport, lock};
use crate::body::{Body, Frame};
use crate::encode::BodyEncoder;
use crate::error::{Error, Result};
use crate::head::{self, OutgoingFraming};
use crate::message::Response;
use crate::timer::timeout_lazily;
use crate::upgrade::Io;

/// Buffered response bytes that trigger a write even though the connection is not about to
/// wait: bounds the write buffer when many pipelined responses or a long body are produced
/// without pause.
const WRITE_BUF_FLUSH_BYTES: usize = 64 * 1024;

/// Pieces of body data up to this size are copied into the write buffer, so that they go out
/// in the same write as the head; larger ones are written from where they are.
const BODY_COPY_MAX_BYTES: usize = 16 * 1024;

/// What the response depends on besides itself.
pub(super) struct Exchange {
    pub(super) method: Method,
    /// The request's version: an HTTP/1.0 client cannot read chunked.
    pub(super) version: Version,
    /// Whether the connection may stay open, as far as the request and the server go.
    pub(super) keep_alive: bool,
    /// A 101 (or a 2xx to CONNECT) that ends HTTP on the connection: its Connection and
    /// Upgrade fields are the handler's.
    pub(super) switching: bool,
}

impl<T: Io, S: Future<Output = ()>> Connection<'_, T, S> {
    /// Writes `response` into the write buffer (flushing as needed). Returns whether the
    /// connection can carry another exchange afterwards.
    pub(super) async fn write_response(
        &mut self,
        mut response: Response,
        exchange: &Exchange,
    ) -> Result<bool> {
        let tunnel = is_tunnel(&response, exchange);
        if tunnel {
            // RFC 9110 section 9.3.6: a 2xx to CONNECT has no framing fields.
            response.head.headers.remove(header::CONTENT_LENGTH);
            response.head.headers.remove(header::TRANSFER_ENCODING);
        }
        let (head_framing, body_framing) = choose_framing(&response, exchange);
        let headers = &response.head.headers;
        let handler_closes = head::has_token(headers, "close");
        let keep_alive = exchange.keep_alive
            && body_framing != OutgoingFraming::Close
            && !handler_closes
            && !tunnel;
        let date = (!headers.contains_key(header::DATE)).then(date::field_line);
        let connection = connection_line(headers, exchange, keep_alive, handler_closes);
        let added: [&[u8]; 2] = [date.as_ref().map_or(&[], |line| line), connection];
        head::encode_response_with(&response.head, head_framing, &added, &mut self.write_buf);
        let body_complete = match body_framing {
            OutgoingFraming::None => true,
            _ => self.write_body(response.body, body_framing).await?,
        };
        if self.write_buf.len() >= WRITE_BUF_FLUSH_BYTES {
            self.flush().await?;
        }
        Ok(keep_alive && body_complete)
    }

    /// Streams a body out. False when it could not be completed: the connection must close so
    /// that the client sees a truncated body rather than a complete one.
    async fn write_body(&mut self, mut body: Body, framing: OutgoingFraming) -> Result<bool> {
        let mut encoder = BodyEncoder::new(framing);
        loop {
            let frame = match poll_fn(|cx| Poll::Ready(body.poll_frame(cx))).await {
                Poll::Ready(frame) => frame,
                Poll::Pending => {
                    // The next piece is not ready: what is buffered goes out meanwhile.
                    self.flush().await?;
                    body.frame().await
                }
            };
            let trailers = match frame {
                None => None,
                Some(Ok(Frame::Trailers(trailers))) => Some(trailers),
                Some(Ok(Frame::Data(data))) => {
                    if !self.put_data(&mut encoder, data).await? {
                        return Ok(false);
                    }
                    continue;
                }
                Some(Err(e)) => {
                    debug!(error = %e, "response body failed: closing to truncate it");
                    return Ok(false);
                }
            };
            if let Err(e) = encoder.finish(trailers.as_ref(), &mut self.write_buf) {
                warn!(error = %e, "handler's response body broke its framing: closing");
                return Ok(false);
            }
            return Ok(true);
        }
    }

    /// Frames one piece of body data. False when it breaks a Content-Length promise.
    async fn put_data(&mut self, encoder: &mut BodyEncoder, mut data: Bytes) -> Result<bool> {
        if data.len() <= BODY_COPY_MAX_BYTES {
            if let Err(e) = encoder.data(&data, &mut self.write_buf) {
                warn!(error = %e, "handler's response body broke its framing: closing");
                return Ok(false);
            }
            if self.write_buf.len() >= WRITE_BUF_FLUSH_BYTES {
                self.flush().await?;
            }
            return Ok(true);
        }
        let end = match encoder.data_header(data.len(), &mut self.write_buf) {
            Ok(end) => end,
            Err(e) => {
                warn!(error = %e, "handler's response body broke its framing: closing");
                return Ok(false);
            }
        };
        let stall = self.config.limits.idle_timeout;
        let mut both = (&mut self.write_buf).chain(&mut data);
        write_all(&self.transport, &mut both, stall).await?;
        self.write_buf.put_slice(end);
        Ok(true)
    }

    /// Writes everything buffered.
    pub(super) async fn flush(&mut self) -> Result<()> {
        if self.write_buf.is_empty() {
            return Ok(());
        }
        let stall = self.config.limits.idle_timeout;
        write_all(&self.transport, &mut self.write_buf, stall).await
    }
}

/// Writes all of `buf`, then flushes (a TLS stream may hold the last record back until then);
/// a write or flush that makes no progress for `stall` fails.
async fn write_all<T: Io>(
    transport: &SharedTransport<T>,
    buf: &mut impl Buf,
    stall: std::time::Duration,
) -> Result<()> {
    loop {
        // One lock per step: a write, and, once it has taken everything, the flush, so that a
        // response written in one go takes the lock once.
        let step = poll_fn(|cx| {
            let mut transport = lock(transport);
            if buf.has_remaining() {
                ready!(transport.wire.poll_write_some(cx, buf))?;
                if buf.has_remaining() {
                    return Poll::Ready(Ok(false));
                }
            }
            transport.wire.poll_flush(cx).map_ok(|()| true)
        });
        match timeout_lazily(stall, step).await {
            Ok(Ok(true)) => return Ok(()),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return Err(Error::Timeout("response write stalled")),
        }
    }
}

/// The framing written in the head, and the framing the body is sent with.
fn choose_framing(response: &Response, exchange: &Exchange) -> (OutgoingFraming, OutgoingFraming) {
    let status = response.head.status;
    let no_body = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || is_tunnel(response, exchange);
    if no_body {
        return (OutgoingFraming::None, OutgoingFraming::None);
    }
    let len = response.body.exact_len();
    if exchange.method == Method::HEAD {
        // RFC 9110 section 9.3.2: the fields a GET would have had, without the body.
        let declared = response.head.headers.contains_key(header::CONTENT_LENGTH);
        let head = match len {
            Some(n) if n > 0 && !declared => OutgoingFraming::Length(n),
            _ => OutgoingFraming::None,
        };
        return (head, OutgoingFraming::None);
    }
    let framing = match len {
        Some(n) => OutgoingFraming::Length(n),
        None if exchange.version == Version::HTTP_10 => OutgoingFraming::Close,
        None => OutgoingFraming::Chunked,
    };
    (framing, framing)
}

/// A 2xx to CONNECT: what follows the head is the tunnel, not a body, and never another HTTP
/// exchange.
fn is_tunnel(response: &Response, exchange: &Exchange) -> bool {
    exchange.method == Method::CONNECT && response.head.status.is_success()
}

/// The Connection field line the server adds to tell the client what happens next, if any.
/// (`Date` is the other field it adds.) Both are written after the handler's fields rather
/// than inserted into its map, which would cost a hash-map insertion per response.
fn connection_line(
    headers: &HeaderMap,
    exchange: &Exchange,
    keep_alive: bool,
    handler_closes: bool,
) -> &'static [u8] {
    if exchange.switching {
        return b"";
    }
    if !keep_alive {
        if !handler_closes {
            return b"connection: close\r\n";
        }
    } else if exchange.version == Version::HTTP_10 && !head::has_token(headers, "keep-alive") {
        // An HTTP/1.0 connection closes unless the response says otherwise (RFC 9112
        // section 9.3).
        return b"connection: keep-alive\r\n";
    }
    b""
}
