//! What the case studies share: a cluster started from a few lines of `cluster.toml` on free
//! ports, HTTP calls through its entry point, its metrics, and waiting for a condition.
//!
//! The cluster is the launcher's own ([`cluster::Cluster`]), so the case studies run the
//! same processes, links and operations (`kill`, `restart`, `partition`, `latency`) that
//! `cluster up` gives a person at a terminal. Each case study is a file in `tests/`; the
//! README beside this crate says what each one teaches.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster::topology::ClusterFile;
use cluster::{Binaries, Cluster, Options, Topology};
use harness::DataDir;
use http1::{Body, HeaderMap, HeaderName, HeaderValue, Method, Request};

/// Longest one HTTP exchange of a test may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Largest response body read.
const MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;

/// A running cluster and the directory its processes keep their data in (kept, with its path
/// printed, when the test fails).
pub struct Running {
    pub cluster: Arc<Cluster>,
    _dir: DataDir,
}

impl Running {
    /// Starts the cluster `cluster_toml` describes, every port free, the data in a fresh
    /// directory; panics with the failing process's last lines if it does not come up.
    pub fn start(label: &str, cluster_toml: &str) -> Running {
        let dir = DataDir::new(label);
        let mut file: ClusterFile = toml::from_str(cluster_toml).expect("a valid cluster.toml");
        file.cluster.data_dir = Some(dir.path().to_owned());
        file.cluster.control_listen = Some(harness::free_addr());
        let any: SocketAddr = "127.0.0.1:0".parse().expect("an address");
        for section in [
            &mut file.kv_store,
            &mut file.message_broker,
            &mut file.url_shortener,
            &mut file.api_gateway,
            &mut file.reverse_proxy,
        ] {
            section.listen = Some(any);
            section.admin_listen = Some(any);
        }
        let topology = Topology::resolve(file, dir.path()).expect("a valid topology");
        let binaries = Binaries::build(false).unwrap_or_else(|e| panic!("{e}"));
        let cluster =
            Cluster::start(topology, &binaries, Options::quiet()).unwrap_or_else(|e| panic!("{e}"));
        Running {
            cluster: Arc::new(cluster),
            _dir: dir,
        }
    }

    /// The reverse proxy, where clients connect.
    pub fn entry(&self) -> SocketAddr {
        self.cluster.topology().entry()
    }

    /// The admin address of the process called `name`.
    pub fn admin(&self, name: &str) -> SocketAddr {
        self.cluster
            .topology()
            .instance(name)
            .unwrap_or_else(|| panic!("no process {name}"))
            .admin_listen
    }

    /// Runs a cluster operation (`kill`, `restart`, ...) off the async runtime, and panics
    /// if it fails.
    pub async fn operate(
        &self,
        what: &str,
        operation: impl FnOnce(&Cluster) -> Result<String, cluster::supervisor::OpError>
        + Send
        + 'static,
    ) -> String {
        let cluster = self.cluster.clone();
        let outcome = tokio::task::spawn_blocking(move || operation(&cluster))
            .await
            .expect("the operation does not panic");
        let message = outcome.unwrap_or_else(|e| panic!("{what}: {e}"));
        eprintln!("[test] {message}");
        message
    }
}

/// An answer: status, fields, body as text.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One exchange on a fresh connection, within [`REQUEST_TIMEOUT`].
pub async fn request(
    addr: SocketAddr,
    method: Method,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut message = Request::new(method, target, Body::full(body.to_owned()));
    for (name, value) in headers {
        message = message.with_header(
            HeaderName::from_bytes(name.as_bytes()).expect("a field name"),
            HeaderValue::from_str(value).expect("a field value"),
        );
    }
    send(addr, message).await
}

/// Sends `message` on a fresh connection and reads the whole answer, within
/// [`REQUEST_TIMEOUT`].
pub async fn send(addr: SocketAddr, message: Request) -> Reply {
    let client = http1::Client::new(http1::ClientConfig {
        response_header_timeout: REQUEST_TIMEOUT,
        max_idle_per_endpoint: 0,
        ..http1::ClientConfig::default()
    })
    .expect("valid client settings");
    let target = message.head.target.clone();
    let exchange = async {
        let response = client.send(addr, message).await?;
        let status = response.status().as_u16();
        let headers = response.head.headers.clone();
        let body = response.body.collect(MAX_BODY_BYTES).await?.data;
        Ok::<_, http1::Error>(Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(e)) => panic!("{target}: {e}"),
        Err(_) => panic!("{target}: no answer within {REQUEST_TIMEOUT:?}"),
    }
}

/// `POST /api/v1/links` through the gateway, as `cluster load` sends it: the demo API key and,
/// when given, an idempotency key.
pub async fn create_link(entry: SocketAddr, url: &str, idempotency_key: Option<&str>) -> Reply {
    let body = format!(r#"{{"url": "{url}"}}"#);
    send(
        entry,
        cluster::load::create_request(body, "demo-key", idempotency_key),
    )
    .await
}

/// Every link, page by page (`GET /api/v1/links`), with its click count.
pub async fn all_links(entry: SocketAddr) -> Vec<serde_json::Value> {
    let mut links = Vec::new();
    let mut cursor = String::new();
    loop {
        let target = format!("/api/v1/links?limit=1000&cursor={cursor}");
        let page = request(entry, Method::GET, &target, &[], "").await;
        assert_eq!(page.status, 200, "{page:?}");
        let page = page.json();
        links.extend(page["links"].as_array().expect("a page of links").clone());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => return links,
        }
    }
}

/// The sum of every series of the metric `name` (every label set) at `admin`.
pub async fn metric(admin: SocketAddr, name: &str) -> u64 {
    let text = request(admin, Method::GET, "/metrics", &[], "").await.body;
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Polls `check` every 100 ms until it holds, for at most `timeout`; panics naming `what`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "{what}: not true after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
