//! Retries: when a failed try is sent again, how long to wait first, and how many retries a
//! cluster may have in flight.
//!
//! **When.** A try is retried, on another endpoint where one is eligible, if a retry is left
//! (`retry.max_retries`), the request body can be sent again (it was empty or small enough to
//! keep: `max_buffered_body_bytes`), and the failure is one of:
//!
//! | failure | retried for |
//! |---|---|
//! | connect refused or timed out | every request: nothing was sent |
//! | connection reset or closed before any response byte | idempotent requests |
//! | no response head within `timeouts.request_ms` | idempotent requests |
//! | malformed response head | idempotent requests |
//! | a status listed in `retry_on_status` | idempotent requests |
//!
//! "Idempotent" is `http1::RequestHead::is_idempotent`: RFC 9110 section 9.2.2 (GET, HEAD,
//! OPTIONS, TRACE, PUT, DELETE) or a request carrying an `Idempotency-Key`;
//! `retry_non_idempotent = true` extends the last four rows to every request. A POST that may have reached the upstream is otherwise never sent
//! twice: a duplicated payment is worse than an error.
//!
//! **How long to wait.** Exponential backoff with "full jitter" (AWS Architecture Blog,
//! "Exponential Backoff and Jitter"): before retry n, sleep a uniformly random time in
//! `[0, min(backoff_max_ms, backoff_base_ms x 2^(n-1))]`. The randomness spreads the retries
//! of many clients that failed together, so they do not hit the upstream again in step.
//!
//! **How many at once: the retry budget.** Per-request limits do not stop a retry storm: when
//! an upstream is down, every request retries, and the load on the cluster is multiplied by
//! `1 + max_retries` exactly when it can least take it. So a cluster has a budget (as in
//! Envoy): retries in flight may be at most `budget_percent` of the requests in flight, but
//! `budget_min_concurrency` retries are always allowed, so a quiet cluster can still retry.
//! A retry over budget is not made: the client gets the failure of the last try.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::balance::PickRng;
use crate::config::RetryConfig;
use crate::error::ProxyError;

/// Whether a failed try may be retried (leaving aside the count and the budget).
pub fn retryable_error(error: &ProxyError, idempotent: bool, config: &RetryConfig) -> bool {
    if error.nothing_sent() {
        return true;
    }
    let may_repeat = idempotent || config.retry_non_idempotent;
    may_repeat
        && matches!(
            error,
            ProxyError::UpstreamReset { .. }
                | ProxyError::UpstreamTimeout { .. }
                | ProxyError::UpstreamProtocol { .. }
        )
}

/// Whether an upstream answer with `status` may be retried.
pub fn retryable_status(status: u16, idempotent: bool, config: &RetryConfig) -> bool {
    (idempotent || config.retry_non_idempotent) && config.retry_on_status.contains(&status)
}

/// The backoff before retry number `retry` (1 for the first), with full jitter.
pub fn backoff(retry: u32, config: &RetryConfig, rng: &PickRng) -> Duration {
    let exponent = retry.saturating_sub(1).min(32);
    let ceiling = config
        .backoff_base_ms
        .saturating_mul(1u64 << exponent)
        .min(config.backoff_max_ms);
    Duration::from_millis(rng.below(ceiling + 1))
}

/// A cluster's retry budget (see the module documentation).
#[derive(Debug, Default)]
pub struct RetryBudget {
    in_flight: Arc<AtomicU32>,
}

/// A retry in flight, counted in the budget until dropped.
#[derive(Debug)]
pub struct RetryPermit {
    in_flight: Arc<AtomicU32>,
}

impl RetryBudget {
    /// A permit for one more retry, if the budget allows it with `active_requests` in flight.
    pub fn try_start(&self, active_requests: u32, config: &RetryConfig) -> Option<RetryPermit> {
        let allowed = (u64::from(active_requests) * u64::from(config.budget_percent) / 100)
            .max(u64::from(config.budget_min_concurrency));
        let mut current = self.in_flight.load(Ordering::Relaxed);
        loop {
            if u64::from(current) >= allowed {
                return None;
            }
            match self.in_flight.compare_exchange_weak(
                current,
                current + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Some(RetryPermit {
                        in_flight: self.in_flight.clone(),
                    });
                }
                Err(actual) => current = actual,
            }
        }
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }
}

impl Drop for RetryPermit {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn addr() -> SocketAddr {
        "127.0.0.1:1".parse().unwrap()
    }

    #[test]
    fn a_failed_connect_is_retried_whatever_the_method() {
        let config = RetryConfig::default();
        let refused = ProxyError::ConnectTimeout { endpoint: addr() };
        assert!(retryable_error(&refused, false, &config));
        let reset = ProxyError::UpstreamReset {
            endpoint: addr(),
            source: http1::Error::Closed,
        };
        assert!(retryable_error(&reset, true, &config));
        assert!(
            !retryable_error(&reset, false, &config),
            "a POST may have been applied"
        );
        let opted_in = RetryConfig {
            retry_non_idempotent: true,
            ..config
        };
        assert!(retryable_error(&reset, false, &opted_in));
    }

    #[test]
    fn statuses_are_retried_only_when_listed_and_idempotent() {
        let config = RetryConfig::default();
        assert!(retryable_status(503, true, &config));
        assert!(!retryable_status(500, true, &config));
        assert!(!retryable_status(503, false, &config));
    }

    #[test]
    fn backoff_grows_exponentially_with_full_jitter_under_a_ceiling() {
        let seed = harness::seeded_rng().seed();
        eprintln!("seed = {seed} (replay with TEST_SEED={seed})");
        let rng = PickRng::new(seed);
        let config = RetryConfig {
            backoff_base_ms: 10,
            backoff_max_ms: 100,
            ..RetryConfig::default()
        };
        for (retry, ceiling) in [(1, 10), (2, 20), (3, 40), (4, 80), (5, 100), (30, 100)] {
            let waits: Vec<u64> = (0..2000)
                .map(|_| backoff(retry, &config, &rng).as_millis() as u64)
                .collect();
            assert!(waits.iter().all(|&w| w <= ceiling), "retry {retry}");
            let mean = waits.iter().sum::<u64>() as f64 / waits.len() as f64;
            let expected = ceiling as f64 / 2.0;
            assert!(
                (mean - expected).abs() < expected * 0.15 + 1.0,
                "retry {retry}: mean {mean}"
            );
        }
    }

    #[test]
    fn the_budget_allows_a_percentage_of_active_requests_but_always_the_minimum() {
        let config = RetryConfig {
            budget_percent: 20,
            budget_min_concurrency: 3,
            ..RetryConfig::default()
        };
        let budget = RetryBudget::default();
        // 10 active requests: 20% is 2, the minimum of 3 wins.
        let permits: Vec<_> = (0..3)
            .filter_map(|_| budget.try_start(10, &config))
            .collect();
        assert_eq!(permits.len(), 3);
        assert!(budget.try_start(10, &config).is_none());
        // 100 active requests: 20 retries.
        let more: Vec<_> = (0..30)
            .filter_map(|_| budget.try_start(100, &config))
            .collect();
        assert_eq!(permits.len() + more.len(), 20);
        drop(permits);
        drop(more);
        assert_eq!(budget.in_flight(), 0);
    }
}
