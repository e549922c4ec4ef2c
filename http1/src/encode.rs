//! Body encoding: framing outgoing body data, sans I/O.
//!
//! The writer picks the framing from what it knows before the first byte goes out (see
//! [`crate::head::OutgoingFraming`]): a known length becomes Content-Length, an unknown one
//! becomes chunked (or, to an HTTP/1.0 peer, a body closed by closing the connection). The
//! [`BodyEncoder`] then turns each piece of data into the bytes that go on the wire and checks
//! that a Content-Length promise is kept exactly: sending fewer or more bytes than announced
//! would desynchronise the peer, so it is an error here, not on the other side.

use bytes::{Bytes, BytesMut};
use http::HeaderMap;

use crate::head::OutgoingFraming;

/// Why an outgoing body could not be framed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("body is longer than its Content-Length of {declared}")]
    TooLong { declared: u64 },
    #[error("body ended after {sent} of {declared} bytes")]
    TooShort { declared: u64, sent: u64 },
}

/// Frames one outgoing body.
#[derive(Debug, Clone)]
pub struct BodyEncoder {
    framing: OutgoingFraming,
    sent: u64,
}

impl BodyEncoder {
    pub fn new(framing: OutgoingFraming) -> Self {
        BodyEncoder { framing, sent: 0 }
    }

    /// Appends the wire form of `data` to `dst`. Empty data writes nothing (an empty chunk
    /// would end a chunked body).
    pub fn data(&mut self, data: &[u8], dst: &mut BytesMut) -> Result<(), EncodeError> {
        if data.is_empty() {
            return Ok(());
        }
        self.sent += data.len() as u64;
        match self.framing {
            OutgoingFraming::Length(declared) if self.sent > declared => {
                Err(EncodeError::TooLong { declared })
            }
            OutgoingFraming::Chunked => {
                dst.reserve(data.len() + 20);
                put_hex(data.len() as u64, dst);
                dst.extend_from_slice(b"\r\n");
                dst.extend_from_slice(data);
                dst.extend_from_slice(b"\r\n");
                Ok(())
            }
            // No body may be sent (HEAD, 204, 304): the data is dropped, as RFC 9110 section
            // 9.3.2 requires for HEAD.
            OutgoingFraming::None => Ok(()),
            _ => {
                dst.extend_from_slice(data);
                Ok(())
            }
        }
    }

    /// The chunk header for `len` bytes of data that the caller writes itself (zero-copy for
    /// large pieces): `len` in hex and CRLF. Follow the data with [`CHUNK_END`].
    pub fn chunk_header(&mut self, len: usize, dst: &mut BytesMut) {
        debug_assert_eq!(self.framing, OutgoingFraming::Chunked);
        self.sent += len as u64;
        put_hex(len as u64, dst);
        dst.extend_from_slice(b"\r\n");
    }

    /// Like [`BodyEncoder::data`] for `len` bytes that the caller writes itself, straight from
    /// its own buffer (no copy of large pieces): appends what must precede them (a chunk
    /// header) and returns what must follow them (the chunk's CRLF, or nothing). With
    /// [`OutgoingFraming::None`] there is no body and the caller writes nothing.
    pub fn data_header(
        &mut self,
        len: usize,
        dst: &mut BytesMut,
    ) -> Result<&'static [u8], EncodeError> {
        if len == 0 {
            return Ok(b"");
        }
        self.sent += len as u64;
        match self.framing {
            OutgoingFraming::Length(declared) if self.sent > declared => {
                Err(EncodeError::TooLong { declared })
            }
            OutgoingFraming::Chunked => {
                put_hex(len as u64, dst);
                dst.extend_from_slice(b"\r\n");
                Ok(CHUNK_END)
            }
            _ => Ok(b""),
        }
    }

    /// Appends what ends the body: the last chunk and the trailers for chunked bodies; nothing
    /// otherwise. Trailers are dropped for other framings (there is nowhere to put them).
    pub fn finish(
        &mut self,
        trailers: Option<&HeaderMap>,
        dst: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        match self.framing {
            OutgoingFraming::Length(declared) if self.sent != declared => {
                Err(EncodeError::TooShort {
                    declared,
                    sent: self.sent,
                })
            }
            OutgoingFraming::Chunked => {
                dst.extend_from_slice(b"0\r\n");
                for (name, value) in trailers.into_iter().flatten() {
                    dst.extend_from_slice(name.as_str().as_bytes());
                    dst.extend_from_slice(b": ");
                    dst.extend_from_slice(value.as_bytes());
                    dst.extend_from_slice(b"\r\n");
                }
                dst.extend_from_slice(b"\r\n");
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Whether anything can follow this body on the same connection. A close-delimited body
    /// ends only when the connection does.
    pub fn keeps_connection(&self) -> bool {
        self.framing != OutgoingFraming::Close
    }
}

/// The CRLF that ends the data of a chunk whose header came from [`BodyEncoder::chunk_header`].
pub const CHUNK_END: &[u8] = b"\r\n";

/// A whole chunked body in one buffer, for tests and for small bodies.
pub fn chunked(pieces: &[Bytes], trailers: Option<&HeaderMap>) -> BytesMut {
    let mut enc = BodyEncoder::new(OutgoingFraming::Chunked);
    let mut dst = BytesMut::new();
    for piece in pieces {
        // Chunked framing never fails.
        let _ = enc.data(piece, &mut dst);
    }
    let _ = enc.finish(trailers, &mut dst);
    dst
}

fn put_hex(mut n: u64, dst: &mut BytesMut) {
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    dst.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_framing() {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-checksum", "abc".parse().unwrap());
        let wire = chunked(
            &[
                Bytes::from_static(b"hello"),
                Bytes::new(),
                Bytes::from(vec![b'x'; 26]),
            ],
            Some(&trailers),
        );
        let expected = format!(
            "5\r\nhello\r\n1a\r\n{}\r\n0\r\nx-checksum: abc\r\n\r\n",
            "x".repeat(26)
        );
        assert_eq!(&wire[..], expected.as_bytes());
    }

    #[test]
    fn content_length_promise_is_kept() {
        let mut enc = BodyEncoder::new(OutgoingFraming::Length(3));
        let mut dst = BytesMut::new();
        enc.data(b"ab", &mut dst).unwrap();
        assert_eq!(
            enc.clone().finish(None, &mut dst),
            Err(EncodeError::TooShort {
                declared: 3,
                sent: 2
            })
        );
        assert_eq!(
            enc.data(b"cd", &mut dst),
            Err(EncodeError::TooLong { declared: 3 })
        );
    }
}
