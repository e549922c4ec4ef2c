//! The `[auth]` section of the gateway's config, and its checks.
//!
//! ```toml
//! [auth.api_key]
//! header = "x-api-key"          # where a key is looked for first
//! query_param = "apikey"        # optional: `?apikey=...` too
//!
//! [[auth.api_keys]]
//! id = "mobile-app"             # a label for logs and metrics, never the key
//! sha256 = "5e88...42d8"        # hex SHA-256 of the key: the file holds no secret
//! consumer = "acme"             # whose plan (rate limits) the request counts against
//!
//! [auth.jwt]
//! jwks_url = "https://issuer.example/.well-known/jwks.json"  # or jwks_file = "jwks.json"
//! jwks_ca_file = "/etc/ssl/certs/ca-certificates.crt"        # the CAs trusted for it
//! issuers = ["https://issuer.example"]
//! audiences = ["orders-api"]
//! algorithms = ["RS256", "ES256"]
//! forward_claims = { sub = "x-user-id" }
//! ```

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use http::HeaderName;
use serde::{Deserialize, Serialize};
use service_kit::config::ConfigError;

use super::jwt::Algorithm;

/// Most API keys in a config. Every lookup compares against all of them (in constant time, see
/// `api_key`), so the list is bounded: 10 000 digests are 320 KB of comparisons per request at
/// worst, a few tens of microseconds.
pub const MAX_API_KEYS: usize = 10_000;
/// Most claims forwarded as headers.
pub const MAX_FORWARD_CLAIMS: usize = 32;
/// Largest `leeway_s`: an hour. Leeway absorbs clock skew between issuer and gateway; more than
/// that would keep expired tokens alive on purpose.
pub const MAX_LEEWAY_S: u64 = 3600;
/// Bounds of `max_token_bytes`: below 256 bytes no signed token fits; above 64 KiB a token is no
/// longer a header a server should hold.
pub const MIN_TOKEN_BYTES: usize = 256;
pub const MAX_TOKEN_BYTES_CEILING: usize = 64 * 1024;

/// Default of [`ApiKeySettings::header`]: Kong's and AWS API Gateway's header.
pub const DEFAULT_API_KEY_HEADER: &str = "x-api-key";
/// Default of [`JwtConfig::leeway_s`].
pub const DEFAULT_LEEWAY_S: u64 = 60;
/// Default of [`JwtConfig::cache_ttl_ms`]: five minutes.
pub const DEFAULT_CACHE_TTL_MS: u64 = 300_000;
/// Default of [`JwtConfig::min_refetch_interval_ms`].
pub const DEFAULT_MIN_REFETCH_INTERVAL_MS: u64 = 10_000;
/// Default of [`JwtConfig::max_token_bytes`].
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8192;
/// Default of [`JwtConfig::verified_cache_entries`].
pub const DEFAULT_VERIFIED_CACHE_ENTRIES: usize = 10_000;
/// Largest `verified_cache_entries`: with tokens of `max_token_bytes` at most, a bound on the
/// table's memory (a million 1 KB tokens is about 1.5 GB).
pub const MAX_VERIFIED_CACHE_ENTRIES: usize = 1_000_000;

/// `[auth]`: the credentials the gateway accepts. Which route accepts which method is the
/// route's business (`routes[].auth`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Where API keys are looked for.
    pub api_key: ApiKeySettings,
    /// The known API keys, by digest. At most [`MAX_API_KEYS`].
    pub api_keys: Vec<ApiKeyEntry>,
    /// JWT bearer tokens; `None` (the default): no route may accept `jwt`.
    pub jwt: Option<JwtConfig>,
}

/// `[auth.api_key]`: where a request carries its API key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiKeySettings {
    /// Header name, case-insensitive. Default [`DEFAULT_API_KEY_HEADER`].
    pub header: String,
    /// Query parameter name, compared byte for byte; `None` (the default): keys in the URL are
    /// not accepted (they end up in access logs and browser histories, so this is opt-in). The
    /// header wins when both are present.
    pub query_param: Option<String>,
}

impl Default for ApiKeySettings {
    fn default() -> Self {
        ApiKeySettings {
            header: DEFAULT_API_KEY_HEADER.to_owned(),
            query_param: None,
        }
    }
}

/// `[[auth.api_keys]]`: one key, known by its digest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyEntry {
    /// A label for logs and metrics; unique.
    pub id: String,
    /// Hex SHA-256 of the key's bytes (64 hex digits, any case): `printf %s KEY | sha256sum`.
    pub sha256: String,
    /// The consumer the key belongs to (its plan decides the rate limits).
    pub consumer: String,
}

/// `[auth.jwt]`: bearer tokens (RFC 6750) that are JWTs (RFC 7519) signed as JWS (RFC 7515).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// A JWKS document on disk, re-read like a URL is refetched (TTL, unknown `kid`).
    pub jwks_file: Option<PathBuf>,
    /// A JWKS URL, `https://` or `http://`. Exactly one of `jwks_file` and `jwks_url`.
    pub jwks_url: Option<String>,
    /// PEM file of the certificate authorities trusted for an `https://` `jwks_url`, and only
    /// those (for a public identity provider, the system's bundle:
    /// `/etc/ssl/certs/ca-certificates.crt` on Debian). Required with `https://`, refused
    /// with `http://`.
    pub jwks_ca_file: Option<PathBuf>,
    /// Accepted `iss` values (exact match); empty: `iss` is not checked.
    pub issuers: Vec<String>,
    /// `aud` must contain one of these; empty: `aud` is not checked.
    pub audiences: Vec<String>,
    /// Seconds of clock skew tolerated on `exp`, `nbf` and `iat`. Default 60, at most
    /// [`MAX_LEEWAY_S`].
    pub leeway_s: u64,
    /// The gateway-wide algorithm allowlist (RFC 8725 section 3.1): `HS256`, `RS256`, `ES256`.
    /// Default `["RS256", "ES256"]`; `none` is refused. A key's own `alg` narrows it further.
    pub algorithms: Vec<String>,
    /// The claim naming the consumer. Default `sub`.
    pub consumer_claim: String,
    /// The claim holding scopes: a space-separated string (RFC 8693 section 4.2) or an array of
    /// strings. Default `scope`.
    pub scope_claim: String,
    /// Claim name -> upstream header name. Strings are sent as they are, other values as JSON.
    /// At most [`MAX_FORWARD_CLAIMS`]; header names must be distinct.
    pub forward_claims: BTreeMap<String, String>,
    /// Milliseconds a fetched key set is used before it is refetched. Default 300 000.
    pub cache_ttl_ms: u64,
    /// Milliseconds between two fetches caused by an unknown `kid` (or by a failed fetch), so a
    /// flood of made-up `kid`s cannot become a flood of fetches. Default 10 000; positive.
    pub min_refetch_interval_ms: u64,
    /// Longest token accepted, in bytes. Default 8192, within
    /// [`MIN_TOKEN_BYTES`]..=[`MAX_TOKEN_BYTES_CEILING`].
    pub max_token_bytes: usize,
    /// Most verified tokens remembered, so that a token sent again is not verified again
    /// while its time claims and its key still hold (see `auth/verified.rs`). Default 10 000;
    /// 0 verifies every request; at most [`MAX_VERIFIED_CACHE_ENTRIES`].
    pub verified_cache_entries: usize,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            jwks_file: None,
            jwks_url: None,
            jwks_ca_file: None,
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway_s: DEFAULT_LEEWAY_S,
            algorithms: vec!["RS256".to_owned(), "ES256".to_owned()],
            consumer_claim: "sub".to_owned(),
            scope_claim: "scope".to_owned(),
            forward_claims: BTreeMap::new(),
            cache_ttl_ms: DEFAULT_CACHE_TTL_MS,
            min_refetch_interval_ms: DEFAULT_MIN_REFETCH_INTERVAL_MS,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            verified_cache_entries: DEFAULT_VERIFIED_CACHE_ENTRIES,
        }
    }
}

impl AuthConfig {
    /// Checks every field; `field` is this section's path (`auth`), prefixed to the error.
    pub fn validate(&self, field: &str) -> Result<(), ConfigError> {
        let settings = &self.api_key;
        if HeaderName::from_bytes(settings.header.as_bytes()).is_err() {
            let reason = "is not a valid header name";
            return Err(ConfigError::invalid(
                format!("{field}.api_key.header"),
                reason,
            ));
        }
        if let Some(param) = &settings.query_param
            && !is_query_name(param)
        {
            let reason = "must be non-empty, without `&`, `=`, `#`, `%`, `+` or spaces";
            return Err(ConfigError::invalid(
                format!("{field}.api_key.query_param"),
                reason,
            ));
        }
        validate_api_keys(&self.api_keys, field)?;
        match &self.jwt {
            Some(jwt) => jwt.validate(&format!("{field}.jwt")),
            None => Ok(()),
        }
    }
}

fn is_query_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"&=#%+?".contains(&b))
}

fn validate_api_keys(keys: &[ApiKeyEntry], field: &str) -> Result<(), ConfigError> {
    if keys.len() > MAX_API_KEYS {
        let reason = format!("{} keys, over the limit of {MAX_API_KEYS}", keys.len());
        return Err(ConfigError::invalid(format!("{field}.api_keys"), reason));
    }
    let mut ids = HashSet::new();
    let mut digests = HashSet::new();
    for (i, key) in keys.iter().enumerate() {
        let at = format!("{field}.api_keys[{i}]");
        if key.id.is_empty() || !ids.insert(key.id.as_str()) {
            return Err(ConfigError::invalid(
                format!("{at}.id"),
                "must be non-empty and unique",
            ));
        }
        let Some(digest) = parse_digest(&key.sha256) else {
            let reason = "must be 64 hex digits (the SHA-256 of the key)";
            return Err(ConfigError::invalid(format!("{at}.sha256"), reason));
        };
        if !digests.insert(digest) {
            let reason = "the same key is listed twice";
            return Err(ConfigError::invalid(format!("{at}.sha256"), reason));
        }
        if key.consumer.is_empty() {
            return Err(ConfigError::invalid(
                format!("{at}.consumer"),
                "must be non-empty",
            ));
        }
    }
    Ok(())
}

/// The 32 bytes of a hex SHA-256 digest, any case.
pub(crate) fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(hex.chunks_exact(2)) {
        let high = char::from(pair[0]).to_digit(16)?;
        let low = char::from(pair[1]).to_digit(16)?;
        *byte = (high * 16 + low) as u8;
    }
    Some(digest)
}

impl JwtConfig {
    fn validate(&self, field: &str) -> Result<(), ConfigError> {
        let invalid =
            |name: &str, reason: String| ConfigError::invalid(format!("{field}.{name}"), reason);
        match (&self.jwks_file, &self.jwks_url) {
            (Some(_), None) if self.jwks_ca_file.is_some() => {
                return Err(invalid(
                    "jwks_ca_file",
                    "applies to an https:// jwks_url only".into(),
                ));
            }
            (Some(_), None) => {}
            (None, Some(url)) => {
                let url =
                    JwksUrl::parse(url).map_err(|reason| invalid("jwks_url", reason.to_owned()))?;
                match (url.tls, &self.jwks_ca_file) {
                    (true, None) => {
                        return Err(invalid(
                            "jwks_ca_file",
                            "required with an https:// jwks_url: the PEM file of the \
                             certificate authorities to trust (for a public identity \
                             provider, /etc/ssl/certs/ca-certificates.crt)"
                                .into(),
                        ));
                    }
                    (false, Some(_)) => {
                        return Err(invalid(
                            "jwks_ca_file",
                            "applies to an https:// jwks_url only".into(),
                        ));
                    }
                    _ => {}
                }
            }
            _ => {
                return Err(invalid(
                    "jwks_file",
                    "set exactly one of jwks_file and jwks_url".into(),
                ));
            }
        }
        if self.leeway_s > MAX_LEEWAY_S {
            return Err(invalid(
                "leeway_s",
                format!("must be at most {MAX_LEEWAY_S}"),
            ));
        }
        if self.algorithms.is_empty() {
            return Err(invalid(
                "algorithms",
                "must name at least one algorithm".into(),
            ));
        }
        for name in &self.algorithms {
            if name.eq_ignore_ascii_case("none") {
                let reason = "`none` (unsigned tokens) is never accepted (RFC 8725 section 3.2)";
                return Err(invalid("algorithms", reason.into()));
            }
            if Algorithm::from_name(name).is_none() {
                return Err(invalid(
                    "algorithms",
                    format!("{name:?} is not one of HS256, RS256, ES256"),
                ));
            }
        }
        if self.consumer_claim.is_empty() {
            return Err(invalid("consumer_claim", "must be non-empty".into()));
        }
        if self.scope_claim.is_empty() {
            return Err(invalid("scope_claim", "must be non-empty".into()));
        }
        self.validate_forward_claims(field)?;
        if self.cache_ttl_ms == 0 {
            return Err(invalid("cache_ttl_ms", "must be positive".into()));
        }
        if self.min_refetch_interval_ms == 0 {
            return Err(invalid(
                "min_refetch_interval_ms",
                "must be positive".into(),
            ));
        }
        if !(MIN_TOKEN_BYTES..=MAX_TOKEN_BYTES_CEILING).contains(&self.max_token_bytes) {
            let reason = format!("must be within {MIN_TOKEN_BYTES}..={MAX_TOKEN_BYTES_CEILING}");
            return Err(invalid("max_token_bytes", reason));
        }
        if self.verified_cache_entries > MAX_VERIFIED_CACHE_ENTRIES {
            let reason = format!("at most {MAX_VERIFIED_CACHE_ENTRIES}");
            return Err(invalid("verified_cache_entries", reason));
        }
        Ok(())
    }

    fn validate_forward_claims(&self, field: &str) -> Result<(), ConfigError> {
        let at = format!("{field}.forward_claims");
        if self.forward_claims.len() > MAX_FORWARD_CLAIMS {
            let reason = format!("at most {MAX_FORWARD_CLAIMS} claims");
            return Err(ConfigError::invalid(at, reason));
        }
        let mut headers = HashSet::new();
        for (claim, header) in &self.forward_claims {
            let Ok(name) = HeaderName::from_bytes(header.as_bytes()) else {
                let reason = format!("{header:?} (for claim {claim:?}) is not a valid header name");
                return Err(ConfigError::invalid(at, reason));
            };
            if !headers.insert(name) {
                let reason = format!("header {header:?} is the target of two claims");
                return Err(ConfigError::invalid(at, reason));
            }
        }
        Ok(())
    }
}

/// A parsed `http[s]://host[:port]/path` JWKS URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct JwksUrl {
    /// `https://`: the fetch runs over TLS, `host` is the name the certificate must hold.
    pub tls: bool,
    /// `host` or `host:port`, also the `Host` header.
    pub authority: String,
    pub host: String,
    pub port: u16,
    /// The origin-form target, `/` at least.
    pub target: String,
}

impl JwksUrl {
    pub(crate) fn parse(url: &str) -> Result<JwksUrl, &'static str> {
        let (tls, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            (None, None) => return Err("must start with https:// or http://"),
        };
        let (authority, target) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err("must name a host (and no user info)");
        }
        if target.contains('#') || !target.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the path must be printable ASCII without a fragment");
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = split_host_port(authority, default_port).ok_or("has a bad port")?;
        Ok(JwksUrl {
            tls,
            authority: authority.to_owned(),
            host: host.to_owned(),
            port,
            target: target.to_owned(),
        })
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; `default_port` when absent.
fn split_host_port(authority: &str, default_port: u16) -> Option<(&str, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(port) => Some((host, port.parse().ok()?)),
            None if after.is_empty() => Some((host, default_port)),
            None => None,
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => Some((host, port.parse().ok()?)),
        Some(_) => None,
        None => Some((authority, default_port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_jwt(jwt: JwtConfig) -> AuthConfig {
        AuthConfig {
            jwt: Some(jwt),
            ..AuthConfig::default()
        }
    }

    fn file_jwt() -> JwtConfig {
        JwtConfig {
            jwks_file: Some("jwks.json".into()),
            ..JwtConfig::default()
        }
    }

    fn field_of(result: Result<(), ConfigError>) -> String {
        match result {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid_and_toml_parses() {
        AuthConfig::default()
            .validate("auth")
            .expect("defaults are valid");
        let text = r#"
            api_key = { header = "x-key", query_param = "apikey" }
            api_keys = [{ id = "a", sha256 = "5E884898DA28047151D0E56F8DC6292773603D0D6AABBDD62A11EF721D1542D8", consumer = "acme" }]
            [jwt]
            jwks_url = "http://127.0.0.1:9/keys"
            forward_claims = { sub = "x-user" }
        "#;
        let config: AuthConfig = toml::from_str(text).expect("parses");
        config.validate("auth").expect("valid");
        let jwt = config.jwt.expect("jwt section");
        assert_eq!(jwt.leeway_s, DEFAULT_LEEWAY_S);
        assert_eq!(jwt.algorithms, ["RS256", "ES256"]);
    }

    #[test]
    fn alg_none_and_unknown_algorithms_are_refused() {
        for alg in ["none", "NONE", "HS512"] {
            let jwt = JwtConfig {
                algorithms: vec!["RS256".into(), alg.into()],
                ..file_jwt()
            };
            assert_eq!(
                field_of(with_jwt(jwt).validate("auth")),
                "auth.jwt.algorithms"
            );
        }
    }

    #[test]
    fn exactly_one_key_source() {
        let both = JwtConfig {
            jwks_url: Some("http://h/k".into()),
            ..file_jwt()
        };
        assert_eq!(
            field_of(with_jwt(both).validate("auth")),
            "auth.jwt.jwks_file"
        );
        let neither = JwtConfig::default();
        assert_eq!(
            field_of(with_jwt(neither).validate("auth")),
            "auth.jwt.jwks_file"
        );
        let https = JwtConfig {
            jwks_url: Some("https://issuer/keys".into()),
            ..JwtConfig::default()
        };
        assert_eq!(
            field_of(with_jwt(https.clone()).validate("auth")),
            "auth.jwt.jwks_ca_file",
            "https needs the CAs to trust"
        );
        let trusted = JwtConfig {
            jwks_ca_file: Some("ca.pem".into()),
            ..https
        };
        assert!(with_jwt(trusted).validate("auth").is_ok());
        let plain_with_cas = JwtConfig {
            jwks_url: Some("http://issuer/keys".into()),
            jwks_ca_file: Some("ca.pem".into()),
            ..JwtConfig::default()
        };
        assert_eq!(
            field_of(with_jwt(plain_with_cas).validate("auth")),
            "auth.jwt.jwks_ca_file"
        );
    }

    #[test]
    fn bad_api_keys_name_the_entry() {
        let entry = |id: &str, sha256: &str| ApiKeyEntry {
            id: id.into(),
            sha256: sha256.into(),
            consumer: "c".into(),
        };
        let good = "a".repeat(64);
        let cases = [
            (vec![entry("a", "abc")], "auth.api_keys[0].sha256"),
            (vec![entry("a", &"g".repeat(64))], "auth.api_keys[0].sha256"),
            (
                vec![entry("a", &good), entry("a", &"b".repeat(64))],
                "auth.api_keys[1].id",
            ),
            (
                vec![entry("a", &good), entry("b", &good.to_uppercase())],
                "auth.api_keys[1].sha256",
            ),
        ];
        for (api_keys, field) in cases {
            let config = AuthConfig {
                api_keys,
                ..AuthConfig::default()
            };
            assert_eq!(field_of(config.validate("auth")), field);
        }
    }

    #[test]
    fn limits_are_checked() {
        let cases = [
            (
                JwtConfig {
                    leeway_s: MAX_LEEWAY_S + 1,
                    ..file_jwt()
                },
                "auth.jwt.leeway_s",
            ),
            (
                JwtConfig {
                    cache_ttl_ms: 0,
                    ..file_jwt()
                },
                "auth.jwt.cache_ttl_ms",
            ),
            (
                JwtConfig {
                    min_refetch_interval_ms: 0,
                    ..file_jwt()
                },
                "auth.jwt.min_refetch_interval_ms",
            ),
            (
                JwtConfig {
                    max_token_bytes: 10,
                    ..file_jwt()
                },
                "auth.jwt.max_token_bytes",
            ),
            (
                JwtConfig {
                    forward_claims: [("a".into(), "x-h".into()), ("b".into(), "X-H".into())].into(),
                    ..file_jwt()
                },
                "auth.jwt.forward_claims",
            ),
        ];
        for (jwt, field) in cases {
            assert_eq!(field_of(with_jwt(jwt).validate("auth")), field);
        }
    }

    #[test]
    fn jwks_urls_parse() {
        let url = JwksUrl::parse("http://[::1]:8080/a/b?x=1").expect("parses");
        assert_eq!(
            (url.host.as_str(), url.port, url.target.as_str()),
            ("::1", 8080, "/a/b?x=1")
        );
        let url = JwksUrl::parse("http://issuer.test").expect("parses");
        assert_eq!(
            (
                url.tls,
                url.authority.as_str(),
                url.port,
                url.target.as_str()
            ),
            (false, "issuer.test", 80, "/")
        );
        let url = JwksUrl::parse("https://issuer.test/keys").expect("parses");
        assert_eq!((url.tls, url.port), (true, 443));
        for bad in ["http://h:99999/", "http://:80/", "http://u@h/", "ftp://h/"] {
            assert!(JwksUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
