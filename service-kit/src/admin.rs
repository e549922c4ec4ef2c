//! The admin endpoint every server runs on `admin_listen`, as a transport-free router.
//!
//! ```text
//! GET /metrics   200  Prometheus text format 0.0.4 (metrics::Registry::encode)
//! GET /healthz   200  "ok": the process is alive and its event loop answers
//! GET /readyz    200  "ready" once the server has marked itself ready
//!                503  "starting" before that, "draining" after shutdown began
//! other path     404
//! other method   405, with `Allow: GET, HEAD`
//! ```
//!
//! `healthz` and `readyz` answer different questions. A failing liveness check means "restart
//! me"; a failing readiness check means "send me no traffic for now". A server that is
//! loading a snapshot or draining connections is alive but not ready, and restarting it
//! would only make things worse. Process-level tests wait for `/readyz` before they start.
//!
//! # Serving it
//!
//! [`serve`] runs the routes on the workspace's HTTP/1.1 server (`http1::server`), on a
//! listener of its own, so that a scrape or a probe never queues behind application traffic.
//! [`respond`] is the routing alone, testable without a socket. A `HEAD` gets the `GET`
//! response; the HTTP layer sends its Content-Length and drops the body (RFC 9110 section
//! 9.3.2).
//!
//! # Readiness lifecycle
//!
//! ```text
//!   Starting ──mark_ready()──▶ Ready ──mark_draining()──▶ Draining
//! ```
//!
//! A server calls [`AdminState::mark_ready`] after its listeners are bound and its state is
//! loaded, and [`AdminState::mark_draining`] as soon as shutdown is triggered, so that load
//! balancers stop routing to it before it stops accepting.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use http1::head::RequestHead;
use http1::server::{self, ServerConfig};
use http1::{HeaderValue, Method, Request, Response, StatusCode, header};
use tokio::net::TcpListener;

use crate::metrics::Registry;

/// Methods the admin endpoint serves, as the `Allow` header of a 405 lists them.
pub const ALLOWED_METHODS: &str = "GET, HEAD";

/// Where the server is in its lifecycle, as `/readyz` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Binding sockets, loading state: alive, not ready for traffic.
    Starting,
    /// Serving traffic.
    Ready,
    /// Shutdown began: finishing in-flight work, taking nothing new.
    Draining,
}

impl Readiness {
    fn from_u8(value: u8) -> Self {
        match value {
            0 => Readiness::Starting,
            1 => Readiness::Ready,
            _ => Readiness::Draining,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            Readiness::Starting => 0,
            Readiness::Ready => 1,
            Readiness::Draining => 2,
        }
    }
}

/// What the admin endpoint serves from: the metrics and the readiness state.
/// Cloning is cheap; clones share both.
#[derive(Clone, Debug)]
pub struct AdminState {
    metrics: Registry,
    readiness: Arc<AtomicU8>,
}

impl AdminState {
    /// State for a server that is starting, serving `metrics`.
    pub fn new(metrics: Registry) -> Self {
        AdminState {
            metrics,
            readiness: Arc::new(AtomicU8::new(Readiness::Starting.as_u8())),
        }
    }

    /// The registry `/metrics` encodes.
    pub fn metrics(&self) -> &Registry {
        &self.metrics
    }

    /// `/readyz` answers 200 from now on, unless draining has begun: a server never goes back
    /// from draining to ready.
    pub fn mark_ready(&self) {
        let starting = Readiness::Starting.as_u8();
        let ready = Readiness::Ready.as_u8();
        // Only Starting moves to Ready; a failed exchange means we are already Ready or Draining.
        let _ =
            self.readiness
                .compare_exchange(starting, ready, Ordering::Release, Ordering::Relaxed);
    }

    /// `/readyz` answers 503 "draining" from now on.
    pub fn mark_draining(&self) {
        self.readiness
            .store(Readiness::Draining.as_u8(), Ordering::Release);
    }

    /// The current state.
    pub fn readiness(&self) -> Readiness {
        Readiness::from_u8(self.readiness.load(Ordering::Acquire))
    }
}

/// Most connections the admin listener serves at once: probes and scrapes are few, and a
/// flood of them must not take descriptors from the server's real work.
pub const ADMIN_MAX_CONNECTIONS: usize = 64;

/// Answers one admin request. The query string is ignored.
pub fn respond(state: &AdminState, head: &RequestHead) -> Response {
    if head.method != Method::GET && head.method != Method::HEAD {
        return Response::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
            .with_header(header::ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
    }
    match head.path() {
        "/metrics" => {
            let (content_type, body) = state.metrics.encode();
            Response::new(StatusCode::OK, body)
                .with_header(header::CONTENT_TYPE, HeaderValue::from_static(content_type))
        }
        "/healthz" => Response::text(StatusCode::OK, "ok\n"),
        "/readyz" => match state.readiness() {
            Readiness::Ready => Response::text(StatusCode::OK, "ready\n"),
            Readiness::Starting => Response::text(StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
            Readiness::Draining => Response::text(StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
        },
        _ => Response::text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// Serves the admin routes on `listener` until `shutdown` resolves, then finishes in-flight
/// requests for at most `drain_timeout`.
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    drain_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let config = ServerConfig {
        max_connections: ADMIN_MAX_CONNECTIONS,
        drain_timeout,
        ..ServerConfig::default()
    };
    let handler = move |request: Request| {
        let response = respond(&state, &request.head);
        async move { response }
    };
    // The span tells the admin listener's own log lines (accepting, draining) from those of
    // the server's main listener, which come from the same `http1::server` code.
    let addr = listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    let span = tracing::info_span!("admin", listen = %addr);
    // `serve` fails only on an invalid config, and this one is fixed.
    let served = server::serve(listener, config, handler, shutdown);
    if let Err(err) = tracing::Instrument::instrument(served, span).await {
        tracing::error!(%err, "admin endpoint stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> AdminState {
        AdminState::new(Registry::new())
    }

    fn get(state: &AdminState, method: Method, target: &str) -> Response {
        respond(state, &RequestHead::new(method, target))
    }

    async fn body_of(response: Response) -> String {
        let collected = response.body.collect(1 << 20).await.unwrap();
        String::from_utf8(collected.data.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn healthz_is_200_from_the_start() {
        let response = get(&state(), Method::GET, "/healthz");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body_of(response).await, "ok\n");
    }

    #[tokio::test]
    async fn readyz_follows_the_lifecycle() {
        let state = state();
        let readyz = |state: &AdminState| get(state, Method::GET, "/readyz");
        assert_eq!(readyz(&state).status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body_of(readyz(&state)).await, "starting\n");

        state.clone().mark_ready();
        assert_eq!(
            readyz(&state).status(),
            StatusCode::OK,
            "clones share readiness"
        );

        state.mark_draining();
        assert_eq!(readyz(&state).status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body_of(readyz(&state)).await, "draining\n");

        state.mark_ready();
        assert_eq!(state.readiness(), Readiness::Draining, "draining is final");
    }

    #[tokio::test]
    async fn metrics_serves_the_registry_in_text_format() {
        let state = state();
        let hits = state.metrics().counter("kv_hits_total", "Hits.").unwrap();
        hits.inc();
        let response = get(&state, Method::GET, "/metrics");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.head.headers[header::CONTENT_TYPE],
            "text/plain; version=0.0.4"
        );
        let body = body_of(response).await;
        assert!(body.lines().any(|line| line == "kv_hits_total 1"), "{body}");
    }

    #[test]
    fn head_is_answered_like_get_and_the_query_is_ignored() {
        let state = state();
        assert_eq!(
            get(&state, Method::HEAD, "/healthz").status(),
            StatusCode::OK
        );
        assert_eq!(
            get(&state, Method::GET, "/healthz?verbose=1").status(),
            StatusCode::OK
        );
    }

    #[test]
    fn unknown_paths_are_404_and_other_methods_405_with_allow() {
        let state = state();
        assert_eq!(
            get(&state, Method::GET, "/").status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get(&state, Method::GET, "/metrics/extra").status(),
            StatusCode::NOT_FOUND
        );
        let post = get(&state, Method::POST, "/metrics");
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(post.head.headers[header::ALLOW], "GET, HEAD");
    }

    /// The routes over a real socket, through the HTTP server, with a plain TCP client.
    #[tokio::test]
    async fn serves_over_http() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = state();
        state.mark_ready();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, state, Duration::from_secs(1), async {
            let _ = stopped.await;
        }));
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /readyz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        let read = stream.read_to_string(&mut answer);
        tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .unwrap()
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nready\n"), "{answer}");
        drop(stream);
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap();
    }
}
