//! Length-delimited, versioned frames of postcard-encoded messages, for internal RPC.
//!
//! Raft messages between KV nodes and the broker's own protocol travel as a stream of frames
//! over TCP. [`FrameCodec`] is a `tokio_util::codec` `Decoder` + `Encoder`: wrap a socket in
//! `tokio_util::codec::Framed::new(stream, FrameCodec::<Message>::new())` and it becomes a
//! `Stream` of messages and a `Sink` for them.
//!
//! # Layout
//!
//! | offset | size  | field     | meaning                                              |
//! |-------:|------:|-----------|------------------------------------------------------|
//! | 0      | 4     | `length`  | payload length in bytes, big-endian `u32`            |
//! | 4      | 1     | `version` | frame format version, [`FRAME_VERSION`]              |
//! | 5      | `length` | `payload` | the message, serde + postcard, nothing after it   |
//!
//! A frame therefore takes `5 + length` bytes. The version byte sits in the fixed header, not
//! in the counted payload, so the decoder can check both the length and the version from the
//! first five bytes, before it buffers any of the body, and an empty payload (a unit message)
//! is representable.
//!
//! Postcard is compact and fast but not self-describing: both ends must agree on the Rust
//! types. Any change to a message type that is not backwards compatible bumps
//! [`FRAME_VERSION`], and a peer on another version is refused with
//! [`FrameError::UnsupportedVersion`] instead of decoding garbage.
//!
//! # Limits
//!
//! `length` is at most `max_frame_bytes` (default [`DEFAULT_MAX_FRAME_BYTES`]), checked on
//! both sides. The decoder rejects an oversized frame as soon as it has read the length
//! prefix, so a peer cannot make us buffer up to 4 GiB by announcing it. The encoder checks
//! after serialising: the message already exists in the sender's memory, so the check
//! protects the peer and the wire, not the sender.
//!
//! # Errors and resynchronisation
//!
//! After [`FrameError::TooLarge`] or [`FrameError::UnsupportedVersion`] the stream cannot be
//! resynchronised: the decoder never consumed the frame, and skipping a body announced by an
//! untrusted or incompatible header is not safe. The connection must be closed.
//! [`FrameError::Malformed`] and [`FrameError::TrailingBytes`] consume the bad frame, so the
//! codec could go on with the next one; but `Framed` ends the stream after any decoder error,
//! and closing the connection is the right reaction to a peer that sends bad frames anyway.

use std::fmt;
use std::marker::PhantomData;

use bytes::{Buf, BufMut, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;
use tokio_util::codec::{Decoder, Encoder};

/// The frame format version this build speaks.
pub const FRAME_VERSION: u8 = 1;

/// Default largest payload: 8 MiB, room for a Raft append of many entries or a broker batch.
pub const DEFAULT_MAX_FRAME_BYTES: u32 = 8 * 1024 * 1024;

/// Bytes before the payload: the `u32` length and the version byte.
const HEADER_BYTES: usize = 5;

/// Why a frame could not be encoded or decoded.
#[derive(Debug, Error)]
pub enum FrameError {
    /// The payload is longer than `max_frame_bytes`. On decode, the stream cannot continue.
    #[error("frame payload of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Payload length, announced (decode) or serialised (encode).
        len: usize,
        /// The codec's `max_frame_bytes`.
        max: u32,
    },
    /// The peer speaks another frame version. The stream cannot continue.
    #[error("unsupported frame version {got} (this build speaks {supported})")]
    UnsupportedVersion {
        /// The version byte received.
        got: u8,
        /// [`FRAME_VERSION`].
        supported: u8,
    },
    /// The payload is not a valid encoding of the expected message type.
    #[error("malformed frame payload: {0}")]
    Malformed(postcard::Error),
    /// The payload decoded but did not use every byte: the peer's message type differs from
    /// ours without a version bump.
    #[error("frame payload has {extra} bytes after the message")]
    TrailingBytes {
        /// Unused bytes at the end of the payload.
        extra: usize,
    },
    /// The message could not be serialised (for example a sequence of unknown length).
    #[error("cannot serialise message: {0}")]
    Serialize(postcard::Error),
    /// The underlying transport failed, or closed in the middle of a frame.
    #[error("frame transport: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes and decodes messages of type `T` as frames (see the module doc for the layout).
pub struct FrameCodec<T> {
    max_frame_bytes: u32,
    // `fn() -> T` keeps the codec `Send + Sync` whatever `T` is: it holds no `T`.
    _message: PhantomData<fn() -> T>,
}

impl<T> FrameCodec<T> {
    /// A codec with the default limit, [`DEFAULT_MAX_FRAME_BYTES`].
    pub fn new() -> Self {
        Self::with_max_frame_bytes(DEFAULT_MAX_FRAME_BYTES)
    }

    /// A codec refusing payloads longer than `max_frame_bytes` in either direction.
    pub fn with_max_frame_bytes(max_frame_bytes: u32) -> Self {
        FrameCodec {
            max_frame_bytes,
            _message: PhantomData,
        }
    }

    /// The payload limit.
    pub fn max_frame_bytes(&self) -> u32 {
        self.max_frame_bytes
    }

    fn check_len(&self, len: usize) -> Result<(), FrameError> {
        if len > self.max_frame_bytes as usize {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_frame_bytes,
            });
        }
        Ok(())
    }
}

impl<T> Default for FrameCodec<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for FrameCodec<T> {
    fn clone(&self) -> Self {
        Self::with_max_frame_bytes(self.max_frame_bytes)
    }
}

impl<T> fmt::Debug for FrameCodec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameCodec")
            .field("max_frame_bytes", &self.max_frame_bytes)
            .finish()
    }
}

impl<T: DeserializeOwned> Decoder for FrameCodec<T> {
    type Item = T;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<T>, FrameError> {
        let Some(header) = src.get(..HEADER_BYTES) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        self.check_len(len)?;
        if header[4] != FRAME_VERSION {
            return Err(FrameError::UnsupportedVersion {
                got: header[4],
                supported: FRAME_VERSION,
            });
        }
        let frame_len = HEADER_BYTES + len;
        if src.len() < frame_len {
            // The length is trusted now that it is under the limit: reserve the rest at once
            // rather than growing the buffer read by read.
            src.reserve(frame_len - src.len());
            return Ok(None);
        }
        src.advance(HEADER_BYTES);
        let payload = src.split_to(len);
        let (message, rest) = postcard::take_from_bytes(&payload).map_err(FrameError::Malformed)?;
        if !rest.is_empty() {
            return Err(FrameError::TrailingBytes { extra: rest.len() });
        }
        Ok(Some(message))
    }
}

impl<T: Serialize> Encoder<T> for FrameCodec<T> {
    type Error = FrameError;

    fn encode(&mut self, message: T, dst: &mut BytesMut) -> Result<(), FrameError> {
        let start = dst.len();
        // Placeholder length, patched once the payload size is known; serialising straight
        // into `dst` avoids a second buffer and a copy.
        dst.put_u32(0);
        dst.put_u8(FRAME_VERSION);
        let checked = match postcard::to_io(&message, (&mut *dst).writer()) {
            Ok(_) => self.check_len(dst.len() - start - HEADER_BYTES),
            Err(err) => Err(FrameError::Serialize(err)),
        };
        if let Err(err) = checked {
            dst.truncate(start);
            return Err(err);
        }
        let len = dst.len() - start - HEADER_BYTES;
        // `check_len` bounded `len` by `max_frame_bytes`, a `u32`, so the cast is lossless.
        dst[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use futures_util::{SinkExt, StreamExt};
    use serde::Deserialize;
    use tokio_util::codec::Framed;

    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Message {
        Vote { term: u64, candidate: u32 },
        Append { term: u64, entries: Vec<Vec<u8>> },
        Heartbeat,
    }

    fn append(entries: usize, entry_bytes: usize) -> Message {
        Message::Append {
            term: 7,
            entries: vec![vec![0xAB; entry_bytes]; entries],
        }
    }

    fn encoded(messages: &[Message]) -> BytesMut {
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::new();
        for message in messages {
            codec.encode(message.clone(), &mut buf).unwrap();
        }
        buf
    }

    fn decode_all(buf: &mut BytesMut) -> Vec<Message> {
        let mut codec = FrameCodec::<Message>::new();
        std::iter::from_fn(|| codec.decode(buf).unwrap()).collect()
    }

    #[test]
    fn a_message_round_trips_with_the_documented_header() {
        let message = Message::Vote {
            term: 3,
            candidate: 2,
        };
        let mut buf = encoded(std::slice::from_ref(&message));
        let payload = postcard::to_allocvec(&message).unwrap();
        assert_eq!(&buf[..4], (payload.len() as u32).to_be_bytes());
        assert_eq!(buf[4], FRAME_VERSION);
        assert_eq!(&buf[5..], payload);
        assert_eq!(decode_all(&mut buf), vec![message]);
        assert!(buf.is_empty());
    }

    #[test]
    fn many_frames_in_one_buffer_decode_in_order() {
        let messages = vec![
            Message::Heartbeat,
            append(3, 10),
            Message::Vote {
                term: 9,
                candidate: 1,
            },
            Message::Heartbeat,
        ];
        let mut buf = encoded(&messages);
        assert_eq!(decode_all(&mut buf), messages);
    }

    #[test]
    fn a_frame_arriving_byte_by_byte_decodes_once_complete() {
        let message = append(2, 100);
        let whole = encoded(std::slice::from_ref(&message));
        let mut codec = FrameCodec::<Message>::new();
        let mut buf = BytesMut::new();
        for (i, byte) in whole.iter().enumerate() {
            buf.put_u8(*byte);
            let decoded = codec.decode(&mut buf).unwrap();
            if i + 1 < whole.len() {
                assert_eq!(decoded, None, "incomplete after {} bytes", i + 1);
            } else {
                assert_eq!(decoded, Some(message.clone()));
            }
        }
    }

    #[test]
    fn an_oversized_frame_is_refused_from_its_header_alone() {
        let mut buf = BytesMut::new();
        buf.put_u32(1025);
        buf.put_u8(FRAME_VERSION);
        let mut codec = FrameCodec::<Message>::with_max_frame_bytes(1024);
        let err = codec.decode(&mut buf).unwrap_err();
        assert!(
            matches!(
                err,
                FrameError::TooLarge {
                    len: 1025,
                    max: 1024
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn an_oversized_message_is_refused_by_the_encoder_leaving_the_buffer_clean() {
        let mut codec = FrameCodec::<Message>::with_max_frame_bytes(1024);
        let mut buf = BytesMut::new();
        codec.encode(Message::Heartbeat, &mut buf).unwrap();
        let before = buf.clone();
        let err = codec.encode(append(1, 2000), &mut buf).unwrap_err();
        assert!(
            matches!(err, FrameError::TooLarge { max: 1024, .. }),
            "{err}"
        );
        assert_eq!(buf, before, "the refused frame left nothing behind");
    }

    #[test]
    fn a_frame_exactly_at_the_limit_is_accepted() {
        let message = append(1, 50);
        let limit = postcard::to_allocvec(&message).unwrap().len() as u32;
        let mut codec = FrameCodec::<Message>::with_max_frame_bytes(limit);
        let mut buf = BytesMut::new();
        codec.encode(message.clone(), &mut buf).unwrap();
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(message));
    }

    #[test]
    fn another_version_is_refused() {
        let mut buf = encoded(&[Message::Heartbeat]);
        buf[4] = FRAME_VERSION + 1;
        let err = FrameCodec::<Message>::new().decode(&mut buf).unwrap_err();
        assert!(matches!(
            err,
            FrameError::UnsupportedVersion { got, supported: FRAME_VERSION } if got == FRAME_VERSION + 1
        ));
    }

    #[test]
    fn a_garbage_payload_is_malformed_and_consumed() {
        let mut buf = BytesMut::new();
        buf.put_u32(3);
        buf.put_u8(FRAME_VERSION);
        buf.put_slice(&[0xFF, 0xFF, 0xFF]); // no such enum variant
        buf.extend_from_slice(&encoded(&[Message::Heartbeat]));
        let mut codec = FrameCodec::<Message>::new();
        let err = codec.decode(&mut buf).unwrap_err();
        assert!(matches!(err, FrameError::Malformed(_)), "{err}");
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(Message::Heartbeat));
    }

    #[test]
    fn bytes_after_the_message_are_refused() {
        let mut buf = BytesMut::new();
        let payload = postcard::to_allocvec(&Message::Heartbeat).unwrap();
        buf.put_u32(payload.len() as u32 + 2);
        buf.put_u8(FRAME_VERSION);
        buf.put_slice(&payload);
        buf.put_slice(&[0, 0]);
        let err = FrameCodec::<Message>::new().decode(&mut buf).unwrap_err();
        assert!(
            matches!(err, FrameError::TrailingBytes { extra: 2 }),
            "{err}"
        );
    }

    #[test]
    fn a_unit_message_has_an_empty_payload() {
        let mut codec = FrameCodec::<()>::new();
        let mut buf = BytesMut::new();
        codec.encode((), &mut buf).unwrap();
        assert_eq!(&buf[..], [0, 0, 0, 0, FRAME_VERSION]);
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(()));
    }

    #[tokio::test]
    async fn messages_cross_a_loopback_socket_both_ways() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let echo = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut framed = Framed::new(stream, FrameCodec::<Message>::new());
            while let Some(message) = framed.next().await {
                framed.send(message.unwrap()).await.unwrap();
            }
        });

        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut framed = Framed::new(stream, FrameCodec::<Message>::new());
        // Larger than a socket buffer, so the frame arrives in several reads.
        let messages = vec![
            Message::Heartbeat,
            append(64, 16 * 1024),
            Message::Vote {
                term: 1,
                candidate: 0,
            },
        ];
        let exchange = async {
            for message in &messages {
                framed.send(message.clone()).await.unwrap();
                assert_eq!(framed.next().await.unwrap().unwrap(), *message);
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), exchange)
            .await
            .expect("echo within the time limit");
        drop(framed);
        echo.await.unwrap();
    }
}
