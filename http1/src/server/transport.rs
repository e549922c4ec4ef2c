//! The connection's byte stream, shared by the connection loop and the request body.
//!
//! A request body is not copied into a channel: the [`RequestBody`] the handler receives reads
//! the connection itself. Both hold the same [`Transport`] (the stream, its read buffer and the
//! state of the body being read) behind a mutex, and every read or write is one `poll_*` call
//! made with the lock held, never across an `.await`. This gives three properties for free:
//!
//! - **Back-pressure.** Bytes are read from the socket only when the handler asks for the next
//!   frame; a handler that reads slowly leaves the data in the kernel, and TCP flow control
//!   slows the client down. Nothing buffers a whole body.
//! - **`Expect: 100-continue`** (RFC 9110 section 10.1.1). The first poll of the body writes
//!   `100 Continue` before reading, which is exactly "when the handler first reads the body".
//!   If the final response is written first, the `100` is never sent: the body can still be
//!   read (a client sends it anyway after waiting a while), and the connection closes after
//!   the response unless it was read to the end.
//! - **No copy.** Body data is split off the read buffer as `Bytes`.
//!
//! The lock is uncontended in practice: the handler usually runs on the connection's own task,
//! and even a body handed to another task is read while the connection task only waits.
//!
//! Invariant: one body is read at a time, and only by its owner. Each exchange gets an owner
//! number; when the response has been written the connection takes the body back
//! ([`Transport::reclaim_body`]) to discard what is left, and from then on the handler's
//! [`RequestBody`] (if something kept it) fails with [`Error::Closed`] instead of stealing the
//! next request's bytes.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::BytesMut;
use tokio::time::{Instant, Sleep};

use crate::body::{BodyStream, Frame};
use crate::decode::{BodyDecoder, Decoded};
use crate::error::{Error, Result};
use crate::upgrade::Io;

/// Room made in the read buffer before each read, in bytes. Enough for a typical request head
/// in one read; a larger head grows the buffer up to `max_header_bytes`.
const READ_CHUNK_BYTES: usize = 8 * 1024;

/// The interim response sent to a client that asked `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The owner number of the connection itself, used after it took the body back.
pub(crate) const CONNECTION_OWNER: u64 = 0;

pub(crate) type SharedTransport<T> = Arc<Mutex<Transport<T>>>;

/// Locks the transport. A panic while it was held cannot have left it half-updated in a way
/// that matters more than the panic itself (the connection closes after a panic), so poisoning
/// is ignored.
pub(crate) fn lock<T>(transport: &SharedTransport<T>) -> MutexGuard<'_, Transport<T>> {
    transport.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) struct Transport<T> {
    pub(crate) wire: Wire<T>,
    body: Option<BodyReader>,
}

/// The stream and what has been read from it but not consumed yet.
pub(crate) struct Wire<T> {
    pub(crate) io: T,
    pub(crate) read_buf: BytesMut,
    /// The peer has closed its sending side.
    pub(crate) eof: bool,
    /// Bounds a body read that makes no progress; created on first use, so that connections
    /// without request bodies never allocate it.
    stall: Option<Pin<Box<Sleep>>>,
    stall_armed: bool,
    idle_timeout: Duration,
}

/// The request body currently being read.
struct BodyReader {
    owner: u64,
    decoder: BodyDecoder,
    expect: Continue,
    failed: bool,
}

/// Where a `100 Continue` stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Continue {
    /// Not asked for, or already sent.
    Settled,
    /// Asked for and not started: the body has not been read yet.
    Owed,
    /// Partly written.
    Writing { written: usize },
    /// The final response went out first, so a `100` can no longer be sent. The client may
    /// still send the body (a handler streaming it into the response reads it), but nothing
    /// says it will: the connection closes after the response unless the body was read.
    Refused,
}

/// What the request body looks like when the response is about to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyState {
    /// Read to the end (or there was none).
    Complete,
    /// Broken framing, a limit, a stall or a closed connection: the stream cannot be trusted.
    Failed,
    /// The client may wait for a `100 Continue` that will now never come: close after
    /// responding.
    Refused,
    /// Not read to the end; `remaining` is known for Content-Length bodies.
    Unread { remaining: Option<u64> },
}

impl<T: Io> Transport<T> {
    pub(crate) fn new(io: T, idle_timeout: Duration) -> Self {
        Transport {
            wire: Wire {
                io,
                read_buf: BytesMut::with_capacity(READ_CHUNK_BYTES),
                eof: false,
                stall: None,
                stall_armed: false,
                idle_timeout,
            },
            body: None,
        }
    }

    /// Starts reading a request body for the exchange `owner`.
    pub(crate) fn start_body(&mut self, owner: u64, decoder: BodyDecoder, expects_continue: bool) {
        let expect = if expects_continue {
            Continue::Owed
        } else {
            Continue::Settled
        };
        self.body = Some(BodyReader {
            owner,
            decoder,
            expect,
            failed: false,
        });
    }

    /// The state of the body.
    pub(crate) fn body_state(&self) -> BodyState {
        let Some(reader) = &self.body else {
            return BodyState::Complete;
        };
        if reader.failed {
            BodyState::Failed
        } else if reader.decoder.is_done() {
            BodyState::Complete
        } else if reader.expect == Continue::Refused {
            BodyState::Refused
        } else {
            BodyState::Unread {
                remaining: reader.decoder.remaining(),
            }
        }
    }

    /// Called before the final response head is written: finishes writing a `100 Continue`
    /// that a body read started, so that the response never interleaves with it, and refuses
    /// one not started, in the same step, so that a body read elsewhere cannot start one while
    /// the response is written.
    pub(crate) fn poll_settle_continue(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(reader) = &mut self.body else {
            return Poll::Ready(Ok(()));
        };
        match reader.expect {
            Continue::Owed => {
                reader.expect = Continue::Refused;
                Poll::Ready(Ok(()))
            }
            Continue::Writing { .. } => self.wire.poll_send_continue(cx, &mut reader.expect),
            Continue::Settled | Continue::Refused => Poll::Ready(Ok(())),
        }
    }

    /// Takes the body away from the handler: from now on only [`CONNECTION_OWNER`] reads it.
    pub(crate) fn reclaim_body(&mut self) {
        if let Some(reader) = &mut self.body {
            reader.owner = CONNECTION_OWNER;
        }
    }

    /// Forgets the body once the exchange is over.
    pub(crate) fn end_body(&mut self) {
        self.body = None;
    }

    /// The next frame of the body for `owner`, reading the stream as needed.
    pub(crate) fn poll_body_frame(
        &mut self,
        cx: &mut Context<'_>,
        owner: u64,
    ) -> Poll<Option<Result<Frame>>> {
        let Some(reader) = self.body.as_mut().filter(|r| r.owner == owner) else {
            // The exchange this body belonged to is over.
            return Poll::Ready(Some(Err(Error::Closed)));
        };
        if reader.failed || reader.decoder.is_done() {
            return Poll::Ready(None);
        }
        let polled = poll_body(&mut self.wire, reader, cx);
        match polled {
            Poll::Pending => match self.wire.poll_stall(cx) {
                Poll::Ready(()) => {
                    reader.failed = true;
                    Poll::Ready(Some(Err(Error::Timeout("request body stalled"))))
                }
                Poll::Pending => Poll::Pending,
            },
            Poll::Ready(frame) => {
                self.wire.stall_armed = false;
                if matches!(frame, Some(Err(_))) {
                    reader.failed = true;
                }
                Poll::Ready(frame)
            }
        }
    }

    /// Bytes of the current body still to come, when its length is known.
    fn body_remaining(&self, owner: u64) -> Option<u64> {
        self.body
            .as_ref()
            .filter(|r| r.owner == owner)
            .and_then(|r| r.decoder.remaining())
    }
}

/// Sends a pending `100 Continue`, then decodes the next frame, reading when the buffer holds
/// no complete step.
fn poll_body<T: Io>(
    wire: &mut Wire<T>,
    reader: &mut BodyReader,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame>>> {
    if let Err(e) = ready!(wire.poll_send_continue(cx, &mut reader.expect)) {
        return Poll::Ready(Some(Err(e.into())));
    }
    loop {
        let step = if wire.eof {
            reader.decoder.decode_eof(&mut wire.read_buf)
        } else {
            reader.decoder.decode(&mut wire.read_buf)
        };
        match step {
            Err(e) => return Poll::Ready(Some(Err(e.into()))),
            Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::Data(data)))),
            Ok(Decoded::Trailers(t)) => return Poll::Ready(Some(Ok(Frame::Trailers(t)))),
            Ok(Decoded::End) => return Poll::Ready(None),
            Ok(Decoded::NeedMore) => {}
        }
        if let Err(e) = ready!(wire.poll_fill(cx)) {
            return Poll::Ready(Some(Err(e.into())));
        }
    }
}

impl<T: Io> Wire<T> {
    /// Reads what the stream has into the read buffer. `Ok(0)` means the peer closed.
    pub(crate) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.eof {
            return Poll::Ready(Ok(0));
        }
        if self.read_buf.capacity() - self.read_buf.len() < READ_CHUNK_BYTES / 2 {
            self.read_buf.reserve(READ_CHUNK_BYTES);
        }
        let n = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.io),
            cx,
            &mut self.read_buf
        ))?;
        if n == 0 {
            self.eof = true;
        }
        Poll::Ready(Ok(n))
    }

    /// One write from the front of `buf` (vectored when `buf` has several pieces).
    pub(crate) fn poll_write_some(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut impl bytes::Buf,
    ) -> Poll<io::Result<()>> {
        let n = ready!(tokio_util::io::poll_write_buf(
            Pin::new(&mut self.io),
            cx,
            buf
        ))?;
        if n == 0 && buf.has_remaining() {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        Poll::Ready(Ok(()))
    }

    /// Writes from the front of `buf` until it is empty, then flushes.
    pub(crate) fn poll_write_all(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut impl bytes::Buf,
    ) -> Poll<io::Result<()>> {
        while buf.has_remaining() {
            ready!(self.poll_write_some(cx, buf))?;
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }

    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    pub(crate) fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_send_continue(
        &mut self,
        cx: &mut Context<'_>,
        expect: &mut Continue,
    ) -> Poll<io::Result<()>> {
        let mut written = match *expect {
            Continue::Owed => 0,
            Continue::Writing { written } => written,
            Continue::Settled | Continue::Refused => return Poll::Ready(Ok(())),
        };
        let mut rest = &CONTINUE[written..];
        let sent = self.poll_write_all(cx, &mut rest);
        written = CONTINUE.len() - rest.len();
        *expect = match sent {
            Poll::Ready(Ok(())) => Continue::Settled,
            _ => Continue::Writing { written },
        };
        sent
    }

    /// Ready when a body read has waited `idle_timeout` without progress.
    fn poll_stall(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = Instant::now() + self.idle_timeout;
        let stall = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !self.stall_armed {
            stall.as_mut().reset(deadline);
            self.stall_armed = true;
        }
        stall.as_mut().poll(cx)
    }
}

/// A request body as the handler sees it: frames read from the connection on demand.
pub(crate) struct RequestBody<T> {
    transport: SharedTransport<T>,
    owner: u64,
    /// Set once the body returned its end or an error; later polls return `None`.
    done: bool,
}

impl<T> RequestBody<T> {
    pub(crate) fn new(transport: SharedTransport<T>, owner: u64) -> Self {
        RequestBody {
            transport,
            owner,
            done: false,
        }
    }
}

impl<T: Io> BodyStream for RequestBody<T> {
    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let polled = lock(&this.transport).poll_body_frame(cx, this.owner);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            this.done = true;
        }
        polled
    }

    fn exact_len(&self) -> Option<u64> {
        lock(&self.transport).body_remaining(self.owner)
    }
}
