//! The gateway's clock: one reading per request, shared by every phase that needs time.
//!
//! Limiters, the circuit breaker and the idempotency store take time as a parameter
//! (`now_ns`) and never read a clock themselves, so unit tests drive them by hand. The server
//! reads [`Clock::now_ns`] once per request and passes it down.
//!
//! The reading is monotonic (an [`Instant`] underneath: a wall-clock step backwards must not
//! refill a token bucket or reopen a window) and starts at the Unix time of start-up, so that
//! window indexes of cluster-wide limits line up across gateway instances as closely as their
//! wall clocks agree. JWT claims are checked against the same reading in whole seconds.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where time comes from.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Nanoseconds: monotonic, roughly Unix time.
    fn now_ns(&self) -> u64;
}

/// The real clock: Unix time at start-up plus the monotonic time since.
#[derive(Debug)]
pub struct SystemClock {
    start: Instant,
    start_unix_ns: u64,
}

impl SystemClock {
    pub fn new() -> SystemClock {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        SystemClock {
            start: Instant::now(),
            start_unix_ns: since_epoch.as_nanos() as u64,
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now_ns(&self) -> u64 {
        self.start_unix_ns + self.start.elapsed().as_nanos() as u64
    }
}

/// A clock that moves only when told: for tests of expiry, windows and open circuits.
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ns: AtomicU64,
}

impl ManualClock {
    pub fn starting_at(unix: Duration) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            now_ns: AtomicU64::new(unix.as_nanos() as u64),
        })
    }

    pub fn advance(&self, by: Duration) {
        self.now_ns
            .fetch_add(by.as_nanos() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.now_ns.load(Ordering::SeqCst)
    }
}
