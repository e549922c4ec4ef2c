//! Sliding-window log: the time of every allowed request in the last window; a request is
//! allowed if fewer than `limit` are younger than one window.
//!
//! ```text
//!   log: [ t1  t2  t3 ... tn ]     oldest first, n ≤ limit
//!   now: drop every t ≤ now - window; n < limit ? append now : deny until t1 + window
//! ```
//!
//! **State**: a queue of up to `limit` timestamps (8 bytes each, hence the lower
//! [`super::MAX_LOG_LIMIT`]), behind a mutex per key: expiring the old entries and
//! appending must happen as one step, and no single atomic word holds a list. The mutex is
//! per key, held for a few pops and a push, so it serialises only requests sharing a key.
//!
//! **Accuracy**: exact. No span of one window ever holds more than `limit` allowed requests,
//! at any alignment: the only algorithm here with that guarantee. It pays for it in memory
//! and in work proportional to the requests expiring.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use super::{Algorithm, Verdict};

pub struct SlidingLog {
    limit: u64,
    window_ns: u64,
}

impl SlidingLog {
    pub fn new(limit: u64, window_ns: u64) -> SlidingLog {
        SlidingLog { limit, window_ns }
    }

    fn expire(&self, log: &mut VecDeque<u64>, now_ns: u64) {
        while log.front().is_some_and(|&t| t + self.window_ns <= now_ns) {
            log.pop_front();
        }
    }
}

impl Algorithm for SlidingLog {
    type State = Mutex<VecDeque<u64>>;

    fn fresh(&self, _now_ns: u64) -> Self::State {
        Mutex::new(VecDeque::new())
    }

    fn decide(&self, state: &Self::State, now_ns: u64) -> Verdict {
        let mut log = state.lock().unwrap_or_else(PoisonError::into_inner);
        self.expire(&mut log, now_ns);
        let allowed = (log.len() as u64) < self.limit;
        if allowed {
            // Kept in order even when a caller's reading is a little behind the last one.
            let at = log.back().map_or(now_ns, |&last| last.max(now_ns));
            log.push_back(at);
        }
        let until = |t: Option<&u64>| t.map_or(0, |&t| (t + self.window_ns).saturating_sub(now_ns));
        Verdict {
            allowed,
            remaining: self.limit - log.len() as u64,
            reset_ns: until(log.back()),
            retry_after_ns: (!allowed).then(|| until(log.front())),
        }
    }

    fn forget_after_ns(&self) -> u64 {
        self.window_ns
    }

    fn is_idle(&self, state: &Self::State, now_ns: u64) -> bool {
        let mut log = state.lock().unwrap_or_else(PoisonError::into_inner);
        self.expire(&mut log, now_ns);
        log.is_empty()
    }
}
