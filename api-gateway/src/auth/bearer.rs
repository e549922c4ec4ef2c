//! The bearer-token path: `Authorization: Bearer <jwt>` (RFC 6750 section 2.1) to an
//! [`Identity`], through [`jwt`](super::jwt) and the [`KeyCache`].
//!
//! What the gateway takes from a verified token: the consumer (`consumer_claim`), the scopes
//! (`scope_claim`: a space-separated string as in RFC 8693 section 4.2, or an array of strings
//! as some issuers write it), and the `forward_claims` as upstream headers: strings as they
//! are, anything else as JSON text. A value that cannot be a header value (CR, LF, NUL or
//! another control character: header injection) refuses the whole token rather than
//! forwarding a part of it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue};
use http1::RequestHead;
use serde_json::{Map, Value};

use super::config::{JwksUrl, JwtConfig};
use super::jwks::{KeyCache, LookupError, Source};
use super::jwt::{self, Algorithm, ClaimRules, JwtError};
use super::verified::{Verified, VerifiedTokens};
use super::{AuthError, Identity, Method};

/// Response header timeout of the JWKS client: a key server slower than this is down.
const JWKS_RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a request's `Authorization` field holds, for this path.
pub(crate) enum Bearer<'a> {
    None,
    Token(&'a str),
    /// Two `Authorization` fields, or one that is not text.
    Ambiguous,
}

/// The bearer token of a request: scheme `Bearer`, case-insensitive (RFC 9110 section 11.1).
/// Another scheme (`Basic`) is not ours, so it counts as no token.
pub(crate) fn bearer(head: &RequestHead) -> Bearer<'_> {
    let mut values = head.headers.get_all(http::header::AUTHORIZATION).iter();
    let value = match (values.next(), values.next()) {
        (Some(value), None) => value,
        (Some(_), Some(_)) => return Bearer::Ambiguous,
        _ => return Bearer::None,
    };
    let Ok(value) = value.to_str() else {
        return Bearer::Ambiguous;
    };
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            Bearer::Token(token.trim_matches(' '))
        }
        _ => Bearer::None,
    }
}

/// Verifies bearer tokens as `[auth.jwt]` says.
#[derive(Debug)]
pub(crate) struct JwtVerifier {
    algorithms: Vec<Algorithm>,
    rules: ClaimRules,
    consumer_claim: String,
    scope_claim: String,
    forward: Vec<(String, HeaderName)>,
    max_token_bytes: usize,
    keys: KeyCache,
    verified: VerifiedTokens,
}

impl JwtVerifier {
    /// A file is read now (a missing or bad one fails start-up, naming it); a URL is fetched
    /// on the first token, so the gateway can start before its identity provider.
    pub(crate) async fn new(config: &JwtConfig) -> Result<JwtVerifier, String> {
        let source = match (&config.jwks_file, &config.jwks_url) {
            (Some(path), _) => Source::File(path.clone()),
            (None, Some(url)) => {
                let url = JwksUrl::parse(url).map_err(|e| format!("auth.jwt.jwks_url: {e}"))?;
                let client = http1::Client::new(http1::ClientConfig {
                    connect_timeout: JWKS_RESPONSE_TIMEOUT,
                    response_header_timeout: JWKS_RESPONSE_TIMEOUT,
                    ..http1::ClientConfig::default()
                })?;
                let tls = match (&config.jwks_ca_file, url.tls) {
                    (Some(ca_file), true) => {
                        let tls = reverse_proxy::tls::client_config_trusting(
                            ca_file,
                            "auth.jwt.jwks_ca_file",
                        )
                        .map_err(|e| e.to_string())?;
                        Some(tokio_rustls::TlsConnector::from(tls))
                    }
                    (None, true) => return Err("auth.jwt.jwks_ca_file: required with https".into()),
                    (_, false) => None,
                };
                Source::Url { url, client, tls }
            }
            (None, None) => return Err("auth.jwt: no jwks_file or jwks_url".into()),
        };
        let keys = KeyCache::new(
            source,
            Duration::from_millis(config.cache_ttl_ms),
            Duration::from_millis(config.min_refetch_interval_ms),
        );
        if let Some(path) = &config.jwks_file {
            let count = keys
                .load_now(Instant::now())
                .await
                .map_err(|e| format!("auth.jwt.jwks_file {}: {e}", path.display()))?;
            if count == 0 {
                return Err(format!(
                    "auth.jwt.jwks_file {}: no usable signing key",
                    path.display()
                ));
            }
        }
        let mut forward = Vec::new();
        for (claim, header) in &config.forward_claims {
            let name = HeaderName::from_bytes(header.as_bytes())
                .map_err(|_| format!("auth.jwt.forward_claims: {header:?} is not a header name"))?;
            forward.push((claim.clone(), name));
        }
        Ok(JwtVerifier {
            algorithms: config
                .algorithms
                .iter()
                .filter_map(|a| Algorithm::from_name(a))
                .collect(),
            rules: ClaimRules {
                issuers: config.issuers.clone(),
                audiences: config.audiences.clone(),
                leeway_s: config.leeway_s,
            },
            consumer_claim: config.consumer_claim.clone(),
            scope_claim: config.scope_claim.clone(),
            forward,
            max_token_bytes: config.max_token_bytes,
            keys,
            verified: VerifiedTokens::new(config.verified_cache_entries),
        })
    }

    /// The identity a token proves, at `now_unix_s` (claims) and `now` (the key cache): from
    /// the table of verified tokens when it still answers for this one (`verified.rs`), else
    /// by verifying it.
    pub(crate) async fn verify(
        &self,
        token: &str,
        now_unix_s: u64,
        now: Instant,
    ) -> Result<Identity, AuthError> {
        if let Some(hit) = self.verified.get(token, now_unix_s) {
            match self.keys.key(hit.kid.as_deref(), now).await {
                Ok(key) if Arc::ptr_eq(&key, &hit.key) => return Ok(hit.identity),
                _ => self.verified.remove(token),
            }
        }
        self.verify_afresh(token, now_unix_s, now).await
    }

    async fn verify_afresh(
        &self,
        token: &str,
        now_unix_s: u64,
        now: Instant,
    ) -> Result<Identity, AuthError> {
        let compact = jwt::parse(token, self.max_token_bytes, &self.algorithms).map_err(invalid)?;
        let key = match self.keys.key(compact.kid.as_deref(), now).await {
            Ok(key) => key,
            Err(LookupError::Token(e)) => return Err(invalid(e)),
            Err(LookupError::Unavailable) => {
                return Err(AuthError::Unavailable {
                    reason: "signing keys unavailable".into(),
                });
            }
        };
        compact.verify(&key).map_err(invalid)?;
        let claims = compact.claims().map_err(invalid)?;
        self.rules.check(&claims, now_unix_s).map_err(invalid)?;
        let sub = claims.get("sub").and_then(Value::as_str);
        let identity = Identity {
            method: Method::Jwt,
            consumer: claims
                .get(&self.consumer_claim)
                .and_then(Value::as_str)
                .map(str::to_owned),
            credential_id: sub.or(key.kid.as_deref()).unwrap_or_default().to_owned(),
            scopes: scopes(claims.get(&self.scope_claim)).map_err(invalid)?,
            forward: self.forwarded(&claims).map_err(invalid)?,
        };
        let verified = Verified {
            kid: compact.kid,
            key,
            validity: self.rules.validity(&claims),
            identity: identity.clone(),
        };
        self.verified.insert(token, verified);
        Ok(identity)
    }

    fn forwarded(
        &self,
        claims: &Map<String, Value>,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, JwtError> {
        let mut headers = Vec::with_capacity(self.forward.len());
        for (claim, name) in &self.forward {
            let Some(value) = claims.get(claim) else {
                continue;
            };
            let text = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            // `from_bytes` refuses every control character but tab; tab is refused here too.
            let value = HeaderValue::from_bytes(text.as_bytes())
                .ok()
                .filter(|_| !text.contains('\t'))
                .ok_or(JwtError::ClaimNotForwardable)?;
            headers.push((name.clone(), value));
        }
        Ok(headers)
    }

    #[cfg(test)]
    pub(crate) fn verified_len(&self) -> usize {
        self.verified.len()
    }

    /// The header names `forward_claims` writes, which a client must not set itself.
    pub(crate) fn forwarded_headers(&self) -> impl Iterator<Item = &HeaderName> {
        self.forward.iter().map(|(_, name)| name)
    }
}

fn invalid(error: JwtError) -> AuthError {
    AuthError::Invalid {
        method: Method::Jwt,
        reason: error.to_string(),
    }
}

/// The scopes a claim grants: none when absent.
fn scopes(claim: Option<&Value>) -> Result<Vec<String>, JwtError> {
    match claim {
        None => Ok(Vec::new()),
        Some(Value::String(text)) => Ok(text.split_whitespace().map(str::to_owned).collect()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_owned)
                    .ok_or(JwtError::MalformedClaims)
            })
            .collect(),
        Some(_) => Err(JwtError::MalformedClaims),
    }
}
