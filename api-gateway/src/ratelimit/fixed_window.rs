//! Fixed window: a counter per key per window, the windows aligned to multiples of the
//! window length since the Unix epoch; at most `limit` requests per window.
//!
//! ```text
//!   │ window k       │ window k+1     │
//!   │ ▮▮▮▮▮▮   ▮▮▮▮▮▮│▮▮▮▮▮▮▮▮▮▮▮▮    │  count resets at each boundary
//!   │           └── limit at the end ─┘ of k and again at the start of k+1: up to 2 × limit
//!   │                                   in one window-long span across the boundary
//! ```
//!
//! **State**: one `u64`: the window index (low 40 bits of it, enough to tell this window
//! from any other) and the count (24 bits); a decision is one compare-and-swap. Denials do
//! not count. The state of a key seen in an earlier window is a fresh count; a clock reading
//! from before the key's window counts in that window ([`super::not_behind`]).
//!
//! **Accuracy**: exact per window (the count never passes `limit`), which is why the same
//! arithmetic runs in the kv-store for the cluster scope ([`super::cluster`]: `INCR` and
//! `PEXPIRE`). The weakness is the boundary burst drawn above; the sliding algorithms
//! ([`super::sliding_log`], [`super::sliding_window`]) remove or damp it.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{Algorithm, Verdict};

const INDEX_BITS: u32 = 40;
const COUNT_MASK: u64 = (1 << (64 - INDEX_BITS)) - 1;

pub struct FixedWindow {
    limit: u64,
    window_ns: u64,
}

impl FixedWindow {
    pub fn new(limit: u64, window_ns: u64) -> FixedWindow {
        FixedWindow { limit, window_ns }
    }

    fn index(&self, now_ns: u64) -> u64 {
        (now_ns / self.window_ns) & ((1 << INDEX_BITS) - 1)
    }

    /// The count of `packed` in the window of `now_ns`.
    fn count(&self, packed: u64, now_ns: u64) -> u64 {
        match packed >> (64 - INDEX_BITS) == self.index(now_ns) {
            true => packed & COUNT_MASK,
            false => 0,
        }
    }
}

impl Algorithm for FixedWindow {
    type State = AtomicU64;

    fn fresh(&self, now_ns: u64) -> AtomicU64 {
        AtomicU64::new(self.index(now_ns) << (64 - INDEX_BITS))
    }

    fn decide(&self, state: &AtomicU64, reading_ns: u64) -> Verdict {
        let mut old = state.load(Ordering::Acquire);
        loop {
            let now_ns = super::not_behind(
                old >> (64 - INDEX_BITS),
                INDEX_BITS,
                reading_ns,
                self.window_ns,
            );
            let to_end = self.window_ns - now_ns % self.window_ns;
            let count = self.count(old, now_ns);
            if count >= self.limit {
                return Verdict {
                    allowed: false,
                    remaining: 0,
                    reset_ns: to_end,
                    retry_after_ns: Some(to_end),
                };
            }
            let new = self.index(now_ns) << (64 - INDEX_BITS) | (count + 1);
            match state.compare_exchange_weak(old, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    let remaining = self.limit - count - 1;
                    return Verdict {
                        allowed: true,
                        remaining,
                        reset_ns: to_end,
                        retry_after_ns: None,
                    };
                }
                Err(actual) => old = actual,
            }
        }
    }

    fn forget_after_ns(&self) -> u64 {
        self.window_ns
    }

    fn is_idle(&self, state: &AtomicU64, now_ns: u64) -> bool {
        self.count(state.load(Ordering::Acquire), now_ns) == 0
    }
}
