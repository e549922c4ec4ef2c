//! Crash safety: what the API acknowledged survives `kill -9`, and a restarted instance never
//! hands out a code it handed out before.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{READY_TIMEOUT, Server, create, eventually, get, metric, send};

#[tokio::test]
async fn acknowledged_links_survive_sigkill_and_codes_are_never_reused() {
    // One worker: the single-threaded runtime the benchmark uses.
    let mut server = Server::start("shortener-restart", &["--workers", "1"]);
    let addr = server.listen;

    let mut codes = HashSet::new();
    for i in 0..20 {
        let link = create(addr, &format!(r#"{{"url": "https://example.com/{i}"}}"#)).await;
        codes.insert(link["code"].as_str().unwrap().to_owned());
    }
    create(
        addr,
        r#"{"url": "https://example.com/alias", "alias": "kept-alias", "redirect": 301}"#,
    )
    .await;
    let patched = send(
        addr,
        "PATCH",
        "/api/v1/links/kept-alias",
        &[],
        Some(r#"{"url": "https://example.com/patched"}"#),
    )
    .await;
    assert_eq!(patched.status, 200);
    let deleted_code = codes.iter().next().unwrap().clone();
    assert_eq!(
        send(
            addr,
            "DELETE",
            &format!("/api/v1/links/{deleted_code}"),
            &[],
            None
        )
        .await
        .status,
        204
    );
    for _ in 0..3 {
        get(addr, "/kept-alias").await;
    }
    // Click counts are flushed about once a second; wait for that before the crash. The API
    // shows a count as soon as sled has it in memory, before the flush to disk returns; the
    // counter moves only after it, so that is what tells the counts are durable.
    let admin = server.admin;
    eventually(Duration::from_secs(10), "3 clicks flushed", || async {
        metric(admin, "url_shortener_clicks_flushed_total").await == 3
    })
    .await;

    server.process.kill().unwrap();
    server.process.restart().unwrap();
    server
        .process
        .wait_ready(server.admin, READY_TIMEOUT)
        .unwrap();

    for code in &codes {
        let reply = get(addr, &format!("/{code}")).await;
        let expected = if *code == deleted_code { 404 } else { 302 };
        assert_eq!(reply.status, expected, "{code}: {reply:?}");
    }
    let kept = get(addr, "/api/v1/links/kept-alias").await.json();
    assert_eq!(kept["url"], "https://example.com/patched");
    assert_eq!(kept["redirect"], 301);
    assert_eq!(kept["clicks"], 3);

    // The crash lost the rest of the id block, never an id: new codes are all new.
    for i in 0..20 {
        let link = create(
            addr,
            &format!(r#"{{"url": "https://example.com/after/{i}"}}"#),
        )
        .await;
        let code = link["code"].as_str().unwrap().to_owned();
        assert!(
            codes.insert(code.clone()),
            "{code} was handed out before the crash"
        );
    }
}
