//! Why the gateway answered a request itself, and how each reason becomes a response: in one
//! place, so every refusal has the same shape.
//!
//! ```text
//! HTTP/1.1 429 Too Many Requests
//! content-type: application/json
//! retry-after: 2
//! ratelimit-policy: "per_consumer";q=100;w=60
//! ratelimit: "per_consumer";r=0;t=2
//!
//! {"error":"rate_limited","message":"rate limit per_consumer exceeded: retry in 2 s","request_id":"6f1c..."}
//! ```
//!
//! The body is JSON with a stable machine-readable `error` code, a `message` a person can act
//! on, and the request id to quote. Nothing internal (addresses of the store, parser errors,
//! token contents) reaches the client; the log has the details.

use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Method, StatusCode};
use http1::{Body, Response};

use crate::auth::AuthError;

/// A request the gateway answered itself.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("no route matches this host, path and headers")]
    NoRoute,
    #[error("this resource does not accept the method")]
    MethodNotAllowed { allow: Vec<Method> },
    #[error("{0}")]
    BadRequest(&'static str),
    #[error("{}", auth_message(.0))]
    Auth(AuthError),
    #[error("rate limit {policy} exceeded: retry in {} s", whole_seconds(*.retry_after))]
    RateLimited {
        policy: String,
        retry_after: Duration,
    },
    #[error("the rate-limit store is unavailable and policy {policy} fails closed")]
    RateLimitUnavailable { policy: String },
    #[error("a request with this idempotency key is still being processed; retry later")]
    IdempotencyInProgress,
    #[error("this idempotency key was already used with a different request")]
    IdempotencyMismatch,
    #[error("idempotency keys cannot be checked right now; retry later")]
    IdempotencyUnavailable,
    #[error("the upstream {cluster} is failing: its circuit is open; retry in {} s", whole_seconds(*.retry_after))]
    CircuitOpen {
        cluster: String,
        retry_after: Duration,
    },
    #[error("request body over the limit of {max} bytes")]
    BodyTooLarge { max: u64 },
    #[error("request body: {0}")]
    RequestBody(String),
    #[error("the upstream did not answer within the route's {} ms", .0.as_millis())]
    Timeout(Duration),
}

fn auth_message(error: &AuthError) -> String {
    match error {
        AuthError::Missing { .. } => "credentials are required".to_owned(),
        AuthError::Invalid { reason, .. } => format!("credentials refused: {reason}"),
        AuthError::InsufficientScope { required } => {
            format!("the credentials lack the scope `{required}`")
        }
        AuthError::Unavailable { reason } => format!("credentials cannot be checked: {reason}"),
    }
}

/// Whole seconds, rounded up, and never 0: a refusal that said "retry in 0 s" would invite
/// an immediate retry.
fn whole_seconds(d: Duration) -> u64 {
    (d.as_millis().div_ceil(1000) as u64).max(1)
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::NoRoute => StatusCode::NOT_FOUND,
            GatewayError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::BadRequest(_) | GatewayError::RequestBody(_) => StatusCode::BAD_REQUEST,
            GatewayError::Auth(error) => error.status(),
            GatewayError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::IdempotencyInProgress => StatusCode::CONFLICT,
            GatewayError::IdempotencyMismatch => StatusCode::UNPROCESSABLE_ENTITY,
            GatewayError::RateLimitUnavailable { .. }
            | GatewayError::IdempotencyUnavailable
            | GatewayError::CircuitOpen { .. } => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The stable code in the body, also the `reason` label of `gateway_rejections_total`.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::NoRoute => "no_route",
            GatewayError::MethodNotAllowed { .. } => "method_not_allowed",
            GatewayError::BadRequest(_) | GatewayError::RequestBody(_) => "bad_request",
            GatewayError::Auth(AuthError::InsufficientScope { .. }) => "forbidden",
            GatewayError::Auth(AuthError::Unavailable { .. }) => "unavailable",
            GatewayError::Auth(_) => "unauthenticated",
            GatewayError::RateLimited { .. } => "rate_limited",
            GatewayError::RateLimitUnavailable { .. } | GatewayError::IdempotencyUnavailable => {
                "unavailable"
            }
            GatewayError::IdempotencyInProgress => "idempotency_conflict",
            GatewayError::IdempotencyMismatch => "idempotency_mismatch",
            GatewayError::CircuitOpen { .. } => "circuit_open",
            GatewayError::BodyTooLarge { .. } => "body_too_large",
            GatewayError::Timeout(_) => "timeout",
        }
    }

    /// The response: status, JSON body, and the fields the status calls for.
    pub fn to_response(&self, request_id: &HeaderValue) -> Response {
        let body = serde_json::json!({
            "error": self.code(),
            "message": self.to_string(),
            "request_id": request_id.to_str().unwrap_or(""),
        });
        let mut response = Response::new(self.status(), Body::full(body.to_string() + "\n"));
        let headers = &mut response.head.headers;
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        match self {
            GatewayError::MethodNotAllowed { allow } => {
                let list: Vec<&str> = allow.iter().map(Method::as_str).collect();
                if let Ok(value) = HeaderValue::from_str(&list.join(", ")) {
                    headers.insert(header::ALLOW, value);
                }
            }
            GatewayError::Auth(error) => {
                for challenge in error.www_authenticate() {
                    headers.append(header::WWW_AUTHENTICATE, challenge);
                }
            }
            GatewayError::CircuitOpen { retry_after, .. } => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(whole_seconds(*retry_after)),
                );
            }
            GatewayError::IdempotencyInProgress => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            // The request's framing cannot be trusted after a body error: read no other.
            GatewayError::RequestBody(_) | GatewayError::BodyTooLarge { .. } => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            // 429's Retry-After comes with the RateLimit fields (phase/rate_limit.rs).
            _ => {}
        }
        response
    }
}
