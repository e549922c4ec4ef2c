//! A circuit breaker per upstream cluster: stop calling a service that is failing, give it time
//! to recover, then let a few probe calls find out whether it has.
//!
//! ```text
//!            failure rate >= failure_rate_percent over the window (once >= minimum_requests
//!            calls are in it), or consecutive_failures failures in a row
//!   Closed ───────────────────────────────────────────────────────────────▶ Open
//!     ▲                                                                   │  ▲
//!     │ half_open_probes probes all succeeded          open_ms has passed │  │ any probe failed
//!     │                                                                   ▼  │
//!     └──────────────────────────────────────────────────────────────── HalfOpen
//!                            (at most half_open_probes calls in flight)
//! ```
//!
//! This is the state machine of Michael Nygard's *Release It!* ("Stability Patterns": Circuit
//! Breaker) as resilience4j's `CircuitBreaker` implements it, with a time-based sliding window.
//! The settings, against resilience4j's names:
//!
//! | here                   | resilience4j                                          |
//! |------------------------|-------------------------------------------------------|
//! | `failure_rate_percent` | `failureRateThreshold`                                |
//! | `minimum_requests`     | `minimumNumberOfCalls`                                |
//! | `window_ms`, `buckets` | `slidingWindowSize`, TIME_BASED (a bucket per second) |
//! | `open_ms`              | `waitDurationInOpenState`                             |
//! | `half_open_probes`     | `permittedNumberOfCallsInHalfOpenState`               |
//! | `consecutive_failures` | none: Nygard's plain failure counter                  |
//!
//! One difference: resilience4j judges the half-open probes by their failure rate; here a
//! single failed probe reopens the circuit, which is the stricter rule and the one the
//! gateway's issue asks for.
//!
//! # The rolling window
//!
//! The window of `window_ms` is cut into `buckets` buckets of `window_ms / buckets` each, kept
//! in a ring. A call's outcome goes into the bucket of its time; a bucket found holding an older
//! period is cleared first, so old outcomes leave the window one bucket at a time and no timer is
//! needed. The rate is the sum over the buckets still inside the window:
//!
//! ```text
//!   bucket index = now / width          ring slot = index % buckets
//!   ┌──────┬──────┬──────┬──────┬──────┐
//!   │ 12   │ 13   │ 14   │ 10   │ 11   │   slots hold periods 10..=14; at period 15 the slot of
//!   └──────┴──────┴──────┴──────┴──────┘   period 10 is cleared and reused
//! ```
//!
//! So the window is exact to one bucket: an outcome stays counted between `window_ms - width`
//! and `window_ms`.
//!
//! # Not the reverse proxy's "circuit breaking"
//!
//! The reverse-proxy crate has two things with similar names, and this module is neither:
//!
//! - `reverse-proxy/src/circuit_breaker.rs` is Envoy's *threshold* circuit breaking: caps on
//!   connections, pending and in-flight requests per cluster. It has no memory of failures; it
//!   sheds load when an upstream is slow, and lets everything through again as soon as the
//!   count drops.
//! - `reverse-proxy/src/outlier.rs` is Envoy's *outlier detection*: one endpoint (a host) that
//!   keeps failing is ejected from the load balancer for a while, and the other endpoints keep
//!   serving. It judges hosts, not the service.
//!
//! This breaker judges the whole upstream service as the gateway sees it: when the service as a
//! whole fails (every host behind it, or the database behind them), calling it again only adds
//! load and makes clients wait for a timeout, so the gateway answers 503 at once and lets the
//! service recover.
//!
//! # What counts
//!
//! The caller decides what a failure is (a 5xx, a timeout, a refused connection) and reports it
//! with [`Call::failure`]; a 4xx is usually the client's fault and a [`Call::success`] for the
//! breaker. A call dropped without either (the client went away first) counts as neither. An
//! outcome counts only in the state period that admitted the call: a call let in while closed
//! that fails after the circuit opened cannot count as a failed probe, and a slow call from
//! before an earlier opening cannot reopen a circuit that has since closed.
//!
//! # Cost
//!
//! One `std::sync::Mutex` per breaker guards the whole state, taken twice per call (admit and
//! outcome) for a few dozen instructions, with no allocation, I/O or await inside. The state is
//! several fields that must change together (the window, the streak, the state, the probe
//! count); split into atomics, a transition would need its own protocol to stay consistent, to
//! save a lock that is uncontended unless many threads finish calls to the same upstream in the
//! same few nanoseconds.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use service_kit::config::ConfigError;

/// Most buckets in a window: the window sum reads every bucket on each recorded call.
pub const MAX_BUCKETS: u32 = 1_000;
/// Most half-open probes: probing is meant to be a trickle, not a reopening.
pub const MAX_HALF_OPEN_PROBES: u32 = 10_000;
/// The `retry_after` given while half-open with every probe slot taken: when the probes will
/// finish is unknown, and one second is the granularity of the `Retry-After` header anyway.
pub const HALF_OPEN_RETRY_AFTER: Duration = Duration::from_secs(1);

const NANOS_PER_MS: u64 = 1_000_000;

/// `[circuit_breakers.CLUSTER]` in the gateway config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Open when failures are at least this percentage of the calls in the window, 0 to 100;
    /// 0 disables the rate rule. Default 50.
    pub failure_rate_percent: u8,
    /// Calls the window must hold before the rate rule applies (a 1-in-1 failure is not a
    /// 100% failure rate worth acting on). At least 1 when the rate rule is on. Default 20.
    pub minimum_requests: u32,
    /// Open after this many failures in a row, whatever the window says; 0 disables the rule.
    /// Default 5.
    pub consecutive_failures: u32,
    /// Length of the rolling window, ms; at least `buckets` (a bucket is at least 1 ms).
    /// Default 10,000.
    pub window_ms: u64,
    /// Buckets the window is kept in, 1 to [`MAX_BUCKETS`]. Default 10.
    pub buckets: u32,
    /// How long the circuit stays open before it lets probes through, ms, at least 1.
    /// Default 5,000.
    pub open_ms: u64,
    /// Calls let through at once while half-open, 1 to [`MAX_HALF_OPEN_PROBES`]: all of them
    /// succeed and the circuit closes, any one fails and it opens again. Default 3.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_rate_percent: 50,
            minimum_requests: 20,
            consecutive_failures: 5,
            window_ms: 10_000,
            buckets: 10,
            open_ms: 5_000,
            half_open_probes: 3,
        }
    }
}

impl BreakerConfig {
    /// Checks the relations between the fields; `field` is this table's dotted name
    /// (`circuit_breakers.users`), used to name the bad key.
    ///
    /// A config with both rules disabled is accepted: it is a breaker that never opens.
    pub fn validate(&self, field: &str) -> Result<(), ConfigError> {
        let bad =
            |key: &str, reason: &str| Err(ConfigError::invalid(format!("{field}.{key}"), reason));
        if self.failure_rate_percent > 100 {
            return bad("failure_rate_percent", "must be 0 to 100");
        }
        if self.failure_rate_percent > 0 && self.minimum_requests == 0 {
            return bad(
                "minimum_requests",
                "must be at least 1 when failure_rate_percent is set",
            );
        }
        if self.buckets == 0 || self.buckets > MAX_BUCKETS {
            return bad("buckets", &format!("must be 1 to {MAX_BUCKETS}"));
        }
        if self.window_ms < u64::from(self.buckets) {
            return bad(
                "window_ms",
                "must be at least `buckets` (each bucket at least 1 ms)",
            );
        }
        if self.window_ms > u64::MAX / NANOS_PER_MS {
            return bad("window_ms", "is too large");
        }
        if self.open_ms == 0 || self.open_ms > u64::MAX / NANOS_PER_MS {
            return bad(
                "open_ms",
                "must be at least 1 (and representable in nanoseconds)",
            );
        }
        if self.half_open_probes == 0 || self.half_open_probes > MAX_HALF_OPEN_PROBES {
            return bad(
                "half_open_probes",
                &format!("must be 1 to {MAX_HALF_OPEN_PROBES}"),
            );
        }
        Ok(())
    }
}

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Calls go through; outcomes are counted.
    Closed,
    /// Calls are refused until the open period ends.
    Open,
    /// A limited number of probe calls go through; the rest are refused.
    HalfOpen,
}

impl State {
    /// Lower-case name, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
}

/// A call refused because the circuit is open (or half-open with every probe slot taken). The
/// gateway answers 503 with `Retry-After` and this message as the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "circuit breaker {}: the upstream is failing and is not being called; retry after {} ms",
    state.as_str(),
    retry_after.as_millis()
)]
pub struct Rejected {
    /// Until the open period ends; [`HALF_OPEN_RETRY_AFTER`] while half-open.
    pub retry_after: Duration,
    /// [`State::Open`] or [`State::HalfOpen`].
    pub state: State,
}

/// How many times a breaker entered each state since it was built (the gateway's metrics
/// export the current state instead, `gateway_circuit_breaker_state`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transitions {
    pub to_open: u64,
    pub to_half_open: u64,
    pub to_closed: u64,
}

/// The breaker of one upstream. Cheap to share: clone it, or put it behind an `Arc`.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    inner: Arc<Mutex<Inner>>,
}

/// Counts of one bucket of the window.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// The period (`now / width`) these counts belong to.
    period: u64,
    calls: u32,
    failures: u32,
}

#[derive(Debug)]
enum Phase {
    Closed,
    Open {
        until_ns: u64,
    },
    /// Invariant: `in_flight + succeeded <= half_open_probes`, and `succeeded <
    /// half_open_probes` (reaching it closes the circuit).
    HalfOpen {
        in_flight: u32,
        succeeded: u32,
    },
}

#[derive(Debug)]
struct Inner {
    config: BreakerConfig,
    bucket_width_ns: u64,
    phase: Phase,
    /// Bumped on every transition; a call's outcome counts only in the generation that
    /// admitted it.
    generation: u64,
    /// The ring of buckets, `config.buckets` long.
    window: Vec<Bucket>,
    /// The newest period seen; outcomes reported with an older time go into it, so a reading
    /// taken before another thread's newer one cannot land in a reused slot.
    newest_period: u64,
    failure_streak: u32,
    transitions: Transitions,
}

impl CircuitBreaker {
    /// A closed breaker with an empty window. `config` should have passed
    /// [`BreakerConfig::validate`]; out-of-range values are clamped rather than trusted.
    pub fn new(config: &BreakerConfig) -> CircuitBreaker {
        let buckets = config.buckets.clamp(1, MAX_BUCKETS);
        let window_ns = config.window_ms.saturating_mul(NANOS_PER_MS);
        let inner = Inner {
            config: BreakerConfig {
                buckets,
                half_open_probes: config.half_open_probes.max(1),
                ..config.clone()
            },
            bucket_width_ns: (window_ns / u64::from(buckets)).max(1),
            phase: Phase::Closed,
            generation: 0,
            window: vec![Bucket::default(); buckets as usize],
            newest_period: 0,
            failure_streak: 0,
            transitions: Transitions::default(),
        };
        CircuitBreaker {
            inner: Arc::new(Mutex::new(inner)),
        }
    }

    /// Asks to make a call at `now_ns`. The returned [`Call`] must be told its outcome.
    pub fn admit(&self, now_ns: u64) -> Result<Call, Rejected> {
        let mut inner = self.lock();
        inner.refresh(now_ns);
        let probes = inner.config.half_open_probes;
        let probe = match &mut inner.phase {
            Phase::Closed => false,
            Phase::Open { until_ns } => {
                return Err(Rejected {
                    retry_after: Duration::from_nanos(until_ns.saturating_sub(now_ns)),
                    state: State::Open,
                });
            }
            Phase::HalfOpen {
                in_flight,
                succeeded,
            } => {
                if *in_flight + *succeeded >= probes {
                    return Err(Rejected {
                        retry_after: HALF_OPEN_RETRY_AFTER,
                        state: State::HalfOpen,
                    });
                }
                *in_flight += 1;
                true
            }
        };
        Ok(Call {
            breaker: Arc::clone(&self.inner),
            generation: inner.generation,
            probe,
            reported: false,
        })
    }

    /// The state at `now_ns` (an open circuit whose time is up reads as half-open).
    pub fn state(&self, now_ns: u64) -> State {
        let mut inner = self.lock();
        inner.refresh(now_ns);
        inner.state()
    }

    /// How many times the breaker changed state, by the state entered.
    pub fn transitions(&self) -> Transitions {
        self.lock().transitions
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The state is consistent after every statement that could panic, so a poisoned lock
        // (a panic elsewhere while holding it) leaves nothing half-changed.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An admitted call. Report its outcome with [`Call::success`] or [`Call::failure`]; dropped
/// without either, it counts as neither, and a half-open probe gives its slot back.
#[derive(Debug)]
#[must_use = "a call's outcome must be reported, or it counts as neither"]
pub struct Call {
    breaker: Arc<Mutex<Inner>>,
    generation: u64,
    probe: bool,
    reported: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    Failure,
    Abandoned,
}

impl Call {
    /// True if this call is one of the half-open probes.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// The upstream answered well.
    pub fn success(mut self, now_ns: u64) {
        self.report(Outcome::Success, now_ns);
    }

    /// The upstream failed (as the caller defines failure).
    pub fn failure(mut self, now_ns: u64) {
        self.report(Outcome::Failure, now_ns);
    }

    fn report(&mut self, outcome: Outcome, now_ns: u64) {
        self.reported = true;
        let mut inner = self.breaker.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.generation != self.generation {
            return;
        }
        match outcome {
            Outcome::Success => inner.on_success(self.probe, now_ns),
            Outcome::Failure => inner.on_failure(self.probe, now_ns),
            Outcome::Abandoned => inner.on_abandoned(self.probe),
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.reported {
            self.report(Outcome::Abandoned, 0);
        }
    }
}

impl Inner {
    fn state(&self) -> State {
        match self.phase {
            Phase::Closed => State::Closed,
            Phase::Open { .. } => State::Open,
            Phase::HalfOpen { .. } => State::HalfOpen,
        }
    }

    /// Moves an open circuit whose time is up to half-open; the only time-driven transition.
    fn refresh(&mut self, now_ns: u64) {
        if let Phase::Open { until_ns } = self.phase
            && now_ns >= until_ns
        {
            self.enter(Phase::HalfOpen {
                in_flight: 0,
                succeeded: 0,
            });
        }
    }

    fn enter(&mut self, phase: Phase) {
        match phase {
            Phase::Closed => {
                self.transitions.to_closed += 1;
                self.window.fill(Bucket::default());
                self.failure_streak = 0;
            }
            Phase::Open { .. } => self.transitions.to_open += 1,
            Phase::HalfOpen { .. } => self.transitions.to_half_open += 1,
        }
        self.phase = phase;
        self.generation += 1;
    }

    fn open(&mut self, now_ns: u64) {
        let open_ns = self.config.open_ms.saturating_mul(NANOS_PER_MS);
        self.enter(Phase::Open {
            until_ns: now_ns.saturating_add(open_ns),
        });
    }

    fn on_success(&mut self, probe: bool, now_ns: u64) {
        if !probe {
            self.failure_streak = 0;
            self.record(now_ns, false);
            return;
        }
        let probes = self.config.half_open_probes;
        if let Phase::HalfOpen {
            in_flight,
            succeeded,
        } = &mut self.phase
        {
            *in_flight = in_flight.saturating_sub(1);
            *succeeded += 1;
            if *succeeded >= probes {
                self.enter(Phase::Closed);
            }
        }
    }

    fn on_failure(&mut self, probe: bool, now_ns: u64) {
        if probe {
            self.open(now_ns);
            return;
        }
        self.failure_streak = self.failure_streak.saturating_add(1);
        let (calls, failures) = self.record(now_ns, true);
        let config = &self.config;
        let streak_rule =
            config.consecutive_failures > 0 && self.failure_streak >= config.consecutive_failures;
        let rate_rule = config.failure_rate_percent > 0
            && calls >= u64::from(config.minimum_requests)
            && failures * 100 >= calls * u64::from(config.failure_rate_percent);
        if streak_rule || rate_rule {
            self.open(now_ns);
        }
    }

    fn on_abandoned(&mut self, probe: bool) {
        if let (true, Phase::HalfOpen { in_flight, .. }) = (probe, &mut self.phase) {
            *in_flight = in_flight.saturating_sub(1);
        }
    }

    /// Counts one outcome at `now_ns` and returns the window's (calls, failures) after it.
    fn record(&mut self, now_ns: u64, failed: bool) -> (u64, u64) {
        let period = (now_ns / self.bucket_width_ns).max(self.newest_period);
        self.newest_period = period;
        let len = self.window.len() as u64;
        let slot = &mut self.window[(period % len) as usize];
        if slot.period != period {
            *slot = Bucket {
                period,
                calls: 0,
                failures: 0,
            };
        }
        slot.calls = slot.calls.saturating_add(1);
        slot.failures = slot.failures.saturating_add(u32::from(failed));
        self.window
            .iter()
            .filter(|bucket| period - bucket.period < len)
            .fold((0, 0), |(calls, failures), bucket| {
                (
                    calls + u64::from(bucket.calls),
                    failures + u64::from(bucket.failures),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

    use rand::RngExt;

    use super::*;

    const MS: u64 = NANOS_PER_MS;
    /// A start far from zero, as the gateway's clock (Unix time) is.
    const T0: u64 = 1_700_000_000_000 * MS;

    fn config() -> BreakerConfig {
        BreakerConfig {
            failure_rate_percent: 50,
            minimum_requests: 10,
            consecutive_failures: 0,
            window_ms: 1_000,
            buckets: 10,
            open_ms: 5_000,
            half_open_probes: 3,
        }
    }

    fn run(breaker: &CircuitBreaker, now: u64, fail: bool) {
        let call = breaker.admit(now).expect("admitted");
        if fail {
            call.failure(now)
        } else {
            call.success(now)
        }
    }

    /// Opens `breaker` (consecutive rule of 1) at `now`.
    fn opened(config: BreakerConfig, now: u64) -> CircuitBreaker {
        let breaker = CircuitBreaker::new(&BreakerConfig {
            consecutive_failures: 1,
            ..config
        });
        run(&breaker, now, true);
        assert_eq!(breaker.state(now), State::Open);
        breaker
    }

    #[test]
    fn the_rate_rule_waits_for_minimum_requests() {
        let breaker = CircuitBreaker::new(&config());
        for _ in 0..9 {
            run(&breaker, T0, true);
        }
        assert_eq!(
            breaker.state(T0),
            State::Closed,
            "9 failures out of 9 are under the minimum of 10"
        );
        run(&breaker, T0, true);
        assert_eq!(breaker.state(T0), State::Open);
    }

    #[test]
    fn the_rate_rule_opens_at_the_threshold_not_below() {
        let breaker = CircuitBreaker::new(&config());
        for i in 0..20 {
            run(&breaker, T0, i % 3 == 0); // 7 failures in 20: 35%
        }
        assert_eq!(breaker.state(T0), State::Closed);
        for _ in 0..3 {
            run(&breaker, T0, true); // 10 in 23: 43%
        }
        assert_eq!(breaker.state(T0), State::Closed);
        run(&breaker, T0, true); // 11 in 24: 45.8%
        run(&breaker, T0, true); // 12 in 25: 48%
        assert_eq!(breaker.state(T0), State::Closed);
        run(&breaker, T0, true); // 13 in 26: 50%
        assert_eq!(breaker.state(T0), State::Open);
    }

    #[test]
    fn consecutive_failures_open_and_a_success_resets_the_streak() {
        let config = BreakerConfig {
            failure_rate_percent: 0,
            consecutive_failures: 3,
            ..config()
        };
        let breaker = CircuitBreaker::new(&config);
        run(&breaker, T0, true);
        run(&breaker, T0, true);
        run(&breaker, T0, false);
        run(&breaker, T0, true);
        run(&breaker, T0, true);
        assert_eq!(
            breaker.state(T0),
            State::Closed,
            "the success broke the streak"
        );
        run(&breaker, T0, true);
        assert_eq!(breaker.state(T0), State::Open);
        assert_eq!(breaker.transitions().to_open, 1);
    }

    #[test]
    fn old_failures_leave_the_window() {
        let breaker = CircuitBreaker::new(&config());
        for _ in 0..9 {
            run(&breaker, T0, true);
        }
        // One window later those nine are gone: nine more failures are again under the minimum.
        let later = T0 + 1_000 * MS;
        for _ in 0..9 {
            run(&breaker, later, true);
        }
        assert_eq!(breaker.state(later), State::Closed);
        run(&breaker, later, true);
        assert_eq!(breaker.state(later), State::Open);
    }

    #[test]
    fn outcomes_stay_counted_while_their_bucket_is_in_the_window() {
        let breaker = CircuitBreaker::new(&config());
        for _ in 0..9 {
            run(&breaker, T0, true);
        }
        // 900 ms later the first bucket (width 100 ms) is still inside the 1 s window.
        let later = T0 + 900 * MS;
        run(&breaker, later, true);
        assert_eq!(breaker.state(later), State::Open);
    }

    #[test]
    fn open_rejects_with_the_time_left_until_half_open() {
        let breaker = opened(config(), T0);
        let rejected = breaker.admit(T0 + 1_500 * MS).expect_err("open");
        assert_eq!(rejected.state, State::Open);
        assert_eq!(rejected.retry_after, Duration::from_millis(3_500));
        assert!(
            rejected.to_string().contains("retry after 3500 ms"),
            "{rejected}"
        );
        assert!(breaker.admit(T0 + 5_000 * MS - 1).is_err());
        assert_eq!(breaker.state(T0 + 5_000 * MS), State::HalfOpen);
    }

    #[test]
    fn half_open_admits_exactly_the_probes() {
        let breaker = opened(config(), T0);
        let now = T0 + 5_000 * MS;
        let probes: Vec<Call> = (0..3)
            .map(|_| breaker.admit(now).expect("a probe slot"))
            .collect();
        assert!(probes.iter().all(Call::is_probe));
        let rejected = breaker.admit(now).expect_err("every slot is taken");
        assert_eq!(rejected.state, State::HalfOpen);
        assert_eq!(rejected.retry_after, HALF_OPEN_RETRY_AFTER);
        drop(probes);
    }

    #[test]
    fn all_probes_succeeding_closes_the_circuit() {
        let breaker = opened(config(), T0);
        let now = T0 + 5_000 * MS;
        let probes: Vec<Call> = (0..3)
            .map(|_| breaker.admit(now).expect("a probe slot"))
            .collect();
        let mut probes = probes.into_iter();
        probes.next().expect("3 probes").success(now);
        probes.next().expect("3 probes").success(now);
        assert_eq!(
            breaker.state(now),
            State::HalfOpen,
            "one probe is still out"
        );
        probes.next().expect("3 probes").success(now);
        assert_eq!(breaker.state(now), State::Closed);
        let calls = breaker.admit(now).expect("closed");
        assert!(!calls.is_probe());
        calls.success(now);
        let transitions = breaker.transitions();
        assert_eq!(
            (
                transitions.to_open,
                transitions.to_half_open,
                transitions.to_closed
            ),
            (1, 1, 1)
        );
    }

    #[test]
    fn a_closed_circuit_starts_with_an_empty_window() {
        // A window long enough that the failures which opened the circuit are still inside it
        // when the probes close it.
        let breaker = CircuitBreaker::new(&BreakerConfig {
            window_ms: 60_000,
            ..config()
        });
        for _ in 0..10 {
            run(&breaker, T0, true);
        }
        let now = T0 + 5_000 * MS;
        for _ in 0..3 {
            run(&breaker, now, false);
        }
        assert_eq!(breaker.state(now), State::Closed);
        for _ in 0..9 {
            run(&breaker, now, true);
        }
        assert_eq!(
            breaker.state(now),
            State::Closed,
            "9 calls: under the minimum again"
        );
        run(&breaker, now, true);
        assert_eq!(breaker.state(now), State::Open);
    }

    #[test]
    fn one_failed_probe_reopens_for_another_open_period() {
        let breaker = opened(config(), T0);
        let half_open_at = T0 + 5_000 * MS;
        let first = breaker.admit(half_open_at).expect("a probe slot");
        let second = breaker.admit(half_open_at).expect("a probe slot");
        first.success(half_open_at);
        let failed_at = half_open_at + 200 * MS;
        second.failure(failed_at);
        assert_eq!(breaker.state(failed_at), State::Open);
        let rejected = breaker.admit(failed_at).expect_err("open again");
        assert_eq!(rejected.retry_after, Duration::from_millis(5_000));
        assert_eq!(breaker.state(failed_at + 5_000 * MS - 1), State::Open);
        assert_eq!(breaker.state(failed_at + 5_000 * MS), State::HalfOpen);
        assert_eq!(breaker.transitions().to_open, 2);
    }

    #[test]
    fn a_dropped_probe_gives_its_slot_back_and_counts_as_neither() {
        let breaker = opened(config(), T0);
        let now = T0 + 5_000 * MS;
        let probes: Vec<Call> = (0..3)
            .map(|_| breaker.admit(now).expect("a probe slot"))
            .collect();
        assert!(breaker.admit(now).is_err());
        let mut probes = probes.into_iter();
        drop(probes.next());
        let replacement = breaker.admit(now).expect("the dropped probe's slot");
        assert_eq!(
            breaker.state(now),
            State::HalfOpen,
            "a drop is not a failure"
        );
        for call in probes.chain([replacement]) {
            call.success(now);
        }
        assert_eq!(
            breaker.state(now),
            State::Closed,
            "three successes, the drop not needed"
        );
    }

    #[test]
    fn a_call_admitted_before_the_circuit_opened_is_not_a_probe() {
        let breaker = CircuitBreaker::new(&BreakerConfig {
            consecutive_failures: 1,
            ..config()
        });
        let slow = breaker.admit(T0).expect("closed");
        run(&breaker, T0, true);
        let now = T0 + 5_000 * MS;
        assert_eq!(breaker.state(now), State::HalfOpen);
        slow.failure(now);
        assert_eq!(
            breaker.state(now),
            State::HalfOpen,
            "a stale failure does not reopen"
        );
        let probes: Vec<Call> = (0..3)
            .map(|_| breaker.admit(now).expect("all 3 slots free"))
            .collect();
        for probe in probes {
            probe.success(now);
        }
        assert_eq!(breaker.state(now), State::Closed);
    }

    #[test]
    fn both_rules_disabled_never_opens() {
        let config = BreakerConfig {
            failure_rate_percent: 0,
            consecutive_failures: 0,
            ..config()
        };
        config.validate("circuit_breakers.x").expect("valid");
        let breaker = CircuitBreaker::new(&config);
        for _ in 0..100 {
            run(&breaker, T0, true);
        }
        assert_eq!(breaker.state(T0), State::Closed);
    }

    #[test]
    fn validate_names_the_bad_field() {
        BreakerConfig::default()
            .validate("circuit_breakers.users")
            .expect("defaults are valid");
        let cases = [
            (
                BreakerConfig {
                    failure_rate_percent: 101,
                    ..config()
                },
                "failure_rate_percent",
            ),
            (
                BreakerConfig {
                    minimum_requests: 0,
                    ..config()
                },
                "minimum_requests",
            ),
            (
                BreakerConfig {
                    buckets: 0,
                    ..config()
                },
                "buckets",
            ),
            (
                BreakerConfig {
                    window_ms: 5,
                    ..config()
                },
                "window_ms",
            ),
            (
                BreakerConfig {
                    open_ms: 0,
                    ..config()
                },
                "open_ms",
            ),
            (
                BreakerConfig {
                    half_open_probes: 0,
                    ..config()
                },
                "half_open_probes",
            ),
        ];
        for (config, field) in cases {
            let err = config.validate("circuit_breakers.users").expect_err(field);
            let message = err.to_string();
            assert!(
                message.contains(&format!("circuit_breakers.users.{field}")),
                "{message}"
            );
        }
    }

    #[test]
    fn concurrent_half_open_admits_exactly_the_probes() {
        const THREADS: u32 = 8;
        let breaker = opened(
            BreakerConfig {
                half_open_probes: 3,
                ..config()
            },
            T0,
        );
        let now = T0 + 5_000 * MS;
        let barrier = std::sync::Barrier::new(THREADS as usize);
        let admitted = AtomicU32::new(0);
        std::thread::scope(|scope| {
            for _ in 0..THREADS {
                scope.spawn(|| {
                    barrier.wait();
                    let mut held = Vec::new();
                    for _ in 0..10 {
                        if let Ok(call) = breaker.admit(now) {
                            admitted.fetch_add(1, Ordering::SeqCst);
                            held.push(call);
                        }
                    }
                    barrier.wait(); // hold every probe until all threads have tried
                    drop(held);
                });
            }
        });
        assert_eq!(admitted.load(Ordering::SeqCst), 3);
        assert_eq!(breaker.state(now), State::HalfOpen);
    }

    /// Many threads call through one breaker with random outcomes on a shared, advancing
    /// clock. Whatever the interleaving, no more than `half_open_probes` probes are ever out at
    /// once, and the transitions alternate as the state machine allows.
    #[test]
    fn concurrent_calls_keep_the_probe_limit() {
        const THREADS: usize = 4;
        const CALLS: usize = 5_000;
        let mut rng = harness::seeded_rng();
        let config = BreakerConfig {
            consecutive_failures: 3,
            open_ms: 2,
            half_open_probes: 2,
            ..config()
        };
        let breaker = CircuitBreaker::new(&config);
        let clock = AtomicU64::new(T0);
        let probes_out = AtomicU32::new(0);
        let most_probes_out = AtomicU32::new(0);
        let seeds: Vec<u64> = (0..THREADS).map(|_| rng.random()).collect();
        std::thread::scope(|scope| {
            for seed in &seeds {
                let (breaker, clock) = (&breaker, &clock);
                let (probes_out, most_probes_out) = (&probes_out, &most_probes_out);
                scope.spawn(move || {
                    let mut rng = harness::TestRng::from_seed(*seed);
                    for _ in 0..CALLS {
                        let now = clock.fetch_add(rng.random_range(0..MS / 4), Ordering::SeqCst);
                        let Ok(call) = breaker.admit(now) else {
                            continue;
                        };
                        if call.is_probe() {
                            let out = probes_out.fetch_add(1, Ordering::SeqCst) + 1;
                            most_probes_out.fetch_max(out, Ordering::SeqCst);
                        }
                        let probe = call.is_probe();
                        let now = clock.load(Ordering::SeqCst);
                        if probe {
                            // Decrement before reporting: once reported the slot may be reused.
                            probes_out.fetch_sub(1, Ordering::SeqCst);
                        }
                        match rng.random_range(0..10) {
                            0..=2 => call.failure(now),
                            3 => drop(call),
                            _ => call.success(now),
                        }
                    }
                });
            }
        });
        let transitions = breaker.transitions();
        assert!(
            most_probes_out.load(Ordering::SeqCst) <= 2,
            "seed {}",
            rng.seed()
        );
        assert!(
            transitions.to_open > 0,
            "the failure rate was high enough to open: {transitions:?}"
        );
        assert!(
            transitions.to_closed > 0,
            "and probes closed it again: {transitions:?}"
        );
        // Every half-open came from an open, every open from a closed or a half-open.
        assert!(
            transitions.to_half_open <= transitions.to_open,
            "{transitions:?}"
        );
        assert!(
            transitions.to_closed <= transitions.to_half_open,
            "{transitions:?}"
        );
    }
}
