//! Idempotency keys: a client that retries a `POST` or `PATCH` with the same `Idempotency-Key`
//! gets the outcome of its first attempt instead of a second effect.
//!
//! These are Stripe's semantics (docs.stripe.com, "Idempotent requests") as the IETF draft
//! `draft-ietf-httpapi-idempotency-key-header` (revision 07) writes them down:
//!
//! - the first request with a key runs, and its response, whatever it is (a 201, a 400, a 500,
//!   the gateway's own 504 after an upstream timeout), is stored for a TTL (Stripe: 24 hours);
//! - a retry with the same key and the same request gets the stored response, not a new run;
//! - a retry while the first is still running gets 409 Conflict (the draft's "Error
//!   Scenarios"), since its outcome is not known yet;
//! - the same key with a different request gets 422 Unprocessable Content: the client reused a
//!   key by mistake, and replaying the other request's response would be a lie. "The same
//!   request" is decided by a fingerprint of it (the draft's "Idempotency Fingerprint"), here a
//!   SHA-256 over method, target and body ([`fingerprint`]);
//! - a request refused before anything reached the upstream (validation, rate limit, an open
//!   circuit) stores nothing: Stripe saves results "only after the execution of an endpoint
//!   begins", and the key is free for a corrected retry ([`Claim::release`]).
//!
//! ```text
//!   begin(key, fingerprint)
//!     │ no record ──▶ claim it (in-progress, lock_ttl_ms) ──▶ Proceed(claim)
//!     │                                                         │ upstream answered, failed,
//!     │                                                         │ or timed out
//!     │                                                         ▼
//!     │                                        claim.complete(response): record = response,
//!     │                                        ttl_ms                  (or claim.release():
//!     │                                                                 nothing was sent)
//!     │ in-progress, same fingerprint ──▶ InProgress (409)
//!     │ completed,   same fingerprint ──▶ Replay(response)
//!     └ any record,  other fingerprint ─▶ Mismatch (422)
//! ```
//!
//! # The ambiguous outcome
//!
//! "Exactly one effect" needs the store to remember every request that may have had an effect.
//! An upstream timeout is such a request: the upstream may have committed before it went
//! silent. The gateway therefore completes the claim with the response it gave the client (the
//! 504), and a retry replays that 504 rather than running the request a second time. A [`Claim`]
//! dropped without `complete` or `release` (the client disconnected, the gateway task was
//! cancelled) is the same ambiguity with nothing to store: the claim keeps its lock until
//! `lock_ttl_ms` runs out, so retries get 409 until then and run afterwards. `lock_ttl_ms` must
//! therefore be longer than the longest time a request can spend upstream (timeouts and retries
//! included): a request still running when its lock expires can be run a second time.
//!
//! # Backends
//!
//! [`Store`] is the local store ([`local::LocalStore`], a bounded map in this process, gone on
//! restart) or the kv-store ([`kv::KvStore`], shared by every gateway instance and surviving
//! their restarts). The kv backend is what makes a retry that lands on another gateway, or on
//! this one after a restart, see the first attempt.

pub mod kv;
pub mod local;
mod record;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use service_kit::config::ConfigError;
use sha2::{Digest, Sha256};

use self::kv::KvStore;
use self::local::LocalStore;
use self::record::Token;

/// Largest `max_key_bytes` accepted. The draft recommends UUIDs; Stripe allows 255 characters.
pub const MAX_KEY_BYTES_LIMIT: usize = 4096;

const NANOS_PER_MS: u64 = 1_000_000;

/// `[idempotency]` in the gateway config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdempotencyConfig {
    /// The request header carrying the key. Default `Idempotency-Key` (the draft's name).
    pub header: String,
    /// How long a completed response is kept and replayed, ms, at least 1. Default 86,400,000
    /// (24 hours, as Stripe).
    pub ttl_ms: u64,
    /// How long an in-progress claim holds when its gateway dies or its client disconnects,
    /// ms, 1 to `ttl_ms`. Must be longer than a request can spend upstream (timeouts and
    /// retries included). Default 60,000.
    pub lock_ttl_ms: u64,
    /// Longest key accepted, bytes, 1 to [`MAX_KEY_BYTES_LIMIT`]. Default 255 (Stripe's).
    pub max_key_bytes: usize,
    /// Largest response body stored, bytes; a larger one is stored without its body and its
    /// replay says so ([`StoredResponse::body_omitted`]). At most `max_stored_bytes`.
    /// Default 1 MiB.
    pub max_body_bytes: usize,
    /// Most keys the local store holds, at least 1. Full, it evicts the oldest completed
    /// response; it never evicts a running claim. Default 100,000.
    pub max_keys: usize,
    /// Most bytes of stored responses (bodies and headers) the local store holds; over it,
    /// the oldest completed responses are evicted. Default 256 MiB.
    pub max_stored_bytes: usize,
    /// Where records are kept. Default `local`.
    pub store: StoreKind,
}

/// Which backend keeps the records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// In this process: lost on restart, not shared between gateway instances.
    #[default]
    Local,
    /// In the kv-store whose address the gateway config gives elsewhere.
    Kv,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        IdempotencyConfig {
            header: "Idempotency-Key".to_owned(),
            ttl_ms: 86_400_000,
            lock_ttl_ms: 60_000,
            max_key_bytes: 255,
            max_body_bytes: 1 << 20,
            max_keys: 100_000,
            max_stored_bytes: 256 << 20,
            store: StoreKind::Local,
        }
    }
}

impl IdempotencyConfig {
    /// Checks every field; `field` is this table's dotted name (`idempotency`).
    pub fn validate(&self, field: &str) -> Result<(), ConfigError> {
        let bad =
            |key: &str, reason: String| Err(ConfigError::invalid(format!("{field}.{key}"), reason));
        if http::HeaderName::from_bytes(self.header.as_bytes()).is_err() {
            return bad(
                "header",
                format!("{:?} is not an HTTP header name", self.header),
            );
        }
        // Times are kept in nanoseconds locally and sent as PX milliseconds (an i64) to the kv.
        let most_ms = (i64::MAX as u64) / NANOS_PER_MS;
        if self.ttl_ms == 0 || self.ttl_ms > most_ms {
            return bad("ttl_ms", format!("must be 1 to {most_ms}"));
        }
        if self.lock_ttl_ms == 0 || self.lock_ttl_ms > self.ttl_ms {
            return bad("lock_ttl_ms", "must be 1 to ttl_ms".to_owned());
        }
        if self.max_key_bytes == 0 || self.max_key_bytes > MAX_KEY_BYTES_LIMIT {
            return bad(
                "max_key_bytes",
                format!("must be 1 to {MAX_KEY_BYTES_LIMIT}"),
            );
        }
        if self.max_body_bytes > self.max_stored_bytes {
            return bad(
                "max_body_bytes",
                "must be at most max_stored_bytes".to_owned(),
            );
        }
        if self.max_keys == 0 {
            return bad("max_keys", "must be at least 1".to_owned());
        }
        Ok(())
    }

    /// Checks a key as the client sent it: 1 to `max_key_bytes` visible ASCII characters or
    /// spaces (the draft's key is a Structured Fields string, RFC 8941 section 3.3.3). The
    /// gateway answers 400 with the error's text when it fails.
    pub fn check_key<'a>(&self, value: &'a [u8]) -> Result<&'a str, KeyError> {
        if value.is_empty() {
            return Err(KeyError::Empty);
        }
        if value.len() > self.max_key_bytes {
            return Err(KeyError::TooLong {
                len: value.len(),
                max: self.max_key_bytes,
            });
        }
        if !value.iter().all(|b| (0x20..0x7f).contains(b)) {
            return Err(KeyError::NotVisibleAscii);
        }
        std::str::from_utf8(value).map_err(|_| KeyError::NotVisibleAscii)
    }
}

/// Why a client's idempotency key is refused (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the idempotency key is empty")]
    Empty,
    #[error("the idempotency key is {len} bytes, over the {max}-byte limit")]
    TooLong { len: usize, max: usize },
    #[error("the idempotency key must be visible ASCII characters")]
    NotVisibleAscii,
}

/// The fingerprint of a request: SHA-256 over method, target and body, each preceded by its
/// length as 8 big-endian bytes, so that no two different requests give the same input
/// (`POST /a` + body `b/c` and `POST /ab` + body `/c` differ in their length prefixes).
pub fn fingerprint(method: &http::Method, target: &str, body: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for field in [method.as_str().as_bytes(), target.as_bytes(), body] {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field);
    }
    hasher.finalize().into()
}

/// The digest a scoped key is stored under: keys of any length cost 32 bytes, and a key never
/// reaches the kv-store as text.
fn key_digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// A response as stored and replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    /// End-to-end headers, in order (the gateway leaves out hop-by-hop ones).
    pub headers: Vec<(String, Bytes)>,
    /// Empty when [`body_omitted`](Self::body_omitted).
    pub body: Bytes,
    /// The body was over `max_body_bytes` and was not stored; the replay must say so.
    pub body_omitted: bool,
}

impl StoredResponse {
    /// Bytes this response takes in a store, for the local store's byte limit.
    fn stored_bytes(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
        headers + self.body.len()
    }

    /// Drops a body over `max_body_bytes`, keeping status and headers.
    fn limit_body(mut self, max_body_bytes: usize) -> StoredResponse {
        if self.body.len() > max_body_bytes {
            self.body = Bytes::new();
            self.body_omitted = true;
        }
        self
    }
}

/// What [`Store::begin`] decided for a request with a key.
#[derive(Debug)]
pub enum Begin {
    /// The first request with this key: run it, then [`Claim::complete`] or
    /// [`Claim::release`].
    Proceed(Claim),
    /// A retry of a completed request: answer with this.
    Replay(StoredResponse),
    /// The first request with this key is still running: 409.
    InProgress,
    /// This key was used with a different request: 422.
    Mismatch,
}

/// Why the store could not answer. The gateway answers 503 for a failed `begin`; a failed
/// `complete` is logged and the client still gets the upstream's response.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("idempotency store (kv-store) unavailable: {0}")]
    Kv(#[from] kv_store::client::ClientError),
    #[error("idempotency store (kv-store) answered {command} with {reply}")]
    KvReply {
        command: &'static str,
        reply: String,
    },
    #[error("idempotency record is unreadable: {0}")]
    Corrupt(&'static str),
    #[error("idempotency store is full: all {max_keys} keys are requests still running")]
    Full { max_keys: usize },
    #[error("the idempotency claim expired and the key was taken before the response was stored")]
    ClaimLost,
}

/// The records of idempotency keys, in one of two backends.
#[derive(Debug, Clone)]
pub enum Store {
    Local(LocalStore),
    Kv(KvStore),
}

impl Store {
    /// A store in this process, bounded by `max_keys` and `max_stored_bytes`.
    pub fn local(config: &IdempotencyConfig) -> Store {
        Store::Local(LocalStore::new(config))
    }

    /// A store in the kv-store behind `client`.
    pub fn kv(config: &IdempotencyConfig, client: kv_store::client::Client) -> Store {
        Store::Kv(KvStore::new(config, client))
    }

    /// Looks `key` up and claims it if it is free. `key` is already scoped by the caller
    /// (consumer + header value), so two consumers never share a key.
    pub async fn begin(
        &self,
        key: &str,
        fingerprint: [u8; 32],
        now_ns: u64,
    ) -> Result<Begin, StoreError> {
        match self {
            Store::Local(store) => store.begin(key, fingerprint, now_ns),
            Store::Kv(store) => store.begin(key, fingerprint, now_ns).await,
        }
    }
}

/// The right to run the first request with a key. Dropped without [`complete`](Self::complete)
/// or [`release`](Self::release), it holds its lock until `lock_ttl_ms` (see the module doc).
#[derive(Debug)]
pub struct Claim {
    backend: ClaimBackend,
    fingerprint: [u8; 32],
    /// Tells this claim's record from a later claim of the same key after this one expired.
    token: Token,
    max_body_bytes: usize,
}

#[derive(Debug)]
enum ClaimBackend {
    Local { store: LocalStore, key: [u8; 32] },
    Kv { store: KvStore, key: Bytes },
}

impl Claim {
    /// Stores the outcome of the request (any status, a timeout's 504 included) for `ttl_ms`.
    pub async fn complete(self, response: StoredResponse, now_ns: u64) -> Result<(), StoreError> {
        let response = response.limit_body(self.max_body_bytes);
        match &self.backend {
            ClaimBackend::Local { store, key } => {
                store.complete(key, self.token, self.fingerprint, response, now_ns)
            }
            ClaimBackend::Kv { store, key } => {
                store
                    .complete(key, self.token, self.fingerprint, response)
                    .await
            }
        }
    }

    /// Nothing reached the upstream (refused before sending): the key is free again.
    pub async fn release(self) -> Result<(), StoreError> {
        match &self.backend {
            ClaimBackend::Local { store, key } => {
                store.release(key, self.token);
                Ok(())
            }
            ClaimBackend::Kv { store, key } => store.release(key, self.token).await,
        }
    }
}

#[cfg(test)]
mod scenarios;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_keep_fields_apart() {
        let post = http::Method::POST;
        let a = fingerprint(&post, "/a", b"b/c");
        assert_eq!(a, fingerprint(&post, "/a", b"b/c"));
        assert_ne!(
            a,
            fingerprint(&post, "/ab", b"/c"),
            "a byte moved from body to target"
        );
        assert_ne!(a, fingerprint(&http::Method::PATCH, "/a", b"b/c"));
        assert_ne!(a, fingerprint(&post, "/a", b"b/d"));
    }

    #[test]
    fn keys_are_checked_as_the_draft_defines_them() {
        let config = IdempotencyConfig {
            max_key_bytes: 8,
            ..IdempotencyConfig::default()
        };
        assert_eq!(config.check_key(b"abc-123"), Ok("abc-123"));
        assert_eq!(config.check_key(b""), Err(KeyError::Empty));
        assert_eq!(
            config.check_key(b"123456789"),
            Err(KeyError::TooLong { len: 9, max: 8 })
        );
        assert_eq!(config.check_key(b"a\tb"), Err(KeyError::NotVisibleAscii));
        assert_eq!(
            config.check_key("é".as_bytes()),
            Err(KeyError::NotVisibleAscii)
        );
    }

    #[test]
    fn a_body_over_the_limit_is_omitted_and_marked() {
        let response = StoredResponse {
            status: 201,
            headers: vec![("content-type".to_owned(), Bytes::from_static(b"text/plain"))],
            body: Bytes::from_static(b"12345"),
            body_omitted: false,
        };
        assert_eq!(response.clone().limit_body(5), response);
        let limited = response.limit_body(4);
        assert!(limited.body_omitted);
        assert!(limited.body.is_empty());
        assert_eq!(limited.status, 201);
        assert_eq!(limited.headers.len(), 1);
    }

    #[test]
    fn validate_names_the_bad_field() {
        IdempotencyConfig::default()
            .validate("idempotency")
            .expect("defaults are valid");
        let base = IdempotencyConfig::default;
        let cases = [
            (
                IdempotencyConfig {
                    header: "bad header".into(),
                    ..base()
                },
                "header",
            ),
            (
                IdempotencyConfig {
                    ttl_ms: 0,
                    ..base()
                },
                "ttl_ms",
            ),
            (
                IdempotencyConfig {
                    lock_ttl_ms: base().ttl_ms + 1,
                    ..base()
                },
                "lock_ttl_ms",
            ),
            (
                IdempotencyConfig {
                    max_key_bytes: 0,
                    ..base()
                },
                "max_key_bytes",
            ),
            (
                IdempotencyConfig {
                    max_body_bytes: usize::MAX,
                    ..base()
                },
                "max_body_bytes",
            ),
            (
                IdempotencyConfig {
                    max_keys: 0,
                    ..base()
                },
                "max_keys",
            ),
        ];
        for (config, field) in cases {
            let err = config.validate("idempotency").expect_err(field);
            assert!(
                err.to_string().contains(&format!("idempotency.{field}")),
                "{err}"
            );
        }
    }

    #[test]
    fn config_reads_from_toml_with_defaults_for_what_is_missing() {
        let config: IdempotencyConfig =
            toml::from_str("store = \"kv\"\nttl_ms = 1000").expect("valid TOML");
        assert_eq!(config.store, StoreKind::Kv);
        assert_eq!(config.ttl_ms, 1000);
        assert_eq!(config.header, "Idempotency-Key");
        assert!(
            toml::from_str::<IdempotencyConfig>("tll_ms = 1").is_err(),
            "unknown key"
        );
    }
}
