//! Phases 4 and 5 end to end: a circuit that opens under injected upstream failures and
//! closes through half-open (on a clock the test moves), and idempotency keys: a replay, a
//! retry racing the first request, a key reused for another request, exactly one effect.

mod support;

use std::time::Duration;

use support::{Gateway, Upstream, cluster};

fn breaker_config(upstream: &Upstream) -> String {
    format!(
        r#"
[gateway]
access_log = false

[circuit_breakers.flaky]
consecutive_failures = 3
failure_rate_percent = 0
open_ms = 5000
half_open_probes = 2

[[routes]]
name = "flaky"
path_prefix = "/"
cluster = "flaky"

{}
"#,
        cluster("flaky", upstream)
    )
}

#[tokio::test]
async fn a_circuit_opens_under_failures_and_closes_through_half_open() {
    let upstream = Upstream::start("flaky").await;
    let (gateway, clock) = Gateway::start_manual(&breaker_config(&upstream)).await;
    assert_eq!(gateway.get("/", &[]).await.status, 200);

    upstream.fail_with(500);
    for _ in 0..3 {
        assert_eq!(
            gateway.get("/", &[]).await.status,
            500,
            "failures pass through until the circuit opens"
        );
    }
    let hits = upstream.hits();
    let reply = gateway.get("/", &[]).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json()["error"], "circuit_open");
    assert_eq!(reply.header("retry-after"), Some("5"));
    assert_eq!(
        upstream.hits(),
        hits,
        "an open circuit sends nothing upstream"
    );
    let metrics = gateway.metrics().await;
    assert!(
        metrics.contains(r#"gateway_circuit_breaker_state{cluster="flaky"} 2"#),
        "{metrics}"
    );

    // Half-open after open_ms; a failing probe opens it again for another open_ms.
    clock.advance(Duration::from_millis(5000));
    assert_eq!(
        gateway.get("/", &[]).await.status,
        500,
        "the probe reaches the upstream"
    );
    assert_eq!(
        gateway.get("/", &[]).await.status,
        503,
        "open again after a failed probe"
    );

    // The upstream recovers: the probes succeed and the circuit closes.
    upstream.fail_with(0);
    clock.advance(Duration::from_millis(5000));
    assert_eq!(gateway.get("/", &[]).await.status, 200);
    assert_eq!(gateway.get("/", &[]).await.status, 200);
    for _ in 0..10 {
        assert_eq!(
            gateway.get("/", &[]).await.status,
            200,
            "closed: everything flows"
        );
    }
    let metrics = gateway.metrics().await;
    assert!(
        metrics.contains(r#"gateway_circuit_breaker_state{cluster="flaky"} 0"#),
        "{metrics}"
    );
    gateway.stop().await;
}

fn idempotent_config(upstream: &Upstream) -> String {
    format!(
        r#"
[gateway]
access_log = false

[[routes]]
name = "payments"
path_prefix = "/"
cluster = "payments"

{}
"#,
        cluster("payments", upstream)
    )
}

#[tokio::test]
async fn a_retried_post_with_the_same_key_gets_the_stored_response_and_has_one_effect() {
    let upstream = Upstream::start("payments").await;
    let gateway = Gateway::start(&idempotent_config(&upstream)).await;
    let key = [("idempotency-key", "order-1")];
    let first = gateway.post("/charges", &key, r#"{"amount":100}"#).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("idempotent-replayed"), None);
    let again = gateway.post("/charges", &key, r#"{"amount":100}"#).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body, first.body, "the stored response, byte for byte");
    assert_eq!(upstream.effects(), 1);

    let other = gateway.post("/charges", &key, r#"{"amount":999}"#).await;
    assert_eq!(other.status, 422);
    assert_eq!(other.json()["error"], "idempotency_mismatch");
    let fresh = gateway
        .post("/charges", &[("idempotency-key", "order-2")], "{}")
        .await;
    assert_eq!(fresh.status, 200);
    let unkeyed = gateway.post("/charges", &[], "{}").await;
    assert_eq!(unkeyed.status, 200);
    assert_eq!(upstream.effects(), 3, "a new key and no key both run");
    let too_long = "k".repeat(300);
    let bad = gateway
        .post("/charges", &[("idempotency-key", too_long.as_str())], "{}")
        .await;
    assert_eq!(bad.status, 400);
    gateway.stop().await;
}

#[tokio::test]
async fn a_retry_racing_the_first_request_gets_409_and_the_effect_happens_once() {
    let upstream = Upstream::start("payments").await;
    let gateway = Gateway::start(&idempotent_config(&upstream)).await;
    let addr = gateway.addr;
    let first = tokio::spawn(async move {
        let key = [("idempotency-key", "race-1")];
        support::send(addr, http::Method::POST, "/sleep/500", &key, "pay".into()).await
    });
    // Wait until the first request is at the upstream, then race it.
    let deadline = tokio::time::Instant::now() + support::TEST_TIMEOUT;
    while upstream.hits() == 0 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let racing = gateway
        .post("/sleep/500", &[("idempotency-key", "race-1")], "pay")
        .await;
    assert_eq!(racing.status, 409);
    assert_eq!(racing.json()["error"], "idempotency_conflict");
    assert!(racing.header("retry-after").is_some());
    let first = first.await.unwrap();
    assert_eq!(first.status, 200);
    let after = gateway
        .post("/sleep/500", &[("idempotency-key", "race-1")], "pay")
        .await;
    assert_eq!(after.header("idempotent-replayed"), Some("true"));
    assert_eq!(upstream.effects(), 1);
    gateway.stop().await;
}

#[tokio::test]
async fn a_request_that_never_reached_the_upstream_frees_its_key() {
    let upstream = Upstream::start("payments").await;
    let config = idempotent_config(&upstream);
    // Nothing listens on the cluster's address once the upstream stops: connects are refused.
    upstream_stop_keep_addr(upstream, &config, |gateway| async move {
        let key = [("idempotency-key", "k-1")];
        let refused = gateway.post("/charges", &key, "{}").await;
        assert_eq!(refused.status, 502);
        let retried = gateway.post("/charges", &key, "{}").await;
        assert_eq!(
            retried.status, 502,
            "runs again (not replayed, not 409): nothing was sent"
        );
        assert_eq!(retried.header("idempotent-replayed"), None);
        gateway.stop().await;
    })
    .await;
}

async fn upstream_stop_keep_addr<F, Fut>(upstream: Upstream, config: &str, test: F)
where
    F: FnOnce(Gateway) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    upstream.stop().await;
    let gateway = Gateway::start(config).await;
    test(gateway).await;
}
