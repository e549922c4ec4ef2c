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
//! # The seam to HTTP
//!
//! This module knows nothing about sockets or HTTP framing: [`respond`] maps a method and a
//! request target to an [`AdminResponse`]. The HTTP/1.1 server calls it per request and writes
//! the status line, `Content-Type`, `Content-Length` and, unless the method was `HEAD`, the
//! body. For `HEAD` the router returns the same response as for `GET`, so that the transport
//! can send the `Content-Length` the `GET` would have had and drop the body, as
//! RFC 9110 §9.3.2 asks.
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

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use bytes::Bytes;

use crate::metrics::Registry;

/// `Content-Type` of the plain-text answers.
const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

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

/// An admin answer, for the transport to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminResponse {
    /// HTTP status code.
    pub status: u16,
    /// Value of the `Content-Type` header.
    pub content_type: &'static str,
    /// Value of the `Allow` header; set on 405 only, where RFC 9110 §15.5.6 requires it.
    pub allow: Option<&'static str>,
    /// The body; the transport drops it for `HEAD`.
    pub body: Bytes,
}

impl AdminResponse {
    fn text(status: u16, body: &'static str) -> Self {
        AdminResponse {
            status,
            content_type: TEXT_PLAIN,
            allow: None,
            body: Bytes::from_static(body.as_bytes()),
        }
    }
}

/// Answers one admin request. `target` is the request target as received (`/readyz?verbose`);
/// the query string is ignored.
pub fn respond(state: &AdminState, method: &str, target: &str) -> AdminResponse {
    if method != "GET" && method != "HEAD" {
        return AdminResponse {
            allow: Some(ALLOWED_METHODS),
            ..AdminResponse::text(405, "method not allowed\n")
        };
    }
    let path = target.split_once('?').map_or(target, |(path, _query)| path);
    match path {
        "/metrics" => {
            let (content_type, body) = state.metrics.encode();
            AdminResponse {
                status: 200,
                content_type,
                allow: None,
                body,
            }
        }
        "/healthz" => AdminResponse::text(200, "ok\n"),
        "/readyz" => match state.readiness() {
            Readiness::Ready => AdminResponse::text(200, "ready\n"),
            Readiness::Starting => AdminResponse::text(503, "starting\n"),
            Readiness::Draining => AdminResponse::text(503, "draining\n"),
        },
        _ => AdminResponse::text(404, "not found\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> AdminState {
        AdminState::new(Registry::new())
    }

    #[test]
    fn healthz_is_200_from_the_start() {
        let response = respond(&state(), "GET", "/healthz");
        assert_eq!(response.status, 200);
        assert_eq!(response.body, "ok\n");
    }

    #[test]
    fn readyz_follows_the_lifecycle() {
        let state = state();
        let readyz = |state: &AdminState| respond(state, "GET", "/readyz");
        assert_eq!(readyz(&state).status, 503);
        assert_eq!(readyz(&state).body, "starting\n");

        state.clone().mark_ready();
        assert_eq!(readyz(&state).status, 200, "clones share readiness");

        state.mark_draining();
        assert_eq!(readyz(&state).status, 503);
        assert_eq!(readyz(&state).body, "draining\n");

        state.mark_ready();
        assert_eq!(state.readiness(), Readiness::Draining, "draining is final");
    }

    #[test]
    fn metrics_serves_the_registry_in_text_format() {
        let state = state();
        let hits = state.metrics().counter("kv_hits_total", "Hits.").unwrap();
        hits.inc();
        let response = respond(&state, "GET", "/metrics");
        assert_eq!(response.status, 200);
        assert_eq!(response.content_type, "text/plain; version=0.0.4");
        let body = std::str::from_utf8(&response.body).unwrap();
        assert!(body.lines().any(|line| line == "kv_hits_total 1"), "{body}");
    }

    #[test]
    fn head_gets_the_get_response_for_the_transport_to_strip() {
        let state = state();
        assert_eq!(
            respond(&state, "HEAD", "/healthz"),
            respond(&state, "GET", "/healthz")
        );
    }

    #[test]
    fn the_query_string_is_ignored() {
        assert_eq!(respond(&state(), "GET", "/healthz?verbose=1").status, 200);
    }

    #[test]
    fn unknown_paths_are_404_and_other_methods_405_with_allow() {
        let state = state();
        assert_eq!(respond(&state, "GET", "/").status, 404);
        assert_eq!(respond(&state, "GET", "/metrics/extra").status, 404);
        let post = respond(&state, "POST", "/metrics");
        assert_eq!(post.status, 405);
        assert_eq!(post.allow, Some("GET, HEAD"));
        assert_eq!(
            respond(&state, "get", "/healthz").status,
            405,
            "methods are case-sensitive"
        );
    }
}
