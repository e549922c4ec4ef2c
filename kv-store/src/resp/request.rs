//! Parsing requests: RESP arrays of bulk strings, and inline commands.
//!
//! The parser is sans-I/O: [`parse_command`] looks at the bytes a connection has buffered and
//! either takes one whole command off the front, says that more bytes are needed, or reports a
//! [`ProtocolError`]. A connection calls it until it returns `None`, so every complete command
//! of a pipelined batch is parsed before any is executed.
//!
//! ```text
//!  *<count>\r\n  then count times  $<len>\r\n<len bytes>\r\n       (multibulk)
//!  <word> <word> "quoted \x41 word" 'single'\r\n                  (inline, as telnet sends it)
//! ```
//!
//! Arguments are slices of the frame's own buffer (`Bytes::slice`), so parsing copies nothing;
//! whoever keeps an argument beyond the command (the keyspace) copies it, so that a stored value
//! never pins a whole read buffer.

use bytes::{Bytes, BytesMut};
use thiserror::Error;

/// Default largest bulk string: 512 MiB, Redis's `proto-max-bulk-len`.
pub const DEFAULT_MAX_BULK_BYTES: usize = 512 << 20;
/// Default most arguments in one command: 1,048,576. Redis allows up to `INT_MAX`; a million
/// arguments is far beyond any real command (`MSET` of 500,000 pairs) and bounds the argument
/// vector a single frame can make the server allocate.
pub const DEFAULT_MAX_ARRAY_LEN: usize = 1 << 20;
/// Default longest inline command, and longest count line (`*<n>`, `$<n>`): 64 KiB, Redis's
/// `PROTO_INLINE_MAX_SIZE`.
pub const DEFAULT_MAX_INLINE_BYTES: usize = 64 << 10;
/// Default most unparsed bytes a connection may buffer: 1 GiB, Redis's
/// `client-query-buffer-limit`. Past it the connection is closed.
pub const DEFAULT_QUERY_BUFFER_BYTES: usize = 1 << 30;

/// Every size the request parser accepts. Each is a configuration value of the server
/// (`proto_max_bulk_len`, `max_array_len`, `max_inline_len`, `client_query_buffer_limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk string in bytes. Default [`DEFAULT_MAX_BULK_BYTES`].
    pub max_bulk_bytes: usize,
    /// Most elements in a request array. Default [`DEFAULT_MAX_ARRAY_LEN`].
    pub max_array_len: usize,
    /// Longest inline command or count line, in bytes. Default [`DEFAULT_MAX_INLINE_BYTES`].
    pub max_inline_bytes: usize,
    /// Most bytes buffered for one connection. Default [`DEFAULT_QUERY_BUFFER_BYTES`].
    pub query_buffer_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_bytes: DEFAULT_MAX_BULK_BYTES,
            max_array_len: DEFAULT_MAX_ARRAY_LEN,
            max_inline_bytes: DEFAULT_MAX_INLINE_BYTES,
            query_buffer_bytes: DEFAULT_QUERY_BUFFER_BYTES,
        }
    }
}

/// Bytes that cannot start or continue a command. The connection answers
/// `-ERR Protocol error: <reason>` and closes: after a framing error nothing that follows can be
/// trusted to start a command. The texts are Redis's, which clients and tests match.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("Protocol error: {reason}")]
pub struct ProtocolError {
    pub reason: String,
}

impl ProtocolError {
    fn new(reason: impl Into<String>) -> ProtocolError {
        ProtocolError {
            reason: reason.into(),
        }
    }
}

/// Takes one command off the front of `buf`.
///
/// Returns `Ok(Some(args))` for a whole command (`args` is empty for an empty inline line or a
/// `*0` array, which Redis ignores), `Ok(None)` if `buf` holds only part of one (nothing is
/// consumed), or the error that makes the rest of the stream unreadable.
pub fn parse_command(
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] == b'*' {
        parse_multibulk(buf, limits)
    } else {
        parse_inline(buf, limits)
    }
}

/// Position of the first CRLF at or after `from`.
fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(offset) = buf.get(at..)?.iter().position(|&b| b == b'\r') {
        let cr = at + offset;
        match buf.get(cr + 1) {
            Some(b'\n') => return Some(cr),
            Some(_) => at = cr + 1,
            None => return None,
        }
    }
    None
}

/// A signed decimal as Redis's `string2ll` reads it: optional `-`, digits, no spaces or `+`.
pub fn parse_i64(digits: &[u8]) -> Option<i64> {
    let (negative, digits) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, digits),
    };
    if digits.is_empty() || digits.len() > 19 || (digits.len() > 1 && digits[0] == b'0') {
        return None;
    }
    let mut value: i64 = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        let d = i64::from(digit - b'0');
        value = if negative {
            value.checked_mul(10)?.checked_sub(d)?
        } else {
            value.checked_mul(10)?.checked_add(d)?
        };
    }
    Some(value)
}

/// Reads the `<n>\r\n` after a type byte at `at`; `Ok(None)` if the line is not complete yet.
fn count_line(
    buf: &[u8],
    at: usize,
    limits: &Limits,
    too_big: &str,
) -> Result<Option<(Option<i64>, usize)>, ProtocolError> {
    match find_crlf(buf, at + 1) {
        Some(cr) if cr - at > limits.max_inline_bytes => Err(ProtocolError::new(too_big)),
        Some(cr) => Ok(Some((parse_i64(&buf[at + 1..cr]), cr + 2))),
        None if buf.len() - at > limits.max_inline_bytes => Err(ProtocolError::new(too_big)),
        None => Ok(None),
    }
}

fn parse_multibulk(
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    let Some((count, mut at)) = count_line(buf, 0, limits, "too big mbulk count string")? else {
        return Ok(None);
    };
    let count = match count {
        Some(count) if count <= 0 => {
            let _ = buf.split_to(at);
            return Ok(Some(Vec::new()));
        }
        Some(count) if count as u64 <= limits.max_array_len as u64 => count as usize,
        _ => return Err(ProtocolError::new("invalid multibulk length")),
    };
    // Ranges first, slices after: the frame is split off only once it is known to be whole.
    // The capacity is capped so that a large count alone cannot make us allocate.
    let mut ranges = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let Some(&kind) = buf.get(at) else {
            return Ok(None);
        };
        if kind != b'$' {
            let got = char::from(kind).escape_default();
            return Err(ProtocolError::new(format!("expected '$', got '{got}'")));
        }
        let Some((len, data)) = count_line(buf, at, limits, "too big bulk count string")? else {
            return Ok(None);
        };
        let len = match len {
            Some(len) if len >= 0 && len as u64 <= limits.max_bulk_bytes as u64 => len as usize,
            _ => return Err(ProtocolError::new("invalid bulk length")),
        };
        if buf.len() < data + len + 2 {
            return Ok(None);
        }
        if &buf[data + len..data + len + 2] != b"\r\n" {
            return Err(ProtocolError::new("bulk string not followed by CRLF"));
        }
        ranges.push(data..data + len);
        at = data + len + 2;
    }
    let frame = buf.split_to(at).freeze();
    Ok(Some(ranges.into_iter().map(|r| frame.slice(r)).collect()))
}

fn parse_inline(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    let Some(newline) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > limits.max_inline_bytes {
            return Err(ProtocolError::new("too big inline request"));
        }
        return Ok(None);
    };
    if newline > limits.max_inline_bytes {
        return Err(ProtocolError::new("too big inline request"));
    }
    let line = buf.split_to(newline + 1);
    let line = line[..newline]
        .strip_suffix(b"\r")
        .unwrap_or(&line[..newline]);
    let args =
        split_inline(line).ok_or_else(|| ProtocolError::new("unbalanced quotes in request"))?;
    if args.len() > limits.max_array_len {
        return Err(ProtocolError::new("invalid multibulk length"));
    }
    Ok(Some(args.into_iter().map(Bytes::from).collect()))
}

/// Splits an inline command into words the way `redis-cli` and Redis do: spaces separate words;
/// `"..."` understands `\n \r \t \b \a \\ \" \xHH`; `'...'` only `\'`. A closing quote must be
/// followed by a space or the end. `None` for unbalanced quotes.
pub fn split_inline(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut words = Vec::new();
    let mut at = 0;
    loop {
        while at < line.len() && line[at].is_ascii_whitespace() {
            at += 1;
        }
        if at == line.len() {
            return Some(words);
        }
        let (word, next) = match line[at] {
            b'"' => double_quoted(line, at + 1)?,
            b'\'' => single_quoted(line, at + 1)?,
            _ => {
                let end = line[at..]
                    .iter()
                    .position(|b| b.is_ascii_whitespace())
                    .map_or(line.len(), |p| at + p);
                (line[at..end].to_vec(), end)
            }
        };
        words.push(word);
        at = next;
    }
}

fn after_closing_quote(line: &[u8], at: usize) -> Option<usize> {
    match line.get(at) {
        None => Some(at),
        Some(b) if b.is_ascii_whitespace() => Some(at),
        Some(_) => None,
    }
}

fn double_quoted(line: &[u8], mut at: usize) -> Option<(Vec<u8>, usize)> {
    let mut word = Vec::new();
    loop {
        match *line.get(at)? {
            b'"' => return Some((word, after_closing_quote(line, at + 1)?)),
            b'\\' => {
                let escaped = *line.get(at + 1)?;
                if escaped == b'x' {
                    let hex = line
                        .get(at + 2..at + 4)
                        .and_then(|h| std::str::from_utf8(h).ok());
                    if let Some(byte) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        word.push(byte);
                        at += 4;
                        continue;
                    }
                }
                word.push(match escaped {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'b' => 8,
                    b'a' => 7,
                    other => other,
                });
                at += 2;
            }
            byte => {
                word.push(byte);
                at += 1;
            }
        }
    }
}

fn single_quoted(line: &[u8], mut at: usize) -> Option<(Vec<u8>, usize)> {
    let mut word = Vec::new();
    loop {
        match *line.get(at)? {
            b'\'' => return Some((word, after_closing_quote(line, at + 1)?)),
            b'\\' if line.get(at + 1) == Some(&b'\'') => {
                word.push(b'\'');
                at += 2;
            }
            byte => {
                word.push(byte);
                at += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn parse_all(bytes: &[u8], limits: &Limits) -> Result<Vec<Vec<Bytes>>, ProtocolError> {
        let mut buf = BytesMut::from(bytes);
        let mut commands = Vec::new();
        while let Some(args) = parse_command(&mut buf, limits)? {
            commands.push(args);
        }
        Ok(commands)
    }

    fn words(args: &[Bytes]) -> Vec<&str> {
        args.iter()
            .map(|a| std::str::from_utf8(a).unwrap())
            .collect()
    }

    #[test]
    fn a_pipelined_batch_is_parsed_whole() {
        let input =
            b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$0\r\n\r\nPING\r\n";
        let commands = parse_all(input, &Limits::default()).unwrap();
        assert_eq!(commands.len(), 3);
        assert_eq!(words(&commands[0]), ["GET", "a"]);
        assert_eq!(words(&commands[1]), ["SET", "b", ""]);
        assert_eq!(words(&commands[2]), ["PING"]);
    }

    #[test]
    fn a_partial_command_consumes_nothing() {
        let whole = b"*2\r\n$3\r\nGET\r\n$5\r\nhello\r\n";
        for cut in 1..whole.len() {
            let mut buf = BytesMut::from(&whole[..cut]);
            assert_eq!(
                parse_command(&mut buf, &Limits::default()),
                Ok(None),
                "cut {cut}"
            );
            assert_eq!(buf.len(), cut);
        }
    }

    #[test]
    fn inline_commands_split_like_redis_cli() {
        let commands = parse_all(
            b"SET k \"a b\\x41\\n\" 'it\\'s'\r\n\r\nPING\n",
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(commands[0][2].as_ref(), b"a bA\n");
        assert_eq!(commands[0][3].as_ref(), b"it's");
        assert!(commands[1].is_empty());
        assert_eq!(words(&commands[2]), ["PING"]);
    }

    #[test]
    fn errors_use_redis_texts() {
        let limits = Limits::default();
        let error = |bytes: &[u8]| parse_all(bytes, &limits).unwrap_err().to_string();
        assert_eq!(error(b"*x\r\n"), "Protocol error: invalid multibulk length");
        assert_eq!(
            error(b"*1\r\n:1\r\n"),
            "Protocol error: expected '$', got ':'"
        );
        assert_eq!(
            error(b"*1\r\n$-5\r\n"),
            "Protocol error: invalid bulk length"
        );
        assert_eq!(
            error(b"SET \"a\r\n"),
            "Protocol error: unbalanced quotes in request"
        );
        assert_eq!(
            error(b"*1\r\n$1\r\nab\r\n"),
            "Protocol error: bulk string not followed by CRLF"
        );
    }

    #[test]
    fn limits_are_enforced() {
        let limits = Limits {
            max_bulk_bytes: 4,
            max_array_len: 2,
            max_inline_bytes: 16,
            query_buffer_bytes: 1024,
        };
        let error = |bytes: &[u8]| parse_all(bytes, &limits).unwrap_err().reason;
        assert_eq!(error(b"*3\r\n"), "invalid multibulk length");
        assert_eq!(error(b"*1\r\n$5\r\n"), "invalid bulk length");
        assert_eq!(error(&[b'A'; 17]), "too big inline request");
        assert_eq!(
            error(b"*1\r\n$00000000000000000000001"),
            "too big bulk count string"
        );
        assert_eq!(
            error(b"*0000000000000000000000001"),
            "too big mbulk count string"
        );
        assert!(parse_all(b"*2\r\n$4\r\nabcd\r\n$0\r\n\r\n", &limits).is_ok());
    }

    #[test]
    fn numbers_are_strict() {
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"+1",
            b"01",
            b" 1",
            b"1 ",
            b"9223372036854775808",
            b"-",
            b"1.0",
        ] {
            assert_eq!(parse_i64(bad), None, "{bad:?}");
        }
    }

    /// Encodes `commands` as multibulk frames.
    fn encode_commands(commands: &[Vec<Vec<u8>>]) -> Vec<u8> {
        let mut out = Vec::new();
        for args in commands {
            out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
            for arg in args {
                out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
                out.extend_from_slice(arg);
                out.extend_from_slice(b"\r\n");
            }
        }
        out
    }

    proptest! {
        /// Whatever the arguments and however the stream is cut into reads, the parser returns
        /// the same commands in the same order.
        #[test]
        fn any_split_of_a_stream_yields_the_same_commands(
            commands in prop::collection::vec(
                prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..6), 1..8),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let bytes = encode_commands(&commands);
            let mut cut_points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len())).collect();
            cut_points.sort_unstable();
            cut_points.push(bytes.len());
            let limits = Limits::default();
            let mut buf = BytesMut::new();
            let mut parsed = Vec::new();
            let mut from = 0;
            for to in cut_points {
                buf.extend_from_slice(&bytes[from..to]);
                from = to;
                while let Some(args) = parse_command(&mut buf, &limits).unwrap() {
                    parsed.push(args.iter().map(|a| a.to_vec()).collect::<Vec<_>>());
                }
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(parsed, commands);
        }

        /// Arbitrary bytes never panic the parser, and it never consumes without returning.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let limits = Limits { max_inline_bytes: 64, ..Limits::default() };
            let mut buf = BytesMut::from(&bytes[..]);
            loop {
                let before = buf.len();
                match parse_command(&mut buf, &limits) {
                    Ok(Some(_)) => prop_assert!(buf.len() < before),
                    Ok(None) => { prop_assert_eq!(buf.len(), before); break; }
                    Err(_) => break,
                }
            }
        }
    }
}
