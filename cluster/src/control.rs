//! The launcher's control API, and the client that `cluster status`, `kill`, ... use.
//!
//! `cluster up` serves it on `[cluster] control_listen` until it is told to stop (the drain
//! that follows takes no more commands). Plain HTTP and JSON, so `curl` works as well as the
//! subcommands:
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
//! refused (an unknown name, a process in the wrong state), `500 {"error": ...}` when it failed,
//! and `404 {"error": ...}` for a request not in the table.

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

/// A command of the control API: what the other subcommands ask a running launcher to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    Kill(String),
    Pause(String),
    Resume(String),
    Restart(String),
    Partition(String, String),
    /// Between two names, or everywhere.
    Heal(Option<(String, String)>),
    /// Milliseconds added between two names.
    Latency(String, String, u64),
}

impl Operation {
    /// The request path (always a `POST`).
    pub fn path(&self) -> String {
        match self {
            Operation::Kill(name) => format!("/v1/processes/{name}/kill"),
            Operation::Pause(name) => format!("/v1/processes/{name}/pause"),
            Operation::Resume(name) => format!("/v1/processes/{name}/resume"),
            Operation::Restart(name) => format!("/v1/processes/{name}/restart"),
            Operation::Partition(a, b) => format!("/v1/partition/{a}/{b}"),
            Operation::Heal(None) => "/v1/heal".to_owned(),
            Operation::Heal(Some((a, b))) => format!("/v1/heal/{a}/{b}"),
            Operation::Latency(a, b, ms) => format!("/v1/latency/{a}/{b}/{ms}"),
        }
    }

    /// The operation a `POST` path names, or why it names none.
    fn parse(path: &str) -> Result<Operation, String> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let owned = |s: &str| s.to_owned();
        Ok(match segments[..] {
            ["v1", "processes", name, "kill"] => Operation::Kill(owned(name)),
            ["v1", "processes", name, "pause"] => Operation::Pause(owned(name)),
            ["v1", "processes", name, "resume"] => Operation::Resume(owned(name)),
            ["v1", "processes", name, "restart"] => Operation::Restart(owned(name)),
            ["v1", "partition", a, b] => Operation::Partition(owned(a), owned(b)),
            ["v1", "heal"] => Operation::Heal(None),
            ["v1", "heal", a, b] => Operation::Heal(Some((owned(a), owned(b)))),
            ["v1", "latency", a, b, ms] => match ms.parse() {
                Ok(ms) => Operation::Latency(owned(a), owned(b), ms),
                Err(_) => return Err(format!("{ms:?} is not a number of milliseconds")),
            },
            _ => {
                return Err(format!(
                    "no such request: POST {path} (see `cluster --help`)"
                ));
            }
        })
    }

    /// Carries it out (blocking until done).
    pub fn apply(&self, cluster: &Cluster) -> Result<String, OpError> {
        match self {
            Operation::Kill(name) => cluster.kill(name),
            Operation::Pause(name) => cluster.pause(name),
            Operation::Resume(name) => cluster.resume(name),
            Operation::Restart(name) => cluster.restart(name),
            Operation::Partition(a, b) => cluster.partition(a, b),
            Operation::Heal(between) => {
                cluster.heal(between.as_ref().map(|(a, b)| (a.as_str(), b.as_str())))
            }
            Operation::Latency(a, b, ms) => cluster.latency(a, b, *ms),
        }
    }
}

async fn handle(cluster: Arc<Cluster>, request: Request) -> Response {
    let method = request.head.method.clone();
    let path = request.head.path().to_owned();
    if method == Method::GET && path == "/v1/status" {
        let status = tokio::task::spawn_blocking(move || cluster.status()).await;
        return match status {
            Ok(status) => json(StatusCode::OK, &status),
            Err(e) => failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
    }
    let operation = match method == Method::POST {
        true => Operation::parse(&path),
        false => Err(format!(
            "no such request: {method} {path} (see `cluster --help`)"
        )),
    };
    let operation = match operation {
        Ok(operation) => operation,
        Err(error) => return failure(StatusCode::NOT_FOUND, error),
    };
    match tokio::task::spawn_blocking(move || operation.apply(&cluster)).await {
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

    /// Asks the launcher to carry out `operation`; its message once done.
    pub async fn command(&self, operation: &Operation) -> Result<String, ControlError> {
        let body = self.call(Method::POST, &operation.path()).await?;
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

#[cfg(test)]
mod tests {
    use super::Operation;

    #[test]
    fn every_operation_parses_back_from_its_path() {
        let (a, b) = ("api-gateway".to_owned(), "kv-store".to_owned());
        for operation in [
            Operation::Kill(a.clone()),
            Operation::Pause(a.clone()),
            Operation::Resume(a.clone()),
            Operation::Restart(a.clone()),
            Operation::Partition(a.clone(), b.clone()),
            Operation::Heal(None),
            Operation::Heal(Some((a.clone(), b.clone()))),
            Operation::Latency(a.clone(), b.clone(), 250),
        ] {
            assert_eq!(Operation::parse(&operation.path()), Ok(operation));
        }
        assert!(Operation::parse("/v1/processes/x/explode").is_err());
        assert!(
            Operation::parse("/v1/latency/a/b/soon")
                .unwrap_err()
                .contains("\"soon\"")
        );
    }
}
