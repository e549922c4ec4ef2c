//! Phase 3 end to end: the RateLimit fields on every limited response, 429 with Retry-After,
//! a consumer's plan on top of the route's policy, and two gateway instances enforcing one
//! limit through a real kv-store process (with the configured behaviour when it dies).

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use api_gateway::clock::ManualClock;
use harness::{DataDir, Process, ProcessSpec, cargo_bin, free_addr};
use support::{Gateway, Upstream, cluster};

const ALICE: (&str, &str) = ("x-api-key", "alice-demo-key");

fn local_config(upstream: &Upstream) -> String {
    format!(
        r#"
[gateway]
access_log = false

[auth]
api_keys = [
  {{ id = "alice-1", sha256 = "0572c17ed012b3efdf9df98db1718f225887132739b8da945d81ac5a7d1fea45", consumer = "alice" }},
]

[consumers.alice]
plan = "tiny"

[plans.tiny]
rate_limits = ["alice_plan"]

[rate_limits.per_ip]
algorithm = "token_bucket"
limit = 5
window_ms = 10000
burst = 5
key = "client_ip"

[rate_limits.alice_plan]
algorithm = "fixed_window"
limit = 3
window_ms = 60000
key = "consumer"

[[routes]]
name = "open"
path_prefix = "/open"
rate_limits = ["per_ip"]
cluster = "api"

[[routes]]
name = "keyed"
path_prefix = "/keyed"
auth = ["api_key"]
cluster = "api"

{}
"#,
        cluster("api", upstream)
    )
}

#[tokio::test]
async fn a_burst_passes_then_429_with_retry_after_and_ratelimit_fields() {
    let upstream = Upstream::start("api").await;
    let (gateway, clock) = Gateway::start_manual(&local_config(&upstream)).await;
    for i in 0..5 {
        let reply = gateway.get("/open/x", &[]).await;
        assert_eq!(reply.status, 200, "request {i} of the burst");
        let policy = reply
            .header("ratelimit-policy")
            .expect("RateLimit-Policy on every limited response");
        assert!(policy.contains("\"per_ip\""), "{policy}");
        let state = reply.header("ratelimit").expect("RateLimit");
        assert!(
            state.contains(&format!("r={}", 4 - i)),
            "request {i}: {state}"
        );
    }
    let reply = gateway.get("/open/x", &[]).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.json()["error"], "rate_limited");
    // One token every 2 s (5 per 10 s).
    assert_eq!(reply.header("retry-after"), Some("2"));
    assert!(reply.header("ratelimit").unwrap().contains("r=0"));
    assert_eq!(upstream.hits(), 5);

    clock.advance(Duration::from_secs(2));
    assert_eq!(
        gateway.get("/open/x", &[]).await.status,
        200,
        "one token back after 2 s"
    );
    assert_eq!(gateway.get("/open/x", &[]).await.status, 429);
    let metrics = gateway.metrics().await;
    assert!(
        metrics
            .contains(r#"gateway_rate_limit_decisions_total{decision="denied",policy="per_ip"} 2"#),
        "{metrics}"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn a_consumers_plan_limits_its_requests_on_every_route() {
    let upstream = Upstream::start("api").await;
    let (gateway, _clock) = Gateway::start_manual(&local_config(&upstream)).await;
    for _ in 0..3 {
        assert_eq!(gateway.get("/keyed/x", &[ALICE]).await.status, 200);
    }
    let reply = gateway.get("/keyed/x", &[ALICE]).await;
    assert_eq!(reply.status, 429);
    assert!(
        reply.json()["message"]
            .as_str()
            .unwrap()
            .contains("alice_plan")
    );
    gateway.stop().await;
}

/// A kv-store process on fresh ports.
fn kv_store(dir: &DataDir) -> (Process, SocketAddr) {
    let (addr, admin) = (free_addr(), free_addr());
    let spec = ProcessSpec::new("kv-store", cargo_bin("kv-store")).args([
        "--listen",
        &addr.to_string(),
        "--admin-listen",
        &admin.to_string(),
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    let mut process = Process::spawn(spec).unwrap();
    process.wait_ready(admin, Duration::from_secs(60)).unwrap();
    (process, addr)
}

fn shared_config(upstream: &Upstream, kv: SocketAddr, algorithm: &str, on_error: &str) -> String {
    format!(
        r#"
[gateway]
access_log = false

[kv]
address = "{kv}"
timeout_ms = 500

[rate_limits.shared_{algorithm}]
algorithm = "{algorithm}"
limit = 100
window_ms = 60000
key = "route"
scope = "cluster"
on_store_error = "{on_error}"

[[routes]]
name = "api"
path_prefix = "/"
rate_limits = ["shared_{algorithm}"]
cluster = "api"

{}
"#,
        cluster("api", upstream)
    )
}

#[tokio::test]
async fn two_gateways_share_one_limit_through_the_kv_store_and_fail_as_configured() {
    let dir = DataDir::new("gateway-shared-limit");
    let (mut kv, kv_addr) = kv_store(&dir);
    let upstream = Upstream::start("api").await;
    for (algorithm, on_error) in [
        ("fixed_window", "fail_closed"),
        ("sliding_window", "fail_open"),
    ] {
        // One clock for both instances: their windows line up exactly, as on synchronised hosts.
        let clock = ManualClock::starting_at(Duration::from_secs(1_800_000_000 + 7));
        let config = shared_config(&upstream, kv_addr, algorithm, on_error);
        let mut gateways = Vec::new();
        for _ in 0..2 {
            let dir = tempfile::tempdir().unwrap();
            gateways.push(Gateway::start_with(&config, clock.clone() as Arc<_>, dir).await);
        }
        let before = upstream.hits();
        let mut admitted = [0u32; 2];
        for i in 0..300 {
            let which = i % 2;
            let reply = gateways[which].get(&format!("/{algorithm}/{i}"), &[]).await;
            match reply.status {
                200 => admitted[which] += 1,
                429 => {}
                other => panic!("{algorithm}: request {i} got {other}"),
            }
        }
        assert_eq!(
            admitted[0] + admitted[1],
            100,
            "{algorithm}: one limit for both: {admitted:?}"
        );
        assert!(
            admitted[0] > 0 && admitted[1] > 0,
            "{algorithm}: both served: {admitted:?}"
        );
        assert_eq!(upstream.hits() - before, 100);
        for gateway in gateways {
            gateway.stop().await;
        }
    }

    // The store dies: each policy does what its on_store_error says.
    kv.kill().unwrap();
    let clock = ManualClock::starting_at(Duration::from_secs(1_800_000_000));
    for (on_error, status) in [("fail_closed", 503), ("fail_open", 200)] {
        let config = shared_config(&upstream, kv_addr, "fixed_window", on_error);
        let dir = tempfile::tempdir().unwrap();
        let gateway = Gateway::start_with(&config, clock.clone() as Arc<_>, dir).await;
        let reply = gateway.get("/after-the-store-died", &[]).await;
        assert_eq!(reply.status, status, "{on_error}");
        gateway.stop().await;
    }
}
