//! Reading arguments, with the error texts Redis gives for each kind of bad one.

use bytes::Bytes;

use crate::resp::Frame;
use crate::resp::request::parse_i64;

pub const NOT_AN_INTEGER: &str = "ERR value is not an integer or out of range";
pub const NOT_A_FLOAT: &str = "ERR value is not a valid float";
pub const SYNTAX: &str = "ERR syntax error";

pub fn syntax_error() -> Frame {
    Frame::error(SYNTAX)
}

/// A signed 64-bit integer argument.
pub fn int(arg: &[u8]) -> Result<i64, Frame> {
    parse_i64(arg).ok_or_else(|| Frame::error(NOT_AN_INTEGER))
}

/// A non-negative integer that fits `usize`, with Redis's "out of range" wording.
pub fn count(arg: &[u8]) -> Result<usize, Frame> {
    match parse_i64(arg) {
        Some(n) if n >= 0 => Ok(n as usize),
        Some(_) => Err(Frame::error("ERR value is out of range, must be positive")),
        None => Err(Frame::error(NOT_AN_INTEGER)),
    }
}

/// A double as Redis reads one: decimal or exponent notation, `inf`/`-inf`; never NaN.
pub fn float(arg: &[u8]) -> Result<f64, Frame> {
    parse_float(arg).ok_or_else(|| Frame::error(NOT_A_FLOAT))
}

pub fn parse_float(arg: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(arg).ok()?;
    if text.is_empty()
        || text.starts_with(char::is_whitespace)
        || text.ends_with(char::is_whitespace)
    {
        return None;
    }
    let value: f64 = match text.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        _ => text.parse().ok()?,
    };
    (!value.is_nan()).then_some(value)
}

/// Case-insensitive comparison with an ASCII keyword (`EX`, `WITHSCORES`).
pub fn is(arg: &[u8], keyword: &str) -> bool {
    arg.eq_ignore_ascii_case(keyword.as_bytes())
}

/// Copies an argument for storage, so that the stored key or value does not keep the whole
/// request buffer it was sliced from alive.
pub fn owned(arg: &Bytes) -> Bytes {
    Bytes::copy_from_slice(arg)
}

/// An argument as text for an error message, lossily.
pub fn text(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).into_owned()
}

/// Resolves Redis's index conventions (negative counts from the end) to a clamped inclusive
/// range over `len` items, or `None` if it is empty.
pub fn index_range(start: i64, stop: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let start = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let stop = if stop < 0 {
        len + stop
    } else {
        stop.min(len - 1)
    };
    (start <= stop && start < len).then_some((start as usize, stop as usize))
}

/// Redis's error for a call with the wrong number of arguments.
pub fn wrong_args(name: &str) -> Frame {
    Frame::error(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

/// Redis's error for an unknown subcommand of a container command (`CLIENT`, `CONFIG`).
pub fn unknown_subcommand(sub: &[u8], command: &str) -> Frame {
    Frame::error(format!(
        "ERR unknown subcommand '{}'. Try {command} HELP.",
        text(sub).replace(['\r', '\n'], " ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_like_redis() {
        assert_eq!(parse_float(b"1.5"), Some(1.5));
        assert_eq!(parse_float(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_float(b"1e3"), Some(1000.0));
        assert_eq!(parse_float(b"nan"), None);
        assert_eq!(parse_float(b" 1"), None);
        assert_eq!(parse_float(b"abc"), None);
    }

    #[test]
    fn index_ranges_clamp_like_lrange() {
        assert_eq!(index_range(0, -1, 5), Some((0, 4)));
        assert_eq!(index_range(-100, 100, 5), Some((0, 4)));
        assert_eq!(index_range(3, 1, 5), None);
        assert_eq!(index_range(5, 10, 5), None);
        assert_eq!(index_range(0, -1, 0), None);
    }
}
