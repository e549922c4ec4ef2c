//! Why the proxy answered a request itself instead of relaying the upstream's answer, and how
//! each reason becomes a response: in one place, so that every error the proxy produces has
//! the same shape.
//!
//! Each variant records *who* failed (the downstream client, the proxy's own configuration or
//! limits, or the upstream) and, for upstream failures, whether the request may be sent again
//! (the retry rule lives in `retry.rs`; this only says what happened).
//!
//! The response carries the status, a one-line text body, and a `Proxy-Status` field
//! (RFC 9209) naming the error type from the RFC's registry, so that a client or a log
//! pipeline can tell "the upstream refused the connection" from "the upstream timed out"
//! without parsing prose:
//!
//! ```text
//! HTTP/1.1 502 Bad Gateway
//! proxy-status: reverse-proxy; error=connection_refused; details="127.0.0.1:9001"
//! ```
//!
//! Internals (paths, stack traces) never reach the client; the details are the endpoint's
//! address and the name of the limit that was hit, which the operator configured.

use std::net::SocketAddr;

use http::header::{self, HeaderValue};
use http::{HeaderName, StatusCode};
use http1::Response;

/// `Proxy-Status` (RFC 9209 section 2).
pub static PROXY_STATUS: HeaderName = HeaderName::from_static("proxy-status");

/// A request the proxy answered itself.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No route matches the request's host and path. (Who: configuration.)
    #[error("no route for this host and path")]
    NoRoute,
    /// The method is not proxied (CONNECT: this is a reverse proxy, not a forward proxy).
    #[error("method not allowed through this proxy")]
    MethodNotAllowed,
    /// Every endpoint of the cluster is unhealthy or ejected (and the panic threshold did not
    /// apply). (Who: upstream.)
    #[error("no healthy endpoint in cluster {cluster}")]
    NoHealthyEndpoint { cluster: String },
    /// A circuit-breaker limit of the cluster is reached; `limit` names it
    /// (`max_requests`, `max_pending`, `max_connections`). (Who: the proxy's limits.)
    #[error("cluster {cluster} is at its {limit} limit")]
    CircuitOpen {
        cluster: String,
        limit: &'static str,
    },
    /// The TCP connection to the endpoint could not be opened; nothing was sent, so any
    /// request may be retried elsewhere. (Who: upstream.)
    #[error("connect to {endpoint} failed: {source}")]
    ConnectFailed {
        endpoint: SocketAddr,
        source: http1::Error,
    },
    /// The connection attempt took longer than `timeouts.connect_ms`; nothing was sent.
    #[error("connect to {endpoint} timed out")]
    ConnectTimeout { endpoint: SocketAddr },
    /// The endpoint closed or reset the connection before any byte of a response. It may
    /// have acted on the request: only idempotent requests may be retried.
    #[error("{endpoint} closed the connection before answering: {source}")]
    UpstreamReset {
        endpoint: SocketAddr,
        source: http1::Error,
    },
    /// The response head did not arrive within `timeouts.request_ms`.
    #[error("{endpoint} did not answer within the request timeout")]
    UpstreamTimeout { endpoint: SocketAddr },
    /// The endpoint broke HTTP/1.1 in its response head (see
    /// `http1::Error::is_upstream_protocol_error`).
    #[error("{endpoint} sent a malformed response: {source}")]
    UpstreamProtocol {
        endpoint: SocketAddr,
        source: http1::Error,
    },
    /// The downstream client's request body broke its framing or a limit while the proxy was
    /// reading it. (Who: downstream.)
    #[error("request body: {0}")]
    RequestBody(http1::Error),
}

impl ProxyError {
    /// Classifies an error of `http1::Client::send` to `endpoint`.
    pub fn from_client(endpoint: SocketAddr, error: http1::Error) -> ProxyError {
        match error {
            http1::Error::Connect(_) => ProxyError::ConnectFailed {
                endpoint,
                source: error,
            },
            // The client names its timeouts; "connect" is the only one before sending.
            http1::Error::Timeout("connect") => ProxyError::ConnectTimeout { endpoint },
            http1::Error::Timeout(_) => ProxyError::UpstreamTimeout { endpoint },
            ref e if e.is_upstream_protocol_error() => ProxyError::UpstreamProtocol {
                endpoint,
                source: error,
            },
            // A body error while sending means the downstream's body broke, not the upstream.
            http1::Error::Body(_) => ProxyError::RequestBody(error),
            _ => ProxyError::UpstreamReset {
                endpoint,
                source: error,
            },
        }
    }

    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::NoHealthyEndpoint { .. } | ProxyError::CircuitOpen { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::ConnectFailed { .. }
            | ProxyError::UpstreamReset { .. }
            | ProxyError::UpstreamProtocol { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::ConnectTimeout { .. } | ProxyError::UpstreamTimeout { .. } => {
                StatusCode::GATEWAY_TIMEOUT
            }
            ProxyError::RequestBody(http1::Error::Body(e)) => e.status(),
            ProxyError::RequestBody(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The RFC 9209 error type, and details safe to show the client.
    fn proxy_status(&self) -> (&'static str, String) {
        match self {
            ProxyError::NoRoute => ("destination_not_found", String::new()),
            ProxyError::MethodNotAllowed => ("http_request_denied", String::new()),
            ProxyError::NoHealthyEndpoint { cluster } => {
                ("destination_unavailable", cluster.clone())
            }
            ProxyError::CircuitOpen { cluster, limit } => {
                ("connection_limit_reached", format!("{cluster} {limit}"))
            }
            ProxyError::ConnectFailed { endpoint, .. } => {
                ("connection_refused", endpoint.to_string())
            }
            ProxyError::ConnectTimeout { endpoint } => ("connection_timeout", endpoint.to_string()),
            ProxyError::UpstreamReset { endpoint, .. } => {
                ("connection_terminated", endpoint.to_string())
            }
            ProxyError::UpstreamTimeout { endpoint } => {
                ("http_response_timeout", endpoint.to_string())
            }
            ProxyError::UpstreamProtocol { endpoint, .. } => {
                ("http_protocol_error", endpoint.to_string())
            }
            ProxyError::RequestBody(_) => ("http_request_error", String::new()),
        }
    }

    /// Whether the endpoint failed (the outlier detector counts it against the endpoint).
    pub fn is_endpoint_failure(&self) -> bool {
        matches!(
            self,
            ProxyError::ConnectFailed { .. }
                | ProxyError::ConnectTimeout { .. }
                | ProxyError::UpstreamReset { .. }
                | ProxyError::UpstreamTimeout { .. }
                | ProxyError::UpstreamProtocol { .. }
        )
    }

    /// Whether the request never left the proxy (a failed connect): safe to send anywhere.
    pub fn nothing_sent(&self) -> bool {
        matches!(
            self,
            ProxyError::ConnectFailed { .. } | ProxyError::ConnectTimeout { .. }
        )
    }

    /// The response the client gets. `proxy_name` is the `Via` pseudonym, reused as the
    /// `Proxy-Status` member name.
    pub fn to_response(&self, proxy_name: &str) -> Response {
        let status = self.status();
        let (error_type, details) = self.proxy_status();
        let mut field = format!("{proxy_name}; error={error_type}");
        if !details.is_empty() {
            // Details are addresses and config names: no quote or backslash to escape.
            field.push_str(&format!("; details=\"{details}\""));
        }
        let reason = status.canonical_reason().unwrap_or("Error");
        let body = format!("{} {reason}: {self}\n", status.as_u16());
        let mut response = Response::text(status, body);
        if let Ok(value) = HeaderValue::from_str(&field) {
            response.head.headers.insert(PROXY_STATUS.clone(), value);
        }
        if matches!(self, ProxyError::RequestBody(_)) {
            // The request's framing can no longer be trusted: do not read another one.
            response
                .head
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "127.0.0.1:9001".parse().unwrap()
    }

    #[test]
    fn client_errors_are_classified_by_who_failed_and_when() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let cases = [
            (
                http1::Error::Connect(refused),
                StatusCode::BAD_GATEWAY,
                true,
            ),
            (
                http1::Error::Timeout("connect"),
                StatusCode::GATEWAY_TIMEOUT,
                true,
            ),
            (
                http1::Error::Timeout("response header"),
                StatusCode::GATEWAY_TIMEOUT,
                false,
            ),
            (http1::Error::Closed, StatusCode::BAD_GATEWAY, false),
            (
                http1::Error::MalformedResponse(http1::HeadError::BareLf),
                StatusCode::BAD_GATEWAY,
                false,
            ),
        ];
        for (error, status, nothing_sent) in cases {
            let classified = ProxyError::from_client(addr(), error);
            assert_eq!(classified.status(), status, "{classified}");
            assert_eq!(classified.nothing_sent(), nothing_sent, "{classified}");
            assert!(classified.is_endpoint_failure());
        }
        let body = ProxyError::from_client(
            addr(),
            http1::Error::Body(http1::BodyError::TooLarge { max: 10 }),
        );
        assert_eq!(body.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(!body.is_endpoint_failure());
    }

    #[test]
    fn the_response_names_the_error_type_in_proxy_status() {
        let error = ProxyError::CircuitOpen {
            cluster: "api".into(),
            limit: "max_requests",
        };
        let response = error.to_response("edge-1");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.head.headers[&PROXY_STATUS],
            "edge-1; error=connection_limit_reached; details=\"api max_requests\""
        );
    }
}
