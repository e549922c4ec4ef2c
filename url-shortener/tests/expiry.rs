//! Expiry with controlled time: the library's `run` on a loopback port with a `ManualClock`,
//! so hours pass in microseconds and nothing sleeps to wait for a deadline.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{create, eventually, get, send};
use service_kit::admin::AdminState;
use service_kit::metrics::Registry;
use service_kit::shutdown::Shutdown;
use url_shortener::clock::ManualClock;
use url_shortener::config::Config;
use url_shortener::store::SledStore;

/// 2030-01-01T00:00:00Z.
const START_MS: u64 = 1_893_456_000_000;

struct InProcess {
    addr: std::net::SocketAddr,
    clock: ManualClock,
    stop: Shutdown,
    task: tokio::task::JoinHandle<Result<(), url_shortener::RunError>>,
    _dir: tempfile::TempDir,
}

async fn start(config: Config) -> InProcess {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), 8 << 20).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let clock = ManualClock::new(START_MS);
    let stop = Shutdown::new();
    let admin = AdminState::new(Registry::new());
    let task = tokio::spawn(url_shortener::run(
        listener,
        config,
        store,
        Arc::new(clock.clone()),
        admin,
        stop.clone(),
    ));
    InProcess {
        addr,
        clock,
        stop,
        task,
        _dir: dir,
    }
}

impl InProcess {
    async fn stop(self) {
        self.stop.trigger();
        let result = tokio::time::timeout(Duration::from_secs(10), self.task).await;
        result.expect("run drains within 10 s").unwrap().unwrap();
    }
}

#[tokio::test]
async fn a_link_redirects_until_its_ttl_then_answers_410_until_extended() {
    let server = start(Config::default()).await;
    let addr = server.addr;
    let link = create(
        addr,
        r#"{"url": "https://example.com/", "alias": "short-lived", "ttl_seconds": 3600}"#,
    )
    .await;
    assert_eq!(link["expires_at"], "2030-01-01T01:00:00Z");

    server.clock.advance(Duration::from_secs(3599));
    assert_eq!(
        get(addr, "/short-lived").await.status,
        302,
        "one second before expiry"
    );
    server.clock.advance(Duration::from_secs(1));
    // The link is in the cache by now: expiry is checked on every answer, cached or not.
    let message = get(addr, "/short-lived").await.error(410, "expired");
    assert!(message.contains("2030-01-01T01:00:00Z"), "{message}");
    let metadata = get(addr, "/api/v1/links/short-lived").await.json();
    assert_eq!(metadata["expired"], true);

    let extended = send(
        addr,
        "PATCH",
        "/api/v1/links/short-lived",
        &[],
        Some(r#"{"expires_at": null}"#),
    )
    .await;
    assert_eq!(extended.status, 200, "{extended:?}");
    assert_eq!(extended.json()["expires_at"], serde_json::Value::Null);
    assert_eq!(get(addr, "/short-lived").await.status, 302);
    server.stop().await;
}

#[tokio::test]
async fn a_permanent_redirect_is_never_cached_past_the_links_expiry() {
    let server = start(Config::default()).await;
    let addr = server.addr;
    create(addr, r#"{"url": "https://example.com/", "alias": "perm-expiring", "redirect": 301, "expires_at": "2030-01-01T00:01:40Z"}"#).await;
    let reply = get(addr, "/perm-expiring").await;
    assert_eq!(reply.status, 301);
    assert_eq!(reply.header("cache-control"), Some("private, max-age=100"));
    server.clock.advance(Duration::from_secs(90));
    let reply = get(addr, "/perm-expiring").await;
    assert_eq!(reply.header("cache-control"), Some("private, max-age=10"));
    server.stop().await;
}

#[tokio::test]
async fn the_sweep_deletes_links_expired_longer_than_the_retention() {
    let config = Config {
        expired_retention_seconds: 600,
        sweep_interval_ms: 100,
        cache_max_bytes: 0,
        ..Config::default()
    };
    let server = start(config).await;
    let addr = server.addr;
    create(
        addr,
        r#"{"url": "https://example.com/", "alias": "swept", "ttl_seconds": 60}"#,
    )
    .await;
    create(
        addr,
        r#"{"url": "https://example.com/", "alias": "kept", "ttl_seconds": 6000}"#,
    )
    .await;

    server.clock.advance(Duration::from_secs(61));
    get(addr, "/swept").await.error(410, "expired");
    server.clock.advance(Duration::from_secs(600));
    eventually(
        Duration::from_secs(10),
        "the sweep removes `swept`",
        || async { get(addr, "/swept").await.status == 404 },
    )
    .await;
    assert_eq!(get(addr, "/kept").await.status, 302);
    // Its alias is free again.
    create(addr, r#"{"url": "https://example.org/", "alias": "swept"}"#).await;
    server.stop().await;
}
