//! One scenario suite, run against both backends: the local store, and a real kv-store node
//! started in this process on `127.0.0.1:0` over a temporary directory, with a manual clock
//! that moves with the test's `now_ns`. Then the checks only one backend has: the local
//! store's bounds, and the kv store's survival of a gateway restart and of its own.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kv_store::client::{Client, ClientConfig};
use kv_store::resp::reply::Reply;
use service_kit::shutdown::Shutdown;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::*;

const MS: u64 = 1_000_000;
/// A start near today's Unix time, as the gateway's clock and the kv-store's are.
const START_MS: u64 = 1_700_000_000_000;
/// Short TTLs so that a failure message shows small numbers; the clocks are manual anyway.
const TTL_MS: u64 = 10_000;
const LOCK_TTL_MS: u64 = 1_000;
const MAX_BODY_BYTES: usize = 16;

fn config() -> IdempotencyConfig {
    IdempotencyConfig {
        ttl_ms: TTL_MS,
        lock_ttl_ms: LOCK_TTL_MS,
        max_body_bytes: MAX_BODY_BYTES,
        max_keys: 1_000,
        ..IdempotencyConfig::default()
    }
}

fn response(status: u16, body: &'static [u8]) -> StoredResponse {
    StoredResponse {
        status,
        headers: vec![("content-type".to_owned(), Bytes::from_static(b"text/plain"))],
        body: Bytes::from_static(body),
        body_omitted: false,
    }
}

fn print(method: &str, body: &[u8]) -> [u8; 32] {
    let method = http::Method::from_bytes(method.as_bytes()).expect("a method");
    fingerprint(&method, "/payments", body)
}

/// A kv-store node serving in this process.
struct KvNode {
    addr: std::net::SocketAddr,
    clock: kv_store::clock::Clock,
    shutdown: Shutdown,
    task: JoinHandle<()>,
    dir: tempfile::TempDir,
}

impl KvNode {
    async fn start() -> KvNode {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let clock = kv_store::clock::Clock::manual(START_MS);
        KvNode::start_in(dir, clock).await
    }

    async fn start_in(dir: tempfile::TempDir, clock: kv_store::clock::Clock) -> KvNode {
        let config = kv_store::config::Config {
            data_dir: dir.path().to_owned(),
            ..kv_store::config::Config::default()
        };
        let node = kv_store::node::Node::open(&config, clock.clone()).expect("the node opens");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let addr = listener.local_addr().expect("bound");
        let shutdown = Shutdown::new();
        let run = node.run(listener, shutdown.clone());
        let task = tokio::spawn(async move { run.await.expect("the node runs and closes") });
        KvNode {
            addr,
            clock,
            shutdown,
            task,
            dir,
        }
    }

    fn client(&self) -> Client {
        Client::new(ClientConfig::new(self.addr))
    }

    /// Shuts the node down cleanly and opens it again over the same directory and clock.
    async fn restart(self) -> KvNode {
        let KvNode {
            clock,
            shutdown,
            task,
            dir,
            ..
        } = self;
        shutdown.trigger();
        task.await.expect("the node task ends");
        KvNode::start_in(dir, clock).await
    }

    async fn stop(self) {
        self.shutdown.trigger();
        self.task.await.expect("the node task ends");
    }
}

/// A backend under test and its time.
struct Bench {
    store: Store,
    now_ns: u64,
    kv: Option<KvNode>,
}

impl Bench {
    fn local(config: &IdempotencyConfig) -> Bench {
        Bench {
            store: Store::local(config),
            now_ns: START_MS * MS,
            kv: None,
        }
    }

    async fn kv(config: &IdempotencyConfig) -> Bench {
        let node = KvNode::start().await;
        Bench {
            store: Store::kv(config, node.client()),
            now_ns: START_MS * MS,
            kv: Some(node),
        }
    }

    /// The store as another gateway instance sees it: for the kv backend, its own client and
    /// connections; for the local one, the same map (one process).
    fn peer(&self) -> Store {
        match &self.kv {
            Some(node) => Store::kv(&config(), node.client()),
            None => self.store.clone(),
        }
    }

    fn advance_ms(&mut self, ms: u64) {
        self.now_ns += ms * MS;
        if let Some(node) = &self.kv {
            node.clock.advance(ms);
        }
    }

    async fn begin(&self, key: &str, fingerprint: [u8; 32]) -> Begin {
        self.store
            .begin(key, fingerprint, self.now_ns)
            .await
            .expect("the store answers")
    }

    async fn claim(&self, key: &str, fingerprint: [u8; 32]) -> Claim {
        match self.begin(key, fingerprint).await {
            Begin::Proceed(claim) => claim,
            other => panic!("expected Proceed for {key:?}, got {other:?}"),
        }
    }

    async fn finish(self) {
        if let Some(node) = self.kv {
            node.stop().await;
        }
    }
}

fn replayed(begin: Begin) -> StoredResponse {
    match begin {
        Begin::Replay(response) => response,
        other => panic!("expected Replay, got {other:?}"),
    }
}

async fn first_request_runs_and_its_retry_is_replayed(bench: &mut Bench) {
    let fp = print("POST", b"amount=10");
    let claim = bench.claim("alice:k1", fp).await;
    assert!(matches!(
        bench.begin("alice:k1", fp).await,
        Begin::InProgress
    ));
    claim
        .complete(response(201, b"created"), bench.now_ns)
        .await
        .expect("stored");
    bench.advance_ms(1);
    assert_eq!(
        replayed(bench.begin("alice:k1", fp).await),
        response(201, b"created")
    );
    // A failure is an outcome like any other, and is replayed as such (Stripe replays 500s).
    let claim = bench.claim("alice:k2", fp).await;
    claim
        .complete(response(500, b"boom"), bench.now_ns)
        .await
        .expect("stored");
    assert_eq!(replayed(bench.begin("alice:k2", fp).await).status, 500);
}

async fn a_different_request_with_the_key_is_a_mismatch(bench: &mut Bench) {
    let first = print("POST", b"amount=10");
    let other = print("POST", b"amount=99");
    let claim = bench.claim("bob:k", first).await;
    assert!(
        matches!(bench.begin("bob:k", other).await, Begin::Mismatch),
        "while running"
    );
    claim
        .complete(response(201, b"ok"), bench.now_ns)
        .await
        .expect("stored");
    assert!(
        matches!(bench.begin("bob:k", other).await, Begin::Mismatch),
        "once completed"
    );
    assert!(matches!(
        bench.begin("bob:k", first).await,
        Begin::Replay(_)
    ));
    assert!(
        matches!(bench.begin("carol:k", other).await, Begin::Proceed(_)),
        "keys are scoped"
    );
}

async fn a_released_key_runs_again(bench: &mut Bench) {
    let fp = print("PATCH", b"name=x");
    bench
        .claim("dave:k", fp)
        .await
        .release()
        .await
        .expect("released");
    let claim = bench.claim("dave:k", fp).await;
    claim
        .complete(response(200, b"ok"), bench.now_ns)
        .await
        .expect("stored");
}

async fn a_completed_response_expires_after_its_ttl(bench: &mut Bench) {
    let fp = print("POST", b"");
    let claim = bench.claim("erin:k", fp).await;
    claim
        .complete(response(201, b"ok"), bench.now_ns)
        .await
        .expect("stored");
    bench.advance_ms(TTL_MS - 1);
    assert!(matches!(bench.begin("erin:k", fp).await, Begin::Replay(_)));
    bench.advance_ms(1);
    assert!(matches!(bench.begin("erin:k", fp).await, Begin::Proceed(_)));
}

async fn an_abandoned_claim_holds_until_its_lock_expires(bench: &mut Bench) {
    let fp = print("POST", b"x");
    drop(bench.claim("frank:k", fp).await);
    assert!(matches!(
        bench.begin("frank:k", fp).await,
        Begin::InProgress
    ));
    bench.advance_ms(LOCK_TTL_MS - 1);
    assert!(matches!(
        bench.begin("frank:k", fp).await,
        Begin::InProgress
    ));
    bench.advance_ms(1);
    assert!(matches!(
        bench.begin("frank:k", fp).await,
        Begin::Proceed(_)
    ));
}

async fn a_late_completion_is_still_stored_when_the_key_is_free(bench: &mut Bench) {
    let fp = print("POST", b"slow");
    let claim = bench.claim("gina:k", fp).await;
    bench.advance_ms(LOCK_TTL_MS + 1);
    claim
        .complete(response(504, b"timeout"), bench.now_ns)
        .await
        .expect("stored");
    assert_eq!(replayed(bench.begin("gina:k", fp).await).status, 504);
}

async fn a_late_claim_cannot_complete_or_release_another_claim(bench: &mut Bench) {
    let fp = print("POST", b"slow");
    let stale = bench.claim("hank:k", fp).await;
    let stale_release = bench.claim("hank:r", fp).await;
    bench.advance_ms(LOCK_TTL_MS);
    let current = bench.claim("hank:k", fp).await;
    let current_release = bench.claim("hank:r", fp).await;
    let late = stale.complete(response(201, b"late"), bench.now_ns).await;
    assert!(matches!(late, Err(StoreError::ClaimLost)), "{late:?}");
    stale_release
        .release()
        .await
        .expect("a release of a lost claim is a no-op");
    assert!(
        matches!(bench.begin("hank:r", fp).await, Begin::InProgress),
        "theirs stays"
    );
    current
        .complete(response(201, b"mine"), bench.now_ns)
        .await
        .expect("stored");
    assert_eq!(
        replayed(bench.begin("hank:k", fp).await).body,
        Bytes::from_static(b"mine")
    );
    drop(current_release);
}

async fn a_large_body_is_stored_without_it(bench: &mut Bench) {
    let fp = print("POST", b"");
    let claim = bench.claim("ivan:k", fp).await;
    let big = response(200, b"0123456789abcdefX");
    assert_eq!(big.body.len(), MAX_BODY_BYTES + 1);
    claim.complete(big, bench.now_ns).await.expect("stored");
    let replay = replayed(bench.begin("ivan:k", fp).await);
    assert!(replay.body_omitted);
    assert!(replay.body.is_empty());
    assert_eq!((replay.status, replay.headers.len()), (200, 1));
}

/// N gateways (for the kv backend, N separate clients) see the same key at once: exactly one
/// runs the request, the rest get 409.
async fn racing_duplicates_let_exactly_one_through(bench: &mut Bench) {
    const RACERS: usize = 16;
    let fp = print("POST", b"race");
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let mut tasks = Vec::new();
    for _ in 0..RACERS {
        let (store, barrier, now_ns) = (bench.peer(), Arc::clone(&barrier), bench.now_ns);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store
                .begin("judy:race", fp, now_ns)
                .await
                .expect("the store answers")
        }));
    }
    let (mut proceeded, mut in_progress) = (0, 0);
    for task in tasks {
        match task.await.expect("the task ran") {
            Begin::Proceed(_) => proceeded += 1,
            Begin::InProgress => in_progress += 1,
            other => panic!("a racer got {other:?}"),
        }
    }
    assert_eq!((proceeded, in_progress), (1, RACERS - 1));
}

/// The whole suite, in order, on one backend; keys do not overlap between scenarios.
async fn suite(bench: &mut Bench) {
    first_request_runs_and_its_retry_is_replayed(bench).await;
    a_different_request_with_the_key_is_a_mismatch(bench).await;
    a_released_key_runs_again(bench).await;
    a_completed_response_expires_after_its_ttl(bench).await;
    an_abandoned_claim_holds_until_its_lock_expires(bench).await;
    a_late_completion_is_still_stored_when_the_key_is_free(bench).await;
    a_late_claim_cannot_complete_or_release_another_claim(bench).await;
    a_large_body_is_stored_without_it(bench).await;
    racing_duplicates_let_exactly_one_through(bench).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_store_keeps_the_contract() {
    let mut bench = Bench::local(&config());
    suite(&mut bench).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kv_store_keeps_the_contract() {
    let mut bench = Bench::kv(&config()).await;
    suite(&mut bench).await;
    bench.finish().await;
}

#[tokio::test]
async fn the_local_store_evicts_the_oldest_completed_response_when_full() {
    let mut bench = Bench::local(&IdempotencyConfig {
        max_keys: 3,
        ..config()
    });
    let fp = print("POST", b"");
    for key in ["k1", "k2", "k3"] {
        let claim = bench.claim(key, fp).await;
        claim
            .complete(response(201, b"ok"), bench.now_ns)
            .await
            .expect("stored");
        bench.advance_ms(1);
    }
    let fourth = bench.claim("k4", fp).await;
    assert!(matches!(bench.begin("k2", fp).await, Begin::Replay(_)));
    assert!(matches!(bench.begin("k3", fp).await, Begin::Replay(_)));
    // k1, the oldest, made room for k4; claiming k1 again makes room by evicting k2, and
    // claiming k2 again evicts k3.
    let first_again = bench.claim("k1", fp).await;
    let second_again = bench.claim("k2", fp).await;
    // Every slot is now a running claim: a new key is refused rather than a claim evicted.
    let full = bench.store.begin("k7", fp, bench.now_ns).await;
    assert!(
        matches!(full, Err(StoreError::Full { max_keys: 3 })),
        "{full:?}"
    );
    for key in ["k4", "k1", "k2"] {
        assert!(
            matches!(bench.begin(key, fp).await, Begin::InProgress),
            "{key} kept"
        );
    }
    drop((fourth, first_again, second_again));
}

#[tokio::test]
async fn the_local_store_keeps_its_byte_limit() {
    let config = IdempotencyConfig {
        max_stored_bytes: 100,
        ..config()
    };
    let bench = Bench::local(&config);
    let fp = print("POST", b"");
    // Each response: 12 + 10 header bytes + 16 body bytes = 38; two fit in 100, three do not.
    for key in ["a", "b", "c"] {
        let claim = bench.claim(key, fp).await;
        let body = response(200, b"0123456789abcdef");
        claim.complete(body, bench.now_ns).await.expect("stored");
    }
    let Store::Local(local) = &bench.store else {
        panic!("a local bench")
    };
    assert_eq!(local.len(), 2);
    assert!(
        matches!(bench.begin("a", fp).await, Begin::Proceed(_)),
        "the oldest went"
    );
    assert!(matches!(bench.begin("c", fp).await, Begin::Replay(_)));
}

#[tokio::test]
async fn the_local_store_purges_what_expired() {
    let mut bench = Bench::local(&config());
    let fp = print("POST", b"");
    for key in ["a", "b", "c"] {
        let claim = bench.claim(key, fp).await;
        claim
            .complete(response(201, b"ok"), bench.now_ns)
            .await
            .expect("stored");
    }
    drop(bench.claim("running", fp).await);
    let Store::Local(local) = bench.store.clone() else {
        panic!("a local bench")
    };
    assert_eq!(local.len(), 4);
    bench.advance_ms(LOCK_TTL_MS);
    let _ = bench.begin("new", fp).await;
    assert_eq!(local.len(), 4, "the abandoned claim went, the new one came");
    bench.advance_ms(TTL_MS);
    let _ = bench.begin("newer", fp).await;
    assert_eq!(local.len(), 1, "everything older than the TTL went");
}

/// The case study's first half: the first gateway ran the request and stored the outcome,
/// then restarted (a new store, new connections); the retry is replayed. A claim left by a
/// gateway that died mid-request holds until its lock expires.
#[tokio::test]
async fn the_kv_store_outlives_a_gateway_restart() {
    let mut bench = Bench::kv(&config()).await;
    let fp = print("POST", b"charge");
    let claim = bench.claim("kim:k", fp).await;
    claim
        .complete(response(504, b"timeout"), bench.now_ns)
        .await
        .expect("stored");
    drop(bench.claim("kim:dead", fp).await);
    let restarted = bench.peer();
    drop(std::mem::replace(&mut bench.store, restarted));
    assert_eq!(replayed(bench.begin("kim:k", fp).await).status, 504);
    assert!(matches!(
        bench.begin("kim:dead", fp).await,
        Begin::InProgress
    ));
    bench.advance_ms(LOCK_TTL_MS);
    assert!(matches!(
        bench.begin("kim:dead", fp).await,
        Begin::Proceed(_)
    ));
    bench.finish().await;
}

#[tokio::test]
async fn the_kv_store_outlives_its_own_restart() {
    let node = KvNode::start().await;
    let fp = print("POST", b"charge");
    let store = Store::kv(&config(), node.client());
    let Ok(Begin::Proceed(claim)) = store.begin("lee:k", fp, 0).await else {
        panic!("a first request proceeds")
    };
    claim
        .complete(response(201, b"ok"), 0)
        .await
        .expect("stored");
    let node = node.restart().await;
    let store = Store::kv(&config(), node.client());
    let replay = store
        .begin("lee:k", fp, 0)
        .await
        .expect("the store answers");
    assert_eq!(replayed(replay), response(201, b"ok"));
    node.stop().await;
}

#[tokio::test]
async fn kv_records_are_namespaced_and_checked() {
    let node = KvNode::start().await;
    let store = Store::kv(&config(), node.client());
    let fp = print("POST", b"");
    let Ok(Begin::Proceed(claim)) = store.begin("mia:k", fp, 0).await else {
        panic!("a first request proceeds")
    };
    let raw = node.client();
    let name = KvStore::kv_key("mia:k");
    assert!(name.starts_with("idem:") && name.len() == 5 + 64, "{name}");
    let ttl = raw.command(&["PTTL", name.as_str()]).await.expect("PTTL");
    assert!(
        matches!(ttl, Reply::Integer(ms) if ms > 0 && ms <= LOCK_TTL_MS as i64),
        "{ttl:?}"
    );
    drop(claim);
    // A record some other program wrote under the name is an error, not a guess.
    raw.command(&["SET", name.as_str(), "garbage"])
        .await
        .expect("SET");
    let corrupt = store.begin("mia:k", fp, 0).await;
    assert!(
        matches!(corrupt, Err(StoreError::Corrupt(_))),
        "{corrupt:?}"
    );
    node.stop().await;
}

#[tokio::test]
async fn an_unreachable_kv_store_is_an_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = listener.local_addr().expect("bound");
    drop(listener);
    let mut client = ClientConfig::new(addr);
    client.connect_timeout = Duration::from_secs(2);
    let store = Store::kv(&config(), Client::new(client));
    let result = store.begin("nia:k", print("POST", b""), 0).await;
    assert!(matches!(result, Err(StoreError::Kv(_))), "{result:?}");
}
