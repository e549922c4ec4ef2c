//! Case study 3: payments-style idempotency.
//!
//! A client that does not hear back from a POST cannot tell whether it ran: the request may
//! have been lost on the way, or its answer on the way back. Sending it again is only safe if
//! the server can recognise the retry. Here the client is creating links, but the pattern is
//! Stripe's for charges: every POST carries an `Idempotency-Key`; the gateway runs the first
//! request with a key, stores its response in the kv-store, and answers any retry with the
//! same key from there (`api-gateway/src/phase/idempotency.rs`).
//!
//! **Guarantee.** A POST retried with the same key has exactly one effect, however the first
//! attempt ended:
//!
//! 1. answered, then the gateway is SIGKILLed and restarted: the retry is answered from the
//!    kv-store with the first response (the same code), marked `Idempotent-Replayed: true`;
//! 2. cut off by the gateway's route timeout while the upstream was still working (504): the
//!    upstream's effect happens once, and the retry, even after another gateway restart, is
//!    answered with that stored 504 rather than run again. An ambiguous outcome is stored as
//!    the outcome, because running the request again could act twice.
//!
//! "One effect" is counted where it lands: the links stored with the request's target URL.
//!
//! What is not promised: a retry while the first attempt is still running gets 409 (it is
//! not queued behind it), and a gateway killed in the middle of a request leaves its claim on
//! the key until `lock_ttl_ms`, during which retries get 409 too.

use std::time::Duration;

use integration_tests::{Reply, Running, all_links, create_link};

const TOPOLOGY: &str = "
[message-broker]
count = 0
[url-shortener]
count = 1
";

/// Links stored with this target.
async fn links_to(running: &Running, url: &str) -> usize {
    let links = all_links(running.entry()).await;
    links.iter().filter(|link| link["url"] == url).count()
}

fn replayed(reply: &Reply) -> bool {
    reply.header("idempotent-replayed") == Some("true")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_post_has_one_effect_across_a_gateway_restart_and_an_upstream_timeout() {
    let running = Running::start("case-idempotency", TOPOLOGY);
    let entry = running.entry();

    // 1. Answered, then the gateway dies; the retry after its restart is a replay.
    let url = "https://shop.example/orders/1".to_owned();
    let first = create_link(entry, &url, Some("order-1")).await;
    assert_eq!(first.status, 201, "{first:?}");
    assert!(!replayed(&first));
    running.operate("kill", |c| c.kill("api-gateway-1")).await;
    running
        .operate("restart", |c| c.restart("api-gateway-1"))
        .await;
    let retry = create_link(entry, &url, Some("order-1")).await;
    assert_eq!(retry.status, 201, "{retry:?}");
    assert!(replayed(&retry), "the retry ran again: {retry:?}");
    assert_eq!(retry.json()["code"], first.json()["code"]);
    assert_eq!(links_to(&running, &url).await, 1);

    // 2. The upstream is slow: its answer comes 4 s late, past the gateway's 3 s route
    //    timeout, so the first attempt ends in 504 while the link is created all the same.
    let url = "https://shop.example/orders/2".to_owned();
    running
        .operate("latency", |c| {
            c.latency("api-gateway", "url-shortener", 4000)
        })
        .await;
    let first = create_link(entry, &url, Some("order-2")).await;
    assert_eq!(first.status, 504, "{first:?}");
    running.operate("heal", |c| c.heal(None)).await;
    assert_eq!(links_to(&running, &url).await, 1, "the upstream acted once");

    // The client retries, then again after a gateway restart: never a second link.
    let retry = create_link(entry, &url, Some("order-2")).await;
    assert_eq!((retry.status, replayed(&retry)), (504, true), "{retry:?}");
    running
        .operate("restart", |c| c.restart("api-gateway-1"))
        .await;
    let retry = create_link(entry, &url, Some("order-2")).await;
    assert_eq!((retry.status, replayed(&retry)), (504, true), "{retry:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(links_to(&running, &url).await, 1, "one effect in all");

    // The same request under a new key is a new request: a second link.
    let other = create_link(entry, &url, Some("order-2-again")).await;
    assert_eq!(other.status, 201, "{other:?}");
    assert_eq!(links_to(&running, &url).await, 2);
}
