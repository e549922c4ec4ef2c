//! A fault-injecting TCP proxy, controlled at run time, in Toxiproxy's vocabulary.
//!
//! Put a [`FaultProxy`] between a client and a server (or between two servers) and the test can
//! make the link slow, narrow, choppy, lossy or dead while traffic flows:
//!
//! ```text
//!   client                            FaultProxy                            upstream
//!     │ connect ──▶ listen_addr ─ accept ─ connect ──────────────────────────▶ │
//!     │                                                                        │
//!     │ ── bytes ──▶ [ Upstream toxics   ] ──────────────────────── bytes ──▶  │
//!     │ ◀── bytes ── [ Downstream toxics ] ◀─────────────────────── bytes ──   │
//!
//!   each chunk, per direction:  timeout (hold) → latency → limit_data → slicer / bandwidth → write
//!   each connection:            reset_peer and timeout clocks end it when they expire
//!   set_enabled(false):         listener closed (ECONNREFUSED), every connection cut
//! ```
//!
//! Every accepted connection gets its own connection to the upstream. Toxics apply per
//! [`Direction`]: `Upstream` is the client-to-server stream, `Downstream` the server-to-client
//! one. They are added, listed and removed while connections are open, and apply to those
//! connections from their next chunk on (see [`Toxic`] for each one's exact effect). A `timeout`
//! toxic blackholes its direction; [`FaultProxy::set_enabled`]`(false)` partitions the whole
//! link: new connections are refused and existing ones are cut. [`FaultProxy::stop_accepting`]
//! refuses new connections but lets open ones finish, like a server draining before it stops.
//!
//! # Threads
//!
//! The proxy runs a single-threaded tokio runtime on a thread of its own. Its own runtime, so that
//! it works the same under `#[test]` and `#[tokio::test]` and never depends on (or blocks) the
//! test's runtime; a single thread, because all its work is loopback I/O and timers, far below
//! what one core moves. Async rather than a thread per stream, because a link must wait on a
//! socket, a timer and a toxic change at once, which `select!` expresses directly.
//!
//! The handle's methods are synchronous. Toxic changes are published through a `watch` channel
//! that every link subscribes to, so they take effect without a round trip. Enabling and disabling
//! are commands to the accept loop, and return once carried out.
//!
//! # Limits
//!
//! [`CONNECTIONS_MAX`] links at once, [`CHUNK_BYTES_MAX`] bytes buffered per direction per link,
//! [`TOXICS_MAX`] toxics, [`CONTROL_QUEUE_MAX`] pending commands.

mod link;
mod listener;
mod toxic;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc as std_mpsc};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use rand::distr::uniform::{SampleRange, SampleUniform};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::sync::{mpsc, watch};

pub use self::link::CHUNK_BYTES_MAX;
pub use self::listener::CONNECTIONS_MAX;
use self::listener::Command;
use self::toxic::ToxicTable;
pub use self::toxic::{Direction, TOXICS_MAX, Toxic, ToxicEntry, ToxicId};
use crate::{Error, Result};

/// Commands (enable, disable) waiting for the accept loop. Each caller waits for its command to
/// be carried out, so the queue only fills if many threads toggle one proxy at once; they then
/// retry every millisecond.
pub const CONTROL_QUEUE_MAX: usize = 16;

/// Pause before retrying a command into a full queue.
const CONTROL_RETRY_INTERVAL: Duration = Duration::from_millis(1);

/// Ports tried before giving up on binding the proxy's listener.
const BIND_ATTEMPTS_MAX: usize = 16;

/// Seed of the jitter and slice-size randomness when the test does not choose one.
const DEFAULT_SEED: u64 = 0;

/// State shared by the handle, the accept loop and every link.
#[derive(Debug)]
struct Shared {
    listen_addr: SocketAddr,
    toxics: watch::Sender<ToxicTable>,
    rng: Mutex<StdRng>,
    stats: Counters,
}

impl Shared {
    fn random_range<T: SampleUniform, R: SampleRange<T>>(&self, range: R) -> T {
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        rng.random_range(range)
    }
}

#[derive(Debug, Default)]
struct Counters {
    connections_accepted: AtomicU64,
    bytes_upstream: AtomicU64,
    bytes_downstream: AtomicU64,
}

impl Counters {
    fn bytes(&self, direction: Direction) -> &AtomicU64 {
        match direction {
            Direction::Upstream => &self.bytes_upstream,
            Direction::Downstream => &self.bytes_downstream,
        }
    }
}

/// Counters since the proxy started. Bytes are counted once written to the receiving side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyStats {
    pub connections_accepted: u64,
    pub bytes_upstream: u64,
    pub bytes_downstream: u64,
}

/// A running fault proxy; stopped (every connection closed) when dropped. See the module docs.
#[derive(Debug)]
pub struct FaultProxy {
    shared: Arc<Shared>,
    upstream: SocketAddr,
    enabled: AtomicBool,
    /// `None` only during drop, which closes the channel to stop the accept loop.
    commands: Option<mpsc::Sender<Command>>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` on a fresh `127.0.0.1` port, with no toxics.
    ///
    /// # Panics
    ///
    /// If no loopback port can be bound or the proxy's thread cannot start.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        FaultProxy::start_seeded(upstream, DEFAULT_SEED)
    }

    /// Like [`FaultProxy::start`], with the seed for latency jitter and slice sizes; pass one drawn
    /// from the test's [`crate::TestRng`] so that its printed seed covers the proxy too.
    pub fn start_seeded(upstream: SocketAddr, seed: u64) -> FaultProxy {
        let listener = bind_free_port();
        let listen_addr = listener
            .local_addr()
            .expect("a bound socket has an address");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("FaultProxy: cannot build its runtime: {e}"));
        let shared = Arc::new(Shared {
            listen_addr,
            toxics: watch::Sender::new(ToxicTable::default()),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            stats: Counters::default(),
        });
        let (commands, command_rx) = mpsc::channel(CONTROL_QUEUE_MAX);
        let loop_shared = shared.clone();
        let thread = thread::Builder::new()
            .name(format!("fault-proxy {listen_addr}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("FaultProxy: cannot register its listener");
                    listener::run(listener, upstream, loop_shared, command_rx).await;
                });
            })
            .unwrap_or_else(|e| panic!("FaultProxy: cannot start its thread: {e}"));
        FaultProxy {
            shared,
            upstream,
            enabled: AtomicBool::new(true),
            commands: Some(commands),
            thread: Some(thread),
        }
    }

    /// Where clients connect.
    pub fn listen_addr(&self) -> SocketAddr {
        self.shared.listen_addr
    }

    /// Where every connection is forwarded.
    pub fn upstream_addr(&self) -> SocketAddr {
        self.upstream
    }

    /// Adds a toxic; it applies to open connections from their next chunk, and to new ones.
    pub fn add_toxic(&self, direction: Direction, toxic: Toxic) -> Result<ToxicId> {
        let mut result = None;
        self.shared.toxics.send_modify(|table| {
            result = Some(table.add(direction, toxic));
        });
        result.expect("send_modify runs the closure")
    }

    /// Removes a toxic; false if there was none with this id.
    pub fn remove_toxic(&self, id: ToxicId) -> bool {
        self.shared
            .toxics
            .send_if_modified(|table| table.remove(id))
    }

    /// The active toxics, in the order they were added.
    pub fn toxics(&self) -> Vec<ToxicEntry> {
        self.shared.toxics.borrow().entries()
    }

    /// `false` partitions the link: the listener closes (new clients get `ECONNREFUSED`) and every
    /// open connection is closed. `true` heals it by listening on the same address again. Returns
    /// once the change is in place.
    ///
    /// Healing fails if another process took the port while it was unbound (the same small race
    /// as [`crate::free_addr`]'s).
    pub fn set_enabled(&self, enabled: bool) -> Result<()> {
        let (done, done_rx) = std_mpsc::sync_channel(1);
        let command = match enabled {
            true => Command::Enable { done },
            false => Command::Disable { done },
        };
        let operation = if enabled {
            "enable (rebind)"
        } else {
            "disable"
        };
        self.command(command, done_rx, operation)?;
        self.enabled.store(enabled, Ordering::Relaxed);
        Ok(())
    }

    /// Closes the listener, so new clients get `ECONNREFUSED`, and lets the open connections
    /// carry on: what a server does while it drains before stopping. `set_enabled(true)`
    /// listens again, `set_enabled(false)` cuts the open connections too. Returns once the
    /// listener is closed.
    pub fn stop_accepting(&self) -> Result<()> {
        let (done, done_rx) = std_mpsc::sync_channel(1);
        self.command(Command::StopAccepting { done }, done_rx, "stop accepting")?;
        self.enabled.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// Whether the proxy is listening (neither partitioned nor stopped accepting).
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Sends a command to the accept loop and waits until it is carried out.
    fn command(
        &self,
        command: Command,
        done: std_mpsc::Receiver<std::io::Result<()>>,
        operation: &'static str,
    ) -> Result<()> {
        self.send(command)?;
        let outcome = done.recv().unwrap_or_else(|_| Err(gone()));
        outcome.map_err(|source| Error::Proxy { operation, source })
    }

    /// Removes every toxic and heals any partition.
    pub fn reset(&self) -> Result<()> {
        self.shared.toxics.send_modify(ToxicTable::clear);
        self.set_enabled(true)
    }

    /// Connections accepted and bytes forwarded so far.
    pub fn stats(&self) -> ProxyStats {
        let stats = &self.shared.stats;
        ProxyStats {
            connections_accepted: stats.connections_accepted.load(Ordering::Relaxed),
            bytes_upstream: stats.bytes_upstream.load(Ordering::Relaxed),
            bytes_downstream: stats.bytes_downstream.load(Ordering::Relaxed),
        }
    }

    /// Enqueues a command without blocking a runtime thread (the caller may be inside
    /// `#[tokio::test]`, where tokio's blocking send would panic).
    fn send(&self, mut command: Command) -> Result<()> {
        let commands = self.commands.as_ref().expect("present until drop");
        loop {
            match commands.try_send(command) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(back)) => {
                    command = back;
                    thread::sleep(CONTROL_RETRY_INTERVAL);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    return Err(Error::Proxy {
                        operation: "send a command",
                        source: gone(),
                    });
                }
            }
        }
    }
}

/// Binds a port that [`crate::free_addr`] hands out, so that no server of this process is
/// told to use it (its port stays reserved while a partition leaves it unbound). Another
/// process may take a port between its release and this bind; then another is tried.
fn bind_free_port() -> std::net::TcpListener {
    let mut last_error = None;
    for _ in 0..BIND_ATTEMPTS_MAX {
        let addr = crate::free_addr();
        match std::net::TcpListener::bind(addr).and_then(|l| l.set_nonblocking(true).map(|()| l)) {
            Ok(listener) => return listener,
            Err(e) => last_error = Some(e),
        }
    }
    panic!(
        "FaultProxy: cannot bind a loopback port after {BIND_ATTEMPTS_MAX} attempts: {last_error:?}"
    )
}

fn gone() -> std::io::Error {
    std::io::Error::other("the fault proxy's thread has stopped")
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Closing the channel ends the accept loop; dropping the runtime then aborts every link.
        self.commands = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
