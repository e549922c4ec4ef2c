//! Probes that tell whether a server is up: a TCP connect, and a minimal HTTP/1.1 GET.
//!
//! The GET is written by hand on purpose. The harness must not depend on the workspace's HTTP
//! crate, which is itself under test, and readiness needs only the status line:
//!
//! ```text
//! GET /readyz HTTP/1.1\r\n
//! Host: 127.0.0.1:9000\r\n
//! Connection: close\r\n
//! \r\n
//!                              <- HTTP/1.1 200 OK\r\n ... (the rest is ignored)
//! ```

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Longest status line accepted, in bytes; a real one is about 20.
const STATUS_LINE_BYTES_MAX: usize = 1024;

/// Sends `GET path` to `addr` and returns the response's status code.
///
/// The whole exchange (connect, write, read the status line) is bounded by `timeout`; on expiry
/// the error's kind is `TimedOut` or `WouldBlock` (the platform's read-timeout kind).
pub fn http_get_status(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<u16> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_write_timeout(Some(remaining(deadline)?))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let line = read_status_line(&mut stream, deadline)?;
    parse_status_code(&line).ok_or_else(|| {
        io::Error::new(
            ErrorKind::InvalidData,
            format!("not an HTTP status line: {line:?}"),
        )
    })
}

/// Succeeds once a TCP connection to `addr` can be opened within `timeout`.
pub(crate) fn tcp_connects(addr: SocketAddr, timeout: Duration) -> io::Result<()> {
    TcpStream::connect_timeout(&addr, timeout).map(drop)
}

fn read_status_line(stream: &mut TcpStream, deadline: Instant) -> io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 256];
    while !line.windows(2).any(|w| w == b"\r\n") {
        if line.len() > STATUS_LINE_BYTES_MAX {
            return Err(io::Error::new(
                ErrorKind::InvalidData,
                "status line longer than STATUS_LINE_BYTES_MAX",
            ));
        }
        stream.set_read_timeout(Some(remaining(deadline)?))?;
        match stream.read(&mut byte)? {
            0 => break,
            n => line.extend_from_slice(&byte[..n]),
        }
    }
    let end = line
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(line.len());
    Ok(String::from_utf8_lossy(&line[..end]).into_owned())
}

/// `HTTP/1.1 200 OK` -> `200`.
fn parse_status_code(line: &str) -> Option<u16> {
    let mut parts = line.split(' ');
    let version = parts.next()?;
    let code = parts.next()?;
    let is_http = version == "HTTP/1.1" || version == "HTTP/1.0";
    (is_http && code.len() == 3).then(|| code.parse().ok())?
}

/// Time left before `deadline`, or a `TimedOut` error; never zero, which sockets reject.
fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(ErrorKind::TimedOut, "probe deadline passed"));
    }
    Ok(left)
}

#[cfg(test)]
mod tests {
    use super::parse_status_code;

    #[test]
    fn status_lines_are_parsed() {
        assert_eq!(parse_status_code("HTTP/1.1 200 OK"), Some(200));
        assert_eq!(
            parse_status_code("HTTP/1.0 503 Service Unavailable"),
            Some(503)
        );
        assert_eq!(parse_status_code("HTTP/1.1 200"), Some(200));
        assert_eq!(parse_status_code("SSH-2.0-OpenSSH"), None);
        assert_eq!(parse_status_code("HTTP/1.1 2000 OK"), None);
    }
}
