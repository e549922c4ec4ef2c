//! Stand-in hello-world HTTP server for the harness's process tests.
//!
//! This std-only version exists so that the `harness` crate can be developed before the real
//! server (built on the workspace's HTTP layer) lands. It keeps the real one's contract:
//! `--listen ADDR` serves `GET /`, `--admin-listen ADDR` serves `GET /readyz`; both answer 200.
//! One thread per connection, one request per connection (`Connection: close`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

/// Largest request head read before answering; anything longer is answered as-is.
const REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;
/// How long a connection may take to send its request head.
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(5);

fn main() {
    let mut listen = None;
    let mut admin_listen = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next();
        match (flag.as_str(), value) {
            ("--listen", Some(addr)) => listen = Some(addr),
            ("--admin-listen", Some(addr)) => admin_listen = Some(addr),
            (other, _) => {
                eprintln!("http-hello: unknown flag or missing value: {other}");
                std::process::exit(2);
            }
        }
    }
    let listeners: Vec<TcpListener> = [listen, admin_listen]
        .into_iter()
        .flatten()
        .map(|addr| TcpListener::bind(&addr).unwrap_or_else(|e| panic!("bind {addr}: {e}")))
        .collect();
    for listener in &listeners {
        eprintln!("http-hello: listening on {}", listener.local_addr().unwrap());
    }
    let handles: Vec<_> = listeners
        .into_iter()
        .map(|listener| thread::spawn(move || serve(listener)))
        .collect();
    for handle in handles {
        let _ = handle.join();
    }
}

fn serve(listener: TcpListener) {
    for stream in listener.incoming().flatten() {
        thread::spawn(move || answer(stream));
    }
}

fn answer(mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(REQUEST_READ_TIMEOUT));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < REQUEST_HEAD_BYTES_MAX {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let (status, body) = match line {
        b"GET / HTTP/1.1" | b"GET / HTTP/1.0" => ("200 OK", "hello\n"),
        b"GET /readyz HTTP/1.1" | b"GET /readyz HTTP/1.0" => ("200 OK", "ready\n"),
        _ => ("404 Not Found", "not found\n"),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
}
