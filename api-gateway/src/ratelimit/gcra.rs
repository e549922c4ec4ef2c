//! GCRA, the generic cell rate algorithm (ITU-T I.371, from ATM networks): a token bucket
//! kept as a single timestamp.
//!
//! Each request "costs" an emission interval `T = window / limit`. The state is the
//! *theoretical arrival time* (TAT): when the key's requests would be fully paid for if they
//! had come exactly one `T` apart. A request at `now` moves it to `max(TAT, now) + T`, and is
//! allowed if that is at most `burst × T` ahead of `now` (the tolerance):
//!
//! ```text
//!   now            TAT' = max(TAT, now) + T
//!    │◀──────── burst × T ────────▶│
//!    ├──────────────────────┤ allowed: TAT' - now ≤ burst × T
//!    ├──────────────────────────────────┤ denied; retry after TAT' - now - burst × T
//! ```
//!
//! **State**: one `u64` (the TAT in nanoseconds), updated by compare-and-swap; a fresh key's
//! TAT is `now` (nothing owed). Remaining requests are `(burst × T - (TAT' - now)) / T`; the
//! quota is whole again at TAT'.
//!
//! **Accuracy and bursts**: exact, to the nanosecond of `T`; up to `burst` requests pass at
//! once, after which they pass one per `T`. The decisions are a token bucket's
//! ([`super::token_bucket`]) with no refill arithmetic: nothing is rounded but `T` itself.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{Algorithm, Verdict};

pub struct Gcra {
    /// Emission interval `T`, ns.
    interval: u64,
    /// `burst × T`, ns.
    tolerance: u64,
}

impl Gcra {
    pub fn new(limit: u64, window_ns: u64, burst: u64) -> Gcra {
        let interval = (window_ns / limit).max(1);
        Gcra {
            interval,
            tolerance: interval * burst,
        }
    }
}

impl Algorithm for Gcra {
    type State = AtomicU64;

    fn fresh(&self, now_ns: u64) -> AtomicU64 {
        AtomicU64::new(now_ns)
    }

    fn decide(&self, tat: &AtomicU64, now_ns: u64) -> Verdict {
        let mut old = tat.load(Ordering::Acquire);
        loop {
            let base = old.max(now_ns);
            let new = base + self.interval;
            let ahead = new - now_ns;
            if ahead > self.tolerance {
                return Verdict {
                    allowed: false,
                    remaining: 0,
                    reset_ns: base - now_ns,
                    retry_after_ns: Some(ahead - self.tolerance),
                };
            }
            match tat.compare_exchange_weak(old, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    return Verdict {
                        allowed: true,
                        remaining: (self.tolerance - ahead) / self.interval,
                        reset_ns: ahead,
                        retry_after_ns: None,
                    };
                }
                Err(actual) => old = actual,
            }
        }
    }

    fn forget_after_ns(&self) -> u64 {
        self.tolerance
    }

    fn is_idle(&self, tat: &AtomicU64, now_ns: u64) -> bool {
        tat.load(Ordering::Acquire) <= now_ns
    }
}
