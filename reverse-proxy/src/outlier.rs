//! Passive health checking (outlier detection): endpoints that fail live requests are taken
//! out of the rotation for a while, without waiting for the active checker to notice.
//!
//! ```text
//!                 consecutive_5xx 5xx answers, or
//!                 consecutive_connect_failures failed connects in a row
//!   in rotation ────────────────────────────────────────────────▶ ejected
//!        ▲        (unless max_ejection_percent of the cluster       │
//!        │         is ejected already)                              │
//!        └──────────── base_ejection_ms x n, at most max_ejection_ms┘
//!                      (n = how many times it was ejected)
//! ```
//!
//! Any answer below 500 resets the counters. The proxy's own failures with an endpoint (it
//! refused or reset the connection, timed out, answered garbage) count as a 5xx: that is what
//! the client would have got. Connect failures also feed their own, usually stricter, counter.
//!
//! The ejection time grows with each ejection (an endpoint that keeps failing stays out
//! longer) and the multiplier decays again by one for every `base_ejection_ms` the endpoint
//! spends back in rotation. The percentage cap stops a cluster-wide problem (a bad deploy, a
//! database down behind every endpoint) from ejecting everything: at that point ejecting
//! helps no one, and the panic threshold (`cluster.rs`) takes over anyway.
//!
//! Ejection ends by itself when its time is up; there is no timer task. Time is kept as
//! milliseconds since the cluster was built, in atomics, so the check in every pick is one
//! load and a compare per endpoint; while no endpoint of the cluster was ever ejected, a pick
//! does not even read the clock.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use crate::config::OutlierConfig;

/// The passive health state of one endpoint.
#[derive(Debug, Default)]
pub struct OutlierState {
    consecutive_5xx: AtomicU32,
    consecutive_connect_failures: AtomicU32,
    /// Milliseconds since the cluster's epoch until which the endpoint is ejected; 0: never.
    ejected_until_ms: AtomicU64,
    /// Ejections so far, decayed (see the module doc); and when the last ejection ended.
    history: Mutex<History>,
}

#[derive(Debug, Default)]
struct History {
    ejections: u64,
    returned_at_ms: u64,
}

/// What one try against an endpoint came to, as the outlier detector counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An answer below 500.
    Success,
    /// A 5xx from the endpoint, or a failure after the connection was open.
    ServerError,
    /// The connection could not be opened.
    ConnectFailure,
}

impl OutlierState {
    /// Whether the endpoint is ejected at `now_ms`.
    pub fn is_ejected(&self, now_ms: u64) -> bool {
        now_ms < self.ejected_until_ms.load(Ordering::Relaxed)
    }

    /// Whether the endpoint was ejected at some time (if not, it is not ejected now, whatever
    /// the time).
    pub fn was_ever_ejected(&self) -> bool {
        self.ejected_until_ms.load(Ordering::Relaxed) != 0
    }

    /// Counts an answer below 500: both counters start again.
    pub fn record_success(&self) {
        self.consecutive_5xx.store(0, Ordering::Relaxed);
        self.consecutive_connect_failures
            .store(0, Ordering::Relaxed);
    }

    /// Counts `outcome`. Returns true when this outcome ejected the endpoint.
    /// `ejected_elsewhere` counts the cluster's other endpoints ejected now, for the cap.
    pub fn record(
        &self,
        outcome: Outcome,
        config: &OutlierConfig,
        now_ms: u64,
        ejected_elsewhere: impl FnOnce() -> usize,
        cluster_size: usize,
    ) -> bool {
        let tripped = match outcome {
            Outcome::Success => {
                self.record_success();
                return false;
            }
            Outcome::ServerError => bump(&self.consecutive_5xx, config.consecutive_5xx),
            Outcome::ConnectFailure => {
                let by_5xx = bump(&self.consecutive_5xx, config.consecutive_5xx);
                let by_connect = bump(
                    &self.consecutive_connect_failures,
                    config.consecutive_connect_failures,
                );
                by_5xx || by_connect
            }
        };
        if !tripped || self.is_ejected(now_ms) {
            return false;
        }
        let max_ejected = (cluster_size * usize::from(config.max_ejection_percent) / 100).max(1);
        if ejected_elsewhere() >= max_ejected {
            return false;
        }
        self.eject(config, now_ms);
        true
    }

    fn eject(&self, config: &OutlierConfig, now_ms: u64) {
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let back_for = now_ms.saturating_sub(history.returned_at_ms);
        let decay = back_for / config.base_ejection_ms.max(1);
        history.ejections = history.ejections.saturating_sub(decay) + 1;
        let duration = config
            .base_ejection_ms
            .saturating_mul(history.ejections)
            .min(config.max_ejection_ms);
        history.returned_at_ms = now_ms + duration;
        self.ejected_until_ms
            .store(now_ms + duration, Ordering::Relaxed);
        self.consecutive_5xx.store(0, Ordering::Relaxed);
        self.consecutive_connect_failures
            .store(0, Ordering::Relaxed);
    }
}

/// Adds one to a consecutive-failure counter; true when it reaches `threshold` (0: never).
fn bump(counter: &AtomicU32, threshold: u32) -> bool {
    let now = counter.fetch_add(1, Ordering::Relaxed) + 1;
    threshold > 0 && now >= threshold
}

/// Milliseconds since an epoch, the clock of ejections.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            epoch: Instant::now(),
        }
    }
}

impl Clock {
    /// Milliseconds since the epoch, plus one so that 0 can mean "never ejected".
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> OutlierConfig {
        OutlierConfig {
            consecutive_5xx: 3,
            consecutive_connect_failures: 2,
            base_ejection_ms: 1000,
            max_ejection_ms: 2500,
            max_ejection_percent: 50,
        }
    }

    fn record(state: &OutlierState, outcome: Outcome, now_ms: u64) -> bool {
        state.record(outcome, &config(), now_ms, || 0, 4)
    }

    #[test]
    fn consecutive_5xx_eject_and_a_success_in_between_resets_the_count() {
        let state = OutlierState::default();
        assert!(!record(&state, Outcome::ServerError, 1));
        assert!(!record(&state, Outcome::ServerError, 2));
        assert!(!record(&state, Outcome::Success, 3));
        assert!(!record(&state, Outcome::ServerError, 4));
        assert!(!record(&state, Outcome::ServerError, 5));
        assert!(record(&state, Outcome::ServerError, 6));
        assert!(state.is_ejected(6));
        assert!(state.is_ejected(1005));
        assert!(!state.is_ejected(1006), "ejected for base_ejection_ms");
    }

    #[test]
    fn connect_failures_have_their_own_threshold() {
        let state = OutlierState::default();
        assert!(!record(&state, Outcome::ConnectFailure, 1));
        assert!(record(&state, Outcome::ConnectFailure, 2));
    }

    #[test]
    fn each_ejection_lasts_longer_up_to_the_maximum_and_the_multiplier_decays() {
        let state = OutlierState::default();
        let eject_at = |now| {
            record(&state, Outcome::ConnectFailure, now);
            assert!(record(&state, Outcome::ConnectFailure, now));
            state.ejected_until_ms.load(Ordering::Relaxed) - now
        };
        assert_eq!(eject_at(10), 1000);
        assert_eq!(
            eject_at(1010),
            2000,
            "second ejection, right after the first"
        );
        assert_eq!(eject_at(3010), 2500, "third, capped by max_ejection_ms");
        // Back in rotation from 5510; 10 s later the multiplier has decayed to zero.
        assert_eq!(eject_at(15_510), 1000);
    }

    #[test]
    fn the_percentage_cap_keeps_endpoints_in_rotation() {
        let state = OutlierState::default();
        let config = config();
        state.record(Outcome::ConnectFailure, &config, 1, || 2, 4);
        // Two of four already ejected, and the cap is 50%.
        assert!(!state.record(Outcome::ConnectFailure, &config, 2, || 2, 4));
        assert!(!state.is_ejected(2));
        // At least one endpoint may always be ejected, whatever the percentage.
        let zero = OutlierConfig {
            max_ejection_percent: 0,
            ..config
        };
        let other = OutlierState::default();
        other.record(Outcome::ConnectFailure, &zero, 1, || 0, 4);
        assert!(other.record(Outcome::ConnectFailure, &zero, 2, || 0, 4));
    }
}
