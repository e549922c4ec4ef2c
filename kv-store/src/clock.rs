//! Wall-clock time in Unix milliseconds, replaceable by a hand-driven clock in tests.
//!
//! Expiry compares a key's deadline with the time; tests of expiry must not sleep, so the server
//! reads the time through a [`Clock`] that a test can set and advance.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The server's source of Unix time in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// `None` reads the system clock; `Some` is a manual clock shared with the test.
    manual: Option<Arc<AtomicU64>>,
}

impl Clock {
    /// The system's real-time clock.
    pub fn system() -> Clock {
        Clock { manual: None }
    }

    /// A clock that stands still at `start_ms` until [`Clock::advance`] moves it.
    pub fn manual(start_ms: u64) -> Clock {
        Clock {
            manual: Some(Arc::new(AtomicU64::new(start_ms))),
        }
    }

    pub fn now_ms(&self) -> u64 {
        match &self.manual {
            Some(now) => now.load(Ordering::Relaxed),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        }
    }

    /// Moves a manual clock forward. Panics on the system clock: a test bug.
    pub fn advance(&self, ms: u64) {
        let now = self
            .manual
            .as_ref()
            .expect("only a manual clock can be advanced");
        now.fetch_add(ms, Ordering::Relaxed);
    }
}
