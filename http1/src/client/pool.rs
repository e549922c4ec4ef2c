//! Idle keep-alive connections, per endpoint, and the counters the proxy exports.
//!
//! Opening a TCP connection costs a round trip (plus two more for TLS); reusing one costs
//! nothing, which is why every proxy keeps a pool of idle upstream connections. The hard part is
//! not the reuse but knowing when *not* to reuse:
//!
//! - The server may have closed an idle connection at any time (its keep-alive timeout can be
//!   as short as Apache's 5 s). Before a connection leaves the pool it gets a non-blocking read:
//!   a server that closed it makes the socket readable with end-of-file; a server that sent
//!   bytes nobody asked for has broken the exchange. Either way the connection is discarded.
//!   This narrows the race but cannot close it (the FIN may be in flight), so the client also
//!   retries once; see the retry rule in [`crate::client`].
//! - Connections idle longer than `idle_timeout` are closed, lazily at checkout and by a reaper
//!   task (one per pool, started by the first checkin, gone with the pool) that looks every
//!   quarter of `idle_timeout`.
//!
//! A connection is registered with the event loop of the tokio runtime that opened it, and is
//! handed out again only to tasks of that runtime: a server running one single-threaded
//! runtime per worker (the proxy with `workers > 1`) keeps one set of idle connections per
//! worker, as each nginx worker process keeps its own `keepalive` cache. Used from another
//! runtime, a connection would still work, but each of its readiness events would cross
//! threads.
//!
//! Reuse is LIFO: the most recently used connection is the one least likely to have been closed
//! by the server, and the older ones age out. When an endpoint already holds
//! `max_idle_per_endpoint` idle connections, the oldest one is closed to make room. A pooled
//! connection keeps its read and write buffers (unless one grew past 64 KiB), so that its
//! next exchange allocates neither again.
//!
//! Invariant: a connection is checked in only with its previous exchange complete (request
//! fully sent, response read to its end and kept alive) and nothing unread in its buffer. The
//! callers in `conn.rs` and `response_body.rs` enforce the first part, `checkin` the second.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::ReadBuf;
pub(crate) use tokio::runtime::Id as RuntimeId;

use crate::timer::IdleTimer;
use crate::upgrade::Io;

/// The reaper never looks more often than this, however short `idle_timeout` is.
const MIN_REAP_INTERVAL: Duration = Duration::from_millis(100);

/// A snapshot of the client's connection counters, for metrics. Counters only grow; the idle
/// count is the number of connections in the pool at the time of the snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// TCP connections opened (successful connects).
    pub connections_opened: u64,
    /// Requests sent on a connection taken from the pool.
    pub connections_reused: u64,
    /// Pooled connections found closed (or sending unexpected bytes) at checkout.
    pub stale_discarded: u64,
    /// Requests sent a second time after a reused connection failed (the retry rule).
    pub retries: u64,
    /// Idle connections currently pooled, over all endpoints.
    pub idle_connections: usize,
}

/// A connection between exchanges, with the buffers it keeps so that its next exchange does
/// not allocate them again.
pub(crate) struct Parked {
    pub(crate) io: Box<dyn Io>,
    pub(crate) read_buf: BytesMut,
    pub(crate) write_buf: BytesMut,
    pub(crate) header_timer: IdleTimer,
    /// The runtime whose event loop the connection is registered with.
    pub(crate) runtime: Option<RuntimeId>,
}

impl Parked {
    /// A new connection, with buffers allocated on first use; each response head is awaited
    /// for at most `response_header_timeout`.
    pub(crate) fn new(io: Box<dyn Io>, response_header_timeout: Duration) -> Parked {
        Parked {
            io,
            read_buf: BytesMut::new(),
            write_buf: BytesMut::new(),
            header_timer: IdleTimer::new(response_header_timeout),
            runtime: current_runtime(),
        }
    }
}

struct Idle {
    conn: Parked,
    since: Instant,
}

/// Keyed by the runtime a connection belongs to and the endpoint it reaches, not by anything
/// its peers send: a fast hash (std's SipHash cost more than the rest of a checkout) is safe
/// here.
type IdleMap = HashMap<(Option<RuntimeId>, SocketAddr), Vec<Idle>, foldhash::fast::RandomState>;

/// The runtime the caller runs on (`None` outside any).
fn current_runtime() -> Option<RuntimeId> {
    tokio::runtime::Handle::try_current().ok().map(|h| h.id())
}

/// The idle connections of one [`crate::client::Client`], keyed by runtime and endpoint.
pub(crate) struct Pool {
    /// A std mutex, not a tokio one: it is never held across an `.await`.
    idle: Mutex<IdleMap>,
    max_idle_per_endpoint: usize,
    idle_timeout: Duration,
    reaper_started: AtomicBool,
    pub(crate) opened: AtomicU64,
    pub(crate) reused: AtomicU64,
    pub(crate) retries: AtomicU64,
    stale: AtomicU64,
}

/// Where a connection goes back to when its exchange ends well.
pub(crate) struct Lease {
    pub(crate) pool: Arc<Pool>,
    pub(crate) addr: SocketAddr,
}

impl Pool {
    pub(crate) fn new(max_idle_per_endpoint: usize, idle_timeout: Duration) -> Arc<Pool> {
        Arc::new(Pool {
            idle: Mutex::new(HashMap::default()),
            max_idle_per_endpoint,
            idle_timeout,
            reaper_started: AtomicBool::new(false),
            opened: AtomicU64::new(0),
            reused: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            stale: AtomicU64::new(0),
        })
    }

    /// The most recently pooled live connection to `addr` of the caller's runtime, if any.
    /// Expired and closed connections met on the way are dropped (closed).
    pub(crate) fn checkout(&self, addr: SocketAddr) -> Option<Parked> {
        let key = (current_runtime(), addr);
        loop {
            let candidate = {
                let mut idle = self.lock();
                let list = idle.get_mut(&key)?;
                let candidate = list.pop();
                if list.is_empty() {
                    idle.remove(&key);
                }
                candidate?
            };
            if candidate.since.elapsed() >= self.idle_timeout {
                tracing::debug!(%addr, "pooled connection expired");
                continue;
            }
            let mut conn = candidate.conn;
            if still_open(&mut conn.io) {
                self.reused.fetch_add(1, Ordering::Relaxed);
                return Some(conn);
            }
            self.stale.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%addr, "pooled connection closed by the server; discarded");
        }
    }

    /// Returns a connection whose exchange is complete. Closes the oldest idle connection to
    /// `addr` of the same runtime when it holds `max_idle_per_endpoint` of them.
    pub(crate) fn checkin(self: &Arc<Self>, addr: SocketAddr, conn: Parked) {
        if self.max_idle_per_endpoint == 0 {
            return;
        }
        {
            let mut idle = self.lock();
            // Read under the lock, so that the list stays oldest first (connections are
            // pushed as they come back) and the expired ones are a prefix: one clock read,
            // not one per idle connection.
            let now = Instant::now();
            let list = idle.entry((conn.runtime, addr)).or_default();
            // Idle since `cutoff` or earlier: expired. Comparing instants, not subtracting
            // each from `now`, keeps the binary search a few instructions per step.
            let expired = match now.checked_sub(self.idle_timeout) {
                Some(cutoff) => list.partition_point(|c| c.since <= cutoff),
                None => 0,
            };
            list.drain(..expired);
            if list.len() >= self.max_idle_per_endpoint {
                list.remove(0);
            }
            list.push(Idle { conn, since: now });
        }
        self.start_reaper();
    }

    pub(crate) fn stats(&self) -> ClientStats {
        ClientStats {
            connections_opened: self.opened.load(Ordering::Relaxed),
            connections_reused: self.reused.load(Ordering::Relaxed),
            stale_discarded: self.stale.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            idle_connections: self.lock().values().map(Vec::len).sum(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, IdleMap> {
        // A panic while holding the lock cannot leave the map half-updated in a way that
        // matters (at worst a connection is missing), so a poisoned lock is used as is.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remove_expired(&self) {
        let now = Instant::now();
        let mut idle = self.lock();
        for list in idle.values_mut() {
            list.retain(|c| now.duration_since(c.since) < self.idle_timeout);
        }
        idle.retain(|_, list| !list.is_empty());
    }

    /// Starts the one reaper task of this pool. It holds only a weak reference, so it ends
    /// at its next tick after the client is dropped.
    fn start_reaper(self: &Arc<Self>) {
        if self.reaper_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.reaper_started.store(false, Ordering::Release);
            return;
        };
        let pool: Weak<Pool> = Arc::downgrade(self);
        let period = (self.idle_timeout / 4).max(MIN_REAP_INTERVAL);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match pool.upgrade() {
                    Some(pool) => pool.remove_expired(),
                    None => return,
                }
            }
        });
    }
}

/// The non-blocking staleness check: one read attempt that must find nothing to read. `Pending`
/// means the connection is open and quiet, the only state in which it may carry a new request.
/// End-of-file, an error, or any byte (a response nobody asked for) all mean discard.
fn still_open(io: &mut Box<dyn Io>) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    let mut byte = [0u8; 1];
    let mut buf = ReadBuf::new(&mut byte);
    matches!(
        Pin::new(io.as_mut()).poll_read(&mut cx, &mut buf),
        Poll::Pending
    )
}
