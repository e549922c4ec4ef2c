//! Several instances on one kv-store (`--store kv://IP:PORT`), every process real: codes are
//! never handed out twice across instances, an alias has one owner whichever instance is
//! asked, each instance sees the others' links, clicks and deletions, and the links outlive
//! the instance that wrote them and a SIGKILLed kv-store run with `--fsync always`.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::{READY_TIMEOUT, Server, create, eventually, get, list_codes, post, send};
use harness::{DataDir, Process, ProcessSpec, cargo_bin, free_addr};
use rand::RngExt;

/// A kv-store process on free ports, acknowledging writes only after their fsync; and its
/// address and admin address.
fn kv_store(dir: &DataDir) -> (Process, SocketAddr, SocketAddr) {
    let (addr, admin) = (free_addr(), free_addr());
    let spec = ProcessSpec::new("kv-store", cargo_bin("kv-store"))
        .args(["--listen", &addr.to_string()])
        .args(["--admin-listen", &admin.to_string()])
        .args(["--data-dir", dir.path().to_str().unwrap()])
        .args(["--fsync", "always"]);
    let mut process = Process::spawn(spec).unwrap();
    process.wait_ready(admin, READY_TIMEOUT).unwrap();
    (process, addr, admin)
}

/// An instance on the shared store, with short cache lifetimes so that the others' changes
/// show quickly, and frequent click flushes.
fn instance(label: &str, kv: SocketAddr) -> Server {
    let data = DataDir::new(label);
    let config = data.join("shortener.toml");
    std::fs::write(
        &config,
        "cache_ttl_ms = 200\ncache_negative_ttl_ms = 100\nclick_flush_interval_ms = 50\n",
    )
    .unwrap();
    let store = format!("kv://{kv}");
    let args = [
        "--store",
        &store,
        "--workers",
        "1",
        "--config",
        config.to_str().unwrap(),
    ];
    Server::start_in(data, &args)
}

#[tokio::test]
async fn instances_on_one_kv_store_share_links_and_never_hand_out_a_code_twice() {
    let kv_dir = DataDir::new("shortener-shared-kv");
    let (mut kv, kv_addr, kv_admin) = kv_store(&kv_dir);
    let a = instance("shortener-shared-a", kv_addr);
    let b = instance("shortener-shared-b", kv_addr);
    let (a_addr, b_addr) = (a.listen, b.listen);

    // Seeded concurrent creations through both instances at once.
    let mut rng = harness::seeded_rng();
    let count = rng.random_range(60..=160);
    let creations: Vec<_> = (0..count)
        .map(|i| {
            let addr = if rng.random::<bool>() { a_addr } else { b_addr };
            let body = format!(r#"{{"url": "https://example.com/shared/{i}"}}"#);
            tokio::spawn(async move { (i, create(addr, &body).await) })
        })
        .collect();
    let mut codes = HashMap::new();
    for creation in creations {
        let (i, link) = creation.await.unwrap();
        let code = link["code"].as_str().unwrap().to_owned();
        assert!(
            codes.insert(code.clone(), i).is_none(),
            "{code} handed out twice"
        );
    }
    // Every link redirects through either instance.
    for (code, i) in &codes {
        let target = format!("https://example.com/shared/{i}");
        for addr in [a_addr, b_addr] {
            let reply = get(addr, &format!("/{code}")).await;
            assert_eq!(reply.header("location"), Some(target.as_str()), "{reply:?}");
        }
    }

    // One alias, contended through both instances: one owner.
    let contenders: Vec<_> = (0..12)
        .map(|i| {
            let addr = if i % 2 == 0 { a_addr } else { b_addr };
            let body =
                format!(r#"{{"url": "https://example.com/alias/{i}", "alias": "shared-alias"}}"#);
            tokio::spawn(async move { post(addr, "/api/v1/links", &body).await.status })
        })
        .collect();
    let mut statuses = Vec::new();
    for contender in contenders {
        statuses.push(contender.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "{statuses:?}"
    );

    // Clicks through both are counted in one place.
    for addr in [a_addr, b_addr, a_addr, b_addr, b_addr] {
        assert_eq!(get(addr, "/shared-alias").await.status, 302);
    }
    eventually(
        Duration::from_secs(10),
        "5 clicks from two instances",
        || async { get(a_addr, "/api/v1/links/shared-alias").await.json()["clicks"] == 5 },
    )
    .await;

    // The listing through either instance pages through every link once, in code order.
    let seen = list_codes(b_addr, 50).await;
    let mut expected: Vec<String> = codes.keys().cloned().collect();
    expected.push("shared-alias".into());
    expected.sort();
    assert_eq!(seen, expected);

    // A deletion through one instance is seen by the other once its cache entry ages out.
    let deleted = send(a_addr, "DELETE", "/api/v1/links/shared-alias", &[], None).await;
    assert_eq!(deleted.status, 204);
    eventually(Duration::from_secs(5), "the deletion seen by b", || async {
        get(b_addr, "/shared-alias").await.status == 404
    })
    .await;

    // The links outlive their writers and a SIGKILL of the store itself.
    drop(a);
    kv.kill().unwrap();
    kv.restart().unwrap();
    kv.wait_ready(kv_admin, READY_TIMEOUT).unwrap();
    eventually(
        Duration::from_secs(10),
        "b serves again after the store's restart",
        || async { get(b_addr, "/api/v1/links?limit=1").await.status == 200 },
    )
    .await;
    let c = instance("shortener-shared-c", kv_addr);
    for (code, i) in &codes {
        let target = format!("https://example.com/shared/{i}");
        let reply = get(c.listen, &format!("/{code}")).await;
        assert_eq!(reply.header("location"), Some(target.as_str()), "{reply:?}");
    }
    // New instances lease new blocks: nothing handed out before comes back.
    for i in 0..20 {
        let link = create(
            c.listen,
            &format!(r#"{{"url": "https://example.com/c/{i}"}}"#),
        )
        .await;
        let code = link["code"].as_str().unwrap().to_owned();
        assert!(!codes.contains_key(&code), "{code} was handed out before");
    }
}
