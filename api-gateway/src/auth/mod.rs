//! Authentication: who is calling, proven by an API key or a JWT bearer token.
//!
//! ```text
//!  request head ──> Authenticator::authenticate(head, accepted, required_scopes, now)
//!                     │
//!                     ├─ API key present and accepted?   api_key: SHA-256, constant-time match
//!                     │      unknown key ─────────────────────────────> 401 Key realm=...
//!                     ├─ else Bearer token and jwt accepted?
//!                     │      verified?       same token, still in time, same key: its Identity
//!                     │      jwt::parse      size, shape, alg allowlist, `none` refused
//!                     │      KeyCache::key   kid -> key (JWKS, refetched on unknown kid)
//!                     │      verify          the key's one algorithm, ring's primitives
//!                     │      ClaimRules      exp / nbf / iat with leeway, iss, aud
//!                     │      any failure ────────────────────────────> 401 Bearer error="invalid_token"
//!                     ├─ else ───────────────────────────────────────> 401, a challenge per method
//!                     v
//!                  Identity { consumer, credential_id, scopes, forward }
//!                     │  every required scope present? no ───────────> 403 insufficient_scope
//!                     v
//!  strip_credentials(head), then add Identity::forward ──> upstream
//! ```
//!
//! | file | what it holds |
//! |---|---|
//! | `config.rs` | [`AuthConfig`], `[auth]` in the config, and its `validate` |
//! | `api_key.rs` | digests, the constant-time lookup, header and query parameter |
//! | `jwt.rs` | compact JWS (RFC 7515), the signature, registered claims (RFC 7519) |
//! | `jwks.rs` | key sets (RFC 7517) and their cache: TTL, unknown `kid`, coalesced refetch |
//! | `bearer.rs` | `Authorization: Bearer`, a token to an [`Identity`] |
//! | `verified.rs` | tokens already verified, reused while their time claims and key hold |
//! | `error.rs` | [`AuthError`], statuses and `WWW-Authenticate` (RFC 6750 section 3) |
//!
//! Invariant: no token, key or key material is ever logged or echoed; error reasons are fixed
//! phrases.

mod api_key;
mod bearer;
mod config;
mod error;
mod jwks;
mod jwt;
mod verified;

use std::time::Instant;

use http::{HeaderName, HeaderValue};
use http1::RequestHead;

pub use config::{
    ApiKeyEntry, ApiKeySettings, AuthConfig, DEFAULT_API_KEY_HEADER, DEFAULT_CACHE_TTL_MS,
    DEFAULT_LEEWAY_S, DEFAULT_MAX_TOKEN_BYTES, DEFAULT_MIN_REFETCH_INTERVAL_MS, JwtConfig,
    MAX_API_KEYS, MAX_FORWARD_CLAIMS, MAX_LEEWAY_S, MAX_TOKEN_BYTES_CEILING, MIN_TOKEN_BYTES,
};
pub use error::{AuthError, Method, REALM};
pub use jwks::{FETCH_TIMEOUT, MAX_JWKS_BYTES, MAX_KEYS, MIN_RSA_MODULUS_BITS};
pub use jwt::{Algorithm, JwtError};

use api_key::{ApiKeys, Presented};
use bearer::{Bearer, JwtVerifier};

/// Who a request comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub method: Method,
    /// API key: the entry's consumer; JWT: the `consumer_claim` if it is a string.
    pub consumer: Option<String>,
    /// A label for logs and metrics: the API key entry's `id`; a token's `sub`, else its key's
    /// `kid`, else empty.
    pub credential_id: String,
    /// Granted scopes; an API key grants none.
    pub scopes: Vec<String>,
    /// Headers for the upstream, from `forward_claims`.
    pub forward: Vec<(HeaderName, HeaderValue)>,
}

/// Checks credentials against `[auth]`. Shared by every request (`&self`).
#[derive(Debug)]
pub struct Authenticator {
    api_keys: ApiKeys,
    jwt: Option<JwtVerifier>,
}

impl Authenticator {
    /// Validates `config`, reads the JWKS file now (a missing or bad file, or one without a
    /// usable key, is an `Err` naming it). A JWKS URL is fetched lazily, on the first token, so
    /// the gateway does not depend on its identity provider to start; until a fetch succeeds
    /// tokens get 503.
    pub async fn new(config: &AuthConfig) -> Result<Authenticator, String> {
        config.validate("auth").map_err(|e| e.to_string())?;
        let jwt = match &config.jwt {
            Some(jwt) => Some(JwtVerifier::new(jwt).await?),
            None => None,
        };
        Ok(Authenticator {
            api_keys: ApiKeys::new(config)?,
            jwt,
        })
    }

    /// Checks the credentials of a request against the methods a route accepts: an API key if
    /// one is present and `ApiKey` accepted, else a bearer token if `Jwt` is accepted; then
    /// the route's required scopes, every one of which must be granted. `now_unix_s` is the
    /// time claims are checked against. With `accepted` empty every request is `Missing`: call
    /// this only for routes that require credentials.
    pub async fn authenticate(
        &self,
        head: &RequestHead,
        accepted: &[Method],
        required_scopes: &[String],
        now_unix_s: u64,
    ) -> Result<Identity, AuthError> {
        let identity = self.identify(head, accepted, now_unix_s).await?;
        if required_scopes
            .iter()
            .all(|scope| identity.scopes.contains(scope))
        {
            Ok(identity)
        } else {
            Err(AuthError::InsufficientScope {
                required: required_scopes.join(" "),
            })
        }
    }

    async fn identify(
        &self,
        head: &RequestHead,
        accepted: &[Method],
        now_unix_s: u64,
    ) -> Result<Identity, AuthError> {
        let key_error = |reason: &str| AuthError::Invalid {
            method: Method::ApiKey,
            reason: reason.to_owned(),
        };
        if accepted.contains(&Method::ApiKey) {
            match self.api_keys.presented(head) {
                Presented::Key(key) => {
                    let entry = self
                        .api_keys
                        .lookup(&key)
                        .ok_or_else(|| key_error("unknown API key"))?;
                    return Ok(Identity {
                        method: Method::ApiKey,
                        consumer: Some(entry.consumer.clone()),
                        credential_id: entry.id.clone(),
                        scopes: Vec::new(),
                        forward: Vec::new(),
                    });
                }
                Presented::Ambiguous => return Err(key_error("more than one API key")),
                Presented::None => {}
            }
        }
        if accepted.contains(&Method::Jwt)
            && let Some(verifier) = &self.jwt
        {
            match bearer::bearer(head) {
                Bearer::Token(token) => {
                    return verifier.verify(token, now_unix_s, Instant::now()).await;
                }
                Bearer::Ambiguous => {
                    return Err(AuthError::Invalid {
                        method: Method::Jwt,
                        reason: "malformed authorization header".into(),
                    });
                }
                Bearer::None => {}
            }
        }
        Err(AuthError::Missing {
            accepted: accepted.to_vec(),
        })
    }

    /// Removes the credential from a request before it goes upstream: the API key header and
    /// the API key query parameter (the rest of the target byte for byte). It also removes any
    /// header named in `forward_claims`, so a client cannot forge what the upstream takes for
    /// a verified claim: call it before adding [`Identity::forward`]. `Authorization` is kept;
    /// upstreams may verify the token themselves.
    pub fn strip_credentials(&self, head: &mut RequestHead) {
        self.api_keys.strip(head);
        if let Some(verifier) = &self.jwt {
            for name in verifier.forwarded_headers() {
                head.headers.remove(name);
            }
        }
    }
}

#[cfg(test)]
#[path = "../../tests/fixtures/jwt_mint.rs"]
mod jwt_mint;

#[cfg(test)]
mod tests;
