//! Starting a real `kv-store` process for a test, and talking to it.

#![allow(dead_code)]

pub mod node;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use harness::{DataDir, Process, ProcessSpec, cargo_bin, free_addr};

pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a raw-socket read waits before the test fails.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A running server with its addresses and data directory.
pub struct Server {
    pub process: Process,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: DataDir,
}

impl Server {
    /// Starts `kv-store` on fresh ports with a fresh data directory and `args`.
    pub fn start(label: &str, args: &[&str]) -> Server {
        Server::start_in(DataDir::new(label), args)
    }

    /// Starts `kv-store` on fresh ports over an existing data directory.
    pub fn start_in(dir: DataDir, args: &[&str]) -> Server {
        let (addr, admin) = (free_addr(), free_addr());
        let spec = ProcessSpec::new("kv-store", cargo_bin("kv-store"))
            .args(["--listen", &addr.to_string()])
            .args(["--admin-listen", &admin.to_string()])
            .args(["--data-dir", dir.path().to_str().unwrap()])
            .args(args.iter().copied());
        let mut process = Process::spawn(spec).unwrap();
        if let Err(err) = process.wait_ready(admin, READY_TIMEOUT) {
            panic!("kv-store did not become ready: {err}\n{}", process.log());
        }
        Server {
            process,
            addr,
            admin,
            dir,
        }
    }

    pub fn url(&self, resp3: bool) -> String {
        let protocol = if resp3 { "?protocol=resp3" } else { "" };
        format!("redis://{}/{protocol}", self.addr)
    }

    pub async fn connect(&self, resp3: bool) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(self.url(resp3)).unwrap();
        client.get_multiplexed_async_connection().await.unwrap()
    }

    /// Restarts after a kill, on the same ports and data directory.
    pub fn restart(&mut self) {
        self.process.restart().unwrap();
        if let Err(err) = self.process.wait_ready(self.admin, READY_TIMEOUT) {
            panic!("kv-store did not come back: {err}\n{}", self.process.log());
        }
    }
}

/// A raw TCP connection for byte-level protocol tests.
pub fn raw(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream
}

/// Sends `bytes` and reads until `expected_len` bytes have arrived or the peer closes.
pub fn exchange(stream: &mut TcpStream, bytes: &[u8], expected_len: usize) -> Vec<u8> {
    stream.write_all(bytes).unwrap();
    read_at_least(stream, expected_len)
}

pub fn read_at_least(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0u8; 65536];
    while received.len() < len {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(err) => panic!(
                "read failed after {:?}: {err}",
                String::from_utf8_lossy(&received)
            ),
        }
    }
    received
}

/// Reads until the peer closes the connection; true if it did (within the read timeout).
pub fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}
