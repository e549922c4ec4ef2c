//! Every error the API answers, and its one conversion to a response.
//!
//! Each error is a JSON body with a stable machine-readable `error` and a `message` a person
//! can act on:
//!
//! ```text
//! HTTP/1.1 409 Conflict
//! Content-Type: application/json
//! Cache-Control: no-store
//!
//! {"error":"alias_taken","message":"alias `launch` is already taken; choose another"}
//! ```
//!
//! `Cache-Control: no-store` on every error: a 404 for an unknown code must never be kept by a
//! browser or a CDN, or a link created a second later would stay broken for them. Internal
//! failures (the store) are logged here, once, and answered without their details.

use http1::{HeaderValue, Response, StatusCode, header};

use crate::alias::AliasError;
use crate::store::StoreError;
use crate::target::UrlError;

/// An API failure: a status, a stable error name and a message for a person.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            error,
            message: message.into(),
        }
    }

    pub fn bad_request(error: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, error, message)
    }

    pub fn not_found(code: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no link has the code `{code}`; check it for typos"),
        )
    }

    pub fn gone(code: &str, expired_at: &str) -> Self {
        ApiError::new(
            StatusCode::GONE,
            "expired",
            format!("the link `{code}` expired at {expired_at}"),
        )
    }

    pub fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.error, "message": self.message });
        json_response(self.status, &body)
            .with_header(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))
    }
}

impl From<UrlError> for ApiError {
    fn from(err: UrlError) -> Self {
        ApiError::bad_request("invalid_url", err.to_string())
    }
}

impl From<AliasError> for ApiError {
    fn from(err: AliasError) -> Self {
        ApiError::bad_request("invalid_alias", err.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        tracing::error!(%err, "store operation failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the link store failed to answer; retry in a moment",
        )
    }
}

/// A JSON response with `value` as its body.
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    // A `Value` always serialises.
    let body = serde_json::to_vec(value).expect("JSON values serialise");
    Response::new(status, body).with_header(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    )
}
