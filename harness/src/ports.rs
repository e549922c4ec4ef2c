//! Ephemeral loopback ports for servers started by tests.
//!
//! A server that the test starts as a separate process cannot hand back the port it bound, so the
//! test picks one first: bind `127.0.0.1:0`, read the port the kernel chose, release it, and pass
//! `--listen 127.0.0.1:PORT` to the server.
//!
//! # The race, and why it is small
//!
//! Between the release here and the server's own `bind`, any other process on the machine could
//! take the port. Two things make that rare: the kernel hands out ephemeral ports in a rotating
//! order rather than reusing the one just freed, and within this process a set of every port
//! already handed out guarantees that two tests running in parallel threads never receive the same
//! one. A collision with another process shows up as the server failing to bind, which
//! [`crate::Process::wait_ready`] reports with the server's log. Use in-process listeners (bind
//! port 0 and keep the listener) whenever the code under test accepts one.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::{Mutex, PoisonError};

/// How many fresh ports to try before concluding that the kernel keeps returning ports that this
/// process already handed out. Each attempt asks the kernel for any free port, so only a process
/// that used up most of the ephemeral range can reach it.
const FREE_PORT_ATTEMPTS_MAX: usize = 1000;

/// Every port returned by [`free_addr`] in this process. It only grows: a port handed out once may
/// still be in use by a server that a test restarts later on the same address.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// Returns a `127.0.0.1` address whose port was free a moment ago and has never been returned
/// before in this process.
///
/// # Panics
///
/// If no loopback port can be bound, or the ephemeral range is exhausted by this process.
pub fn free_addr() -> SocketAddr {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    for _ in 0..FREE_PORT_ATTEMPTS_MAX {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("free_addr: cannot bind 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("free_addr: cannot read the bound address: {e}"));
        if handed_out.insert(addr.port()) {
            return addr;
        }
    }
    panic!("free_addr: {FREE_PORT_ATTEMPTS_MAX} attempts returned only ports already handed out")
}
