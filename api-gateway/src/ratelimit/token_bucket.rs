//! Token bucket: a bucket of `burst` tokens, refilled at `limit` tokens per window; a request
//! takes one token or is denied.
//!
//! ```text
//!   tokens ▲ burst ─────┐        ┌──────            refill: limit / window per unit of time
//!          │            └┐      ┌┘                  request: tokens ≥ 1 ? take one : deny
//!          │             └┐   ┌─┘                   retry after: (1 - tokens) / rate
//!          │              └───┘  ← a burst drains it, the steady rate refills it
//!          └──────────────────────────▶ time
//! ```
//!
//! **State**: one `u64` per key, so a decision is one compare-and-swap: the high 32 bits hold
//! the time of the last refill in milliseconds (modulo 2³², compared as a signed difference,
//! so a caller whose clock reading is a little behind another's never refills), the low 32
//! bits the tokens in 1/1024 units (a bucket of up to [`super::MAX_LIMIT`] tokens fits). A key
//! unused until its bucket is full again is given a fresh state by the table ([`super::keys`]),
//! so the difference of two stored times never approaches the 24 days a signed 32-bit count
//! of milliseconds can hold.
//!
//! **Accuracy**: each refill that is stored truncates to 1/1024 of a token, so `n` allowed
//! requests lose at most `n / 1024` tokens, under 0.1 % (denials store nothing). Over a
//! span `T` it admits `burst + T × limit / window` requests, less that loss; the clock is
//! read in whole milliseconds.
//!
//! **Compared with GCRA** ([`super::gcra`]): the same decisions from a different state. The
//! bucket stores what is left; GCRA stores when the bucket will be full, which needs no
//! refill arithmetic and is exact to the nanosecond. The bucket is the form most people
//! reason in, which is why both are here.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{Algorithm, NS_PER_MS, Verdict, div_ceil};

/// Fixed-point scale of a token.
const UNIT: u64 = 1024;

pub struct TokenBucket {
    /// Capacity in 1/1024 tokens.
    capacity: u64,
    limit: u64,
    window_ms: u64,
}

impl TokenBucket {
    pub fn new(limit: u64, window_ms: u64, burst: u64) -> TokenBucket {
        TokenBucket {
            capacity: burst * UNIT,
            limit,
            window_ms,
        }
    }

    /// Units earned in `elapsed_ms`.
    fn refill(&self, elapsed_ms: u64) -> u64 {
        (elapsed_ms as u128 * self.limit as u128 * UNIT as u128 / self.window_ms as u128) as u64
    }

    /// Nanoseconds to earn `units`.
    fn time_for(&self, units: u64) -> u64 {
        div_ceil(
            units as u128 * self.window_ms as u128,
            self.limit as u128 * UNIT as u128,
        ) * NS_PER_MS
    }

    /// The state as of `now_ms`: (time, tokens), refilled.
    fn current(&self, packed: u64, now_ms: u32) -> (u32, u64) {
        let (last, tokens) = ((packed >> 32) as u32, packed & 0xffff_ffff);
        match now_ms.wrapping_sub(last) as i32 {
            elapsed if elapsed > 0 => (
                now_ms,
                (tokens + self.refill(elapsed as u64)).min(self.capacity),
            ),
            _ => (last, tokens),
        }
    }
}

fn pack(time_ms: u32, tokens: u64) -> u64 {
    (time_ms as u64) << 32 | tokens
}

impl Algorithm for TokenBucket {
    type State = AtomicU64;

    fn fresh(&self, now_ns: u64) -> AtomicU64 {
        AtomicU64::new(pack((now_ns / NS_PER_MS) as u32, self.capacity))
    }

    fn decide(&self, state: &AtomicU64, now_ns: u64) -> Verdict {
        let now_ms = (now_ns / NS_PER_MS) as u32;
        let mut old = state.load(Ordering::Acquire);
        loop {
            let (time, tokens) = self.current(old, now_ms);
            if tokens < UNIT {
                // A denial writes nothing: the refill it computed is recomputed, exactly, by
                // the next request (storing it would truncate it once more).
                return Verdict {
                    allowed: false,
                    remaining: 0,
                    reset_ns: self.time_for(self.capacity - tokens),
                    retry_after_ns: Some(self.time_for(UNIT - tokens)),
                };
            }
            let left = tokens - UNIT;
            match state.compare_exchange_weak(
                old,
                pack(time, left),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Verdict {
                        allowed: true,
                        remaining: left / UNIT,
                        reset_ns: self.time_for(self.capacity - left),
                        retry_after_ns: None,
                    };
                }
                Err(actual) => old = actual,
            }
        }
    }

    fn forget_after_ns(&self) -> u64 {
        // An empty bucket refills within this (at most a day, by validation): far inside
        // the 24 days that the signed 32-bit millisecond difference can tell apart.
        self.time_for(self.capacity) + NS_PER_MS
    }

    fn is_idle(&self, state: &AtomicU64, now_ns: u64) -> bool {
        let (_, tokens) = self.current(state.load(Ordering::Acquire), (now_ns / NS_PER_MS) as u32);
        tokens >= self.capacity
    }
}
