//! Message bodies as streams, with back-pressure.
//!
//! A [`Body`] is what a handler receives with a request and returns with a response, and what
//! the client sends and gets back. Nothing here buffers a whole body unless the caller asks for
//! it with [`Body::collect`] (and gives a limit). A streamed body is either a bounded channel
//! ([`Body::channel`]: the producer waits when the consumer is slow, which is back-pressure) or
//! any type implementing [`BodyStream`].
//!
//! Invariant: a body that ends early is never mistaken for a complete one. A [`BodySender`]
//! dropped without [`BodySender::finish`] makes the reader see [`BodyError::Incomplete`], so a
//! proxy relaying a body from a peer that died does not end its own chunked body cleanly.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use tokio::sync::mpsc;

use crate::error::{BodyError, Error, Result};

/// One piece of a body.
#[derive(Debug)]
pub enum Frame {
    Data(Bytes),
    /// Trailer fields; the last frame of a body when present.
    Trailers(HeaderMap),
}

/// A source of body frames, for bodies that are neither in memory nor fed through a channel
/// (the client's response body reads straight from its connection).
pub trait BodyStream: Send + 'static {
    /// The next frame, `None` at the end.
    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame>>>;

    /// The exact length of the data still to come, when known.
    fn exact_len(&self) -> Option<u64> {
        None
    }
}

/// A message body.
pub struct Body {
    inner: Inner,
}

enum Inner {
    Empty,
    Full(Option<Bytes>),
    Channel {
        rx: mpsc::Receiver<Result<Frame>>,
        len: Option<u64>,
        finished: Arc<AtomicBool>,
        ended: bool,
    },
    Stream(Pin<Box<dyn BodyStream>>),
}

/// The body and trailers of a collected message.
#[derive(Debug, Default)]
pub struct Collected {
    pub data: Bytes,
    pub trailers: Option<HeaderMap>,
}

impl Body {
    pub fn empty() -> Self {
        Body {
            inner: Inner::Empty,
        }
    }

    pub fn full(data: impl Into<Bytes>) -> Self {
        let data = data.into();
        if data.is_empty() {
            return Body::empty();
        }
        Body {
            inner: Inner::Full(Some(data)),
        }
    }

    /// A body fed through a bounded channel of `capacity` frames. `len` is the exact total
    /// length if known (it lets the writer use Content-Length instead of chunked).
    pub fn channel(capacity: usize, len: Option<u64>) -> (BodySender, Body) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let finished = Arc::new(AtomicBool::new(false));
        let sender = BodySender {
            tx,
            finished: finished.clone(),
        };
        let body = Body {
            inner: Inner::Channel {
                rx,
                len,
                finished,
                ended: false,
            },
        };
        (sender, body)
    }

    pub fn from_stream(stream: impl BodyStream) -> Self {
        Body {
            inner: Inner::Stream(Box::pin(stream)),
        }
    }

    /// The exact length of the body if it is known before reading it.
    pub fn exact_len(&self) -> Option<u64> {
        match &self.inner {
            Inner::Empty => Some(0),
            Inner::Full(data) => Some(data.as_ref().map_or(0, |d| d.len() as u64)),
            Inner::Channel { len, .. } => *len,
            Inner::Stream(s) => s.exact_len(),
        }
    }

    /// Whether the body is known to be empty without reading it.
    pub fn is_empty(&self) -> bool {
        self.exact_len() == Some(0)
    }

    pub fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame>>> {
        match &mut self.inner {
            Inner::Empty => Poll::Ready(None),
            Inner::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::Data(d)))),
            Inner::Stream(s) => s.as_mut().poll_frame(cx),
            Inner::Channel {
                rx,
                finished,
                ended,
                ..
            } => {
                if *ended {
                    return Poll::Ready(None);
                }
                match rx.poll_recv(cx) {
                    Poll::Ready(None) => {
                        *ended = true;
                        if finished.load(Ordering::Acquire) {
                            Poll::Ready(None)
                        } else {
                            Poll::Ready(Some(Err(Error::Body(BodyError::Incomplete))))
                        }
                    }
                    other => other,
                }
            }
        }
    }

    /// The next frame, `None` at the end of the body.
    pub async fn frame(&mut self) -> Option<Result<Frame>> {
        poll_fn(|cx| self.poll_frame(cx)).await
    }

    /// Reads the whole body into memory, refusing more than `max_bytes`.
    pub async fn collect(mut self, max_bytes: u64) -> Result<Collected> {
        if let Inner::Full(data) = &mut self.inner {
            let data = data.take().unwrap_or_default();
            if data.len() as u64 > max_bytes {
                return Err(BodyError::TooLarge { max: max_bytes }.into());
            }
            return Ok(Collected {
                data,
                trailers: None,
            });
        }
        let mut buf = BytesMut::new();
        let mut trailers = None;
        while let Some(frame) = self.frame().await {
            match frame? {
                Frame::Data(d) => {
                    if (buf.len() + d.len()) as u64 > max_bytes {
                        return Err(BodyError::TooLarge { max: max_bytes }.into());
                    }
                    buf.extend_from_slice(&d);
                }
                Frame::Trailers(t) => trailers = Some(t),
            }
        }
        Ok(Collected {
            data: buf.freeze(),
            trailers,
        })
    }
}

impl Default for Body {
    fn default() -> Self {
        Body::empty()
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.inner {
            Inner::Empty => "empty",
            Inner::Full(_) => "full",
            Inner::Channel { .. } => "channel",
            Inner::Stream(_) => "stream",
        };
        f.debug_struct("Body")
            .field("kind", &kind)
            .field("exact_len", &self.exact_len())
            .finish()
    }
}

impl From<Bytes> for Body {
    fn from(data: Bytes) -> Self {
        Body::full(data)
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Self {
        Body::full(Bytes::from_static(s.as_bytes()))
    }
}

impl From<String> for Body {
    fn from(s: String) -> Self {
        Body::full(Bytes::from(s))
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Self {
        Body::full(Bytes::from(v))
    }
}

/// The producing end of [`Body::channel`].
#[derive(Debug)]
pub struct BodySender {
    tx: mpsc::Sender<Result<Frame>>,
    finished: Arc<AtomicBool>,
}

impl BodySender {
    /// Sends data, waiting while the channel is full. Fails with [`Error::Closed`] when the
    /// body was dropped by its reader.
    pub async fn send_data(&mut self, data: Bytes) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.tx
            .send(Ok(Frame::Data(data)))
            .await
            .map_err(|_| Error::Closed)
    }

    /// Sends the trailers and ends the body.
    pub async fn send_trailers(self, trailers: HeaderMap) -> Result<()> {
        let sent = self.tx.send(Ok(Frame::Trailers(trailers))).await;
        self.finish();
        sent.map_err(|_| Error::Closed)
    }

    /// Ends the body normally.
    pub fn finish(self) {
        self.finished.store(true, Ordering::Release);
    }

    /// Ends the body with an error the reader will see.
    pub async fn abort(self, error: Error) {
        let _ = self.tx.send(Err(error)).await;
    }

    /// Whether the reader has gone away.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn channel_body_streams_and_collects() {
        let (mut tx, body) = Body::channel(1, None);
        let producer = tokio::spawn(async move {
            for piece in ["a", "bc", "def"] {
                tx.send_data(Bytes::from_static(piece.as_bytes()))
                    .await
                    .unwrap();
            }
            let mut t = HeaderMap::new();
            t.insert("x-done", "yes".parse().unwrap());
            tx.send_trailers(t).await.unwrap();
        });
        let collected = body.collect(100).await.unwrap();
        producer.await.unwrap();
        assert_eq!(&collected.data[..], b"abcdef");
        assert_eq!(collected.trailers.unwrap()["x-done"], "yes");
    }

    #[tokio::test]
    async fn a_dropped_sender_is_an_incomplete_body() {
        let (mut tx, body) = Body::channel(4, None);
        tx.send_data(Bytes::from_static(b"partial")).await.unwrap();
        drop(tx);
        let err = body.collect(100).await.unwrap_err();
        assert!(matches!(err, Error::Body(BodyError::Incomplete)));
    }

    #[tokio::test]
    async fn collect_refuses_more_than_the_limit() {
        let err = Body::full("0123456789").collect(5).await.unwrap_err();
        assert!(matches!(err, Error::Body(BodyError::TooLarge { max: 5 })));
    }
}
