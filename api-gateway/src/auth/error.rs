//! Authentication failures and the challenges that tell a client how to authenticate.
//!
//! | failure | status | `WWW-Authenticate` |
//! |---|---|---|
//! | no credentials | 401 | one challenge per accepted method, no error code (RFC 6750 section 3.1) |
//! | bad bearer token | 401 | `Bearer realm="api-gateway", error="invalid_token", error_description="token expired"` |
//! | bad API key | 401 | `Key realm="api-gateway"` |
//! | missing scope | 403 | `Bearer realm="api-gateway", error="insufficient_scope", scope="orders:write"` |
//! | no keys to verify with | 503 | none: the client did nothing wrong |
//!
//! The API-key challenge is Kong's, `Key realm="..."`: there is no registered scheme for API
//! keys, and naming the scheme `Key` tells a client which credential is wanted without
//! revealing configuration. The scope challenge is always `Bearer`: scopes are an OAuth notion,
//! and an API key carries none.

use http::{HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};

/// The realm of every challenge (RFC 9110 section 11.5).
pub const REALM: &str = "api-gateway";

/// A way to authenticate; a route lists the ones it accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// An API key in a header or query parameter.
    ApiKey,
    /// A JWT bearer token in `Authorization: Bearer` (RFC 6750 section 2.1).
    Jwt,
}

/// Why a request was not authenticated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credential of an accepted kind: 401.
    #[error("no credentials")]
    Missing { accepted: Vec<Method> },
    /// A credential that does not hold: 401. `reason` is a fixed phrase, safe to show.
    #[error("invalid credentials: {reason}")]
    Invalid { method: Method, reason: String },
    /// Authenticated, but without a scope the route requires: 403. `required` is the route's
    /// scopes, space-separated.
    #[error("insufficient scope: requires {required}")]
    InsufficientScope { required: String },
    /// Tokens cannot be verified: the key set was never loaded. 503.
    #[error("authentication unavailable: {reason}")]
    Unavailable { reason: String },
}

impl AuthError {
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::Missing { .. } | AuthError::Invalid { .. } => StatusCode::UNAUTHORIZED,
            AuthError::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            AuthError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `WWW-Authenticate` values to send, one challenge each (see the module doc).
    pub fn www_authenticate(&self) -> Vec<HeaderValue> {
        let challenges: Vec<String> = match self {
            AuthError::Missing { accepted } => {
                accepted.iter().map(|m| bare_challenge(*m)).collect()
            }
            AuthError::Invalid {
                method: Method::Jwt,
                reason,
            } => vec![format!(
                "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{}\"",
                quoted_string_content(reason)
            )],
            AuthError::Invalid {
                method: Method::ApiKey,
                ..
            } => vec![bare_challenge(Method::ApiKey)],
            AuthError::InsufficientScope { required } => vec![format!(
                "Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{}\"",
                quoted_string_content(required)
            )],
            AuthError::Unavailable { .. } => Vec::new(),
        };
        challenges
            .into_iter()
            .filter_map(|challenge| HeaderValue::from_str(&challenge).ok())
            .collect()
    }
}

fn bare_challenge(method: Method) -> String {
    match method {
        Method::ApiKey => format!("Key realm=\"{REALM}\""),
        Method::Jwt => format!("Bearer realm=\"{REALM}\""),
    }
}

/// The text made safe inside a quoted-string (RFC 9110 section 5.6.4): RFC 6750 section 3
/// limits `error_description` and `scope` to printable ASCII without `"` and `\`, so anything
/// else is dropped rather than escaped.
fn quoted_string_content(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .filter(|c| *c != '"' && *c != '\\')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenges(error: &AuthError) -> Vec<String> {
        error
            .www_authenticate()
            .iter()
            .map(|v| v.to_str().expect("ASCII").to_owned())
            .collect()
    }

    #[test]
    fn missing_credentials_name_every_accepted_scheme() {
        let error = AuthError::Missing {
            accepted: vec![Method::ApiKey, Method::Jwt],
        };
        assert_eq!(error.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            challenges(&error),
            ["Key realm=\"api-gateway\"", "Bearer realm=\"api-gateway\""]
        );
    }

    #[test]
    fn invalid_token_carries_its_reason() {
        let error = AuthError::Invalid {
            method: Method::Jwt,
            reason: "token expired".into(),
        };
        assert_eq!(error.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            challenges(&error),
            [
                "Bearer realm=\"api-gateway\", error=\"invalid_token\", error_description=\"token expired\""
            ]
        );
        let error = AuthError::Invalid {
            method: Method::ApiKey,
            reason: "unknown API key".into(),
        };
        assert_eq!(challenges(&error), ["Key realm=\"api-gateway\""]);
    }

    #[test]
    fn insufficient_scope_is_403_naming_the_scope() {
        let error = AuthError::InsufficientScope {
            required: "orders:write \"x\"\r\n".into(),
        };
        assert_eq!(error.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            challenges(&error),
            [
                "Bearer realm=\"api-gateway\", error=\"insufficient_scope\", scope=\"orders:write x\""
            ]
        );
    }

    #[test]
    fn unavailable_is_503_without_a_challenge() {
        let error = AuthError::Unavailable {
            reason: "no keys".into(),
        };
        assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(error.www_authenticate().is_empty());
    }
}
