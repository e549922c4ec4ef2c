//! A failing store: the API answers 503 with a JSON error, keeps serving cached links, and
//! recovers by itself when the store does. The store is the real sled store behind a switch
//! that makes every call fail, injected through the `Store` trait.

mod common;

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{create, get, post};
use service_kit::admin::AdminState;
use service_kit::metrics::Registry;
use service_kit::shutdown::Shutdown;
use url_shortener::clock::SystemClock;
use url_shortener::config::Config;
use url_shortener::store::{Link, Result, SledStore, Store, StoreError};

#[derive(Clone)]
struct Switchable {
    inner: SledStore,
    failing: Arc<AtomicBool>,
}

impl Switchable {
    fn check(&self) -> Result<()> {
        match self.failing.load(Ordering::SeqCst) {
            true => Err(StoreError::Flush("injected failure".into())),
            false => Ok(()),
        }
    }
}

impl Store for Switchable {
    async fn create(&self, link: &Link) -> Result<bool> {
        self.check()?;
        self.inner.create(link).await
    }
    async fn get(&self, code: &str) -> Result<Option<Link>> {
        self.check()?;
        self.inner.get(code).await
    }
    async fn replace(&self, link: &Link) -> Result<bool> {
        self.check()?;
        self.inner.replace(link).await
    }
    async fn delete(&self, code: &str) -> Result<bool> {
        self.check()?;
        self.inner.delete(code).await
    }
    async fn list(&self, after: Option<&str>, limit: usize) -> Result<Vec<Link>> {
        self.check()?;
        self.inner.list(after, limit).await
    }
    async fn lease_ids(&self, count: u64) -> Result<Range<u64>> {
        self.check()?;
        self.inner.lease_ids(count).await
    }
    async fn id_key(&self) -> Result<u64> {
        self.check()?;
        self.inner.id_key().await
    }
    async fn add_clicks(&self, counts: &[(String, u64)]) -> Result<()> {
        self.check()?;
        self.inner.add_clicks(counts).await
    }
    async fn clicks(&self, code: &str) -> Result<u64> {
        self.check()?;
        self.inner.clicks(code).await
    }
    async fn remove_expired(&self, before_ms: u64, max: usize) -> Result<usize> {
        self.check()?;
        self.inner.remove_expired(before_ms, max).await
    }
}

#[tokio::test]
async fn a_failing_store_is_a_503_and_cached_links_keep_redirecting() {
    let store = Switchable {
        inner: SledStore::temporary().unwrap(),
        failing: Arc::new(AtomicBool::new(false)),
    };
    let failing = store.failing.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Shutdown::new();
    let admin = AdminState::new(Registry::new());
    let task = tokio::spawn(url_shortener::run(
        listener,
        Config::default(),
        store,
        Arc::new(SystemClock),
        admin,
        stop.clone(),
    ));

    create(
        addr,
        r#"{"url": "https://example.com/", "alias": "cached"}"#,
    )
    .await;
    assert_eq!(get(addr, "/cached").await.status, 302, "now in the cache");

    failing.store(true, Ordering::SeqCst);
    let message = post(addr, "/api/v1/links", r#"{"url": "https://example.com/"}"#)
        .await
        .error(503, "store_unavailable");
    assert!(message.contains("retry"), "{message}");
    assert!(
        !message.contains("injected"),
        "internals stay in the log: {message}"
    );
    get(addr, "/uncached").await.error(503, "store_unavailable");
    assert_eq!(
        get(addr, "/cached").await.status,
        302,
        "cache-aside serves while the store is down"
    );

    failing.store(false, Ordering::SeqCst);
    create(addr, r#"{"url": "https://example.com/", "alias": "after"}"#).await;
    assert_eq!(get(addr, "/after").await.status, 302);

    stop.trigger();
    let result = tokio::time::timeout(Duration::from_secs(10), task).await;
    result.expect("run drains within 10 s").unwrap().unwrap();
}
