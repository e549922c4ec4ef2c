//! What the black-box tests share: a real HTTP client (hyper, which nobody here wrote) and a
//! way to start the real binary.

#![allow(dead_code)] // each test crate uses its own subset

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use harness::{DataDir, Process, ProcessSpec, cargo_bin, free_addr};
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Longest wait for a started server to report ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest a single exchange may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// The `message` of a JSON error, after checking its status and error name.
    pub fn error(&self, status: u16, error: &str) -> String {
        assert_eq!(self.status, status, "{self:?}");
        let json = self.json();
        assert_eq!(json["error"], error, "{self:?}");
        assert_eq!(self.header("cache-control"), Some("no-store"), "{self:?}");
        json["message"].as_str().unwrap().to_owned()
    }
}

/// Sends one request on a fresh connection.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Reply {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr.to_string());
        let typed = headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
        if body.is_some() && !typed {
            request = request.header("content-type", "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let body = Full::new(Bytes::from(body.unwrap_or_default().to_owned()));
        let response = sender
            .send_request(request.body(body).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: String::from_utf8(body.to_vec()).unwrap(),
        }
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("{method} {path} took over {REQUEST_TIMEOUT:?}"))
}

pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    send(addr, "GET", path, &[], None).await
}

pub async fn post(addr: SocketAddr, path: &str, body: &str) -> Reply {
    send(addr, "POST", path, &[], Some(body)).await
}

/// Creates a link and returns its JSON, asserting 201.
pub async fn create(addr: SocketAddr, body: &str) -> Value {
    let reply = post(addr, "/api/v1/links", body).await;
    assert_eq!(reply.status, 201, "{reply:?}");
    reply.json()
}

/// Every code the listing gives, page by page with its cursor, `limit` a page (each page
/// checked to be 200 and at most `limit` long).
pub async fn list_codes(addr: SocketAddr, limit: usize) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = get(
            addr,
            &format!("/api/v1/links?limit={limit}&cursor={cursor}"),
        )
        .await;
        assert_eq!(page.status, 200, "{page:?}");
        let page = page.json();
        let links = page["links"].as_array().unwrap();
        assert!(links.len() <= limit, "{page}");
        seen.extend(links.iter().map(|l| l["code"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => return seen,
        }
    }
}

/// The value of an unlabelled metric line `name value`, 0 if absent.
pub async fn metric(admin: SocketAddr, series: &str) -> u64 {
    let text = get(admin, "/metrics").await.body;
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |v| v.parse().unwrap())
}

/// Polls `check` every 20 ms until it returns true, for at most `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {timeout:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The url-shortener binary on free ports with its own data directory.
pub struct Server {
    pub process: Process,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub data: DataDir,
}

impl Server {
    /// Starts it with `extra` arguments and waits until it is ready.
    pub fn start(label: &str, extra: &[&str]) -> Server {
        let data = DataDir::new(label);
        Self::start_in(data, extra)
    }

    pub fn start_in(data: DataDir, extra: &[&str]) -> Server {
        let (listen, admin) = (free_addr(), free_addr());
        let spec = ProcessSpec::new("url-shortener", cargo_bin("url-shortener"))
            .args(["--listen", &listen.to_string()])
            .args(["--admin-listen", &admin.to_string()])
            .args(["--data-dir", data.join("store").to_str().unwrap()])
            .args(["--shutdown-timeout-ms", "5000"])
            .args(extra.iter().copied());
        let mut process = Process::spawn(spec).unwrap();
        process.wait_ready(admin, READY_TIMEOUT).unwrap();
        Server {
            process,
            listen,
            admin,
            data,
        }
    }
}
