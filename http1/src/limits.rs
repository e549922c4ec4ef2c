//! Every limit the HTTP/1.1 layer enforces, in one place.
//!
//! A server that reads untrusted bytes must bound everything that grows with the input. The
//! defaults follow what production servers ship with (nginx allows an 8 KiB request line and
//! 32 KiB of headers; Apache 100 header fields; both give the whole header section a few seconds
//! to arrive) and each limit answers with the status RFC 9110 assigns to it:
//!
//! | limit | default | when exceeded |
//! |---|---|---|
//! | `max_request_line_bytes` | 8 KiB | 414 URI Too Long |
//! | `max_header_bytes` (request line + fields) | 32 KiB | 431 Request Header Fields Too Large |
//! | `max_headers` (field lines) | 100 | 431 |
//! | `max_body_bytes` (declared or streamed) | 16 MiB | 413 Content Too Large |
//! | `max_chunk_line_bytes` (size + extensions) | 1 KiB | 400 |
//! | `max_trailer_bytes` | 16 KiB | 400 |
//! | `header_timeout` (absolute, from the first byte) | 10 s | connection closed (408 if nothing was answered yet) |
//! | `idle_timeout` (keep-alive wait, and any read stall) | 60 s | connection closed |
//!
//! The header timeout is an absolute deadline, not an idle timeout: a slow-loris client that
//! sends one byte every few seconds never trips an idle timer, but it cannot stretch a deadline.

use std::time::Duration;

/// Hard upper bound on `max_headers`: the parser keeps its field slots on the stack.
pub const MAX_HEADERS_CEILING: usize = 256;

/// Limits for one side of an HTTP/1.1 connection. Build with `Limits::default()` and change
/// fields; `validate` checks their relations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line (method, target, version), in bytes. Exceeding it is 414.
    pub max_request_line_bytes: usize,
    /// Longest header section (start line plus every field line), in bytes. Exceeding it is 431.
    pub max_header_bytes: usize,
    /// Most field lines in one header section (and in one trailer section). At most
    /// [`MAX_HEADERS_CEILING`]. Exceeding it is 431.
    pub max_headers: usize,
    /// Largest message body, in bytes, whether announced by Content-Length or streamed as chunks.
    /// Exceeding it is 413.
    pub max_body_bytes: u64,
    /// Longest chunk-size line (hex size plus chunk extensions), in bytes.
    pub max_chunk_line_bytes: usize,
    /// Largest trailer section after the last chunk, in bytes.
    pub max_trailer_bytes: usize,
    /// Absolute deadline for a whole header section, from its first byte.
    pub header_timeout: Duration,
    /// Longest wait for the next request on a kept-alive connection, and for any read or write
    /// to make progress in the middle of a message.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line_bytes: 8 * 1024,
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            max_body_bytes: 16 * 1024 * 1024,
            max_chunk_line_bytes: 1024,
            max_trailer_bytes: 16 * 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl Limits {
    /// Checks the relations between fields; the error names the field at fault.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_headers == 0 || self.max_headers > MAX_HEADERS_CEILING {
            return Err(format!("max_headers must be in 1..={MAX_HEADERS_CEILING}"));
        }
        if self.max_request_line_bytes == 0 || self.max_request_line_bytes > self.max_header_bytes {
            return Err("max_request_line_bytes must be in 1..=max_header_bytes".into());
        }
        if self.max_chunk_line_bytes < 3 {
            return Err("max_chunk_line_bytes must be at least 3".into());
        }
        if self.header_timeout.is_zero() || self.idle_timeout.is_zero() {
            return Err("header_timeout and idle_timeout must be positive".into());
        }
        Ok(())
    }
}
