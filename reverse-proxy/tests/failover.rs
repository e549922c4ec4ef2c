//! A backend process SIGKILLed under load: health checks take it out of rotation within the
//! health-check window, retries keep every idempotent request succeeding meanwhile, and when
//! it comes back the checks bring it back into rotation.
//!
//! The backends are real processes (`http-hello` from `bench/`, which answers 200 to every
//! path, `/healthz` included); the proxy runs in this process so the test can read its metrics.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use harness::{Process, ProcessSpec, cargo_bin, free_addr};
use http::StatusCode;
use reverse_proxy::config::HealthCheckKind;
use support::*;

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const INTERVAL_MS: u64 = 200;
const TIMEOUT_MS: u64 = 100;
const UNHEALTHY_THRESHOLD: u32 = 2;
/// The longest a dead endpoint can stay in rotation: the probes that must fail in a row,
/// each up to one interval apart, plus one probe timeout.
const HEALTH_WINDOW: Duration =
    Duration::from_millis(INTERVAL_MS * UNHEALTHY_THRESHOLD as u64 + TIMEOUT_MS);
/// Scheduling noise on a loaded test machine.
const SLACK: Duration = Duration::from_millis(1000);

struct Hello {
    process: Process,
    listen: SocketAddr,
    admin: SocketAddr,
}

fn start_hello(name: &str) -> Hello {
    let (listen, admin) = (free_addr(), free_addr());
    let spec = ProcessSpec::new(name, cargo_bin("http-hello"))
        .args(["--listen", &listen.to_string()])
        .args(["--admin-listen", &admin.to_string()]);
    let mut process = Process::spawn(spec).unwrap();
    process.wait_ready(admin, READY_TIMEOUT).unwrap();
    Hello {
        process,
        listen,
        admin,
    }
}

fn healthy_series(endpoint: SocketAddr) -> String {
    format!("proxy_endpoint_healthy{{cluster=\"app\",endpoint=\"{endpoint}\"}}")
}

/// Polls the proxy's metrics until `series` has `value`; returns how long that took.
async fn wait_for_metric(proxy: &RunningProxy, series: &str, value: f64) -> Duration {
    let started = Instant::now();
    loop {
        let metrics = proxy.metrics().await;
        if metric(&metrics, series) == Some(value) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < TEST_TIMEOUT,
            "{series} never {value}:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backend_is_ejected_in_the_window_without_failing_a_request_and_returns() {
    let mut backends = tokio::task::spawn_blocking(|| {
        (0..3)
            .map(|i| start_hello(&format!("hello-{i}")))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let addrs: Vec<_> = backends.iter().map(|b| b.listen).collect();
    let mut cluster = cluster(&addrs);
    cluster.health_check.kind = HealthCheckKind::Http;
    cluster.health_check.path = "/healthz".into();
    cluster.health_check.interval_ms = INTERVAL_MS;
    cluster.health_check.timeout_ms = TIMEOUT_MS;
    cluster.health_check.unhealthy_threshold = UNHEALTHY_THRESHOLD;
    cluster.health_check.healthy_threshold = 2;
    let proxy = RunningProxy::start(config_with(cluster)).await;

    // Load: three clients, each on its own keep-alive connection, GET in a loop. Three is
    // the retry budget's floor (`budget_min_concurrency`): with more clients than that, all
    // failing at the same instant, the budget would refuse some retries on purpose (20% of
    // the requests in flight may be retries) and those clients would see the 502.
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..3)
        .map(|_| {
            let (addr, stop) = (proxy.addr, stop.clone());
            tokio::spawn(async move {
                let mut client = HyperClient::connect(addr).await;
                let (mut ok, mut failed) = (0u64, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let (status, headers, _) = client.get("/").await;
                    match status {
                        StatusCode::OK => ok += 1,
                        _ => failed.push(format!("{status} {:?}", headers.get("proxy-status"))),
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let victim = backends[0].listen;
    let mut killed = backends.remove(0);
    let killed_at = Instant::now();
    killed.process.kill().unwrap();
    let ejected_after = wait_for_metric(&proxy, &healthy_series(victim), 0.0).await;
    assert!(
        killed_at.elapsed() <= HEALTH_WINDOW + SLACK,
        "marked unhealthy {ejected_after:?} after the kill; window {HEALTH_WINDOW:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Back on the same address: the checks bring it back, and it gets requests again.
    killed = tokio::task::spawn_blocking(move || {
        killed.process.restart().unwrap();
        killed
            .process
            .wait_ready(killed.admin, READY_TIMEOUT)
            .unwrap();
        killed
    })
    .await
    .unwrap();
    wait_for_metric(&proxy, &healthy_series(victim), 1.0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);

    let mut total = 0;
    let metrics = proxy.metrics().await;
    for task in load {
        let (ok, failed) = task.await.unwrap();
        assert!(failed.is_empty(), "requests failed: {failed:?}\n{metrics}");
        total += ok;
    }
    assert!(total > 100, "the load ran: {total} requests");
    let (_, _, hello_metrics) = get(killed.admin, "/metrics").await;
    let served = metric(text(&hello_metrics), "http_hello_requests_total").unwrap_or(0.0);
    assert!(served > 0.0, "the restarted backend gets traffic again");
    proxy.stop().await;
    drop(backends);
}
