//! Clicks through the message broker (`--broker`): two instances on one kv-store publish their
//! clicks to the topic and count them as one consumer group, and the broker is SIGKILLed and
//! restarted in the middle of the load. Every process is real.
//!
//! What must hold afterwards (see `src/clicks/broker.rs`): the stored count reaches the number
//! of redirects served, and exceeds it by no more than the instances say may be duplicated
//! (events sent again after a failed publish, counts whose offsets were not committed).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{READY_TIMEOUT, Server, create, eventually, get, metric};
use harness::{DataDir, Process, ProcessSpec, cargo_bin, free_addr};
use rand::RngExt;

/// A server process on free ports; its address and admin address.
fn start(name: &str, dir: &DataDir, extra: &[&str]) -> (Process, SocketAddr, SocketAddr) {
    let (addr, admin) = (free_addr(), free_addr());
    let spec = ProcessSpec::new(name, cargo_bin(name))
        .args(["--listen", &addr.to_string()])
        .args(["--admin-listen", &admin.to_string()])
        .args(["--data-dir", dir.path().to_str().unwrap()])
        .args(extra.iter().copied());
    let mut process = Process::spawn(spec).unwrap();
    process.wait_ready(admin, READY_TIMEOUT).unwrap();
    (process, addr, admin)
}

fn instance(label: &str, kv: SocketAddr, broker: SocketAddr) -> Server {
    let data = DataDir::new(label);
    let config = data.join("shortener.toml");
    std::fs::write(&config, "click_flush_interval_ms = 100\n").unwrap();
    let (store, broker) = (format!("kv://{kv}"), broker.to_string());
    let args = [
        "--store",
        &store,
        "--broker",
        &broker,
        "--config",
        config.to_str().unwrap(),
    ];
    Server::start_in(data, &args)
}

/// The sum of one counter over the instances.
async fn total(instances: &[&Server], series: &str) -> u64 {
    let mut sum = 0;
    for server in instances {
        sum += metric(server.admin, series).await;
    }
    sum
}

#[tokio::test]
async fn clicks_through_the_broker_converge_after_it_is_killed_mid_load() {
    let (kv_dir, broker_dir) = (DataDir::new("clicks-kv"), DataDir::new("clicks-broker"));
    let (_kv, kv_addr, _) = start("kv-store", &kv_dir, &["--fsync", "always"]);
    let (mut broker, broker_addr, broker_admin) =
        start("message-broker", &broker_dir, &["--flush", "always"]);
    let a = instance("clicks-a", kv_addr, broker_addr);
    let b = instance("clicks-b", kv_addr, broker_addr);
    create(
        a.listen,
        r#"{"url": "https://example.com/", "alias": "hot"}"#,
    )
    .await;
    create(
        a.listen,
        r#"{"url": "https://example.com/", "alias": "cold"}"#,
    )
    .await;

    let mut rng = harness::seeded_rng();
    let before = rng.random_range(100..=200);
    let after = rng.random_range(100..=200);
    let click = |i: usize| {
        let addr = if i.is_multiple_of(2) {
            a.listen
        } else {
            b.listen
        };
        let code = if i.is_multiple_of(5) { "cold" } else { "hot" };
        async move {
            assert_eq!(get(addr, &format!("/{code}")).await.status, 302);
            code
        }
    };
    let (mut hot, mut cold) = (0u64, 0u64);
    let mut tally = |code| match code {
        "hot" => hot += 1,
        _ => cold += 1,
    };
    for i in 0..before {
        tally(click(i).await);
    }
    // The broker dies with clicks in flight and comes back while they keep coming.
    broker.kill().unwrap();
    for i in before..before + 40 {
        tally(click(i).await);
    }
    broker.restart().unwrap();
    broker.wait_ready(broker_admin, READY_TIMEOUT).unwrap();
    for i in before + 40..before + 40 + after {
        tally(click(i).await);
    }

    let clicks = |code: &'static str| {
        let addr = b.listen;
        async move {
            get(addr, &format!("/api/v1/links/{code}")).await.json()["clicks"]
                .as_u64()
                .unwrap()
        }
    };
    eventually(Duration::from_secs(60), "every click counted", || async {
        clicks("hot").await >= hot && clicks("cold").await >= cold
    })
    .await;
    let instances = [&a, &b];
    assert_eq!(
        total(&instances, "url_shortener_clicks_dropped_total").await,
        0
    );
    assert_eq!(
        total(&instances, "url_shortener_click_events_unreadable_total").await,
        0
    );
    // Let anything still in flight land before comparing with the bound.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let resent = total(&instances, "url_shortener_click_events_resent_total").await;
    let uncommitted = total(&instances, "url_shortener_clicks_uncommitted_total").await;
    let counted = clicks("hot").await + clicks("cold").await;
    let served = hot + cold;
    assert!(
        counted <= served + resent + uncommitted,
        "{counted} counted for {served} served, {resent} resent, {uncommitted} uncommitted"
    );
    assert_eq!(
        total(&instances, "url_shortener_click_events_published_total").await,
        served,
        "every event published exactly once as far as acknowledgements go"
    );
}
