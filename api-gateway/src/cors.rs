//! CORS (the Fetch standard's "CORS protocol"): which web origins may call a route from a
//! browser, answered by the gateway so that no upstream has to.
//!
//! ```text
//!  preflight: OPTIONS + Origin + Access-Control-Request-Method
//!     routed as if it were the method it announces, answered here (before authentication:
//!     a browser sends no credentials on a preflight)
//!       origin allowed  ─▶ 204 + Access-Control-Allow-{Origin,Methods,Headers}, Max-Age
//!       otherwise       ─▶ 403 (the browser would refuse the call anyway; the body says why)
//!  actual request with Origin (allowed) ─▶ the response gains Access-Control-Allow-Origin,
//!     Access-Control-Expose-Headers, Vary: Origin
//! ```
//!
//! `*` allows any origin. With `allow_credentials`, the response must name the origin rather
//! than `*` (browsers refuse `*` with credentials), so the gateway echoes the request's
//! `Origin`, and `Vary: Origin` tells caches that the answer depends on it.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use http1::{Body, Response};
use serde::{Deserialize, Serialize};
use service_kit::config::ConfigError;

/// `[cors.NAME]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsConfig {
    /// Origins allowed (`https://app.example.com`), or `["*"]` for any. Default none.
    pub allow_origins: Vec<String>,
    /// Default GET, HEAD, POST, PUT, PATCH, DELETE.
    pub allow_methods: Vec<String>,
    /// Request header fields a page may send. Default `authorization`, `content-type`,
    /// `x-api-key`, `idempotency-key`.
    pub allow_headers: Vec<String>,
    /// Response fields a page may read. Default `x-request-id`, `ratelimit`,
    /// `ratelimit-policy`, `retry-after`.
    pub expose_headers: Vec<String>,
    /// Whether cookies and credentials may be sent. Default false.
    pub allow_credentials: bool,
    /// How long a browser may cache a preflight answer, seconds. Default 600.
    pub max_age_s: u64,
}

impl Default for CorsConfig {
    fn default() -> Self {
        let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
        CorsConfig {
            allow_origins: Vec::new(),
            allow_methods: strings(&["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]),
            allow_headers: strings(&[
                "authorization",
                "content-type",
                "x-api-key",
                "idempotency-key",
            ]),
            expose_headers: strings(&[
                "x-request-id",
                "ratelimit",
                "ratelimit-policy",
                "retry-after",
            ]),
            allow_credentials: false,
            max_age_s: 600,
        }
    }
}

impl CorsConfig {
    pub fn validate(&self, field: &str) -> Result<(), ConfigError> {
        for origin in &self.allow_origins {
            let plausible = origin == "*"
                || ((origin.starts_with("http://") || origin.starts_with("https://"))
                    && !origin.ends_with('/'));
            if !plausible || HeaderValue::from_str(origin).is_err() {
                let reason = format!("`{origin}`: an origin is scheme://host[:port] or *");
                return Err(ConfigError::invalid(
                    format!("{field}.allow_origins"),
                    reason,
                ));
            }
        }
        for method in &self.allow_methods {
            if Method::from_bytes(method.as_bytes()).is_err() {
                let reason = format!("`{method}` is not a method");
                return Err(ConfigError::invalid(
                    format!("{field}.allow_methods"),
                    reason,
                ));
            }
        }
        for name in self.allow_headers.iter().chain(&self.expose_headers) {
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                let reason = format!("`{name}` is not a header field name");
                return Err(ConfigError::invalid(field, reason));
            }
        }
        Ok(())
    }
}

/// A CORS policy, its field values built once.
#[derive(Debug)]
pub struct Cors {
    any_origin: bool,
    origins: Vec<String>,
    credentials: bool,
    methods: HeaderValue,
    headers: HeaderValue,
    expose: HeaderValue,
    max_age: HeaderValue,
}

impl Cors {
    /// From a validated config.
    pub fn new(config: &CorsConfig) -> Cors {
        let join = |list: &[String]| {
            HeaderValue::from_str(&list.join(", ")).unwrap_or(HeaderValue::from_static(""))
        };
        Cors {
            any_origin: config.allow_origins.iter().any(|o| o == "*"),
            origins: config.allow_origins.clone(),
            credentials: config.allow_credentials,
            methods: join(&config.allow_methods),
            headers: join(&config.allow_headers),
            expose: join(&config.expose_headers),
            max_age: HeaderValue::from(config.max_age_s),
        }
    }

    fn allows(&self, origin: &HeaderValue) -> bool {
        self.any_origin
            || self
                .origins
                .iter()
                .any(|o| o.as_bytes() == origin.as_bytes())
    }

    /// What goes in `Access-Control-Allow-Origin` for this origin.
    fn allow_origin_value(&self, origin: &HeaderValue) -> HeaderValue {
        match self.any_origin && !self.credentials {
            true => HeaderValue::from_static("*"),
            false => origin.clone(),
        }
    }

    /// The answer to a preflight from `origin`.
    pub fn preflight(&self, origin: &HeaderValue) -> Response {
        if !self.allows(origin) {
            let body = "{\"error\":\"cors_origin_refused\",\"message\":\"this origin may not call this route\"}\n";
            return Response::new(StatusCode::FORBIDDEN, Body::full(body)).with_header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        let mut response = Response::new(StatusCode::NO_CONTENT, Body::empty());
        let h = &mut response.head.headers;
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            self.allow_origin_value(origin),
        );
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, self.methods.clone());
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, self.headers.clone());
        h.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        if self.credentials {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        h.append(header::VARY, HeaderValue::from_static("Origin"));
        response
    }

    /// Adds the fields of an actual (non-preflight) response to a request from `origin`.
    pub fn decorate(&self, origin: &HeaderValue, headers: &mut HeaderMap) {
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
        if !self.allows(origin) {
            return;
        }
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            self.allow_origin_value(origin),
        );
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, self.expose.clone());
        if self.credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }
}

/// Whether a request is a CORS preflight; if so, the method it announces.
pub fn preflight_method(method: &Method, headers: &HeaderMap) -> Option<Method> {
    if method != Method::OPTIONS || !headers.contains_key(header::ORIGIN) {
        return None;
    }
    let announced = headers.get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
    Method::from_bytes(announced.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str], credentials: bool) -> Cors {
        Cors::new(&CorsConfig {
            allow_origins: origins.iter().map(|s| s.to_string()).collect(),
            allow_credentials: credentials,
            ..CorsConfig::default()
        })
    }

    #[test]
    fn an_allowed_origin_gets_a_204_preflight_and_others_a_403() {
        let policy = cors(&["https://app.example.com"], false);
        let ok = policy.preflight(&HeaderValue::from_static("https://app.example.com"));
        assert_eq!(ok.status(), StatusCode::NO_CONTENT);
        let h = &ok.head.headers;
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example.com"
        );
        assert_eq!(h[header::ACCESS_CONTROL_MAX_AGE], "600");
        let refused = policy.preflight(&HeaderValue::from_static("https://evil.example"));
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn any_origin_with_credentials_echoes_the_origin_instead_of_a_star() {
        let origin = HeaderValue::from_static("https://a.test");
        let mut headers = HeaderMap::new();
        cors(&["*"], false).decorate(&origin, &mut headers);
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        let mut headers = HeaderMap::new();
        cors(&["*"], true).decorate(&origin, &mut headers);
        assert_eq!(
            headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://a.test"
        );
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(headers[header::VARY], "Origin");
    }

    #[test]
    fn a_preflight_is_an_options_with_origin_and_a_requested_method() {
        let mut headers = HeaderMap::new();
        assert_eq!(preflight_method(&Method::OPTIONS, &headers), None);
        headers.insert(header::ORIGIN, HeaderValue::from_static("https://a.test"));
        headers.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("POST"),
        );
        assert_eq!(
            preflight_method(&Method::OPTIONS, &headers),
            Some(Method::POST)
        );
        assert_eq!(preflight_method(&Method::GET, &headers), None);
    }
}
