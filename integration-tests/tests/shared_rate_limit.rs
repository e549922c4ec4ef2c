//! Case study 2: a rate-limited public API behind two gateways.
//!
//! Two API-gateway instances behind the reverse proxy, which spreads the requests between
//! them; both enforce one limit on link creations (a fixed window of one second, counted in
//! the kv-store: `api-gateway/src/ratelimit/cluster.rs`). The client asks for three times the
//! limit, for ten seconds, and one gateway is restarted in the middle.
//!
//! **Guarantee.** The creations admitted by both gateways together stay within the limit of
//! the windows the run touched: at most `limit x (windows + 1)` (the extra window for a
//! request sent at the end of one window and decided at the start of the next), and at least
//! 90% of `limit x` the windows wholly inside the run, since the offered load fills every
//! window. What holds it: the counters are in the store, not in either gateway, so a second
//! gateway does not double the limit and a restarted one does not start from zero. Two
//! gateways counting locally would admit about twice as much; the test says so when it fails.
//!
//! What is not promised: exact per-window counts at the edges (the gateways' clocks decide
//! which window a request falls in), and admission while the store is unreachable (the
//! policy here fails open: `on_store_error = "fail_open"`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cluster::load::{self, LoadConfig, Op};
use integration_tests::{Running, metric};
use rand::RngExt;

/// The gateways' shared limit on creations, per one-second window.
const LIMIT: u64 = 20;

/// Offered load: three times the limit.
const RATE: u32 = 60;

/// Length of the run.
const RUN: Duration = Duration::from_secs(10);

/// No broker (clicks play no part), one url-shortener, two gateways sharing [`LIMIT`].
fn topology() -> String {
    format!(
        "[message-broker]\ncount = 0\n[url-shortener]\ncount = 1\n\
         [api-gateway]\ncount = 2\ncreate_limit_per_second = {LIMIT}\n"
    )
}

/// Sleeps until half a second past a whole Unix second, so the run starts mid-window.
async fn sleep_to_mid_window() {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let into_second = Duration::from_nanos(u64::from(now.subsec_nanos()));
    let wait = (Duration::from_millis(1500) - into_second).as_millis() % 1000;
    tokio::time::sleep(Duration::from_millis(wait as u64)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_admit_one_limit_while_one_of_them_restarts() {
    let mut rng = harness::seeded_rng();
    let running = Running::start("case-shared-limit", &topology());
    let config = LoadConfig {
        target: running.entry(),
        api_key: "demo-key".into(),
        rate: RATE,
        duration: RUN,
        create_percent: 100,
        initial_links: 0,
        max_in_flight: 1000,
        timeout: Duration::from_secs(10),
        seed: rng.random(),
    };
    sleep_to_mid_window().await;
    let started = SystemTime::now();
    let load = tokio::spawn(load::run(config, |progress| {
        eprintln!("[load] {}", progress.line())
    }));
    tokio::time::sleep(Duration::from_secs(4)).await;
    running
        .operate("restart", |c| c.restart("api-gateway-1"))
        .await;
    let report = load.await.unwrap().unwrap_or_else(|e| panic!("{e}"));
    let ended = SystemTime::now();
    eprint!("{}", report.summary());

    let creations = report.tallies.of(Op::Create);
    let admitted = creations.ok;
    let limited = creations.errors.get("429").copied().unwrap_or(0);
    let second = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let touched = second(ended) - second(started) + 1;
    let whole = touched.saturating_sub(2);
    let (most, least) = (LIMIT * (touched + 1), LIMIT * whole * 9 / 10);
    eprintln!(
        "[test] {admitted} admitted, {limited} limited, {} other failures ({:?}) over {touched} windows",
        creations.failed() - limited,
        creations.errors
    );
    assert!(
        admitted <= most,
        "{admitted} creations admitted over {touched} windows of {LIMIT}: more than the \
         limit allows (at most {most}); gateways counting on their own would admit about \
         {} ",
        2 * LIMIT * touched
    );
    assert!(
        admitted >= least,
        "only {admitted} creations admitted over {whole} whole windows of {LIMIT} \
         (at least {least} expected): the limit turned away more than it should"
    );
    assert!(limited > 0, "the limit never turned a request away");
    // The restarted gateway serves again, and the other one served throughout.
    for gateway in ["api-gateway-1", "api-gateway-2"] {
        let served = metric(running.admin(gateway), "gateway_requests_total").await;
        assert!(served > 0, "{gateway} served nothing since its start");
    }
}
