//! Parsing replies: the client's side of RESP2 and RESP3.
//!
//! ```text
//!  +OK  -ERR msg  :42  $5 hello  $-1  *2 ...  *-1          (RESP2)
//!  _  ,3.14  #t  (3492890328409238509324850943850943825024385  =15 txt:...
//!  %2 ... (map)  ~3 ... (set)  >3 ... (push)  |1 ... (attributes, skipped)   (RESP3)
//! ```
//!
//! Like the request parser, [`parse_reply`] is sans-I/O: it takes one whole reply off the front
//! of a buffer, or says more bytes are needed.

use bytes::{Buf, Bytes, BytesMut};

use super::request::parse_i64;

/// Deepest nesting of aggregates accepted: no command answers more than a few levels, and the
/// bound keeps a hostile server from exhausting the client's stack.
pub const MAX_DEPTH: usize = 32;
/// Largest bulk string accepted in a reply: 512 MiB, as the server's limit.
pub const MAX_BULK_BYTES: usize = 512 << 20;
/// Most elements in one aggregate reply.
pub const MAX_ELEMENTS: usize = 1 << 24;

/// One reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Simple(String),
    /// A server error: the whole line, code included (`ERR ...`, `WRONGTYPE ...`).
    Error(String),
    Integer(i64),
    Bulk(Bytes),
    Null,
    Array(Vec<Reply>),
    Map(Vec<(Reply, Reply)>),
    Set(Vec<Reply>),
    Double(f64),
    Boolean(bool),
    /// Verbatim text, without its three-letter format prefix.
    Verbatim(String),
    /// A big number, as its decimal text.
    BigNumber(String),
    /// An out-of-band push message (RESP3 pub/sub, invalidation).
    Push(Vec<Reply>),
}

impl Reply {
    /// The bytes of a bulk, simple or verbatim string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Reply::Bulk(b) => Some(b),
            Reply::Simple(s) | Reply::Verbatim(s) => Some(s.as_bytes()),
            _ => None,
        }
    }
}

/// Bytes that are not a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed reply: {0}")]
pub struct ReplyError(pub String);

fn malformed(what: impl Into<String>) -> ReplyError {
    ReplyError(what.into())
}

/// Takes one reply off the front of `buf`; `Ok(None)` if it is not complete yet.
pub fn parse_reply(buf: &mut BytesMut) -> Result<Option<Reply>, ReplyError> {
    let mut cursor = 0;
    match parse_at(buf, &mut cursor, 0)? {
        Some(reply) => {
            buf.advance(cursor);
            Ok(Some(reply))
        }
        None => Ok(None),
    }
}

/// The line starting at `*at` (after its type byte), moving `*at` past its CRLF.
fn line<'a>(buf: &'a [u8], at: &mut usize) -> Option<&'a [u8]> {
    let start = *at;
    let end = start + buf.get(start..)?.windows(2).position(|w| w == b"\r\n")?;
    *at = end + 2;
    Some(&buf[start..end])
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn parse_at(buf: &[u8], at: &mut usize, depth: usize) -> Result<Option<Reply>, ReplyError> {
    if depth > MAX_DEPTH {
        return Err(malformed("nesting too deep"));
    }
    let Some(&kind) = buf.get(*at) else {
        return Ok(None);
    };
    *at += 1;
    let Some(head) = line(buf, at) else {
        return Ok(None);
    };
    let length =
        || parse_i64(head).ok_or_else(|| malformed(format!("bad length {:?}", text(head))));
    let reply = match kind {
        b'+' => Reply::Simple(text(head)),
        b'-' => Reply::Error(text(head)),
        b':' => Reply::Integer(length()?),
        b'_' => Reply::Null,
        b'#' => match head {
            b"t" => Reply::Boolean(true),
            b"f" => Reply::Boolean(false),
            _ => return Err(malformed("bad boolean")),
        },
        b',' => Reply::Double(parse_double(head)?),
        b'(' => Reply::BigNumber(text(head)),
        b'$' | b'=' | b'!' => {
            let len = length()?;
            if len < 0 {
                return Ok(Some(Reply::Null));
            }
            let Some(data) = bulk(buf, at, len as usize)? else {
                return Ok(None);
            };
            match kind {
                b'$' => Reply::Bulk(Bytes::copy_from_slice(data)),
                b'!' => Reply::Error(text(data)),
                _ => Reply::Verbatim(text(data.get(4..).unwrap_or_default())),
            }
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let count = length()?;
            if count < 0 {
                return Ok(Some(Reply::Null));
            }
            let pairs = matches!(kind, b'%' | b'|');
            let Some(items) = elements(buf, at, count as usize * if pairs { 2 } else { 1 }, depth)?
            else {
                return Ok(None);
            };
            match kind {
                b'*' => Reply::Array(items),
                b'~' => Reply::Set(items),
                b'>' => Reply::Push(items),
                b'%' => Reply::Map(pair_up(items)),
                // Attributes describe the reply that follows; this client does not use them.
                _ => return parse_at(buf, at, depth),
            }
        }
        other => {
            return Err(malformed(format!(
                "unknown type byte {:?}",
                char::from(other)
            )));
        }
    };
    Ok(Some(reply))
}

fn bulk<'a>(buf: &'a [u8], at: &mut usize, len: usize) -> Result<Option<&'a [u8]>, ReplyError> {
    if len > MAX_BULK_BYTES {
        return Err(malformed("bulk string too long"));
    }
    if buf.len() < *at + len + 2 {
        return Ok(None);
    }
    let data = &buf[*at..*at + len];
    if &buf[*at + len..*at + len + 2] != b"\r\n" {
        return Err(malformed("bulk string not followed by CRLF"));
    }
    *at += len + 2;
    Ok(Some(data))
}

fn elements(
    buf: &[u8],
    at: &mut usize,
    count: usize,
    depth: usize,
) -> Result<Option<Vec<Reply>>, ReplyError> {
    if count > MAX_ELEMENTS {
        return Err(malformed("aggregate too large"));
    }
    let mut items = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        match parse_at(buf, at, depth + 1)? {
            Some(item) => items.push(item),
            None => return Ok(None),
        }
    }
    Ok(Some(items))
}

fn pair_up(items: Vec<Reply>) -> Vec<(Reply, Reply)> {
    let mut pairs = Vec::with_capacity(items.len() / 2);
    let mut iter = items.into_iter();
    while let (Some(key), Some(value)) = (iter.next(), iter.next()) {
        pairs.push((key, value));
    }
    pairs
}

fn parse_double(bytes: &[u8]) -> Result<f64, ReplyError> {
    match bytes {
        b"inf" => Ok(f64::INFINITY),
        b"-inf" => Ok(f64::NEG_INFINITY),
        b"nan" => Ok(f64::NAN),
        _ => std::str::from_utf8(bytes)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| malformed("bad double")),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::resp::{Frame, Protocol, encode};

    fn parse_all(bytes: &[u8]) -> Vec<Reply> {
        let mut buf = BytesMut::from(bytes);
        let mut replies = Vec::new();
        while let Some(reply) = parse_reply(&mut buf).unwrap() {
            replies.push(reply);
        }
        assert!(buf.is_empty());
        replies
    }

    #[test]
    fn every_type_parses() {
        let input = b"+OK\r\n-ERR x\r\n:-3\r\n$2\r\nhi\r\n$-1\r\n*-1\r\n_\r\n,1.5\r\n#t\r\n=7\r\ntxt:abc\r\n\
                      %1\r\n+k\r\n:1\r\n~1\r\n:2\r\n*2\r\n*1\r\n:1\r\n$0\r\n\r\n|1\r\n+a\r\n+b\r\n:9\r\n";
        let replies = parse_all(input);
        assert_eq!(
            replies,
            [
                Reply::Simple("OK".into()),
                Reply::Error("ERR x".into()),
                Reply::Integer(-3),
                Reply::Bulk(Bytes::from_static(b"hi")),
                Reply::Null,
                Reply::Null,
                Reply::Null,
                Reply::Double(1.5),
                Reply::Boolean(true),
                Reply::Verbatim("abc".into()),
                Reply::Map(vec![(Reply::Simple("k".into()), Reply::Integer(1))]),
                Reply::Set(vec![Reply::Integer(2)]),
                Reply::Array(vec![
                    Reply::Array(vec![Reply::Integer(1)]),
                    Reply::Bulk(Bytes::new())
                ]),
                Reply::Integer(9),
            ]
        );
    }

    #[test]
    fn incomplete_replies_consume_nothing() {
        let whole = b"*2\r\n$5\r\nhello\r\n%1\r\n+a\r\n:1\r\n";
        for cut in 0..whole.len() {
            let mut buf = BytesMut::from(&whole[..cut]);
            assert_eq!(parse_reply(&mut buf), Ok(None), "cut {cut}");
            assert_eq!(buf.len(), cut);
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = "*1\r\n".repeat(MAX_DEPTH + 2) + ":1\r\n";
        assert!(parse_reply(&mut BytesMut::from(deep.as_bytes())).is_err());
    }

    proptest! {
        /// What the server's encoder writes, the client's parser reads back.
        #[test]
        fn encoded_frames_parse_back(items in prop::collection::vec((any::<i64>(), prop::collection::vec(any::<u8>(), 0..20)), 0..10)) {
            let frame = Frame::Map(items.iter().map(|(n, b)| (Frame::Integer(*n), Frame::bulk(b.clone()))).collect());
            for protocol in [Protocol::Resp2, Protocol::Resp3] {
                let mut out = BytesMut::new();
                encode(&frame, protocol, &mut out);
                let reply = parse_reply(&mut out).unwrap().unwrap();
                let flat: Vec<Reply> = items.iter().flat_map(|(n, b)| [Reply::Integer(*n), Reply::Bulk(Bytes::from(b.clone()))]).collect();
                match reply {
                    Reply::Map(pairs) => prop_assert_eq!(pairs.into_iter().flat_map(|(k, v)| [k, v]).collect::<Vec<_>>(), flat),
                    Reply::Array(all) => prop_assert_eq!(all, flat),
                    other => prop_assert!(false, "unexpected {:?}", other),
                }
            }
        }
    }
}
