//! Writing replies in RESP2 or RESP3.

use bytes::{BufMut, BytesMut};

use super::{Frame, Protocol};

/// Appends `frame` to `out` as `protocol` writes it. RESP3-only shapes are flattened for RESP2
/// exactly as Redis does: a map becomes an array of alternating keys and values, a set an array,
/// a double a bulk string, a boolean the integer 1 or 0, a verbatim string a bulk string.
pub fn encode(frame: &Frame, protocol: Protocol, out: &mut BytesMut) {
    let resp3 = protocol == Protocol::Resp3;
    match frame {
        Frame::Simple(text) => line(out, b'+', text.as_bytes()),
        Frame::SimpleOwned(text) => line(out, b'+', text.as_bytes()),
        Frame::Error(text) => line(out, b'-', text.as_bytes()),
        Frame::Integer(n) => integer(out, b':', *n),
        Frame::Bulk(data) => bulk(out, data),
        Frame::Null if resp3 => out.put_slice(b"_\r\n"),
        Frame::Null => out.put_slice(b"$-1\r\n"),
        Frame::NullArray if resp3 => out.put_slice(b"_\r\n"),
        Frame::NullArray => out.put_slice(b"*-1\r\n"),
        Frame::Array(items) => {
            integer(out, b'*', items.len() as i64);
            items.iter().for_each(|item| encode(item, protocol, out));
        }
        Frame::Set(items) => {
            integer(out, if resp3 { b'~' } else { b'*' }, items.len() as i64);
            items.iter().for_each(|item| encode(item, protocol, out));
        }
        Frame::Map(pairs) => {
            if resp3 {
                integer(out, b'%', pairs.len() as i64);
            } else {
                integer(out, b'*', 2 * pairs.len() as i64);
            }
            for (key, value) in pairs {
                encode(key, protocol, out);
                encode(value, protocol, out);
            }
        }
        Frame::Double(value) if resp3 => line(out, b',', format_double(*value).as_bytes()),
        Frame::Double(value) => bulk(out, format_double(*value).as_bytes()),
        Frame::Boolean(value) if resp3 => out.put_slice(if *value { b"#t\r\n" } else { b"#f\r\n" }),
        Frame::Boolean(value) => integer(out, b':', i64::from(*value)),
        Frame::Verbatim(text) if resp3 => {
            integer(out, b'=', text.len() as i64 + 4);
            out.put_slice(b"txt:");
            out.put_slice(text.as_bytes());
            out.put_slice(b"\r\n");
        }
        Frame::Verbatim(text) => bulk(out, text.as_bytes()),
    }
}

fn line(out: &mut BytesMut, kind: u8, text: &[u8]) {
    out.reserve(text.len() + 3);
    out.put_u8(kind);
    out.put_slice(text);
    out.put_slice(b"\r\n");
}

fn integer(out: &mut BytesMut, kind: u8, n: i64) {
    let mut digits = itoa_buffer();
    line(out, kind, format_i64(n, &mut digits));
}

fn bulk(out: &mut BytesMut, data: &[u8]) {
    integer(out, b'$', data.len() as i64);
    out.reserve(data.len() + 2);
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

fn itoa_buffer() -> [u8; 20] {
    [0; 20]
}

/// Formats `n` in decimal into `buf` without allocating; replies are full of lengths.
pub fn format_i64(n: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut magnitude = n.unsigned_abs();
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    if n < 0 {
        at -= 1;
        buf[at] = b'-';
    }
    &buf[at..]
}

/// Formats a double as Redis replies it: the shortest text that reads back to the same value,
/// `inf`/`-inf` for infinities, and integers without a fraction (`3`, not `3.0`).
pub fn format_double(value: f64) -> String {
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    if value.is_nan() {
        return "nan".to_string();
    }
    if value == value.trunc() && value.abs() < 1e17 {
        return format!("{}", value as i64);
    }
    format!("{value}")
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn encoded(frame: &Frame, protocol: Protocol) -> String {
        let mut out = BytesMut::new();
        encode(frame, protocol, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn scalar_replies_in_both_versions() {
        for protocol in [Protocol::Resp2, Protocol::Resp3] {
            assert_eq!(encoded(&Frame::OK, protocol), "+OK\r\n");
            assert_eq!(encoded(&Frame::error("ERR bad"), protocol), "-ERR bad\r\n");
            assert_eq!(encoded(&Frame::Integer(-42), protocol), ":-42\r\n");
            assert_eq!(
                encoded(&Frame::Integer(i64::MIN), protocol),
                ":-9223372036854775808\r\n"
            );
            assert_eq!(encoded(&Frame::bulk("hi"), protocol), "$2\r\nhi\r\n");
        }
    }

    #[test]
    fn resp3_shapes_are_flattened_for_resp2() {
        let map = Frame::Map(vec![(Frame::bulk("a"), Frame::Integer(1))]);
        assert_eq!(encoded(&map, Protocol::Resp3), "%1\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(encoded(&map, Protocol::Resp2), "*2\r\n$1\r\na\r\n:1\r\n");
        let set = Frame::Set(vec![Frame::Bulk(Bytes::from_static(b"x"))]);
        assert_eq!(encoded(&set, Protocol::Resp3), "~1\r\n$1\r\nx\r\n");
        assert_eq!(encoded(&set, Protocol::Resp2), "*1\r\n$1\r\nx\r\n");
        assert_eq!(encoded(&Frame::Double(1.5), Protocol::Resp3), ",1.5\r\n");
        assert_eq!(
            encoded(&Frame::Double(1.5), Protocol::Resp2),
            "$3\r\n1.5\r\n"
        );
        assert_eq!(encoded(&Frame::Boolean(true), Protocol::Resp3), "#t\r\n");
        assert_eq!(encoded(&Frame::Boolean(false), Protocol::Resp2), ":0\r\n");
        assert_eq!(encoded(&Frame::Null, Protocol::Resp3), "_\r\n");
        assert_eq!(encoded(&Frame::Null, Protocol::Resp2), "$-1\r\n");
        assert_eq!(encoded(&Frame::NullArray, Protocol::Resp2), "*-1\r\n");
        assert_eq!(
            encoded(&Frame::Verbatim("x".into()), Protocol::Resp3),
            "=5\r\ntxt:x\r\n"
        );
    }

    #[test]
    fn doubles_read_like_redis() {
        assert_eq!(format_double(3.0), "3");
        assert_eq!(format_double(-0.5), "-0.5");
        assert_eq!(format_double(f64::INFINITY), "inf");
        assert_eq!(format_double(10.1), "10.1");
    }
}
