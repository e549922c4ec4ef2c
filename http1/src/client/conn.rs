//! One request and its response head on one connection.
//!
//! ```text
//!  write head (+ the body frames already ready: one segment for small requests)
//!    |  the response header deadline starts here
//!    |  Expect: 100-continue? wait (at most expect_continue_timeout) for a 100 or a final head
//!    v
//!  write the rest of the body  ||  read response heads, skipping 1xx (not 101)
//!    |  a final head that arrives before the body is sent ends the upload:
//!    |  the server has answered (often 413 or 401) and the connection will not be reused
//!    v
//!  101 / 2xx to CONNECT -> the raw connection, through OnUpgrade
//!  otherwise            -> a response whose body streams from the connection
//! ```
//!
//! While a body streams, writing and reading run together (RFC 9112 section 9.3 asks a client
//! to watch for a response while it sends a body), on the two halves of a split stream. A
//! request whose body was whole and ready with its head needs no split: it is written, then
//! the response is read.
//!
//! The framing of the request body is always ours: Content-Length when the body's exact
//! length is known, chunked (with trailers) otherwise; the caller's Content-Length and
//! Transfer-Encoding fields are dropped. Requests always go out as HTTP/1.1, the highest version
//! we speak (RFC 9110 section 2.5), whatever version they arrived with.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use http::{Method, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, timeout_at};

use super::ClientConfig;
use super::pool::{Lease, Parked, RuntimeId};
use super::response_body::IncomingBody;
use crate::body::{Body, Frame};
use crate::decode::BodyDecoder;
use crate::encode::BodyEncoder;
use crate::error::{Error, HeadError, Result};
use crate::head::{self, OutgoingFraming, ParsedResponse, RequestHead};
use crate::limits::Limits;
use crate::message::Response;
use crate::timer::{IdleTimer, timeout_lazily, within};
use crate::upgrade::{self, Io, Upgraded};

/// Encoded request body bytes that are written out even though more frames are ready, so the
/// buffer stays bounded while a fast body streams.
const WRITE_BUF_FLUSH_BYTES: usize = 64 * 1024;

/// How much the read buffer grows by before each read: enough for a typical response head,
/// and one TLS record, in one system call.
pub(crate) const READ_CHUNK_BYTES: usize = 16 * 1024;

/// A pooled connection keeps its buffers for its next exchange unless one has grown past
/// this (a large response head or upload); such a buffer is freed instead.
const MAX_KEPT_BUFFER_BYTES: usize = 64 * 1024;

/// A connection between exchanges: the stream, whatever was read past the last message, and
/// the (empty) buffer requests are encoded into.
pub(crate) struct Conn {
    pub(crate) io: Box<dyn Io>,
    pub(crate) read_buf: BytesMut,
    pub(crate) write_buf: BytesMut,
    /// The wait for a response head (`response_header_timeout`), kept with the connection so
    /// that its timer is re-armed rarely rather than once per request.
    pub(crate) header_timer: IdleTimer,
    /// The runtime whose event loop the connection is registered with (its pool key).
    runtime: Option<RuntimeId>,
    /// The pool the connection returns to; `None` for a one-off connection (`send_on`).
    pub(crate) lease: Option<Lease>,
}

impl Conn {
    pub(crate) fn new(parked: Parked, lease: Option<Lease>) -> Conn {
        Conn {
            io: parked.io,
            read_buf: parked.read_buf,
            write_buf: parked.write_buf,
            header_timer: parked.header_timer,
            runtime: parked.runtime,
            lease,
        }
    }

    /// Hands the connection back to its pool, or closes it when it has none or when bytes
    /// nobody asked for follow the response (the next exchange could not be trusted).
    pub(crate) fn recycle(self) {
        let Some(lease) = self.lease else { return };
        if !self.read_buf.is_empty() {
            tracing::debug!(addr = %lease.addr, "bytes after the response; connection closed");
            return;
        }
        let parked = Parked {
            io: self.io,
            read_buf: kept(self.read_buf),
            write_buf: kept(self.write_buf),
            header_timer: self.header_timer,
            runtime: self.runtime,
        };
        lease.pool.checkin(lease.addr, parked);
    }
}

/// `buf`, emptied, if its allocation is at most [`MAX_KEPT_BUFFER_BYTES`]; else a new, empty
/// buffer. `capacity()` would undercount a buffer whose front was consumed (written out, or
/// split off as body data): what counts is the allocation its next use reclaims.
fn kept(mut buf: BytesMut) -> BytesMut {
    buf.clear();
    match buf.try_reclaim(MAX_KEPT_BUFFER_BYTES + 1) {
        true => BytesMut::new(),
        false => buf,
    }
}

/// A failed exchange. `replay` gives the body back when the request can be sent again: no
/// response byte was read and its body was not consumed. Whether it *should* be is the retry
/// rule.
pub(crate) struct Failed {
    pub(crate) error: Error,
    pub(crate) replay: Option<Replay>,
}

pub(crate) struct Replay {
    pub(crate) body: Body,
    /// Not one byte of the request reached the socket, so the server cannot have acted on it.
    pub(crate) nothing_written: bool,
}

/// Sends the request `head` + `body` on `conn` and reads the final response head. The head
/// is only read: the caller keeps it, to send it again elsewhere if it likes. `host` is the
/// `Host` written when the head has none. The response body, if any, holds the connection
/// until it has been read to its end.
pub(crate) async fn send(
    conn: Conn,
    head: &RequestHead,
    mut body: Body,
    host: Option<SocketAddr>,
    config: &ClientConfig,
) -> Result<Response, Failed> {
    let framing = framing(&head.method, &body);
    let Conn {
        mut io,
        read_buf,
        mut write_buf,
        mut header_timer,
        runtime,
        lease,
    } = conn;
    write_buf.clear();
    let mut reader = Reader {
        buf: read_buf,
        got_bytes: false,
        limits: &config.limits,
        method: head.method.clone(),
    };
    let mut writer = Writer {
        out: write_buf,
        framing,
        enc: BodyEncoder::new(framing),
        encoded: 0,
        consumed: false,
        done: false,
        stall: config.limits.idle_timeout,
    };
    let exchanged = exchange(
        &mut io,
        &mut header_timer,
        head,
        host,
        &mut body,
        &mut reader,
        &mut writer,
        config,
    )
    .await;
    match exchanged {
        Ok((parsed, request_complete)) => {
            let conn = Conn {
                io,
                read_buf: reader.buf,
                write_buf: writer.out,
                header_timer,
                runtime,
                lease,
            };
            let keep = request_complete && !head::has_token(&head.headers, "close");
            Ok(respond(parsed, conn, keep, &head.method, config))
        }
        Err(error) => {
            let replay = (!reader.got_bytes && !writer.consumed).then(|| Replay {
                nothing_written: writer.nothing_written(),
                body,
            });
            Err(Failed { error, replay })
        }
    }
}

/// The framing decision (the caller's Content-Length and Transfer-Encoding are not written:
/// see [`head::encode_request`]). An empty body gets `Content-Length: 0` only for methods that
/// anticipate content (RFC 9110 section 8.6: a user agent SHOULD NOT send it otherwise).
fn framing(method: &Method, body: &Body) -> OutgoingFraming {
    let no_content_expected = matches!(
        *method,
        Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS | Method::TRACE
    ) || *method == Method::CONNECT;
    match body.exact_len() {
        Some(0) if no_content_expected => OutgoingFraming::None,
        Some(len) => OutgoingFraming::Length(len),
        None => OutgoingFraming::Chunked,
    }
}

/// Writes the request and reads up to the final response head. Returns the head and whether
/// the whole request was sent (a connection with a truncated request is never reused).
///
/// A request whose whole body was ready with its head (no body, or a small one in memory) is
/// written before the response is read; only a body still streaming needs the two directions
/// at once, on the halves of a split stream.
#[allow(clippy::too_many_arguments)]
async fn exchange(
    io: &mut Box<dyn Io>,
    header_timer: &mut IdleTimer,
    head: &RequestHead,
    host: Option<SocketAddr>,
    body: &mut Body,
    reader: &mut Reader<'_>,
    writer: &mut Writer,
    config: &ClientConfig,
) -> Result<(ParsedResponse, bool)> {
    writer.start(head, host);
    // The request goes out as HTTP/1.1 whatever version the head says: the field decides.
    let expect = !body.is_empty() && head.has_continue_field();
    if !expect {
        writer.take_ready_frames(body)?;
    }
    writer.flush(io).await?;
    if expect {
        let deadline = header_timer.begin();
        let wait = deadline.min(Instant::now() + config.expect_continue_timeout);
        match timeout_at(wait, reader.continue_or_final(io)).await {
            Ok(Ok(Some(parsed))) => return Ok((parsed, false)),
            Ok(Ok(None)) => tracing::trace!("100 Continue"),
            Ok(Err(e)) => return Err(e),
            Err(_) => tracing::debug!("no 100 Continue in time; sending the body anyway"),
        }
    } else {
        header_timer.reset();
    }
    if writer.done {
        return Ok((reader.final_head_within(io, header_timer).await?, true));
    }
    let (mut rd, mut wr) = tokio::io::split(io);
    let read = reader.final_head_within(&mut rd, header_timer);
    tokio::pin!(read);
    tokio::select! {
        biased;
        parsed = &mut read => {
            tracing::debug!("final response before the request body was sent");
            Ok((parsed?, false))
        }
        written = writer.write_body(&mut wr, body) => match written {
            Ok(()) => Ok((read.await?, true)),
            // The server may have answered and closed: its answer beats our write error.
            Err(Error::Io(e)) => read.await.map(|parsed| (parsed, false)).map_err(|_| e.into()),
            Err(e) => Err(e),
        },
    }
}

/// Turns the final head into a [`Response`] that owns the connection.
fn respond(
    parsed: ParsedResponse,
    mut conn: Conn,
    keep: bool,
    method: &Method,
    config: &ClientConfig,
) -> Response {
    let ParsedResponse {
        head,
        body: kind,
        keep_alive,
        ..
    } = parsed;
    let tunnel = *method == Method::CONNECT && head.status.is_success();
    if head.status == StatusCode::SWITCHING_PROTOCOLS || tunnel {
        let (tx, on_upgrade) = upgrade::pending();
        tx.send(Upgraded {
            io: conn.io,
            read_buf: conn.read_buf.split().freeze(),
        });
        return Response {
            head,
            body: Body::empty(),
            upgrade: Some(on_upgrade),
        };
    }
    let decoder = BodyDecoder::new(kind, &config.limits);
    let reusable = keep && keep_alive;
    let body = if decoder.is_done() {
        if reusable {
            conn.recycle();
        }
        Body::empty()
    } else {
        let stall = config.limits.idle_timeout;
        Body::from_stream(IncomingBody::new(conn, decoder, kind, reusable, stall))
    };
    Response {
        head,
        body,
        upgrade: None,
    }
}

/// The reading side: response heads.
struct Reader<'a> {
    buf: BytesMut,
    /// Whether any byte of a response has arrived (after which a retry is never safe).
    got_bytes: bool,
    limits: &'a Limits,
    method: Method,
}

impl Reader<'_> {
    /// Reads one response head, interim or final.
    async fn next_head(&mut self, rd: &mut (impl AsyncRead + Unpin)) -> Result<ParsedResponse> {
        loop {
            if !self.buf.is_empty() {
                match head::take_response(&mut self.buf, self.limits, &self.method) {
                    Ok(Some(parsed)) => return Ok(parsed),
                    Ok(None) => {}
                    Err(e) => return Err(Error::MalformedResponse(e)),
                }
            }
            self.buf.reserve(READ_CHUNK_BYTES);
            if rd.read_buf(&mut self.buf).await? == 0 {
                return Err(match self.buf.is_empty() {
                    true => Error::Closed,
                    false => Error::MalformedResponse(HeadError::Malformed(
                        "connection closed inside the response head",
                    )),
                });
            }
            self.got_bytes = true;
        }
    }

    /// The final response head: interim 1xx responses are skipped, except 101, which is the
    /// last HTTP on this connection. An upstream sending 1xx forever is stopped by the deadline.
    async fn final_head(&mut self, rd: &mut (impl AsyncRead + Unpin)) -> Result<ParsedResponse> {
        loop {
            let parsed = self.next_head(rd).await?;
            let status = parsed.head.status;
            if !status.is_informational() || status == StatusCode::SWITCHING_PROTOCOLS {
                return Ok(parsed);
            }
            tracing::trace!(%status, "interim response skipped");
        }
    }

    /// The final head, within the current wait of `timer` (the response header deadline).
    async fn final_head_within(
        &mut self,
        rd: &mut (impl AsyncRead + Unpin),
        timer: &mut IdleTimer,
    ) -> Result<ParsedResponse> {
        within(timer, self.final_head(rd))
            .await
            .ok_or(Error::Timeout("response header"))?
    }

    /// After `Expect: 100-continue`: `None` for a 100, the head for a final response (other
    /// interim responses are skipped).
    async fn continue_or_final(
        &mut self,
        rd: &mut (impl AsyncRead + Unpin),
    ) -> Result<Option<ParsedResponse>> {
        loop {
            let parsed = self.next_head(rd).await?;
            match parsed.head.status {
                StatusCode::CONTINUE => return Ok(None),
                StatusCode::SWITCHING_PROTOCOLS => return Ok(Some(parsed)),
                status if status.is_informational() => continue,
                _ => return Ok(Some(parsed)),
            }
        }
    }
}

/// The writing side: the request head and body.
struct Writer {
    out: BytesMut,
    framing: OutgoingFraming,
    enc: BodyEncoder,
    /// Bytes put into `out` so far; with `out.len()` it tells how much reached the socket.
    encoded: u64,
    /// Whether a frame was taken from the request body (it cannot be sent again).
    consumed: bool,
    /// Whether the body has ended (its last frame is encoded).
    done: bool,
    stall: Duration,
}

impl Writer {
    fn start(&mut self, head: &RequestHead, host: Option<SocketAddr>) {
        head::encode_request(head, self.framing, host, &mut self.out);
        self.encoded = self.out.len() as u64;
    }

    fn nothing_written(&self) -> bool {
        self.encoded == self.out.len() as u64
    }

    /// Appends the body's frames that are ready now (up to [`WRITE_BUF_FLUSH_BYTES`]), so that
    /// a small request, its end included, leaves in one segment and needs no concurrent read
    /// while it is written; a body still waiting for its producer does not hold the head back.
    fn take_ready_frames(&mut self, body: &mut Body) -> Result<()> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        while !self.done && self.out.len() < WRITE_BUF_FLUSH_BYTES {
            match body.poll_frame(&mut cx) {
                Poll::Ready(frame) => self.encode(frame)?,
                Poll::Pending => break,
            }
        }
        Ok(())
    }

    /// Streams the rest of the body. Frames that are ready at once are encoded together and
    /// written when the body has nothing more for now or the buffer reaches
    /// [`WRITE_BUF_FLUSH_BYTES`]: a body of many tiny chunks costs a few writes, not one per
    /// chunk.
    async fn write_body(
        &mut self,
        wr: &mut (impl AsyncWrite + Unpin),
        body: &mut Body,
    ) -> Result<()> {
        while !self.done {
            let frame = match poll_fn(|cx| Poll::Ready(body.poll_frame(cx))).await {
                Poll::Ready(frame) => frame,
                Poll::Pending => {
                    self.flush(wr).await?;
                    poll_fn(|cx| body.poll_frame(cx)).await
                }
            };
            self.encode(frame)?;
            if self.out.len() >= WRITE_BUF_FLUSH_BYTES {
                self.flush(wr).await?;
            }
        }
        self.flush(wr).await
    }

    fn encode(&mut self, frame: Option<Result<Frame>>) -> Result<()> {
        let before = self.out.len();
        let encoded = match frame {
            None => {
                self.done = true;
                self.enc.finish(None, &mut self.out)
            }
            Some(Ok(Frame::Data(data))) => {
                self.consumed = true;
                self.enc.data(&data, &mut self.out)
            }
            Some(Ok(Frame::Trailers(trailers))) => {
                self.consumed = true;
                self.done = true;
                self.enc.finish(Some(&trailers), &mut self.out)
            }
            Some(Err(e)) => {
                self.consumed = true;
                return Err(e);
            }
        };
        encoded.map_err(|e| Error::Other(format!("request body: {e}")))?;
        self.encoded += (self.out.len() - before) as u64;
        Ok(())
    }

    /// Writes out what is buffered. A peer that accepts nothing for `stall` fails the write;
    /// each write that makes progress restarts the clock, so a large upload to a slow but
    /// moving peer is not cut off.
    async fn flush(&mut self, wr: &mut (impl AsyncWrite + Unpin)) -> Result<()> {
        let stalled = || Error::Timeout("request write stalled");
        while !self.out.is_empty() {
            let written = timeout_lazily(self.stall, wr.write_buf(&mut self.out))
                .await
                .map_err(|_| stalled())??;
            if written == 0 {
                return Err(Error::Io(std::io::ErrorKind::WriteZero.into()));
            }
        }
        timeout_lazily(self.stall, wr.flush())
            .await
            .map_err(|_| stalled())??;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;
    use http::Version;
    use http::header::{self, HeaderValue};

    #[test]
    fn framing_is_chosen_from_the_body_never_from_the_callers_headers() {
        let mut head = RequestHead::new(Method::POST, "/");
        head.version = Version::HTTP_10;
        head.headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        head.headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("99"));
        let body = Body::full("abc");
        let framing = framing(&head.method, &body);
        assert_eq!(framing, OutgoingFraming::Length(3));
        let mut out = BytesMut::new();
        head::encode_request(&head, framing, None, &mut out);
        assert_eq!(&out[..], b"POST / HTTP/1.1\r\ncontent-length: 3\r\n\r\n");

        let (_, body) = Body::channel(1, None);
        assert_eq!(
            super::framing(&Method::PUT, &body),
            OutgoingFraming::Chunked
        );
    }

    #[test]
    fn a_pooled_connection_keeps_small_buffers_and_frees_large_ones() {
        let mut written = BytesMut::with_capacity(4 * MAX_KEPT_BUFFER_BYTES);
        written.extend_from_slice(&vec![b'x'; 3 * MAX_KEPT_BUFFER_BYTES]);
        written.advance(written.len()); // all of it sent: capacity() now looks small
        assert!(written.capacity() <= MAX_KEPT_BUFFER_BYTES);
        assert_eq!(kept(written).capacity(), 0, "the large allocation is freed");

        let mut small = BytesMut::with_capacity(1024);
        small.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        small.advance(small.len());
        assert!(
            kept(small).try_reclaim(1024),
            "a small buffer is kept, its allocation reused"
        );
    }

    #[test]
    fn empty_body_gets_content_length_only_where_content_is_expected() {
        assert_eq!(framing(&Method::GET, &Body::empty()), OutgoingFraming::None);
        assert_eq!(
            framing(&Method::POST, &Body::empty()),
            OutgoingFraming::Length(0)
        );
    }
}
