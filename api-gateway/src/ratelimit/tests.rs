//! Every algorithm against its ideal: accuracy under steady overload, bursts, the values the
//! headers report, concurrency on one key, and the header and config formats.

use std::sync::Arc;
use std::time::Duration;

use super::*;

const MS: u64 = 1_000_000;
const SECOND: u64 = 1_000 * MS;
/// An arbitrary instant, window-aligned, around 2027 in Unix time.
const T0: u64 = 1_800_000_000 * SECOND;

fn policy(algorithm: AlgorithmKind, limit: u64, window_ms: u64, burst: Option<u64>) -> Policy {
    let config = PolicyConfig {
        algorithm,
        limit,
        window_ms,
        burst,
        ..PolicyConfig::default()
    };
    Policy::new("p", &config, None).unwrap()
}

fn check<'p>(p: &'p Policy, key: &str, now: u64) -> Decision<'p> {
    p.check_local(key, now).expect("a local policy")
}

/// Offers `rate` requests per second, evenly spaced, for `seconds`; returns the allowed times.
fn offer(p: &Policy, rate: u64, seconds: u64, start: u64) -> Vec<u64> {
    let gap = SECOND / rate;
    (0..rate * seconds)
        .map(|i| start + i * gap)
        .filter(|&t| check(p, "k", t).allowed)
        .collect()
}

fn within_one_percent(actual: usize, ideal: f64, what: &str) {
    let error = (actual as f64 - ideal).abs() / ideal;
    assert!(
        error <= 0.01,
        "{what}: allowed {actual}, ideal {ideal}, off by {:.2} %",
        error * 100.0
    );
}

#[test]
fn bucket_algorithms_admit_burst_plus_rate_times_time() {
    // 100 requests/s with a burst of 20, offered 250/s for 10 s. Ideal: the burst, plus one
    // request per 10 ms earned over the 9.996 s between the first and the last offer.
    for algorithm in [AlgorithmKind::TokenBucket, AlgorithmKind::Gcra] {
        let p = policy(algorithm, 100, 1000, Some(20));
        let allowed = offer(&p, 250, 10, T0);
        within_one_percent(allowed.len(), 20.0 + 999.6, &format!("{algorithm:?}"));
        // After the burst, never more than the rate: any 1 s late in the run holds ≤ 100 + 1.
        let late = allowed
            .iter()
            .filter(|&&t| (T0 + 5 * SECOND..T0 + 6 * SECOND).contains(&t))
            .count();
        assert!(
            (99..=101).contains(&late),
            "{algorithm:?}: {late} in one second of steady state"
        );
    }
}

#[test]
fn window_algorithms_admit_the_limit_per_window() {
    // 100 per second, offered 200/s for 10 s: 100 in each of the 10 windows.
    for algorithm in [AlgorithmKind::FixedWindow, AlgorithmKind::SlidingLog] {
        let p = policy(algorithm, 100, 1000, None);
        let allowed = offer(&p, 200, 10, T0);
        assert_eq!(allowed.len(), 1000, "{algorithm:?}");
        for w in 0..10 {
            let n = allowed.iter().filter(|&&t| (t - T0) / SECOND == w).count();
            assert_eq!(n, 100, "{algorithm:?}: window {w}");
        }
    }
    // The counter's estimate: within 1 % of the limit per window over the run.
    let p = policy(AlgorithmKind::SlidingWindow, 100, 1000, None);
    within_one_percent(offer(&p, 200, 10, T0).len(), 1000.0, "SlidingWindow");
}

#[test]
fn only_the_sliding_log_never_exceeds_the_limit_in_any_span() {
    // Idle, then the limit at the end of one window and again at the start of the next.
    let spans = |algorithm| {
        let p = policy(algorithm, 10, 1000, None);
        let mut allowed = Vec::new();
        for i in 0..40 {
            let t = T0 + 900 * MS + i * 5 * MS; // 0.900 s to 1.095 s
            if check(&p, "k", t).allowed {
                allowed.push(t);
            }
        }
        // The most allowed in any window-long span.
        allowed
            .iter()
            .map(|&a| {
                allowed
                    .iter()
                    .filter(|&&b| b >= a && b < a + SECOND)
                    .count()
            })
            .max()
            .unwrap()
    };
    assert_eq!(
        spans(AlgorithmKind::FixedWindow),
        20,
        "the fixed window's boundary burst"
    );
    assert_eq!(spans(AlgorithmKind::SlidingLog), 10);
    assert!(
        spans(AlgorithmKind::SlidingWindow) <= 11,
        "the counter damps the boundary burst"
    );
}

#[test]
fn a_burst_passes_at_once_and_the_next_request_learns_when_to_retry() {
    // 5 per 10 s: one token every 2 s.
    for algorithm in [AlgorithmKind::TokenBucket, AlgorithmKind::Gcra] {
        let p = policy(algorithm, 5, 10_000, None);
        for i in 0..5 {
            let d = check(&p, "k", T0);
            assert!(d.allowed, "{algorithm:?}: request {i}");
            assert_eq!(d.remaining, 4 - i, "{algorithm:?}");
            assert_eq!(
                d.reset,
                Duration::from_secs(2 * (i + 1)),
                "{algorithm:?}: full again after"
            );
        }
        let denied = check(&p, "k", T0);
        assert!(!denied.allowed);
        assert_eq!(
            denied.retry_after,
            Some(Duration::from_secs(2)),
            "{algorithm:?}"
        );
        assert!(
            !check(&p, "k", T0 + 2 * SECOND - MS).allowed,
            "{algorithm:?}: 1 ms early"
        );
        assert!(
            check(&p, "k", T0 + 2 * SECOND).allowed,
            "{algorithm:?}: on time"
        );
        assert!(
            check(&p, "other", T0).allowed,
            "{algorithm:?}: keys are independent"
        );
    }
}

#[test]
fn a_window_denial_waits_for_the_window_to_move() {
    let p = policy(AlgorithmKind::FixedWindow, 3, 10_000, None);
    let at = T0 + 4 * SECOND;
    for i in 0..3 {
        let d = check(&p, "k", at);
        assert_eq!(
            (d.allowed, d.remaining, d.reset),
            (true, 2 - i, Duration::from_secs(6))
        );
    }
    assert_eq!(check(&p, "k", at).retry_after, Some(Duration::from_secs(6)));
    assert!(check(&p, "k", T0 + 10 * SECOND).allowed, "a new window");

    let p = policy(AlgorithmKind::SlidingLog, 3, 10_000, None);
    for t in [0, 1, 2] {
        assert!(check(&p, "k", T0 + t * SECOND).allowed);
    }
    let d = check(&p, "k", T0 + 5 * SECOND);
    assert_eq!(
        d.retry_after,
        Some(Duration::from_secs(5)),
        "until the oldest leaves the window"
    );
    assert!(check(&p, "k", T0 + 10 * SECOND).allowed);
}

#[test]
fn the_sliding_counter_retries_when_the_previous_window_has_drained_enough() {
    let p = policy(AlgorithmKind::SlidingWindow, 10, 10_000, None);
    for _ in 0..10 {
        assert!(check(&p, "k", T0 + 5 * SECOND).allowed);
    }
    // Next window, 20 % in: estimate 10 × 0.8 = 8, so 2 more fit.
    let at = T0 + 12 * SECOND;
    assert!(check(&p, "k", at).allowed);
    assert!(check(&p, "k", at).allowed);
    let denied = check(&p, "k", at);
    assert!(!denied.allowed);
    // 10 × (1 - e) + 2 + 1 ≤ 10 once e ≥ 30 %: at 13 s.
    assert_eq!(denied.retry_after, Some(Duration::from_secs(1)));
    assert!(!check(&p, "k", at + SECOND - MS).allowed);
    assert!(check(&p, "k", at + SECOND).allowed);
}

#[test]
fn concurrent_requests_on_one_key_never_exceed_the_ideal() {
    let cases = [
        (AlgorithmKind::TokenBucket, Some(500)),
        (AlgorithmKind::Gcra, Some(500)),
        (AlgorithmKind::FixedWindow, None),
        (AlgorithmKind::SlidingLog, None),
        (AlgorithmKind::SlidingWindow, None),
    ];
    for (algorithm, burst) in cases {
        // A long window: no refill during the run, so exactly 500 may pass.
        let p = Arc::new(policy(algorithm, 500, 3_600_000, burst));
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let p = p.clone();
                std::thread::spawn(move || {
                    (0..1000u64)
                        .filter(|n| check(&p, "hot", T0 + i * 1000 + n).allowed)
                        .count()
                })
            })
            .collect();
        let allowed: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(allowed, 500, "{algorithm:?}");
    }
}

#[test]
fn a_key_unused_until_its_quota_is_whole_starts_afresh() {
    // 30 days later: past any wrap of the bucket's 32-bit millisecond clock.
    let later = T0 + 30 * 86_400 * SECOND;
    for algorithm in [
        AlgorithmKind::TokenBucket,
        AlgorithmKind::SlidingWindow,
        AlgorithmKind::FixedWindow,
    ] {
        let p = policy(algorithm, 2, 1000, None);
        for at in [T0, later, later + 3 * SECOND + 7 * MS] {
            assert!(check(&p, "k", at).allowed, "{algorithm:?}");
            assert!(check(&p, "k", at).allowed, "{algorithm:?}");
            assert!(!check(&p, "k", at).allowed, "{algorithm:?}");
        }
    }
}

#[test]
fn local_policies_bound_their_keys() {
    let config = PolicyConfig {
        max_keys: 500,
        ..PolicyConfig::default()
    };
    let p = Policy::new("p", &config, None).unwrap();
    for i in 0..10_000u64 {
        check(&p, &format!("ip:{i}"), T0 + i);
    }
    assert!(p.tracked_keys() <= 500, "{}", p.tracked_keys());
}

fn decision(policy: &str, allowed: bool, remaining: u64, reset_ms: u64) -> Decision<'_> {
    Decision {
        policy,
        allowed,
        limit: 100,
        window: Duration::from_secs(60),
        remaining,
        reset: Duration::from_millis(reset_ms),
        retry_after: (!allowed).then(|| Duration::from_millis(reset_ms)),
        store_failed: false,
    }
}

fn render(decisions: &[Decision]) -> Vec<(String, String)> {
    response_headers(decisions)
        .into_iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
        .collect()
}

#[test]
fn headers_list_every_policy_in_the_draft_form() {
    let fields = render(&[
        decision("per_ip", true, 42, 16_200),
        decision("gold", true, 7, 1000),
    ]);
    assert_eq!(
        fields,
        [
            (
                "ratelimit-policy".into(),
                r#""per_ip";q=100;w=60, "gold";q=100;w=60"#.into()
            ),
            (
                "ratelimit".into(),
                r#""per_ip";r=42;t=17, "gold";r=7;t=1"#.into()
            ),
        ]
    );
    let denied = render(&[
        decision("a", false, 0, 2_500),
        decision("b", false, 0, 9_000),
        decision("c", true, 3, 1),
    ]);
    assert_eq!(
        denied[2],
        ("retry-after".into(), "9".into()),
        "the longest wait of the denials"
    );
    let soon = render(&[decision("a", false, 0, 0)]);
    assert_eq!(soon[2].1, "1", "a denial never says retry in 0 s");
    assert!(render(&[]).is_empty());
    let mut failed = decision("shared", false, 0, 0);
    failed.store_failed = true;
    assert_eq!(
        render(&[failed.clone()]),
        [("retry-after".to_owned(), "1".to_owned())],
        "nothing known but the wait"
    );
    failed.allowed = true;
    assert_eq!(
        render(&[failed, decision("a", true, 3, 1)])[1].1,
        r#""a";r=3;t=1"#
    );
}

#[test]
fn policy_names_are_escaped_as_structured_field_strings() {
    let sf = |text: &str| {
        let mut out = String::new();
        push_sf_string(&mut out, text);
        out
    };
    assert_eq!(sf(r#"a"b\c"#), r#""a\"b\\c""#);
    assert_eq!(sf("tab\there"), r#""tabhere""#);
    assert_eq!(sf("per_consumer"), r#""per_consumer""#);
}

#[test]
fn key_sources_parse_from_their_config_spelling() {
    for text in [
        "consumer",
        "api_key",
        "client_ip",
        "route",
        "header:x-tenant-id",
    ] {
        let source = KeySource::try_from(text.to_owned()).unwrap();
        assert_eq!(String::from(source), text);
    }
    assert_eq!(
        KeySource::try_from("header:X-Tenant-Id".to_owned()).unwrap(),
        KeySource::Header(HeaderName::from_static("x-tenant-id"))
    );
    assert!(KeySource::try_from("header:bad name".to_owned()).is_err());
    assert!(
        KeySource::try_from("user".to_owned())
            .unwrap_err()
            .contains("header:NAME")
    );
}

#[test]
fn validation_names_the_field_and_says_why() {
    let invalid = |config: PolicyConfig| match config.validate("rate_limits.x") {
        Err(ConfigError::Invalid { field, reason }) => (field, reason),
        other => panic!("{other:?}"),
    };
    let base = PolicyConfig::default();
    assert!(base.validate("rate_limits.x").is_ok());
    assert_eq!(
        invalid(PolicyConfig {
            limit: 0,
            ..base.clone()
        })
        .0,
        "rate_limits.x.limit"
    );
    assert_eq!(
        invalid(PolicyConfig {
            window_ms: 0,
            ..base.clone()
        })
        .0,
        "rate_limits.x.window_ms"
    );
    let log = PolicyConfig {
        algorithm: AlgorithmKind::SlidingLog,
        limit: 20_000,
        ..base.clone()
    };
    assert!(invalid(log).1.contains("timestamp"));
    let windowed = PolicyConfig {
        algorithm: AlgorithmKind::FixedWindow,
        burst: Some(5),
        ..base.clone()
    };
    assert_eq!(invalid(windowed).0, "rate_limits.x.burst");
    let slow = PolicyConfig {
        limit: 1,
        window_ms: 3_600_000,
        burst: Some(25),
        ..base.clone()
    };
    assert!(invalid(slow).1.contains("refill within"));
    let (field, reason) = invalid(PolicyConfig {
        scope: Scope::Cluster,
        ..base.clone()
    });
    assert_eq!(field, "rate_limits.x.scope");
    assert!(
        reason.contains("fixed_window or sliding_window"),
        "{reason}"
    );
    assert_eq!(
        invalid(PolicyConfig {
            max_keys: 0,
            ..base
        })
        .0,
        "rate_limits.x.max_keys"
    );
}

#[test]
fn a_cluster_policy_needs_a_store() {
    let config = PolicyConfig {
        algorithm: AlgorithmKind::FixedWindow,
        scope: Scope::Cluster,
        ..PolicyConfig::default()
    };
    assert!(
        Policy::new("shared", &config, None)
            .unwrap_err()
            .contains("[kv]")
    );
}

#[test]
fn the_config_reads_from_toml() {
    let config: PolicyConfig = toml::from_str(
        "algorithm = \"sliding_window\"\nlimit = 10\nwindow_ms = 1000\nkey = \"header:x-tenant\"\nscope = \"cluster\"\non_store_error = \"fail_closed\"",
    )
    .unwrap();
    assert_eq!(
        config.key,
        KeySource::Header(HeaderName::from_static("x-tenant"))
    );
    assert_eq!(
        (config.scope, config.on_store_error),
        (Scope::Cluster, FailureMode::FailClosed)
    );
    assert!(
        toml::from_str::<PolicyConfig>("limt = 3").is_err(),
        "unknown fields are refused"
    );
}

#[test]
fn a_reading_from_before_the_window_counts_in_it_and_never_restarts_it() {
    // Limit 2 per second. One thread's reading just past the boundary moves the key into the
    // next window; another's, taken just before the boundary but deciding after, must count
    // in that next window, not reset it.
    for algorithm in [AlgorithmKind::FixedWindow, AlgorithmKind::SlidingWindow] {
        let p = policy(algorithm, 2, 1000, None);
        let boundary = T0 + 10 * SECOND;
        assert!(check(&p, "k", boundary + MS).allowed, "{algorithm:?}");
        let late = check(&p, "k", boundary - MS);
        assert!(late.allowed, "{algorithm:?}");
        assert_eq!(
            late.remaining, 0,
            "{algorithm:?}: counted in the new window"
        );
        assert!(
            !check(&p, "k", boundary + 2 * MS).allowed,
            "{algorithm:?}: the new window still holds both requests"
        );
    }
}

#[test]
fn long_keys_are_hashed_before_any_limiter_keeps_them() {
    assert_eq!(bounded_key("ip:10.0.0.1"), "ip:10.0.0.1");
    let long = "header:".to_owned() + &"x".repeat(500);
    let hashed = bounded_key(&long);
    assert!(
        hashed.starts_with("sha256:") && hashed.len() == 7 + 64,
        "{hashed}"
    );
    assert_ne!(hashed, bounded_key(&(long.clone() + "y")));

    // Two long keys are two keys, and a long key is counted like any other.
    let config = PolicyConfig {
        algorithm: AlgorithmKind::FixedWindow,
        limit: 1,
        window_ms: 1000,
        ..PolicyConfig::default()
    };
    let policy = Policy::new("p", &config, None).unwrap();
    assert!(policy.check_local(&long, 0).unwrap().allowed);
    assert!(!policy.check_local(&long, 1).unwrap().allowed);
    assert!(policy.check_local(&(long + "y"), 2).unwrap().allowed);
    assert_eq!(policy.tracked_keys(), 2);
}
