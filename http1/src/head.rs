//! Header sections: parsing requests and responses, and writing them back out.
//!
//! `httparse` tokenizes the start line and the field lines; everything that decides what the
//! bytes *mean* is here: the limits (414, 431), the strictness that closes smuggling vectors
//! (bare LF, NUL or CR inside a value, a missing or repeated Host), and, through
//! [`crate::framing`], where the body ends.
//!
//! ```text
//! request-line  = method SP request-target SP HTTP-version CRLF      (RFC 9112 section 3)
//! status-line   = HTTP-version SP status-code SP [ reason-phrase ] CRLF (section 4)
//! field-line    = field-name ":" OWS field-value OWS CRLF              (section 5)
//! header section ends with an empty line: CRLF
//! ```
//!
//! Invariant: a head is accepted only when its whole header section is in the buffer, and the
//! returned `consumed` count is exactly its length, so the next byte is the first byte of the
//! body (or of the next pipelined request).
//!
//! The connections parse with [`take_request`] and [`take_response`]: the field values of the
//! head they return are slices of the read buffer, not copies (one allocation and one copy
//! fewer per field, and a value cloned later costs a reference count). Such a value keeps its
//! buffer's allocation alive; whoever stores one for long (a cache) copies it first.

use std::mem::MaybeUninit;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};

use crate::error::HeadError;
use crate::framing::{self, BodyKind};
use crate::limits::{Limits, MAX_HEADERS_CEILING};

/// The header section of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Method,
    /// The request-target exactly as received (origin-form `/path?query` in most requests).
    pub target: String,
    pub version: Version,
    pub headers: HeaderMap,
}

/// The header section of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
}

/// A request head together with what it says about the connection.
#[derive(Debug)]
pub struct ParsedRequest {
    pub head: RequestHead,
    /// How the body that follows is delimited.
    pub body: BodyKind,
    /// Whether the client wants the connection kept open after this exchange.
    pub keep_alive: bool,
    /// Bytes of the buffer the header section took.
    pub consumed: usize,
}

/// A response head together with what it says about the connection.
#[derive(Debug)]
pub struct ParsedResponse {
    pub head: ResponseHead,
    pub body: BodyKind,
    pub keep_alive: bool,
    pub consumed: usize,
}

impl RequestHead {
    /// A request head with no fields, for building requests.
    pub fn new(method: Method, target: impl Into<String>) -> Self {
        RequestHead {
            method,
            target: target.into(),
            version: Version::HTTP_11,
            headers: HeaderMap::new(),
        }
    }

    /// The path part of the target (before `?`).
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The query part of the target (after `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// `Expect: 100-continue` (RFC 9110 section 10.1.1): the client waits for a 100 before it
    /// sends the body. Only in an HTTP/1.1 request: a server ignores it in HTTP/1.0.
    pub fn expects_continue(&self) -> bool {
        self.version == Version::HTTP_11 && self.has_continue_field()
    }

    /// Whether the head carries `Expect: 100-continue`, whatever its version (what a request
    /// sent as HTTP/1.1, as the client sends every request, asks of the server).
    pub(crate) fn has_continue_field(&self) -> bool {
        self.headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
    }

    /// Whether running the request twice does no more harm than running it once: an idempotent
    /// method of RFC 9110 section 9.2.2, or a request made idempotent by an `Idempotency-Key`
    /// (the API gateway's idempotency keys; the header of the IETF draft). The rule for when a
    /// client or a proxy may send a request again.
    pub fn is_idempotent(&self) -> bool {
        matches!(
            self.method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::TRACE
                | Method::PUT
                | Method::DELETE
        ) || self.headers.contains_key("idempotency-key")
    }

    /// Whether the client asks to switch protocols (`Connection: upgrade` plus `Upgrade`).
    /// Upgrade is an HTTP/1.1 mechanism: in an HTTP/1.0 request the field is ignored (RFC 9110
    /// section 7.8).
    pub fn wants_upgrade(&self) -> bool {
        self.version == Version::HTTP_11
            && self.headers.contains_key(header::UPGRADE)
            && has_token(&self.headers, "upgrade")
    }
}

impl ResponseHead {
    pub fn new(status: StatusCode) -> Self {
        ResponseHead {
            status,
            version: Version::HTTP_11,
            headers: HeaderMap::new(),
        }
    }
}

/// Parses a request head from the start of `buf`. `Ok(None)` means the section is not complete
/// yet and no limit has been passed: read more and call again.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Option<ParsedRequest>, HeadError> {
    parse_request_in(buf, None, limits)
}

/// [`parse_request`] on a read buffer: a complete head is taken out of `buf`, and its field
/// values share `buf`'s memory. Whatever follows the head stays in `buf`.
pub fn take_request(
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<Option<ParsedRequest>, HeadError> {
    take_head(
        buf,
        |bytes| parse_request_in(bytes, Some(bytes), limits),
        |p| p.consumed,
    )
}

/// [`parse_response`] on a read buffer, as [`take_request`].
pub fn take_response(
    buf: &mut BytesMut,
    limits: &Limits,
    method: &Method,
) -> Result<Option<ParsedResponse>, HeadError> {
    take_head(
        buf,
        |bytes| parse_response_in(bytes, Some(bytes), limits, method),
        |p| p.consumed,
    )
}

/// Bytes after a head that are copied back into the read buffer (see [`take_head`]); past
/// this, the head is parsed again from its own piece of the buffer instead.
const MAX_COPIED_REST: usize = 1024;

/// Runs `parse` on the bytes of `buf`, frozen so that values can be sliced from them, and
/// leaves in `buf` what the parse did not take.
///
/// - No head returned: `buf` is made whole again. Without a copy when, as usual, nothing else
///   refers to its allocation (values of an earlier head still alive would).
/// - A head followed by at most [`MAX_COPIED_REST`] bytes (none, or the start of a small
///   body): those are copied into the space `buf` has left.
/// - A head followed by more (a pipelined batch, a large body read with its head): `buf` is
///   made whole again, the head split off its front and parsed once more, so that the rest
///   stays where it is. Copying it back instead would cost, for a batch of pipelined
///   requests, a copy of the whole remaining batch per request.
fn take_head<P>(
    buf: &mut BytesMut,
    parse: impl Fn(&Bytes) -> Result<Option<P>, HeadError>,
    consumed: impl FnOnce(&P) -> usize,
) -> Result<Option<P>, HeadError> {
    let filled = buf.split().freeze();
    let parsed = parse(&filled);
    let Some(n) = parsed.as_ref().ok().and_then(|p| p.as_ref()).map(consumed) else {
        restore(buf, filled);
        return parsed;
    };
    if filled.len() - n <= MAX_COPIED_REST {
        buf.extend_from_slice(&filled[n..]);
        return parsed;
    }
    drop(parsed); // its values share `filled`
    restore(buf, filled);
    let head = buf.split_to(n).freeze();
    // The same bytes parse the same way, to the same complete head.
    match parse(&head)? {
        Some(parsed) => Ok(Some(parsed)),
        None => Err(HeadError::Malformed("head not complete when parsed again")),
    }
}

/// Makes `buf` (the empty rest of `filled`'s allocation, after `split`) the whole buffer
/// again: once `buf` is dropped, `filled` is usually the allocation's only owner and turns
/// back into the buffer it was, without a copy.
fn restore(buf: &mut BytesMut, filled: Bytes) {
    drop(std::mem::take(buf));
    *buf = filled
        .try_into_mut()
        .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
}

/// [`parse_request`], with values sliced from `shared` (which holds `buf`) when given.
fn parse_request_in(
    buf: &[u8],
    shared: Option<&Bytes>,
    limits: &Limits,
) -> Result<Option<ParsedRequest>, HeadError> {
    // The slots are left uninitialised: httparse writes the ones it fills and hands back only
    // those. Zeroing all 256 of them (8 KiB) cost more than the rest of the parse.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_CEILING];
    let max_headers = limits.max_headers.min(MAX_HEADERS_CEILING);
    let mut req = httparse::Request::new(&mut []);
    let consumed = match req.parse_with_uninit_headers(buf, &mut slots[..max_headers]) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            check_partial(buf, limits)?;
            return Ok(None);
        }
        Err(e) => return Err(map_parse_error(e, max_headers)),
    };
    check_complete(&buf[..consumed], limits)?;

    let version = match req.version {
        Some(0) => Version::HTTP_10,
        Some(1) => Version::HTTP_11,
        _ => return Err(HeadError::UnsupportedVersion),
    };
    let method = Method::from_bytes(req.method.unwrap_or("").as_bytes())
        .map_err(|_| HeadError::Malformed("invalid method"))?;
    let target = req.path.unwrap_or("").to_owned();
    let (headers, seen) = to_header_map(req.headers, shared)?;
    let mut head = RequestHead {
        method,
        target,
        version,
        headers,
    };
    check_host(&mut head, &seen)?;
    // Most requests have no framing or Connection field: the answer without them is known, and
    // looking them up in the map would cost more than the rest of these checks.
    let body = match seen.framing {
        true => framing::request_body(&head, limits)?,
        false => BodyKind::Empty,
    };
    let keep_alive = seen.keep_alive(version, &head.headers);
    Ok(Some(ParsedRequest {
        head,
        body,
        keep_alive,
        consumed,
    }))
}

/// Parses a response head to a request with `method`. Interim (1xx) responses are returned like
/// any other; the caller reads the final response after them.
pub fn parse_response(
    buf: &[u8],
    limits: &Limits,
    method: &Method,
) -> Result<Option<ParsedResponse>, HeadError> {
    parse_response_in(buf, None, limits, method)
}

/// [`parse_response`], with values sliced from `shared` (which holds `buf`) when given.
fn parse_response_in(
    buf: &[u8],
    shared: Option<&Bytes>,
    limits: &Limits,
    method: &Method,
) -> Result<Option<ParsedResponse>, HeadError> {
    // Uninitialised slots, as in `parse_request`.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_CEILING];
    let max_headers = limits.max_headers.min(MAX_HEADERS_CEILING);
    let mut res = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut res,
        buf,
        &mut slots[..max_headers],
    );
    let consumed = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > limits.max_header_bytes {
                return Err(HeadError::HeadersTooLarge {
                    max: limits.max_header_bytes,
                });
            }
            return Ok(None);
        }
        Err(e) => return Err(map_parse_error(e, max_headers)),
    };
    if consumed > limits.max_header_bytes {
        return Err(HeadError::HeadersTooLarge {
            max: limits.max_header_bytes,
        });
    }
    reject_bare_lf(&buf[..consumed])?;
    let version = match res.version {
        Some(0) => Version::HTTP_10,
        Some(1) => Version::HTTP_11,
        _ => return Err(HeadError::UnsupportedVersion),
    };
    let status = StatusCode::from_u16(res.code.unwrap_or(0))
        .map_err(|_| HeadError::Malformed("invalid status code"))?;
    let (headers, seen) = to_header_map(res.headers, shared)?;
    let head = ResponseHead {
        status,
        version,
        headers,
    };
    // As for requests: the lookups a missing field would make are skipped.
    let body = framing::response_body_with(&head, method, seen.transfer_encoding)?;
    let keep_alive = seen.keep_alive(version, &head.headers) && body != BodyKind::CloseDelimited;
    Ok(Some(ParsedResponse {
        head,
        body,
        keep_alive,
        consumed,
    }))
}

/// Limits that can be decided before the section is complete, so an endless request line or
/// header section is refused as soon as it passes the limit instead of being buffered.
fn check_partial(buf: &[u8], limits: &Limits) -> Result<(), HeadError> {
    let line = &buf[leading_empty_lines(buf)..];
    let line_end = line.iter().position(|&b| b == b'\n');
    match line_end {
        None if line.len() > limits.max_request_line_bytes => Err(HeadError::RequestLineTooLong {
            max: limits.max_request_line_bytes,
        }),
        _ if buf.len() > limits.max_header_bytes => Err(HeadError::HeadersTooLarge {
            max: limits.max_header_bytes,
        }),
        _ => Ok(()),
    }
}

fn check_complete(section: &[u8], limits: &Limits) -> Result<(), HeadError> {
    let line_len = section[leading_empty_lines(section)..]
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(section.len());
    if line_len > limits.max_request_line_bytes + 1 {
        return Err(HeadError::RequestLineTooLong {
            max: limits.max_request_line_bytes,
        });
    }
    if section.len() > limits.max_header_bytes {
        return Err(HeadError::HeadersTooLarge {
            max: limits.max_header_bytes,
        });
    }
    reject_bare_lf(section)
}

/// Bytes of empty lines before the request line. httparse skips them, as RFC 9112 section 2.2
/// allows, so the request-line limit must be measured after them, or a leading CRLF would
/// stretch it to the whole header limit.
fn leading_empty_lines(buf: &[u8]) -> usize {
    let mut skip = 0;
    while buf[skip..].starts_with(b"\r\n") {
        skip += 2;
    }
    skip
}

/// httparse accepts a lone LF as a line ending. A front end that does not would read
/// `X: a\nTransfer-Encoding: chunked` as one field and we as two, which is how smuggling starts,
/// so every LF must follow a CR.
fn reject_bare_lf(section: &[u8]) -> Result<(), HeadError> {
    // Eight bytes at a time: a mask of the LF bytes of each word and one of the CR bytes a
    // position earlier; an LF with no CR before it is a bit of the first that the second lacks.
    // This runs over every head, request and response.
    let mut before = 0u64; // the byte before the current word, in its lowest position
    let words = section.chunks_exact(8);
    let tail = words.remainder();
    for word in words {
        let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        let previous = (word << 8) | before;
        if bytes_equal(word, b'\n') & !bytes_equal(previous, b'\r') != 0 {
            return Err(HeadError::BareLf);
        }
        before = word >> 56;
    }
    let mut previous = before as u8;
    for &b in tail {
        if b == b'\n' && previous != b'\r' {
            return Err(HeadError::BareLf);
        }
        previous = b;
    }
    Ok(())
}

/// The high bit of each byte of `word` that equals `byte`, and no other bit: the exact
/// zero-byte test of Hacker's Delight (section 6-1) on `word ^ byte...` (no carry crosses a
/// byte, so no false positives).
fn bytes_equal(word: u64, byte: u8) -> u64 {
    const LOW7: u64 = u64::from_ne_bytes([0x7f; 8]);
    let x = word ^ u64::from_ne_bytes([byte; 8]);
    !(((x & LOW7) + LOW7) | x | LOW7)
}

fn map_parse_error(e: httparse::Error, max_headers: usize) -> HeadError {
    match e {
        httparse::Error::TooManyHeaders => HeadError::TooManyHeaders { max: max_headers },
        httparse::Error::Version => HeadError::UnsupportedVersion,
        httparse::Error::HeaderName => HeadError::Malformed("invalid header name"),
        httparse::Error::HeaderValue => HeadError::Malformed("invalid header value"),
        httparse::Error::NewLine => HeadError::Malformed("invalid line ending"),
        httparse::Error::Status => HeadError::Malformed("invalid status code"),
        httparse::Error::Token => HeadError::Malformed("invalid token"),
    }
}

/// Fields that decide how a request is read, noted while its map is built.
#[derive(Debug, Default)]
struct Seen {
    /// Host field lines.
    hosts: usize,
    /// Some Host value is not a valid authority (checked where the bytes are at hand, rather
    /// than by a lookup in the map afterwards).
    invalid_host: bool,
    /// Any Content-Length or Transfer-Encoding.
    framing: bool,
    /// Any Transfer-Encoding.
    transfer_encoding: bool,
    /// Any Connection.
    connection: bool,
}

impl Seen {
    /// [`keep_alive`], without looking Connection up in a head that has none.
    fn keep_alive(&self, version: Version, headers: &HeaderMap) -> bool {
        match self.connection {
            true => keep_alive(version, headers),
            false => version == Version::HTTP_11,
        }
    }
}

/// Room for fields added after parsing (a proxy's `Via`, `X-Forwarded-*` and `X-Request-Id`,
/// a gateway's `RateLimit` fields) without the map rehashing on the way through.
const ADDED_FIELDS: usize = 8;

fn to_header_map(
    fields: &[httparse::Header<'_>],
    shared: Option<&Bytes>,
) -> Result<(HeaderMap, Seen), HeadError> {
    let mut map = HeaderMap::with_capacity(fields.len() + ADDED_FIELDS);
    let mut seen = Seen::default();
    for field in fields {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| HeadError::Malformed("invalid header name"))?;
        if name == header::HOST {
            seen.hosts += 1;
            seen.invalid_host |= !is_valid_authority(field.value);
        }
        let transfer_encoding = name == header::TRANSFER_ENCODING;
        seen.transfer_encoding |= transfer_encoding;
        seen.framing |= transfer_encoding || name == header::CONTENT_LENGTH;
        seen.connection |= name == header::CONNECTION;
        // HeaderValue refuses NUL, CR, LF and other controls, which httparse lets through in
        // some positions; a value that cannot be represented is refused, never altered.
        let value = match shared {
            Some(bytes) => HeaderValue::from_maybe_shared(bytes.slice_ref(field.value)),
            None => HeaderValue::from_bytes(field.value),
        }
        .map_err(|_| HeadError::Malformed("invalid header value"))?;
        map.append(name, value);
    }
    Ok((map, seen))
}

/// RFC 9112 section 3.2: a server MUST answer 400 to an HTTP/1.1 request without Host, with
/// more than one, or with an invalid one. For an absolute-form target (`GET http://a/ ...`) the
/// target's authority wins over Host (section 3.2.2), so Host is replaced by it: whoever routes
/// on Host after us sees the same authority as a server that follows the target.
fn check_host(head: &mut RequestHead, seen: &Seen) -> Result<(), HeadError> {
    let count_ok = match head.version {
        Version::HTTP_11 => seen.hosts == 1,
        _ => seen.hosts <= 1,
    };
    if !count_ok || seen.invalid_host {
        return Err(HeadError::BadHost);
    }
    if head.target.starts_with('/') {
        // Origin-form, by far the most common: no authority in the target.
        return Ok(());
    }
    if let Some(authority) = absolute_form_authority(&head.target) {
        if !is_valid_authority(authority.as_bytes()) {
            return Err(HeadError::BadHost);
        }
        let value = HeaderValue::from_str(authority).map_err(|_| HeadError::BadHost)?;
        head.headers.insert(header::HOST, value);
    }
    Ok(())
}

/// The authority of an absolute-form target (`http://host:port/path`), if the target is one.
fn absolute_form_authority(target: &str) -> Option<&str> {
    let (scheme, rest) = target.split_once("://")?;
    let scheme_ok = !scheme.is_empty()
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    if !scheme_ok {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(&rest[..end])
}

/// The bytes of a reg-name or IPv4 address (RFC 3986 section 3.2.2): unreserved, `%` of a
/// percent-encoding, and sub-delimiters. A table, because every request's Host goes through it.
const REG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(c, b'-' | b'.' | b'_' | b'~' | b'%')
            || matches!(
                c,
                b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
            );
        b += 1;
    }
    table
};

/// `uri-host [ ":" port ]` (RFC 9110 section 7.2): a reg-name or IPv4 address of unreserved,
/// percent-encoded and sub-delimiter characters, or an IP literal in brackets, then digits
/// after a colon. Userinfo (`@`), paths and spaces are refused. An empty value is allowed: a
/// client sends one when the target has no authority.
fn is_valid_authority(value: &[u8]) -> bool {
    let (host, port) = match value.strip_prefix(b"[") {
        Some(literal) => match literal.iter().position(|&b| b == b']') {
            Some(end) => {
                let inside = &literal[..end];
                let ok = !inside.is_empty()
                    && inside
                        .iter()
                        .all(|&b| b.is_ascii_hexdigit() || b":.vV".contains(&b));
                if !ok {
                    return false;
                }
                (&b""[..], &literal[end + 1..])
            }
            None => return false,
        },
        None => match value.iter().position(|&b| b == b':') {
            Some(colon) => (&value[..colon], &value[colon..]),
            None => (value, &b""[..]),
        },
    };
    let host_ok = host.iter().all(|&b| REG_NAME[usize::from(b)]);
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => digits.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    host_ok && port_ok
}

/// Checks a request target a client is about to send: it is written to the wire as it is, so
/// a space, CR or LF in it would end the request line early and let the rest be read as
/// another request. Origin-form (`/path?q`) and absolute-form (`http://host/path`) for every
/// method, authority-form (`host:port`) only for CONNECT, `*` only for OPTIONS (RFC 9112
/// section 3.2).
pub fn check_target(method: &Method, target: &str) -> Result<(), &'static str> {
    if target.is_empty() {
        return Err("empty request target");
    }
    if !target.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err("request target contains a space, a control character or a non-ASCII byte");
    }
    let form_ok = if *method == Method::CONNECT {
        !target.starts_with('/') && target.contains(':')
    } else if target == "*" {
        *method == Method::OPTIONS
    } else {
        target.starts_with('/') || absolute_form_authority(target).is_some()
    };
    if form_ok {
        Ok(())
    } else {
        Err("request target has the wrong form for its method")
    }
}

/// Persistence rules of RFC 9112 section 9.3.
pub fn keep_alive(version: Version, headers: &HeaderMap) -> bool {
    if has_token(headers, "close") {
        return false;
    }
    version == Version::HTTP_11 || has_token(headers, "keep-alive")
}

/// Whether the Connection header lists `token` (case-insensitive, comma-separated lists over
/// any number of field lines).
pub fn has_token(headers: &HeaderMap, token: &str) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// How the writer frames an outgoing body; decides the framing header it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutgoingFraming {
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// No framing header of ours: the caller's own headers go out as they are (a response to
    /// HEAD or a 304 keeps the Content-Length of the representation), except that 1xx and 204
    /// responses never carry Content-Length or Transfer-Encoding (RFC 9110 section 8.6).
    None,
    /// The body runs until the connection closes (an HTTP/1.0 peer and a body of unknown
    /// length). No framing header.
    Close,
}

/// Appends a request head, always as `HTTP/1.1`, the highest version we speak (RFC 9110
/// section 2.5), whatever `head.version` says. The framing header is ours, never the caller's:
/// a Content-Length or Transfer-Encoding in `head.headers` is replaced by the one that matches
/// the bytes we send (or by none). A head without `Host` gets `host`, when given (RFC 9112
/// section 3.2: every HTTP/1.1 request carries exactly one).
pub fn encode_request(
    head: &RequestHead,
    framing: OutgoingFraming,
    host: Option<std::net::SocketAddr>,
    dst: &mut BytesMut,
) {
    dst.reserve(head.target.len() + 16 + 32 * head.headers.len());
    dst.extend_from_slice(head.method.as_str().as_bytes());
    dst.put_u8(b' ');
    dst.extend_from_slice(head.target.as_bytes());
    dst.extend_from_slice(b" HTTP/1.1\r\n");
    if let Some(host) = host
        && !head.headers.contains_key(header::HOST)
    {
        use std::fmt::Write;
        // Writing to a BytesMut cannot fail.
        let _ = write!(dst, "host: {host}\r\n");
    }
    encode_fields(&head.headers, framing, true, false, &[], dst);
}

/// Appends a response head (always `HTTP/1.1`, the highest version we speak; RFC 9110 section
/// 2.5), with the framing header chosen as for [`encode_request`].
pub fn encode_response(head: &ResponseHead, framing: OutgoingFraming, dst: &mut BytesMut) {
    encode_response_with(head, framing, &[], dst);
}

/// [`encode_response`], with `added` field lines (each a whole line, CRLF included) after the
/// head's own fields: the server adds Date and Connection this way, without putting them in
/// the handler's map.
pub(crate) fn encode_response_with(
    head: &ResponseHead,
    framing: OutgoingFraming,
    added: &[&[u8]],
    dst: &mut BytesMut,
) {
    dst.reserve(32 + 32 * head.headers.len() + added.iter().map(|line| line.len()).sum::<usize>());
    dst.extend_from_slice(b"HTTP/1.1 ");
    dst.extend_from_slice(head.status.as_str().as_bytes());
    dst.put_u8(b' ');
    dst.extend_from_slice(
        head.status
            .canonical_reason()
            .unwrap_or("Unknown")
            .as_bytes(),
    );
    dst.extend_from_slice(b"\r\n");
    let no_framing_allowed =
        head.status.is_informational() || head.status == StatusCode::NO_CONTENT;
    // A response to HEAD or a 304 (framing `None`) keeps the caller's Content-Length.
    let skip_framing_fields = !matches!(framing, OutgoingFraming::None) || no_framing_allowed;
    encode_fields(
        &head.headers,
        framing,
        skip_framing_fields,
        no_framing_allowed,
        added,
        dst,
    );
}

/// Writes with `BytesMut::extend_from_slice` rather than `BufMut::put_slice`, here and in the
/// other encoders: the inherent method is inlined across crates, so the short constant pieces
/// (`": "`, CRLF) become plain stores instead of a call and a `memcpy` each.
fn encode_fields(
    headers: &HeaderMap,
    framing: OutgoingFraming,
    skip_framing_fields: bool,
    no_framing_allowed: bool,
    added: &[&[u8]],
    dst: &mut BytesMut,
) {
    for (name, value) in headers {
        let is_framing = name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING;
        if is_framing && skip_framing_fields {
            continue;
        }
        dst.extend_from_slice(name.as_str().as_bytes());
        dst.extend_from_slice(b": ");
        dst.extend_from_slice(value.as_bytes());
        dst.extend_from_slice(b"\r\n");
    }
    for line in added {
        dst.extend_from_slice(line);
    }
    match framing {
        OutgoingFraming::Length(n) if !no_framing_allowed => {
            dst.extend_from_slice(b"content-length: ");
            let digits = itoa_buf(n);
            dst.extend_from_slice(digits.as_bytes());
            dst.extend_from_slice(b"\r\n");
        }
        OutgoingFraming::Chunked if !no_framing_allowed => {
            dst.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        _ => {}
    }
    dst.extend_from_slice(b"\r\n");
}

/// Decimal digits of `n` without allocating.
struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

fn itoa_buf(mut n: u64) -> Digits {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    Digits { buf, start: i }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Option<ParsedRequest>, HeadError> {
        parse_request(raw.as_bytes(), &Limits::default())
    }

    #[test]
    fn parses_a_simple_get() {
        let p = parse("GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\nrest")
            .unwrap()
            .unwrap();
        assert_eq!(p.head.method, Method::GET);
        assert_eq!(p.head.path(), "/a");
        assert_eq!(p.head.query(), Some("b=1"));
        assert_eq!(p.body, BodyKind::Empty);
        assert!(p.keep_alive);
        assert_eq!(p.consumed, "GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n".len());
    }

    #[test]
    fn partial_head_asks_for_more() {
        assert!(parse("GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
    }

    #[test]
    fn long_request_line_is_414_before_it_completes() {
        let limits = Limits {
            max_request_line_bytes: 64,
            ..Limits::default()
        };
        let raw = format!("GET /{} HTTP/1.1", "a".repeat(100));
        let err = parse_request(raw.as_bytes(), &limits).unwrap_err();
        assert_eq!(err.status(), StatusCode::URI_TOO_LONG);
    }

    #[test]
    fn too_many_headers_is_431() {
        let limits = Limits {
            max_headers: 3,
            ..Limits::default()
        };
        let raw = "GET / HTTP/1.1\r\nHost: x\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n";
        let err = parse_request(raw.as_bytes(), &limits).unwrap_err();
        assert_eq!(err.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }

    #[test]
    fn bare_lf_is_refused() {
        let err = parse("GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n").unwrap_err();
        assert_eq!(err, HeadError::BareLf);
    }

    #[test]
    fn bare_lf_anywhere_is_found() {
        let naive = |s: &[u8]| (0..s.len()).any(|i| s[i] == b'\n' && (i == 0 || s[i - 1] != b'\r'));
        // Every string of up to 10 bytes over CR, LF and a letter: past one 8-byte word, so
        // an LF is met inside a word, after one, and right behind a CR in the word before.
        for len in 0..=10u32 {
            for code in 0..3usize.pow(len) {
                let bytes: Vec<u8> = (0..len)
                    .map(|i| [b'\r', b'\n', b'a'][code / 3usize.pow(i) % 3])
                    .collect();
                assert_eq!(reject_bare_lf(&bytes).is_err(), naive(&bytes), "{bytes:?}");
            }
        }
    }

    #[test]
    fn bare_lf_scan_agrees_with_a_byte_loop_on_any_bytes() {
        let naive = |s: &[u8]| (0..s.len()).any(|i| s[i] == b'\n' && (i == 0 || s[i - 1] != b'\r'));
        // Bytes one bit away from CR and LF, zero and 0xff, which a word-wide test could
        // confuse with them, in strings of up to 40 bytes (a fixed xorshift sequence).
        let alphabet = [b'\r', b'\n', 0x8d, 0x8a, 0x0b, 0x0c, 0x0e, 0x00, 0xff, b'a'];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 41) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|i| alphabet[(state >> (i % 60)) as usize % alphabet.len()])
                .collect();
            assert_eq!(reject_bare_lf(&bytes).is_err(), naive(&bytes), "{bytes:?}");
        }
    }

    #[test]
    fn host_is_required_once_in_http11() {
        assert_eq!(
            parse("GET / HTTP/1.1\r\n\r\n").unwrap_err(),
            HeadError::BadHost
        );
        assert_eq!(
            parse("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").unwrap_err(),
            HeadError::BadHost
        );
        assert!(parse("GET / HTTP/1.0\r\n\r\n").unwrap().is_some());
    }

    #[test]
    fn a_leading_empty_line_does_not_stretch_the_request_line_limit() {
        let limits = Limits {
            max_request_line_bytes: 64,
            ..Limits::default()
        };
        let raw = format!("\r\nGET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(100));
        let err = parse_request(raw.as_bytes(), &limits).unwrap_err();
        assert_eq!(err.status(), StatusCode::URI_TOO_LONG);
        let partial = format!("\r\nGET /{}", "a".repeat(100));
        let err = parse_request(partial.as_bytes(), &limits).unwrap_err();
        assert_eq!(err.status(), StatusCode::URI_TOO_LONG);
        assert!(
            parse("\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn host_must_be_an_authority() {
        for host in ["a b", "evil.com/path?x", "a@b", "a:b", "[::1", "[zz]:80"] {
            let raw = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
            assert_eq!(parse(&raw).unwrap_err(), HeadError::BadHost, "{host}");
        }
        for host in [
            "example.com",
            "example.com:8080",
            "127.0.0.1:1",
            "[::1]:80",
            "",
        ] {
            let raw = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
            assert!(parse(&raw).is_ok(), "{host}");
        }
    }

    #[test]
    fn absolute_form_authority_replaces_host() {
        let p = parse("GET http://internal:81/x HTTP/1.1\r\nHost: public\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(p.head.headers[header::HOST], "internal:81");
        assert_eq!(p.head.headers.get_all(header::HOST).iter().count(), 1);
    }

    #[test]
    fn client_targets_are_checked() {
        assert!(check_target(&Method::GET, "/a?b=c%20d").is_ok());
        assert!(check_target(&Method::GET, "http://h/p").is_ok());
        assert!(check_target(&Method::CONNECT, "h:443").is_ok());
        assert!(check_target(&Method::OPTIONS, "*").is_ok());
        for (method, target) in [
            (Method::GET, ""),
            (Method::GET, "/x HTTP/1.1\r\nHost: a\r\n\r\nDELETE /admin"),
            (Method::GET, "/a b"),
            (Method::GET, "*"),
            (Method::GET, "h:443"),
            (Method::CONNECT, "/"),
            (Method::GET, "/caf\u{e9}"),
        ] {
            assert!(
                check_target(&method, target).is_err(),
                "{method} {target:?}"
            );
        }
    }

    #[test]
    fn http10_closes_unless_keep_alive_is_asked() {
        let p = parse("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!p.keep_alive);
        let p = parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(p.keep_alive);
        let p = parse("GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!p.keep_alive);
    }

    #[test]
    fn response_framing_header_is_ours() {
        let mut head = ResponseHead::new(StatusCode::OK);
        head.headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
        head.headers.insert("x-a", HeaderValue::from_static("b"));
        let mut dst = BytesMut::new();
        encode_response(&head, OutgoingFraming::Length(5), &mut dst);
        assert_eq!(
            &dst[..],
            b"HTTP/1.1 200 OK\r\nx-a: b\r\ncontent-length: 5\r\n\r\n"
        );
    }

    #[test]
    fn no_content_never_carries_framing() {
        let head = ResponseHead::new(StatusCode::NO_CONTENT);
        let mut dst = BytesMut::new();
        encode_response(&head, OutgoingFraming::Length(0), &mut dst);
        assert_eq!(&dst[..], b"HTTP/1.1 204 No Content\r\n\r\n");
    }

    #[test]
    fn request_round_trips_through_encode_and_parse() {
        let mut head = RequestHead::new(Method::POST, "/x");
        head.headers
            .insert(header::HOST, HeaderValue::from_static("h"));
        let mut dst = BytesMut::new();
        encode_request(&head, OutgoingFraming::Chunked, None, &mut dst);
        let p = parse_request(&dst, &Limits::default()).unwrap().unwrap();
        assert_eq!(p.body, BodyKind::Chunked);
        assert_eq!(p.head.method, Method::POST);
        assert_eq!(p.consumed, dst.len());
    }

    #[test]
    fn a_taken_head_shares_the_buffer_and_leaves_what_follows_it() {
        let mut buf = BytesMut::with_capacity(4096);
        let start = buf.as_ptr() as usize;
        buf.extend_from_slice(b"POST /x HTTP/1.1\r\nHost: h\r\nX-Long: a value\r\n");
        buf.extend_from_slice(b"Content-Length: 5\r\n\r\nhello");
        let parsed = take_request(&mut buf, &Limits::default()).unwrap().unwrap();
        assert_eq!(&buf[..], b"hello", "the body stays in the buffer");
        let value = &parsed.head.headers["x-long"];
        assert_eq!(value, "a value");
        let at = value.as_bytes().as_ptr() as usize;
        assert!(
            (start..start + 4096).contains(&at),
            "the value is not a copy"
        );

        // Once the head is gone, the buffer can take its whole allocation back.
        drop(parsed);
        buf.clear();
        buf.reserve(4096);
        assert_eq!(buf.as_ptr() as usize, start);
    }

    #[test]
    fn pipelined_heads_and_a_large_body_stay_in_the_buffer_in_order() {
        let limits = Limits::default();
        let mut buf = BytesMut::new();
        for i in 0..100 {
            buf.extend_from_slice(format!("GET /{i} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
        }
        assert!(
            buf.len() > 2 * MAX_COPIED_REST,
            "both ways of leaving the rest are taken"
        );
        for i in 0..100 {
            let parsed = take_request(&mut buf, &limits).unwrap().unwrap();
            assert_eq!(parsed.head.target, format!("/{i}"));
            assert_eq!(parsed.head.headers["host"], "h");
        }
        assert!(buf.is_empty());

        let body = vec![b'x'; 4 * MAX_COPIED_REST];
        buf.extend_from_slice(b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 4096\r\n\r\n");
        buf.extend_from_slice(&body);
        let parsed = take_request(&mut buf, &limits).unwrap().unwrap();
        assert_eq!(parsed.body, BodyKind::Length(4096));
        assert_eq!(&buf[..], &body[..]);
    }

    #[test]
    fn a_refused_head_leaves_the_buffer_as_it_was() {
        let raw = b"GET / HTTP/1.1\r\nHost: h\r\nBad\0Name: v\r\n\r\nnext";
        let mut buf = BytesMut::from(&raw[..]);
        assert!(take_request(&mut buf, &Limits::default()).is_err());
        assert_eq!(&buf[..], &raw[..]);
    }

    #[test]
    fn an_incomplete_head_leaves_the_buffer_as_it_was() {
        let mut buf = BytesMut::with_capacity(4096);
        buf.extend_from_slice(b"GET / HTTP/1.1\r\nHost: h\r\n");
        let (ptr, cap) = (buf.as_ptr(), buf.capacity());
        assert!(
            take_request(&mut buf, &Limits::default())
                .unwrap()
                .is_none()
        );
        assert_eq!(&buf[..], b"GET / HTTP/1.1\r\nHost: h\r\n");
        assert_eq!((buf.as_ptr(), buf.capacity()), (ptr, cap));

        buf.extend_from_slice(b"\r\n");
        let response = b"HTTP/1.1 204 No Content\r\nVia: 1.1 a\r\n\r\n";
        let mut upstream = BytesMut::from(&response[..]);
        let parsed = take_response(&mut upstream, &Limits::default(), &Method::GET)
            .unwrap()
            .unwrap();
        assert_eq!(parsed.head.headers["via"], "1.1 a");
        assert!(upstream.is_empty());
        assert!(
            take_request(&mut buf, &Limits::default())
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn a_request_without_host_gets_the_one_given_and_one_with_host_keeps_its_own() {
        let addr = "127.0.0.1:9001".parse().ok();
        let mut head = RequestHead::new(Method::GET, "/");
        let mut dst = BytesMut::new();
        encode_request(&head, OutgoingFraming::None, addr, &mut dst);
        assert_eq!(&dst[..], b"GET / HTTP/1.1\r\nhost: 127.0.0.1:9001\r\n\r\n");

        head.headers
            .insert(header::HOST, HeaderValue::from_static("shop.test"));
        dst.clear();
        encode_request(&head, OutgoingFraming::None, addr, &mut dst);
        assert_eq!(&dst[..], b"GET / HTTP/1.1\r\nhost: shop.test\r\n\r\n");
    }

    #[test]
    fn response_to_head_has_no_body_whatever_it_says() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
        let p = parse_response(raw, &Limits::default(), &Method::HEAD)
            .unwrap()
            .unwrap();
        assert_eq!(p.body, BodyKind::Empty);
        let p = parse_response(raw, &Limits::default(), &Method::GET)
            .unwrap()
            .unwrap();
        assert_eq!(p.body, BodyKind::Length(10));
    }

    #[test]
    fn digits() {
        for n in [0u64, 7, 10, 12345, u64::MAX] {
            assert_eq!(itoa_buf(n).as_bytes(), n.to_string().as_bytes());
        }
    }
}
