//! Where a message body ends: RFC 9112 section 6.
//!
//! HTTP/1.1 has four ways to delimit a body, and disagreement between two parsers about which
//! one applies is what request smuggling exploits. The rules, in order (section 6.3):
//!
//! ```text
//! response to HEAD, 1xx, 204, 304      -> no body, whatever the headers say
//! Transfer-Encoding, last coding chunked -> chunked
//! Transfer-Encoding, other last coding   -> request: 400; response: read until close
//! Content-Length (one value)             -> exactly that many bytes
//! neither                                -> request: no body; response: read until close
//! ```
//!
//! This module is stricter than the RFC's minimum wherever a lenient reading could differ from
//! another implementation's: Transfer-Encoding together with Content-Length, differing
//! Content-Length values, `chunked` applied twice or not last, anything in a Transfer-Encoding
//! that is not a plain token, and Transfer-Encoding in an HTTP/1.0 message are all refused, and
//! the connection is closed after the error response.

use http::header::{self, HeaderMap};
use http::{Method, StatusCode, Version};

use crate::error::HeadError;
use crate::head::{RequestHead, ResponseHead};
use crate::limits::Limits;

/// How the body of a received message is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body at all.
    Empty,
    /// Exactly this many bytes (Content-Length).
    Length(u64),
    /// A sequence of chunks ending with a zero-size chunk and optional trailers.
    Chunked,
    /// Everything until the peer closes the connection (responses only).
    CloseDelimited,
}

/// What the Transfer-Encoding fields of a message amount to.
enum TransferCoding {
    Absent,
    /// Valid, and chunked is the final coding, applied once.
    Chunked,
    /// Valid tokens, but the final coding is not chunked.
    NotChunkedLast,
}

/// The body framing of a request (RFC 9112 section 6.3, rules 3 to 6, strictly).
pub fn request_body(head: &RequestHead, limits: &Limits) -> Result<BodyKind, HeadError> {
    let coding = transfer_coding(&head.headers)?;
    let length = content_length(&head.headers)?;
    match (coding, length) {
        (TransferCoding::Absent, None) => Ok(BodyKind::Empty),
        (TransferCoding::Absent, Some(len)) if len > limits.max_body_bytes => {
            Err(HeadError::BodyTooLarge {
                len,
                max: limits.max_body_bytes,
            })
        }
        (TransferCoding::Absent, Some(0)) => Ok(BodyKind::Empty),
        (TransferCoding::Absent, Some(len)) => Ok(BodyKind::Length(len)),
        (_, Some(_)) => Err(HeadError::TransferEncodingWithContentLength),
        (_, None) if head.version == Version::HTTP_10 => Err(HeadError::TransferEncodingInHttp10),
        (TransferCoding::Chunked, None) => Ok(BodyKind::Chunked),
        (TransferCoding::NotChunkedLast, None) => Err(HeadError::ChunkedNotLast),
    }
}

/// The body framing of a response to a request with `method` (RFC 9112 section 6.3, rules 1
/// to 7). A response that a lenient client would accept but that could desynchronise a proxy
/// (both Transfer-Encoding and Content-Length, differing lengths) is an error here; a proxy
/// answers it with 502.
pub fn response_body(head: &ResponseHead, method: &Method) -> Result<BodyKind, HeadError> {
    let transfer_encoding = head.headers.contains_key(header::TRANSFER_ENCODING);
    response_body_with(head, method, transfer_encoding)
}

/// [`response_body`] for a parser that already knows whether the head has a Transfer-Encoding
/// field (`transfer_encoding`), so that a head without one costs no lookup for it.
pub(crate) fn response_body_with(
    head: &ResponseHead,
    method: &Method,
    transfer_encoding: bool,
) -> Result<BodyKind, HeadError> {
    let status = head.status;
    if *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(BodyKind::Empty);
    }
    if *method == Method::CONNECT && status.is_success() {
        // The connection becomes a tunnel; there is no HTTP body.
        return Ok(BodyKind::Empty);
    }
    let coding = match transfer_encoding {
        true => transfer_coding(&head.headers)?,
        false => TransferCoding::Absent,
    };
    let length = content_length(&head.headers)?;
    match (coding, length) {
        (TransferCoding::Absent, Some(0)) => Ok(BodyKind::Empty),
        (TransferCoding::Absent, Some(len)) => Ok(BodyKind::Length(len)),
        (TransferCoding::Absent, None) => Ok(BodyKind::CloseDelimited),
        (_, Some(_)) => Err(HeadError::TransferEncodingWithContentLength),
        (_, None) if head.version == Version::HTTP_10 => Err(HeadError::TransferEncodingInHttp10),
        (TransferCoding::Chunked, None) => Ok(BodyKind::Chunked),
        (TransferCoding::NotChunkedLast, None) => Ok(BodyKind::CloseDelimited),
    }
}

/// Reads every Transfer-Encoding field line as one comma-separated list of codings.
///
/// Only `chunked` is understood. Another known-looking token before it is a coding we cannot
/// undo (501 for a request, RFC 9112 section 6.1); anything that is not a plain token
/// (`"chunked"`, `chunked;x=1`, a vertical tab) is an obfuscation attempt and is refused.
fn transfer_coding(headers: &HeaderMap) -> Result<TransferCoding, HeadError> {
    let mut codings = 0usize;
    let mut chunked_count = 0usize;
    let mut last_is_chunked = false;
    for value in headers.get_all(header::TRANSFER_ENCODING) {
        let text = value
            .to_str()
            .map_err(|_| HeadError::InvalidTransferEncoding)?;
        for element in text.split(',') {
            let token = element.trim_matches([' ', '\t']);
            if token.is_empty() {
                // RFC 9110 section 5.6.1: empty list elements are ignored.
                continue;
            }
            if !token.bytes().all(is_tchar) {
                return Err(HeadError::InvalidTransferEncoding);
            }
            codings += 1;
            last_is_chunked = token.eq_ignore_ascii_case("chunked");
            if last_is_chunked {
                chunked_count += 1;
            }
        }
    }
    if headers.contains_key(header::TRANSFER_ENCODING) && codings == 0 {
        return Err(HeadError::InvalidTransferEncoding);
    }
    if codings == 0 {
        return Ok(TransferCoding::Absent);
    }
    if chunked_count > 1 || (chunked_count == 1 && !last_is_chunked) {
        return Err(HeadError::ChunkedNotLast);
    }
    if !last_is_chunked {
        return Ok(TransferCoding::NotChunkedLast);
    }
    if codings > 1 {
        // e.g. `gzip, chunked`: the framing is fine but the coding under it is one we would
        // have to undo before handing the body on.
        return Err(HeadError::UnsupportedTransferCoding);
    }
    Ok(TransferCoding::Chunked)
}

/// The single Content-Length value, if any. Repeated identical values (`5, 5` or two field
/// lines of `5`) are accepted as RFC 9110 section 8.6 allows; differing ones, signs, spaces
/// inside, or more digits than fit are refused.
pub fn content_length(headers: &HeaderMap) -> Result<Option<u64>, HeadError> {
    let mut found: Option<u64> = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for element in value.as_bytes().split(|&b| b == b',') {
            let digits = trim_ows(element);
            let parsed = parse_decimal(digits).ok_or(HeadError::InvalidContentLength)?;
            match found {
                Some(prev) if prev != parsed => return Err(HeadError::ConflictingContentLength),
                _ => found = Some(parsed),
            }
        }
    }
    Ok(found)
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')),
    )
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// `tchar` of RFC 9110 section 5.6.2: the characters a token may contain.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::parse_request;

    fn framing(raw: &str) -> Result<BodyKind, HeadError> {
        parse_request(raw.as_bytes(), &Limits::default()).map(|p| p.unwrap().body)
    }

    #[test]
    fn content_length_and_chunked() {
        assert_eq!(
            framing("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"),
            Ok(BodyKind::Length(5))
        );
        assert_eq!(
            framing("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n"),
            Ok(BodyKind::Chunked)
        );
        assert_eq!(
            framing("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n"),
            Ok(BodyKind::Length(5))
        );
    }

    #[test]
    fn smuggling_vectors_are_refused() {
        let cases = [
            (
                "Content-Length: 5\r\nTransfer-Encoding: chunked",
                HeadError::TransferEncodingWithContentLength,
            ),
            (
                "Content-Length: 5\r\nContent-Length: 6",
                HeadError::ConflictingContentLength,
            ),
            ("Content-Length: 5, 6", HeadError::ConflictingContentLength),
            ("Content-Length: +5", HeadError::InvalidContentLength),
            ("Content-Length: 0x5", HeadError::InvalidContentLength),
            (
                "Content-Length: 99999999999999999999",
                HeadError::InvalidContentLength,
            ),
            (
                "Transfer-Encoding: chunked, identity",
                HeadError::ChunkedNotLast,
            ),
            ("Transfer-Encoding: identity", HeadError::ChunkedNotLast),
            (
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
                HeadError::ChunkedNotLast,
            ),
            (
                "Transfer-Encoding: \"chunked\"",
                HeadError::InvalidTransferEncoding,
            ),
            (
                "Transfer-Encoding: chunked;x=1",
                HeadError::InvalidTransferEncoding,
            ),
            ("Transfer-Encoding: xchunked", HeadError::ChunkedNotLast),
            (
                "Transfer-Encoding: gzip, chunked",
                HeadError::UnsupportedTransferCoding,
            ),
        ];
        for (fields, expected) in cases {
            let raw = format!("POST / HTTP/1.1\r\nHost: x\r\n{fields}\r\n\r\n");
            assert_eq!(framing(&raw), Err(expected), "{fields}");
        }
    }

    #[test]
    fn transfer_encoding_in_http10_is_refused() {
        assert_eq!(
            framing("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(HeadError::TransferEncodingInHttp10)
        );
    }

    #[test]
    fn declared_body_over_the_limit_is_413() {
        let raw = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n";
        let limits = Limits {
            max_body_bytes: 999,
            ..Limits::default()
        };
        let err = parse_request(raw.as_bytes(), &limits).unwrap_err();
        assert_eq!(err.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn response_without_length_reads_until_close() {
        let head = ResponseHead::new(StatusCode::OK);
        assert_eq!(
            response_body(&head, &Method::GET),
            Ok(BodyKind::CloseDelimited)
        );
        let head = ResponseHead::new(StatusCode::NOT_MODIFIED);
        assert_eq!(response_body(&head, &Method::GET), Ok(BodyKind::Empty));
    }
}
