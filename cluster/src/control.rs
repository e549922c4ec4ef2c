//! The launcher's control API, and the client that `cluster status`, `kill`, ... use.
//!
//! `cluster up` serves it on `[cluster] control_listen` for as long as the cluster runs. Plain
//! HTTP and JSON, so `curl` works as well as the subcommands:
//!
//! | request | does |
//! |---|---|
//! | `GET /v1/status` | every process (state, pid, readiness probed now) and every link |
//! | `POST /v1/processes/{name}/kill` | SIGKILL |
//! | `POST /v1/processes/{name}/pause` | SIGSTOP |
//! | `POST /v1/processes/{name}/resume` | SIGCONT |
//! | `POST /v1/processes/{name}/restart` | SIGTERM and drain if running, start, wait until ready |
//! | `POST /v1/partition/{a}/{b}` | cut the links between `a` and `b` (names or kinds) |
//! | `POST /v1/heal` | heal every link; `/v1/heal/{a}/{b}` only those between `a` and `b` |
//! | `POST /v1/latency/{a}/{b}/{ms}` | add `ms` to every exchange between `a` and `b` (0 removes) |
//!
//! A command answers `200 {"message": ...}` once carried out, `400 {"error": ...}` when it is
//! refused (an unknown name, a process in the wrong state), `500 {"error": ...}` when it failed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http1::client::{Client, ClientConfig};
use http1::server::ServerConfig;
use http1::{Body, Method, Request, Response, StatusCode, header};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::supervisor::{Cluster, ClusterStatus, OpError};

/// Largest response body the client reads: a status of a few hundred processes and links.
const MAX_RESPONSE_BYTES: u64 = 4 * 1024 * 1024;

/// Longest a command may take: a restart waits for a drain and for readiness.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// Longest the control API takes to stop after `up` is told to stop.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// Most control connections at once.
const MAX_CONNECTIONS: usize = 64;

#[derive(Serialize, Deserialize)]
struct Message {
    message: String,
}

#[derive(Serialize, Deserialize)]
struct Failure {
    error: String,
}

/// Serves the control API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    cluster: Arc<Cluster>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    let config = ServerConfig {
        max_connections: MAX_CONNECTIONS,
        drain_timeout: DRAIN_TIMEOUT,
        ..ServerConfig::default()
    };
    let handler = move |request: Request| {
        let cluster = cluster.clone();
        async move { handle(cluster, request).await }
    };
    http1::server::serve(listener, config, handler, shutdown)
        .await
        .map_err(|e| e.to_string())
}

async fn handle(cluster: Arc<Cluster>, request: Request) -> Response {
    let method = request.head.method.clone();
    let path = request.head.path().to_owned();
    let segments: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(str::to_owned)
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    if method == Method::GET && segments == ["v1", "status"] {
        let status = tokio::task::spawn_blocking(move || cluster.status()).await;
        return match status {
            Ok(status) => json(StatusCode::OK, &status),
            Err(e) => failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
    }
    if method != Method::POST {
        return failure(
            StatusCode::NOT_FOUND,
            format!("no such request: {method} {path} (see `cluster --help`)"),
        );
    }
    let operation: Box<dyn FnOnce(&Cluster) -> Result<String, OpError> + Send> = match segments[..]
    {
        ["v1", "processes", name, action] => {
            let name = name.to_owned();
            match action {
                "kill" => Box::new(move |c| c.kill(&name)),
                "pause" => Box::new(move |c| c.pause(&name)),
                "resume" => Box::new(move |c| c.resume(&name)),
                "restart" => Box::new(move |c| c.restart(&name)),
                other => {
                    return failure(
                        StatusCode::NOT_FOUND,
                        format!("no action {other:?}: kill, pause, resume or restart"),
                    );
                }
            }
        }
        ["v1", "partition", a, b] => {
            let (a, b) = (a.to_owned(), b.to_owned());
            Box::new(move |c| c.partition(&a, &b))
        }
        ["v1", "heal"] => Box::new(|c| c.heal(None)),
        ["v1", "heal", a, b] => {
            let (a, b) = (a.to_owned(), b.to_owned());
            Box::new(move |c| c.heal(Some((&a, &b))))
        }
        ["v1", "latency", a, b, ms] => {
            let Ok(ms) = ms.parse::<u64>() else {
                return failure(
                    StatusCode::BAD_REQUEST,
                    format!("{ms:?} is not a number of milliseconds"),
                );
            };
            let (a, b) = (a.to_owned(), b.to_owned());
            Box::new(move |c| c.latency(&a, &b, ms))
        }
        _ => {
            return failure(
                StatusCode::NOT_FOUND,
                format!("no such request: {method} {path} (see `cluster --help`)"),
            );
        }
    };
    match tokio::task::spawn_blocking(move || operation(&cluster)).await {
        Ok(Ok(message)) => json(StatusCode::OK, &Message { message }),
        Ok(Err(OpError::Refused(error))) => failure(StatusCode::BAD_REQUEST, error),
        Ok(Err(OpError::Failed(error))) => failure(StatusCode::INTERNAL_SERVER_ERROR, error),
        Err(e) => failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn json(status: StatusCode, value: &impl Serialize) -> Response {
    let body = serde_json::to_vec_pretty(value).expect("plain structs serialize");
    Response::new(status, Body::full(Bytes::from(body))).with_header(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    )
}

fn failure(status: StatusCode, error: String) -> Response {
    json(status, &Failure { error })
}

/// Why a control request did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no cluster is running at {addr} ({reason}); start one with `cluster up`")]
    Unreachable { addr: SocketAddr, reason: String },
    /// The launcher refused or failed the command; its message.
    #[error("{0}")]
    Answered(String),
    #[error("the control API at {addr} answered something unexpected: {reason}")]
    Unexpected { addr: SocketAddr, reason: String },
}

/// A client of a running launcher's control API.
#[derive(Clone, Debug)]
pub struct ControlClient {
    addr: SocketAddr,
    client: Client,
}

impl ControlClient {
    pub fn new(addr: SocketAddr) -> ControlClient {
        let config = ClientConfig {
            connect_timeout: Duration::from_secs(2),
            response_header_timeout: COMMAND_TIMEOUT,
            max_idle_per_endpoint: 1,
            ..ClientConfig::default()
        };
        let client = Client::new(config).expect("valid client settings");
        ControlClient { addr, client }
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<ClusterStatus, ControlError> {
        let body = self.call(Method::GET, "/v1/status").await?;
        serde_json::from_slice(&body).map_err(|e| self.unexpected(e.to_string()))
    }

    /// A `POST` command (a path of the table above); the launcher's message.
    pub async fn command(&self, path: &str) -> Result<String, ControlError> {
        let body = self.call(Method::POST, path).await?;
        let message: Message =
            serde_json::from_slice(&body).map_err(|e| self.unexpected(e.to_string()))?;
        Ok(message.message)
    }

    async fn call(&self, method: Method, path: &str) -> Result<Bytes, ControlError> {
        let request = Request::new(method, path.to_owned(), Body::empty());
        let response = match self.client.send(self.addr, request).await {
            Ok(response) => response,
            Err(http1::Error::Connect(e)) => {
                return Err(ControlError::Unreachable {
                    addr: self.addr,
                    reason: e.to_string(),
                });
            }
            Err(e) => return Err(self.unexpected(e.to_string())),
        };
        let status = response.status();
        let body = response
            .body
            .collect(MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| self.unexpected(e.to_string()))?
            .data;
        if status == StatusCode::OK {
            return Ok(body);
        }
        match serde_json::from_slice::<Failure>(&body) {
            Ok(failure) => Err(ControlError::Answered(failure.error)),
            Err(_) => Err(self.unexpected(format!("status {status}"))),
        }
    }

    fn unexpected(&self, reason: String) -> ControlError {
        ControlError::Unexpected {
            addr: self.addr,
            reason,
        }
    }
}
