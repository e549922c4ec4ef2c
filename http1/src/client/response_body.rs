//! A response body read straight from its connection.
//!
//! [`IncomingBody`] owns the connection while the body is being read and reads from the socket
//! only when its reader asks for the next frame: a slow consumer leaves the bytes in the
//! kernel's receive buffer, TCP flow control slows the upstream down, and memory stays bounded
//! by one read buffer. This is the back-pressure a proxy relies on to stream a large download to
//! a slow client.
//!
//! Invariant: the connection goes back to the pool only from here, only once the decoder has
//! seen the end of the body, and only if the exchange allowed it (response kept alive, request
//! fully sent). Every other ending (an error, end-of-file, a stall, the body dropped half-read)
//! drops the connection, which closes it: its framing position is unknown, so nothing sent on
//! it afterwards could be trusted.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Sleep;

use super::conn::{Conn, READ_CHUNK_BYTES};
use crate::body::{BodyStream, Frame};
use crate::decode::{BodyDecoder, Decoded};
use crate::error::{Error, Result};
use crate::framing::BodyKind;

pub(crate) struct IncomingBody {
    /// `None` once the body has ended, failed, or handed its connection back.
    conn: Option<Conn>,
    decoder: BodyDecoder,
    kind: BodyKind,
    /// Whether the connection may be pooled once the body has ended.
    reusable: bool,
    /// The peer has closed its side; what is buffered is all there is.
    eof: bool,
    /// Longest wait for the next bytes of the body (`Limits::idle_timeout`).
    stall: Duration,
    /// Armed while a read is pending.
    stall_timer: Option<Pin<Box<Sleep>>>,
}

impl IncomingBody {
    pub(crate) fn new(
        conn: Conn,
        decoder: BodyDecoder,
        kind: BodyKind,
        reusable: bool,
        stall: Duration,
    ) -> Self {
        IncomingBody {
            conn: Some(conn),
            decoder,
            kind,
            reusable,
            eof: false,
            stall,
            stall_timer: None,
        }
    }

    /// Gives the connection back as soon as the decoder is done, so that it is pooled even
    /// if the reader stops polling after the last frame.
    fn release_if_done(&mut self) {
        if !self.decoder.is_done() {
            return;
        }
        if let Some(conn) = self.conn.take()
            && self.reusable
        {
            conn.recycle();
        }
    }

    fn fail(&mut self, error: Error) -> Poll<Option<Result<Frame>>> {
        self.conn = None;
        Poll::Ready(Some(Err(error)))
    }

    /// Reads more of the body into the connection's buffer. `Ok(false)` is end-of-file.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(Ok(false));
        };
        let start = conn.read_buf.len();
        conn.read_buf.resize(start + READ_CHUNK_BYTES, 0);
        let mut buf = ReadBuf::new(&mut conn.read_buf[start..]);
        let polled = Pin::new(&mut conn.io).poll_read(cx, &mut buf);
        let filled = buf.filled().len();
        conn.read_buf.truncate(start + filled);
        match polled {
            Poll::Ready(Ok(())) => {
                self.stall_timer = None;
                Poll::Ready(Ok(filled > 0))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e.into())),
            Poll::Pending => {
                let stall = self.stall;
                let timer = self
                    .stall_timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
                ready!(timer.as_mut().poll(cx));
                Poll::Ready(Err(Error::Timeout("response body read stalled")))
            }
        }
    }
}

impl BodyStream for IncomingBody {
    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let decoded = match this.eof {
                true => this.decoder.decode_eof(&mut conn.read_buf),
                false => this.decoder.decode(&mut conn.read_buf),
            };
            let frame = match decoded {
                Err(e) => return this.fail(e.into()),
                Ok(Decoded::Data(data)) => Frame::Data(data),
                Ok(Decoded::Trailers(trailers)) => Frame::Trailers(trailers),
                Ok(Decoded::End) => {
                    this.release_if_done();
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(Decoded::NeedMore) => match ready!(this.poll_fill(cx)) {
                    Ok(more) => {
                        this.eof = !more;
                        continue;
                    }
                    Err(e) => return this.fail(e),
                },
            };
            this.release_if_done();
            return Poll::Ready(Some(Ok(frame)));
        }
    }

    fn exact_len(&self) -> Option<u64> {
        match self.kind {
            BodyKind::Length(len) => Some(len - self.decoder.received()),
            _ if self.decoder.is_done() => Some(0),
            _ => None,
        }
    }
}
