//! Body decoding: turning the bytes after a header section into body data, sans I/O.
//!
//! [`BodyDecoder`] is a state machine fed from a read buffer; it never touches a socket, which
//! is what lets the server, the client, the fuzz target and the property tests share it. Each
//! call takes what it can from the front of the buffer and returns one [`Decoded`] event.
//!
//! The chunked coding (RFC 9112 section 7.1):
//!
//! ```text
//! chunked-body   = *chunk last-chunk trailer-section CRLF
//! chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! chunk-size     = 1*HEXDIG
//! last-chunk     = 1*("0") [ chunk-ext ] CRLF
//! trailer-section = *( field-line CRLF )
//! ```
//!
//! ```text
//!  Size --CRLF--> Data(n) --n bytes--> DataEnd --CRLF--> Size ...
//!   |  size 0
//!   v
//!  Trailers --empty line--> Done
//! ```
//!
//! Chunk extensions are skipped (no application here defines any) but count against
//! `max_chunk_line_bytes`. Every line must end with CRLF: a lone LF or CR is an error, the same
//! strictness as in header sections.

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;

use crate::error::BodyError;
use crate::framing::BodyKind;
use crate::limits::{Limits, MAX_HEADERS_CEILING};

/// Framing bytes (size lines, extensions, CRLFs, trailers) a chunked body may carry for each
/// byte of data, beyond [`CHUNK_OVERHEAD_ALLOWANCE_BYTES`]. `max_body_bytes` counts data only,
/// so without this a body of one-byte chunks with 1 KiB extensions would be a thousand times
/// larger on the wire than the limit says. An ordinary encoder spends 5 bytes on a 1-byte
/// chunk and a few bytes on a large one.
pub const CHUNK_OVERHEAD_PER_DATA_BYTE: u64 = 16;

/// Framing bytes every chunked body may use whatever its data (room for trailers and a few
/// extensions on a short body).
pub const CHUNK_OVERHEAD_ALLOWANCE_BYTES: u64 = 16 * 1024;

/// One step of body decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// More input is needed before anything can be returned.
    NeedMore,
    /// Body data, in order.
    Data(Bytes),
    /// The trailer section of a chunked body (only when it is not empty).
    Trailers(HeaderMap),
    /// The body is complete; bytes after it belong to the next message.
    End,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// `remaining` bytes of a Content-Length body are still to come.
    Length {
        remaining: u64,
    },
    /// Expecting a chunk-size line.
    ChunkSize,
    /// Inside chunk data with `remaining` bytes to go.
    ChunkData {
        remaining: u64,
    },
    /// Expecting the CRLF after chunk data.
    ChunkDataEnd,
    /// After the last chunk: trailer fields or the final empty line.
    Trailers,
    /// Everything until end of input.
    UntilClose,
    Done,
}

/// Decodes one message body. Create it with the [`BodyKind`] from the head and the limits of
/// the connection; feed it the connection's read buffer.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    state: State,
    /// Body bytes handed out so far, checked against `max_body_bytes`.
    received: u64,
    /// Chunked framing bytes consumed so far, checked against the data received.
    overhead: u64,
    max_body_bytes: u64,
    max_chunk_line_bytes: usize,
    max_trailer_bytes: usize,
    max_headers: usize,
}

impl BodyDecoder {
    pub fn new(kind: BodyKind, limits: &Limits) -> Self {
        let state = match kind {
            BodyKind::Empty | BodyKind::Length(0) => State::Done,
            BodyKind::Length(n) => State::Length { remaining: n },
            BodyKind::Chunked => State::ChunkSize,
            BodyKind::CloseDelimited => State::UntilClose,
        };
        BodyDecoder {
            state,
            received: 0,
            overhead: 0,
            max_body_bytes: limits.max_body_bytes,
            max_chunk_line_bytes: limits.max_chunk_line_bytes,
            max_trailer_bytes: limits.max_trailer_bytes,
            max_headers: limits.max_headers.min(MAX_HEADERS_CEILING),
        }
    }

    /// True once the whole body has been returned.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Bytes of body data returned so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Bytes of body data still to come, when the framing says (a Content-Length body, or a
    /// finished one); `None` for chunked and close-delimited bodies.
    pub fn remaining(&self) -> Option<u64> {
        match self.state {
            State::Length { remaining } => Some(remaining),
            State::Done => Some(0),
            _ => None,
        }
    }

    /// Takes the next event from the front of `buf`. Returns `NeedMore` when `buf` holds no
    /// complete step; at end of input call [`BodyDecoder::decode_eof`] instead.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, BodyError> {
        loop {
            match self.state {
                State::Done => return Ok(Decoded::End),
                State::Length { remaining } => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = remaining.min(buf.len() as u64);
                    let data = buf.split_to(n as usize).freeze();
                    self.state = match remaining - n {
                        0 => State::Done,
                        left => State::Length { remaining: left },
                    };
                    return self.data(data);
                }
                State::UntilClose => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let data = buf.split().freeze();
                    return self.data(data);
                }
                State::ChunkSize => match self.chunk_size_line(buf)? {
                    None => return Ok(Decoded::NeedMore),
                    Some(0) => self.state = State::Trailers,
                    Some(size) => self.state = State::ChunkData { remaining: size },
                },
                State::ChunkData { remaining } => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = remaining.min(buf.len() as u64);
                    let data = buf.split_to(n as usize).freeze();
                    self.state = match remaining - n {
                        0 => State::ChunkDataEnd,
                        left => State::ChunkData { remaining: left },
                    };
                    return self.data(data);
                }
                State::ChunkDataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(BodyError::MissingChunkCrlf);
                    }
                    buf.advance(2);
                    self.add_overhead(2)?;
                    self.state = State::ChunkSize;
                }
                State::Trailers => return self.trailers(buf),
            }
        }
    }

    /// Called when the peer closed the connection and `buf` holds everything that is left.
    pub fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Decoded, BodyError> {
        match self.decode(buf)? {
            Decoded::NeedMore if self.state == State::UntilClose => {
                self.state = State::Done;
                Ok(Decoded::End)
            }
            Decoded::NeedMore => Err(BodyError::Incomplete),
            other => Ok(other),
        }
    }

    fn data(&mut self, data: Bytes) -> Result<Decoded, BodyError> {
        self.received += data.len() as u64;
        if self.received > self.max_body_bytes {
            return Err(BodyError::TooLarge {
                max: self.max_body_bytes,
            });
        }
        Ok(Decoded::Data(data))
    }

    fn add_overhead(&mut self, bytes: usize) -> Result<(), BodyError> {
        self.overhead += bytes as u64;
        let allowed = CHUNK_OVERHEAD_ALLOWANCE_BYTES
            .saturating_add(self.received.saturating_mul(CHUNK_OVERHEAD_PER_DATA_BYTE));
        if self.overhead > allowed {
            return Err(BodyError::ChunkOverhead);
        }
        Ok(())
    }

    /// Parses `chunk-size [ chunk-ext ] CRLF`, returning the size once the line is complete.
    fn chunk_size_line(&mut self, buf: &mut BytesMut) -> Result<Option<u64>, BodyError> {
        let window = &buf[..buf.len().min(self.max_chunk_line_bytes)];
        let Some(lf) = window.iter().position(|&b| b == b'\n') else {
            if buf.len() >= self.max_chunk_line_bytes {
                return Err(BodyError::ChunkLineTooLong {
                    max: self.max_chunk_line_bytes,
                });
            }
            return Ok(None);
        };
        if lf == 0 || buf[lf - 1] != b'\r' {
            return Err(BodyError::InvalidChunkSize);
        }
        let line = &buf[..lf - 1];
        let digits_end = line
            .iter()
            .position(|b| !b.is_ascii_hexdigit())
            .unwrap_or(line.len());
        let (digits, rest) = line.split_at(digits_end);
        // At most 15 hex digits keeps the size far from overflow (and far beyond any limit).
        if digits.is_empty() || digits.len() > 15 || !valid_extensions(rest) {
            return Err(BodyError::InvalidChunkSize);
        }
        let size = digits.iter().fold(0u64, |n, &d| {
            n * 16 + u64::from((d as char).to_digit(16).unwrap_or(0))
        });
        if self.received.saturating_add(size) > self.max_body_bytes {
            return Err(BodyError::TooLarge {
                max: self.max_body_bytes,
            });
        }
        buf.advance(lf + 1);
        self.add_overhead(lf + 1)?;
        Ok(Some(size))
    }

    /// After the last chunk: either a bare CRLF, or trailer fields ending with an empty line.
    fn trailers(&mut self, buf: &mut BytesMut) -> Result<Decoded, BodyError> {
        if buf.len() >= 2 && &buf[..2] == b"\r\n" {
            buf.advance(2);
            self.state = State::Done;
            return Ok(Decoded::End);
        }
        let window = &buf[..buf.len().min(self.max_trailer_bytes)];
        let Some(end) = window.windows(4).position(|w| w == b"\r\n\r\n") else {
            if buf.len() >= self.max_trailer_bytes {
                return Err(BodyError::TrailersTooLarge {
                    max: self.max_trailer_bytes,
                });
            }
            let bad_start = buf.first() == Some(&b'\n') || (buf.len() >= 2 && buf[0] == b'\r');
            if bad_start {
                return Err(BodyError::InvalidTrailers);
            }
            return Ok(Decoded::NeedMore);
        };
        let section = &buf[..end + 4];
        let map = parse_trailers(section, self.max_headers)?;
        buf.advance(end + 4);
        self.add_overhead(end + 4)?;
        // The empty line has been consumed with the section: the body ends here.
        self.state = State::Done;
        Ok(Decoded::Trailers(map))
    }
}

/// `*( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )`, checked loosely: only
/// visible characters, spaces and tabs, starting with `;` (after optional whitespace).
fn valid_extensions(rest: &[u8]) -> bool {
    let trimmed: &[u8] = {
        let start = rest
            .iter()
            .position(|&b| b != b' ' && b != b'\t')
            .unwrap_or(rest.len());
        &rest[start..]
    };
    trimmed.is_empty()
        || (trimmed[0] == b';'
            && trimmed
                .iter()
                .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b)))
}

fn parse_trailers(section: &[u8], max_headers: usize) -> Result<HeaderMap, BodyError> {
    let mut prev = 0u8;
    for &b in section {
        if b == b'\n' && prev != b'\r' {
            return Err(BodyError::InvalidTrailers);
        }
        prev = b;
    }
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS_CEILING];
    let fields = match httparse::parse_headers(section, &mut slots[..max_headers]) {
        Ok(httparse::Status::Complete((_, fields))) => fields,
        _ => return Err(BodyError::InvalidTrailers),
    };
    let mut map = HeaderMap::with_capacity(fields.len());
    for field in fields {
        let name = http::HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| BodyError::InvalidTrailers)?;
        let value =
            http::HeaderValue::from_bytes(field.value).map_err(|_| BodyError::InvalidTrailers)?;
        map.append(name, value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Body data, trailers, and the bytes left after the body.
    type DecodedBody = (Vec<u8>, Option<HeaderMap>, Vec<u8>);

    /// Decodes `input` fed in pieces of `step` bytes.
    fn decode_all(kind: BodyKind, input: &[u8], step: usize) -> Result<DecodedBody, BodyError> {
        let mut dec = BodyDecoder::new(kind, &Limits::default());
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut trailers = None;
        let mut fed = 0;
        loop {
            let event = if fed >= input.len() {
                dec.decode_eof(&mut buf)?
            } else {
                dec.decode(&mut buf)?
            };
            match event {
                Decoded::NeedMore => {
                    let end = (fed + step).min(input.len());
                    buf.extend_from_slice(&input[fed..end]);
                    fed = end;
                }
                Decoded::Data(d) => body.extend_from_slice(&d),
                Decoded::Trailers(t) => trailers = Some(t),
                Decoded::End => {
                    let mut rest = buf.to_vec();
                    rest.extend_from_slice(&input[fed..]);
                    return Ok((body, trailers, rest));
                }
            }
        }
    }

    #[test]
    fn chunked_body_with_trailers_byte_by_byte() {
        let raw = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 1\r\n\r\nNEXT";
        let (body, trailers, rest) = decode_all(BodyKind::Chunked, raw, 1).unwrap();
        assert_eq!(body, b"hello world");
        assert_eq!(trailers.unwrap()["x-sum"], "1");
        assert_eq!(rest, b"NEXT");
    }

    #[test]
    fn chunked_without_trailers_leaves_next_message() {
        let (body, trailers, rest) =
            decode_all(BodyKind::Chunked, b"3\r\nabc\r\n0\r\n\r\nGET", 7).unwrap();
        assert_eq!(body, b"abc");
        assert!(trailers.is_none());
        assert_eq!(rest, b"GET");
    }

    #[test]
    fn content_length_stops_at_the_length() {
        let (body, _, rest) = decode_all(BodyKind::Length(3), b"abcdef", 2).unwrap();
        assert_eq!(body, b"abc");
        assert_eq!(rest, b"def");
    }

    #[test]
    fn close_delimited_runs_to_eof() {
        let (body, _, _) = decode_all(BodyKind::CloseDelimited, b"all of it", 4).unwrap();
        assert_eq!(body, b"all of it");
    }

    #[test]
    fn truncated_bodies_are_incomplete() {
        assert_eq!(
            decode_all(BodyKind::Length(10), b"abc", 3).unwrap_err(),
            BodyError::Incomplete
        );
        assert_eq!(
            decode_all(BodyKind::Chunked, b"5\r\nab", 3).unwrap_err(),
            BodyError::Incomplete
        );
    }

    #[test]
    fn bad_chunk_framing_is_refused() {
        // Each body is complete apart from its flaw, so the error is the framing's, not the
        // end of input's.
        for (raw, expected) in [
            (&b"x\r\n0\r\n\r\n"[..], BodyError::InvalidChunkSize),
            (b"5\nhello\r\n0\r\n\r\n", BodyError::InvalidChunkSize),
            (b"5\r\nhelloXX0\r\n\r\n", BodyError::MissingChunkCrlf),
            (b" 5\r\nhello\r\n0\r\n\r\n", BodyError::InvalidChunkSize),
            (b"0x5\r\nhello\r\n0\r\n\r\n", BodyError::InvalidChunkSize),
            (
                b"ffffffffffffffff\r\n0\r\n\r\n",
                BodyError::InvalidChunkSize,
            ),
            (b"5 junk\r\nhello\r\n0\r\n\r\n", BodyError::InvalidChunkSize),
        ] {
            assert_eq!(
                decode_all(BodyKind::Chunked, raw, 64).unwrap_err(),
                expected,
                "{raw:?}"
            );
        }
    }

    #[test]
    fn chunk_extensions_cannot_carry_more_than_their_share() {
        let extension = "e".repeat(1000);
        let mut raw = String::new();
        for _ in 0..1000 {
            raw.push_str(&format!("1;{extension}\r\nx\r\n"));
        }
        raw.push_str("0\r\n\r\n");
        assert_eq!(
            decode_all(BodyKind::Chunked, raw.as_bytes(), 4096).unwrap_err(),
            BodyError::ChunkOverhead
        );
        // One-byte chunks from an ordinary encoder stay well inside the ratio.
        let pieces: Vec<Bytes> = (0..5000).map(|_| Bytes::from_static(b"y")).collect();
        let wire = crate::encode::chunked(&pieces, None);
        let (body, _, _) = decode_all(BodyKind::Chunked, &wire, 4096).unwrap();
        assert_eq!(body.len(), 5000);
    }

    #[test]
    fn chunked_body_over_the_limit_is_too_large() {
        let mut dec = BodyDecoder::new(
            BodyKind::Chunked,
            &Limits {
                max_body_bytes: 4,
                ..Limits::default()
            },
        );
        let mut buf = BytesMut::from(&b"5\r\nhello\r\n"[..]);
        assert_eq!(dec.decode(&mut buf), Err(BodyError::TooLarge { max: 4 }));
    }

    #[test]
    fn endless_chunk_line_is_refused() {
        let mut dec = BodyDecoder::new(BodyKind::Chunked, &Limits::default());
        let mut buf = BytesMut::from(&b"5;"[..]);
        buf.extend_from_slice(&[b'a'; 2000]);
        assert!(matches!(
            dec.decode(&mut buf),
            Err(BodyError::ChunkLineTooLong { .. })
        ));
    }
}
