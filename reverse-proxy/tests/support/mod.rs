//! What the black-box tests share: backends on port 0 that say who they are and what they
//! received, the proxy started in-process on port 0, and a client nobody here wrote (hyper).

#![allow(dead_code)] // each test file uses a different part of this module

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use reverse_proxy::config::{ClusterConfig, Config, EndpointConfig, RouteConfig};
use reverse_proxy::server::{self, Listeners};
use service_kit::shutdown::Shutdown;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Every wait in these tests is bounded by this.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(20);

/// A backend on `127.0.0.1:0`, served by the workspace's `http1` server. It answers by path:
///
/// | path | answer |
/// |---|---|
/// | `/headers` | the request's head: `method target`, then one `name: value` line per field |
/// | `/echo` | the request body, read whole, then sent back |
/// | `/ws` | `101` to an upgrade request, then echoes raw bytes |
/// | `/status/NNN` | status NNN |
/// | `/sleep/MS` | waits MS milliseconds, then answers |
/// | `/stream/MIB` | MIB mebibytes, produced 64 KiB at a time as the reader takes them (counted in `streamed`) |
/// | anything else | its name, with `x-backend: <name>`, and status 200 (or the one given to [`Backend::failing`]) |
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    /// Requests received.
    pub hits: Arc<AtomicU64>,
    /// Bytes handed to the connection by `/stream/` responses so far.
    pub streamed: Arc<AtomicU64>,
    stop: Shutdown,
    task: JoinHandle<()>,
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Backend::on(name, listener, StatusCode::OK)
    }

    /// A backend that answers `status` where others answer 200.
    pub async fn failing(name: &str, status: StatusCode) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Backend::on(name, listener, status)
    }

    /// A backend on a listener the test bound (to restart on the same address).
    pub fn on(name: &str, listener: TcpListener, status: StatusCode) -> Backend {
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicU64::new(0));
        let streamed = Arc::new(AtomicU64::new(0));
        let stop = Shutdown::new();
        let handler = {
            let (name, hits, counter) = (name.to_owned(), hits.clone(), streamed.clone());
            move |request: http1::Request| {
                hits.fetch_add(1, Ordering::Relaxed);
                let (name, counter) = (name.clone(), counter.clone());
                async move {
                    if let Some(mib) = request.head.path().strip_prefix("/stream/") {
                        return stream(mib.parse().unwrap(), counter);
                    }
                    answer(&name, status, request).await
                }
            }
        };
        let config = http1::server::ServerConfig {
            drain_timeout: Duration::from_millis(100),
            ..Default::default()
        };
        let triggered = stop.clone();
        let task = tokio::spawn(async move {
            http1::server::serve(listener, config, handler, triggered.triggered())
                .await
                .unwrap();
        });
        Backend {
            name: name.to_owned(),
            addr,
            hits,
            streamed,
            stop,
            task,
        }
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    pub fn streamed(&self) -> u64 {
        self.streamed.load(Ordering::Relaxed)
    }

    /// Stops accepting and closes every connection.
    pub async fn stop(self) {
        self.stop.trigger();
        let _ = tokio::time::timeout(TEST_TIMEOUT, self.task).await;
    }
}

async fn answer(name: &str, status: StatusCode, mut request: http1::Request) -> http1::Response {
    let path = request.head.path().to_owned();
    if path == "/headers" {
        let mut text = format!("{} {}\n", request.head.method, request.head.target);
        for (field, value) in &request.head.headers {
            text.push_str(&format!("{}: {}\n", field, value.to_str().unwrap_or("?")));
        }
        return http1::Response::text(StatusCode::OK, text)
            .with_header(
                HeaderName::from_static("connection"),
                HeaderValue::from_static("x-hop"),
            )
            .with_header(
                HeaderName::from_static("x-hop"),
                HeaderValue::from_static("only for the proxy"),
            )
            .with_header(
                HeaderName::from_static("keep-alive"),
                HeaderValue::from_static("timeout=5"),
            );
    }
    if path == "/echo" {
        // Read whole before answering: `http1`'s client stops sending a request body once a
        // final response arrives, so an upstream that answers while still reading (a
        // full-duplex echo) would be cut off. See the crate's ARCHITECTURE.md.
        let body = std::mem::take(&mut request.body);
        return match body.collect(64 * 1024 * 1024).await {
            Ok(collected) => http1::Response::new(StatusCode::OK, collected.data),
            Err(e) => http1::Response::text(StatusCode::BAD_REQUEST, e.to_string()),
        };
    }
    if path == "/ws" {
        return upgrade(request);
    }
    if let Some(code) = path.strip_prefix("/status/") {
        let status = StatusCode::from_bytes(code.as_bytes()).unwrap();
        return http1::Response::text(status, format!("{name} {code}\n"));
    }
    if let Some(ms) = path.strip_prefix("/sleep/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
    }
    http1::Response::text(status, name.to_owned()).with_header(
        HeaderName::from_static("x-backend"),
        HeaderValue::from_str(name).unwrap(),
    )
}

/// A response of `mib` MiB whose body is produced only as fast as it is taken: the channel
/// holds one piece, so `counter` tells how far the reader (through every hop) has pulled.
fn stream(mib: u64, counter: Arc<AtomicU64>) -> http1::Response {
    const PIECE: usize = 64 * 1024;
    let (mut tx, body) = http1::Body::channel(1, Some(mib * 1024 * 1024));
    tokio::spawn(async move {
        let piece = Bytes::from(vec![b'x'; PIECE]);
        for _ in 0..mib * 1024 * 1024 / PIECE as u64 {
            if tx.send_data(piece.clone()).await.is_err() {
                return;
            }
            counter.fetch_add(PIECE as u64, Ordering::Relaxed);
        }
        tx.finish();
    });
    http1::Response::new(StatusCode::OK, body)
}

fn upgrade(mut request: http1::Request) -> http1::Response {
    let Some(on_upgrade) = request.take_upgrade() else {
        return http1::Response::text(StatusCode::BAD_REQUEST, "not an upgrade\n");
    };
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut io = upgraded.io;
        if io.write_all(&upgraded.read_buf).await.is_err() {
            return;
        }
        let mut buf = [0u8; 4096];
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if io.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    http1::Response::new(StatusCode::SWITCHING_PROTOCOLS, http1::Body::empty())
        .with_header(http::header::UPGRADE, HeaderValue::from_static("websocket"))
        .with_header(
            http::header::CONNECTION,
            HeaderValue::from_static("upgrade"),
        )
}

/// A cluster config over these endpoints, with every other setting at its default.
pub fn cluster(endpoints: &[SocketAddr]) -> ClusterConfig {
    ClusterConfig {
        endpoints: endpoints
            .iter()
            .map(|&address| EndpointConfig {
                address,
                weight: 1,
                health_address: None,
            })
            .collect(),
        ..ClusterConfig::default()
    }
}

/// A config whose only route sends everything to `cluster`, named `app`.
pub fn config_with(cluster: ClusterConfig) -> Config {
    let mut config = Config::default();
    config.proxy.access_log = false;
    config.clusters.insert("app".to_owned(), cluster);
    config.routes.push(RouteConfig {
        host: None,
        path_prefix: "/".to_owned(),
        cluster: "app".to_owned(),
    });
    config
}

/// The proxy, in this process, on `127.0.0.1:0`.
pub struct RunningProxy {
    pub addr: SocketAddr,
    /// The HTTPS listener, when the config has `[tls]`.
    pub https: Option<SocketAddr>,
    /// The L4 listeners, one per `[[tcp]]` entry.
    pub tcp: Vec<SocketAddr>,
    pub admin: SocketAddr,
    pub shutdown: Shutdown,
    /// What SIGHUP does in the binary: a validated config to switch to.
    pub reload: tokio::sync::mpsc::Sender<Config>,
    task: JoinHandle<()>,
}

impl RunningProxy {
    pub async fn start(config: Config) -> RunningProxy {
        service_kit::config::Validate::validate(&config).unwrap();
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (addr, admin_addr) = (http.local_addr().unwrap(), admin.local_addr().unwrap());
        let https = match &config.tls {
            Some(_) => Some(TcpListener::bind("127.0.0.1:0").await.unwrap()),
            None => None,
        };
        let https_addr = https.as_ref().map(|l| l.local_addr().unwrap());
        let tcp: Vec<_> = config
            .tcp
            .iter()
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let tcp_addrs = tcp.iter().map(|l| l.local_addr().unwrap()).collect();
        let shutdown = Shutdown::new();
        let stop = shutdown.clone();
        let (reload, reloads) = tokio::sync::mpsc::channel(server::RELOAD_QUEUE);
        let task = tokio::spawn(async move {
            let listeners = Listeners {
                http,
                https,
                tcp,
                admin,
            };
            server::run(listeners, config, stop, reloads).await.unwrap();
        });
        RunningProxy {
            addr,
            https: https_addr,
            tcp: tcp_addrs,
            admin: admin_addr,
            shutdown,
            reload,
            task,
        }
    }

    /// The admin endpoint's `/metrics` text.
    pub async fn metrics(&self) -> String {
        let (status, _, body) = get(self.admin, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        String::from_utf8(body.to_vec()).unwrap()
    }

    /// Polls `/metrics` (at most [`TEST_TIMEOUT`]) until every one of `series` reads its
    /// `expected` value at once.
    pub async fn metrics_become<const N: usize>(&self, series: [&str; N], expected: [f64; N]) {
        let deadline = tokio::time::Instant::now() + TEST_TIMEOUT;
        loop {
            let metrics = self.metrics().await;
            let values = series.map(|series| metric(&metrics, series));
            if values == expected.map(Some) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{series:?}: {values:?}, expected {expected:?}\n{metrics}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Shuts down as the binary does: trigger, wait for `run`, then drain the tasks it left
    /// (tunnels; with several workers, the worker threads wait for this to end).
    pub async fn stop(self) {
        self.shutdown.trigger();
        tokio::time::timeout(TEST_TIMEOUT, self.task)
            .await
            .expect("the proxy drains in time")
            .unwrap();
        self.shutdown.drain(Duration::from_secs(2)).await;
    }
}

/// A response as the tests look at it.
pub type Answer = (StatusCode, HeaderMap, Bytes);

/// One keep-alive connection of hyper's HTTP/1.1 client.
pub struct HyperClient {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl HyperClient {
    pub async fn connect(addr: SocketAddr) -> HyperClient {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        HyperClient { sender }
    }

    pub async fn send(&mut self, request: hyper::Request<Full<Bytes>>) -> Answer {
        tokio::time::timeout(TEST_TIMEOUT, async {
            self.sender.ready().await.unwrap();
            let response = self.sender.send_request(request).await.unwrap();
            let (parts, body) = response.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            (parts.status, parts.headers, body)
        })
        .await
        .expect("the proxy answers in time")
    }

    pub async fn get(&mut self, target: &str) -> Answer {
        self.send(request("GET", target, &[], Bytes::new())).await
    }
}

pub fn request(
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> hyper::Request<Full<Bytes>> {
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(target)
        .header("host", "proxy.test");
    for &(name, value) in headers {
        builder = builder.header(name, value);
    }
    builder.body(Full::new(body)).unwrap()
}

/// A GET on a fresh connection.
pub async fn get(addr: SocketAddr, target: &str) -> Answer {
    HyperClient::connect(addr).await.get(target).await
}

/// How many requests each backend answered, by the `x-backend` field of the responses.
pub async fn spread(proxy: SocketAddr, requests: usize) -> BTreeMap<String, usize> {
    let mut client = HyperClient::connect(proxy).await;
    let mut counts = BTreeMap::new();
    for _ in 0..requests {
        let (status, headers, _) = client.get("/").await;
        assert_eq!(status, StatusCode::OK);
        let backend = headers["x-backend"].to_str().unwrap().to_owned();
        *counts.entry(backend).or_default() += 1;
    }
    counts
}

/// Writes raw bytes on a fresh connection and reads until the peer closes or `TEST_TIMEOUT`.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(TEST_TIMEOUT, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The body as text.
pub fn text(body: &Bytes) -> &str {
    std::str::from_utf8(body).unwrap()
}

/// The value of metric series `series` (the whole text before the value), if present.
pub fn metric(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().unwrap())
    })
}

/// A listener that accepts connections and closes each at once, without answering: every
/// request sent to it fails with a reset before any response byte. Counts the connections.
pub struct Closer {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Closer {
    pub async fn start() -> Closer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::Relaxed);
                // Read the request head first, so the close comes after the request was sent.
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await;
                drop(stream);
            }
        });
        Closer {
            addr,
            accepted,
            task,
        }
    }

    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Closer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
