//! What the gateway's black-box tests share: upstreams on port 0 that report what they
//! received, the gateway started in-process on port 0 from a TOML text, and a client nobody
//! here wrote (hyper).

#![allow(dead_code)] // each test file uses a different part of this module

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::Duration;

use api_gateway::clock::{Clock, ManualClock, SystemClock};
use api_gateway::config::Config;
use api_gateway::server::{self, Listeners};
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use service_kit::config::Validate;
use service_kit::shutdown::Shutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Largest request body the test upstream reads.
const UPSTREAM_MAX_BODY: u64 = 64 << 20;

/// Every wait in these tests is bounded by this.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(20);

/// An upstream on `127.0.0.1:0`, served by the workspace's `http1` server. It answers every
/// request with a JSON report of what it received (`upstream`, `method`, `target`, `headers`,
/// `body` when at most 1 MiB, and `body_bytes`) and `x-upstream: <name>`, except:
///
/// | path | answer |
/// |---|---|
/// | `/status/NNN` | status NNN, with the report |
/// | `/sleep/MS` | waits MS milliseconds first |
///
/// Every POST and PATCH counts as one effect (`effects`), the thing idempotency keys must not
/// repeat. `fail_with(status)` makes every answer that status until `fail_with(0)`.
pub struct Upstream {
    pub name: String,
    pub addr: SocketAddr,
    pub hits: Arc<AtomicU64>,
    pub effects: Arc<AtomicU64>,
    failing: Arc<AtomicU16>,
    stop: Shutdown,
    task: JoinHandle<()>,
}

impl Upstream {
    pub async fn start(name: &str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicU64::new(0));
        let effects = Arc::new(AtomicU64::new(0));
        let failing = Arc::new(AtomicU16::new(0));
        let stop = Shutdown::new();
        let handler = {
            let name = name.to_owned();
            let (hits, effects, failing) = (hits.clone(), effects.clone(), failing.clone());
            move |request: http1::Request| {
                hits.fetch_add(1, Ordering::SeqCst);
                let method = request.head.method.clone();
                if method == Method::POST || method == Method::PATCH {
                    effects.fetch_add(1, Ordering::SeqCst);
                }
                let failing = failing.load(Ordering::SeqCst);
                answer(name.clone(), failing, request)
            }
        };
        let mut config = http1::server::ServerConfig {
            drain_timeout: Duration::from_millis(100),
            ..Default::default()
        };
        config.limits.max_body_bytes = UPSTREAM_MAX_BODY;
        let triggered = stop.clone();
        let task = tokio::spawn(async move {
            http1::server::serve(listener, config, handler, triggered.triggered())
                .await
                .unwrap();
        });
        Upstream {
            name: name.to_owned(),
            addr,
            hits,
            effects,
            failing,
            stop,
            task,
        }
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn effects(&self) -> u64 {
        self.effects.load(Ordering::SeqCst)
    }

    /// Every answer is `status` from now on; 0 goes back to normal.
    pub fn fail_with(&self, status: u16) {
        self.failing.store(status, Ordering::SeqCst);
    }

    pub async fn stop(self) {
        self.stop.trigger();
        let _ = tokio::time::timeout(TEST_TIMEOUT, self.task).await;
    }
}

async fn answer(name: String, failing: u16, request: http1::Request) -> http1::Response {
    let path = request.head.path().to_owned();
    if let Some(ms) = path.strip_prefix("/sleep/") {
        let ms: u64 = ms.split('/').next().unwrap_or("0").parse().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let status = match path.strip_prefix("/status/") {
        Some(code) => code.parse().unwrap_or(500),
        None if failing != 0 => failing,
        None => 200,
    };
    let mut headers = BTreeMap::new();
    for (field, value) in &request.head.headers {
        let value = value.to_str().unwrap_or("?").to_owned();
        headers
            .entry(field.as_str().to_owned())
            .and_modify(|v: &mut String| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let method = request.head.method.to_string();
    let target = request.head.target.clone();
    let body = request
        .body
        .collect(UPSTREAM_MAX_BODY)
        .await
        .map(|c| c.data)
        .unwrap_or_default();
    let shown = match body.len() <= 1 << 20 {
        true => String::from_utf8_lossy(&body).into_owned(),
        false => String::new(),
    };
    let report = serde_json::json!({
        "upstream": name,
        "method": method,
        "target": target,
        "headers": headers,
        "body": shown,
        "body_bytes": body.len(),
    });
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    http1::Response::new(status, http1::Body::full(report.to_string()))
        .with_header(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        )
        .with_header(
            http::HeaderName::from_static("x-upstream"),
            http::HeaderValue::from_str(&name).unwrap(),
        )
}

/// A gateway running in-process.
pub struct Gateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub stop: Shutdown,
    pub reloads: mpsc::Sender<Config>,
    task: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

/// Reads a config from TOML text as the binary does (laid over the defaults), and validates
/// it. `{dir}` in the text is replaced by a fresh temporary directory (for JWKS files).
pub fn config_from(toml_text: &str, dir: &std::path::Path) -> Config {
    let text = toml_text.replace("{dir}", dir.to_str().unwrap());
    let path = dir.join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    let config: Config = service_kit::config::load(Some(&path)).unwrap();
    config.validate().unwrap();
    config
}

impl Gateway {
    /// Starts a gateway on the system clock.
    pub async fn start(toml_text: &str) -> Gateway {
        Gateway::start_with(
            toml_text,
            Arc::new(SystemClock::new()),
            tempfile::tempdir().unwrap(),
        )
        .await
    }

    /// Starts a gateway on a clock the test moves.
    pub async fn start_manual(toml_text: &str) -> (Gateway, Arc<ManualClock>) {
        let clock = ManualClock::starting_at(Duration::from_secs(1_800_000_000));
        let gateway =
            Gateway::start_with(toml_text, clock.clone(), tempfile::tempdir().unwrap()).await;
        (gateway, clock)
    }

    /// Starts a gateway whose `{dir}` is `dir` (the test writes files there first).
    pub async fn start_with(
        toml_text: &str,
        clock: Arc<dyn Clock>,
        dir: tempfile::TempDir,
    ) -> Gateway {
        let config = config_from(toml_text, dir.path());
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (addr, admin_addr) = (http.local_addr().unwrap(), admin.local_addr().unwrap());
        let stop = Shutdown::new();
        let (reloads, receiver) = mpsc::channel(1);
        let listeners = Listeners {
            http,
            https: None,
            admin,
        };
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                server::run(listeners, config, clock, stop, receiver)
                    .await
                    .unwrap()
            }
        });
        let gateway = Gateway {
            addr,
            admin: admin_addr,
            stop,
            reloads,
            task,
            _dir: dir,
        };
        gateway.wait_ready().await;
        gateway
    }

    async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + TEST_TIMEOUT;
        loop {
            if let Ok(reply) = try_send(self.admin, Method::GET, "/readyz", &[], Bytes::new()).await
                && reply.status == 200
            {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "gateway not ready");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        send(self.addr, Method::GET, path, headers, Bytes::new()).await
    }

    pub async fn post(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        send(
            self.addr,
            Method::POST,
            path,
            headers,
            Bytes::from(body.to_owned()),
        )
        .await
    }

    pub async fn metrics(&self) -> String {
        let reply = send(self.admin, Method::GET, "/metrics", &[], Bytes::new()).await;
        String::from_utf8(reply.body.to_vec()).unwrap()
    }

    pub async fn stop(self) {
        self.stop.trigger();
        let _ = tokio::time::timeout(TEST_TIMEOUT, self.task).await;
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The upstream that answered (`x-upstream`).
    pub fn upstream(&self) -> Option<&str> {
        self.header("x-upstream")
    }

    /// A header the upstream received, from its JSON report.
    pub fn seen(&self, name: &str) -> Option<String> {
        self.json()["headers"][name].as_str().map(str::to_owned)
    }
}

/// One request on a fresh connection, with hyper's client.
pub async fn send(
    addr: SocketAddr,
    method: Method,
    target: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Reply {
    tokio::time::timeout(TEST_TIMEOUT, try_send(addr, method, target, headers, body))
        .await
        .expect("request timed out")
        .expect("request failed")
}

pub async fn try_send(
    addr: SocketAddr,
    method: Method,
    target: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<Reply, Box<dyn std::error::Error + Send + Sync>> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut builder = hyper::Request::builder().method(method).uri(target);
    let has_host = headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host"));
    if !has_host {
        builder = builder.header("host", addr.to_string());
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let response = sender.send_request(builder.body(Full::new(body))?).await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// `[clusters.NAME]` for one upstream, as TOML: no retries and no outlier ejection, so that
/// what a test sees is the gateway's doing.
pub fn cluster(name: &str, upstream: &Upstream) -> String {
    format!(
        "[clusters.{name}]\nendpoints = [{{ address = \"{}\" }}]\nretry = {{ max_retries = 0 }}\n\
         outlier_detection = {{ consecutive_5xx = 0, consecutive_connect_failures = 0 }}\n",
        upstream.addr
    )
}
