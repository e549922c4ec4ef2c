//! Rate limiting: five algorithms, each in its own file, kept per key in a bounded table, and
//! a cluster-wide mode whose counters live in the kv-store.
//!
//! A *policy* (`[rate_limits.NAME]`) allows `limit` requests per `window_ms` to each *key*
//! (a consumer, an API key, a client IP, the route, or a header's value). A request is one
//! call to [`Policy::check`] with its key and the gateway clock's reading; the answer is a
//! [`Decision`], and the decisions of every policy that applied become the response's
//! `RateLimit-Policy` and `RateLimit` fields ([`response_headers`]).
//!
//! | algorithm | file | state per key | bursts | accuracy |
//! |---|---|---|---|---|
//! | token bucket | [`token_bucket`] | one `u64`: tokens (1/1024 units) + last refill (ms) | up to `burst` at once, then the steady rate | ±1/1024 token per decision |
//! | GCRA | [`gcra`] | one `u64`: the theoretical arrival time | same decisions as the token bucket | exact (ns) |
//! | fixed window | [`fixed_window`] | one `u64`: window index + count | up to `2 × limit` across a window boundary | exact per window |
//! | sliding-window log | [`sliding_log`] | one timestamp per allowed request (≤ `limit`) | never more than `limit` in any window-long span | exact |
//! | sliding-window counter | [`sliding_window`] | one `u64`: window index + two counts | smoothed: the previous window weighs in linearly | an estimate (assumes the previous window's requests were spread evenly) |
//!
//! The token bucket and GCRA are the same limit seen from two sides: the bucket counts the
//! tokens left, GCRA remembers when the bucket would be full again. The window algorithms
//! trade burst control for arithmetic that a key-value store can do with plain `INCR`, which
//! is why only they have a cluster scope ([`cluster`]): the kv-store has no scripting, so a
//! read-modify-write of a bucket could not be made atomic across gateway instances.
//!
//! A key longer than [`MAX_KEY_BYTES`] (a `header:NAME` value may be kilobytes) is replaced
//! by `sha256:` and its digest before any limiter sees it, so a client can make neither a
//! key table nor the cluster store hold long keys.
//!
//! Time is a parameter (`now_ns`, the gateway's [`crate::clock`]) and is never read here, so
//! the tests drive it by hand. Windows are aligned to multiples of `window_ms` since the Unix
//! epoch, so that gateway instances with synchronised clocks agree on them.
//!
//! Response fields follow draft-ietf-httpapi-ratelimit-headers-10 (September 2025): both are
//! structured-field lists (RFC 8941) with one member per policy, the policy's name as a string:
//!
//! ```text
//! RateLimit-Policy: "per_ip";q=100;w=60, "gold_plan";q=5000;w=3600
//! RateLimit: "per_ip";r=42;t=17, "gold_plan";r=4211;t=1800
//! Retry-After: 17                      (RFC 9110 § 10.2.3, only when a policy denied)
//! ```
//!
//! `q` is the quota, `w` the window in seconds, `r` what is left, `t` the seconds until the
//! quota is restored. Seconds are rounded up, so a client that waits `t` or `Retry-After`
//! seconds is never early.

pub mod cluster;
pub mod fixed_window;
pub mod gcra;
pub mod keys;
pub mod sliding_log;
pub mod sliding_window;
pub mod token_bucket;

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use service_kit::config::ConfigError;
use sha2::{Digest, Sha256};

use cluster::ClusterLimiter;
use keys::Keyed;

/// Largest `limit` (and `burst`) of any policy: the packed per-key states of the lock-free
/// limiters hold counts of up to 20 bits, and a million requests per key per window is far
/// beyond what one gateway serves.
pub const MAX_LIMIT: u64 = 1_000_000;
/// Largest `limit` of a sliding-log policy, whose memory per key is 8 bytes per allowed
/// request in the window.
pub const MAX_LOG_LIMIT: u64 = 10_000;
/// Longest window: a day. Longer quotas are billing, not rate limiting.
pub const MAX_WINDOW_MS: u64 = 86_400_000;
/// Longest request key kept as is; longer ones are hashed ([`bounded_key`]).
pub const MAX_KEY_BYTES: usize = 128;
/// Most keys one local policy tracks: a key is at most [`MAX_KEY_BYTES`], and with its
/// table entry and state takes at most about 250 bytes (plus 8 bytes per request in the
/// window for a sliding log), so 10 M keys is under 2.5 GB.
pub const MAX_KEYS: usize = 10_000_000;
/// Default `max_keys`.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

const NS_PER_MS: u64 = 1_000_000;

/// `[rate_limits.NAME]` in the gateway's config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Default `token_bucket`.
    pub algorithm: AlgorithmKind,
    /// Requests allowed per window. Default 100, at most [`MAX_LIMIT`].
    pub limit: u64,
    /// Default 60 000 (one minute), at most [`MAX_WINDOW_MS`].
    pub window_ms: u64,
    /// Token bucket and GCRA: how many may come at once (the bucket's capacity). Default
    /// `limit`. The window algorithms refuse it: their burst is their limit.
    pub burst: Option<u64>,
    /// Whose requests share a quota. Default `client_ip`.
    pub key: KeySource,
    /// `local` (each gateway instance counts alone) or `cluster` (in the kv-store). Default local.
    pub scope: Scope,
    /// Local: most keys tracked at once (see [`keys`]). Default [`DEFAULT_MAX_KEYS`].
    pub max_keys: usize,
    /// Cluster: what a request gets when the store cannot answer. Default `fail_open`.
    pub on_store_error: FailureMode,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            algorithm: AlgorithmKind::TokenBucket,
            limit: 100,
            window_ms: 60_000,
            burst: None,
            key: KeySource::ClientIp,
            scope: Scope::Local,
            max_keys: DEFAULT_MAX_KEYS,
            on_store_error: FailureMode::FailOpen,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlgorithmKind {
    TokenBucket,
    Gcra,
    FixedWindow,
    SlidingLog,
    SlidingWindow,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Local,
    Cluster,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Allow the request: an outage of the store must not become an outage of the API.
    FailOpen,
    /// Deny it (503): the limit protects something that must not be overrun.
    FailClosed,
}

/// Which property of a request is its key. Written `consumer`, `api_key`, `client_ip`,
/// `route` or `header:NAME`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum KeySource {
    Consumer,
    ApiKey,
    ClientIp,
    Route,
    Header(HeaderName),
}

impl TryFrom<String> for KeySource {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Ok(match text.as_str() {
            "consumer" => KeySource::Consumer,
            "api_key" => KeySource::ApiKey,
            "client_ip" => KeySource::ClientIp,
            "route" => KeySource::Route,
            other => match other.strip_prefix("header:") {
                Some(name) => KeySource::Header(
                    HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| format!("{name:?} is not a header field name"))?,
                ),
                None => {
                    return Err(format!(
                        "unknown key {other:?}: expected consumer, api_key, client_ip, route or header:NAME"
                    ));
                }
            },
        })
    }
}

impl From<KeySource> for String {
    fn from(source: KeySource) -> String {
        match source {
            KeySource::Consumer => "consumer".into(),
            KeySource::ApiKey => "api_key".into(),
            KeySource::ClientIp => "client_ip".into(),
            KeySource::Route => "route".into(),
            KeySource::Header(name) => format!("header:{name}"),
        }
    }
}

impl PolicyConfig {
    /// Checks the policy `field` (`rate_limits.NAME`); errors name the offending setting.
    pub fn validate(&self, field: &str) -> Result<(), ConfigError> {
        let bad = |name: &str, reason: String| {
            Err(ConfigError::invalid(format!("{field}.{name}"), reason))
        };
        if self.limit == 0 || self.limit > MAX_LIMIT {
            return bad("limit", format!("must be 1 to {MAX_LIMIT}"));
        }
        if self.algorithm == AlgorithmKind::SlidingLog && self.limit > MAX_LOG_LIMIT {
            return bad(
                "limit",
                format!("a sliding log keeps one timestamp per request: at most {MAX_LOG_LIMIT}"),
            );
        }
        if self.window_ms == 0 || self.window_ms > MAX_WINDOW_MS {
            return bad("window_ms", format!("must be 1 to {MAX_WINDOW_MS}"));
        }
        let bucket = matches!(
            self.algorithm,
            AlgorithmKind::TokenBucket | AlgorithmKind::Gcra
        );
        match self.burst {
            Some(_) if !bucket => {
                return bad(
                    "burst",
                    "only token_bucket and gcra have a burst; a window's burst is its limit".into(),
                );
            }
            Some(b) if b == 0 || b > MAX_LIMIT => {
                return bad("burst", format!("must be 1 to {MAX_LIMIT}"));
            }
            _ => {}
        }
        let refill_ms = self.burst() as u128 * self.window_ms as u128 / self.limit as u128;
        if bucket && refill_ms > MAX_WINDOW_MS as u128 {
            return bad(
                "burst",
                format!(
                    "an empty bucket must refill within {MAX_WINDOW_MS} ms (burst × window_ms / limit)"
                ),
            );
        }
        if self.max_keys == 0 || self.max_keys > MAX_KEYS {
            return bad("max_keys", format!("must be 1 to {MAX_KEYS}"));
        }
        if self.scope == Scope::Cluster
            && !matches!(
                self.algorithm,
                AlgorithmKind::FixedWindow | AlgorithmKind::SlidingWindow
            )
        {
            return bad(
                "scope",
                "cluster scope needs fixed_window or sliding_window: the kv-store has no scripting, and \
                 only window counters can be kept with atomic INCR alone"
                    .into(),
            );
        }
        Ok(())
    }

    fn burst(&self) -> u64 {
        self.burst.unwrap_or(self.limit)
    }
}

/// What one local algorithm decides for one key. Implemented by the five algorithm files;
/// [`Keyed`] keeps one `State` per key.
pub trait Algorithm: Send + Sync + 'static {
    type State: Send + Sync;

    /// The state of a key never seen before (a full quota).
    fn fresh(&self, now_ns: u64) -> Self::State;

    /// One request at `now_ns`. Must be linearizable: concurrent calls on one state never
    /// allow more than sequential ones would.
    fn decide(&self, state: &Self::State, now_ns: u64) -> Verdict;

    /// Whether the key is back to a full quota, so forgetting it changes no decision.
    fn is_idle(&self, state: &Self::State, now_ns: u64) -> bool;

    /// How long after a key's last request its quota is whole again, whatever the state.
    /// [`Keyed`] replaces the state of a key unused for longer with a fresh one, which
    /// also keeps every packed state far from the point where its clock field would wrap.
    fn forget_after_ns(&self) -> u64;
}

/// An algorithm's answer, in nanoseconds; [`Policy`] adds the policy's identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    pub remaining: u64,
    pub reset_ns: u64,
    /// When denied: the earliest time, from now, at which the same request would be allowed.
    pub retry_after_ns: Option<u64>,
}

/// One policy's answer for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision<'p> {
    /// The policy's name.
    pub policy: &'p str,
    pub allowed: bool,
    /// The quota (`q`).
    pub limit: u64,
    /// The quota's window (`w`).
    pub window: Duration,
    /// Requests left (`r`).
    pub remaining: u64,
    /// Until the quota is restored (`t`).
    pub reset: Duration,
    /// When denied, the earliest time a retry can succeed.
    pub retry_after: Option<Duration>,
    /// A cluster policy whose store did not answer: `on_store_error` decided.
    pub store_failed: bool,
}

/// One `[rate_limits.NAME]`, ready to decide.
pub struct Policy {
    name: String,
    key: KeySource,
    limit: u64,
    window: Duration,
    limiter: Limiter,
}

enum Limiter {
    TokenBucket(Keyed<token_bucket::TokenBucket>),
    Gcra(Keyed<gcra::Gcra>),
    FixedWindow(Keyed<fixed_window::FixedWindow>),
    SlidingLog(Keyed<sliding_log::SlidingLog>),
    SlidingWindow(Keyed<sliding_window::SlidingWindow>),
    Cluster(ClusterLimiter),
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.name)
            .field("key", &self.key)
            .field("limit", &self.limit)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl Policy {
    /// A policy from a validated config. `store` is the kv-store client, required when
    /// `scope = "cluster"`.
    pub fn new(
        name: &str,
        config: &PolicyConfig,
        store: Option<kv_store::client::Client>,
    ) -> Result<Policy, String> {
        config
            .validate(&format!("rate_limits.{name}"))
            .map_err(|e| e.to_string())?;
        let window_ns = config.window_ms * NS_PER_MS;
        let limiter = match (config.scope, config.algorithm) {
            (Scope::Cluster, algorithm) => {
                let store = store.ok_or_else(|| {
                    format!("rate limit {name} has cluster scope but no [kv] store")
                })?;
                Limiter::Cluster(ClusterLimiter::new(name, algorithm, config, store))
            }
            (Scope::Local, AlgorithmKind::TokenBucket) => Limiter::TokenBucket(Keyed::new(
                token_bucket::TokenBucket::new(config.limit, config.window_ms, config.burst()),
                config.max_keys,
            )),
            (Scope::Local, AlgorithmKind::Gcra) => Limiter::Gcra(Keyed::new(
                gcra::Gcra::new(config.limit, window_ns, config.burst()),
                config.max_keys,
            )),
            (Scope::Local, AlgorithmKind::FixedWindow) => Limiter::FixedWindow(Keyed::new(
                fixed_window::FixedWindow::new(config.limit, window_ns),
                config.max_keys,
            )),
            (Scope::Local, AlgorithmKind::SlidingLog) => Limiter::SlidingLog(Keyed::new(
                sliding_log::SlidingLog::new(config.limit, window_ns),
                config.max_keys,
            )),
            (Scope::Local, AlgorithmKind::SlidingWindow) => Limiter::SlidingWindow(Keyed::new(
                sliding_window::SlidingWindow::new(config.limit, window_ns),
                config.max_keys,
            )),
        };
        Ok(Policy {
            name: name.to_owned(),
            key: config.key.clone(),
            limit: config.limit,
            window: Duration::from_millis(config.window_ms),
            limiter,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_source(&self) -> &KeySource {
        &self.key
    }

    /// One request with key `key` at `now_ns`. Local policies answer without awaiting.
    pub async fn check(&self, key: &str, now_ns: u64) -> Decision<'_> {
        match &self.limiter {
            Limiter::Cluster(cluster) => {
                let key = bounded_key(key);
                let (verdict, store_failed) = cluster.decide(&key, now_ns).await;
                self.decision(verdict, store_failed)
            }
            _ => self.check_local(key, now_ns).expect("a local limiter"),
        }
    }

    /// [`Policy::check`] for a local policy, synchronously (`None` for a cluster policy). The
    /// benchmarks call it directly.
    pub fn check_local(&self, key: &str, now_ns: u64) -> Option<Decision<'_>> {
        let key = &*bounded_key(key);
        let verdict = match &self.limiter {
            Limiter::TokenBucket(k) => k.decide(key, now_ns),
            Limiter::Gcra(k) => k.decide(key, now_ns),
            Limiter::FixedWindow(k) => k.decide(key, now_ns),
            Limiter::SlidingLog(k) => k.decide(key, now_ns),
            Limiter::SlidingWindow(k) => k.decide(key, now_ns),
            Limiter::Cluster(_) => return None,
        };
        Some(self.decision(verdict, false))
    }

    /// Keys a local policy tracks now (0 for a cluster policy).
    pub fn tracked_keys(&self) -> usize {
        match &self.limiter {
            Limiter::TokenBucket(k) => k.len(),
            Limiter::Gcra(k) => k.len(),
            Limiter::FixedWindow(k) => k.len(),
            Limiter::SlidingLog(k) => k.len(),
            Limiter::SlidingWindow(k) => k.len(),
            Limiter::Cluster(_) => 0,
        }
    }

    fn decision(&self, verdict: Verdict, store_failed: bool) -> Decision<'_> {
        Decision {
            policy: &self.name,
            allowed: verdict.allowed,
            limit: self.limit,
            window: self.window,
            remaining: verdict.remaining,
            reset: Duration::from_nanos(verdict.reset_ns),
            retry_after: verdict.retry_after_ns.map(Duration::from_nanos),
            store_failed,
        }
    }
}

/// The fields of the IETF draft (`draft-ietf-httpapi-ratelimit-headers`).
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The response fields for the decisions of every policy that applied to a request (see the
/// module doc): `RateLimit-Policy`, `RateLimit`, and `Retry-After` when any denied (the
/// longest wait among the denials, since every denying policy must have recovered). A
/// policy whose store failed is left out of the `RateLimit` fields: its state is unknown.
pub fn response_headers(decisions: &[Decision<'_>]) -> Vec<(HeaderName, HeaderValue)> {
    // Each field is written straight into one buffer: this runs on every limited request.
    let (mut policy, mut state) = (String::with_capacity(64), String::with_capacity(64));
    for d in decisions.iter().filter(|d| !d.store_failed) {
        if !policy.is_empty() {
            policy.push_str(", ");
            state.push_str(", ");
        }
        push_sf_string(&mut policy, d.policy);
        let _ = write!(policy, ";q={};w={}", d.limit, seconds_up(d.window));
        push_sf_string(&mut state, d.policy);
        let _ = write!(state, ";r={};t={}", d.remaining, seconds_up(d.reset));
    }
    let mut fields = Vec::with_capacity(3);
    if !policy.is_empty() {
        for (name, value) in [(&RATELIMIT_POLICY, policy), (&RATELIMIT, state)] {
            if let Ok(value) = HeaderValue::try_from(value) {
                fields.push((name.clone(), value));
            }
        }
    }
    if let Some(wait) = longest_wait(decisions) {
        // A denial always asks for at least one second: "0" would invite an immediate retry.
        fields.push((
            http::header::RETRY_AFTER,
            HeaderValue::from(seconds_up(wait).max(1)),
        ));
    }
    fields
}

/// The key as a limiter keeps it: as is up to [`MAX_KEY_BYTES`], else `sha256:` and the
/// digest in hex (71 bytes).
pub fn bounded_key(key: &str) -> Cow<'_, str> {
    if key.len() <= MAX_KEY_BYTES {
        return Cow::Borrowed(key);
    }
    let mut hashed = String::with_capacity(7 + 64);
    hashed.push_str("sha256:");
    for byte in Sha256::digest(key.as_bytes()) {
        let _ = write!(hashed, "{byte:02x}");
    }
    Cow::Owned(hashed)
}

/// How long until every policy that denied admits again, or `None` when none denied.
pub fn longest_wait(decisions: &[Decision<'_>]) -> Option<Duration> {
    decisions
        .iter()
        .filter(|d| !d.allowed)
        .map(|d| d.retry_after.unwrap_or(d.reset))
        .max()
}

/// Whole seconds, rounded up.
fn seconds_up(d: Duration) -> u64 {
    d.as_nanos().div_ceil(1_000_000_000) as u64
}

/// Appends an RFC 8941 § 3.3.3 string: quoted, with `"` and `\` escaped; other characters
/// outside printable ASCII are dropped (policy names are config keys, so there are none in
/// practice).
fn push_sf_string(out: &mut String, text: &str) {
    let plain = |b: &u8| (b' '..=b'~').contains(b) && *b != b'"' && *b != b'\\';
    if text.bytes().all(|b| plain(&b)) {
        // The usual policy name: nothing to drop or escape.
        out.push('"');
        out.push_str(text);
        out.push('"');
        return;
    }
    out.push('"');
    for c in text.chars().filter(|c| (' '..='~').contains(c)) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// The instant a window algorithm decides at: `reading_ns`, or, when the key's state is
/// already in a later window, that window's start. Threads read the clock a moment apart: one
/// reading just past a boundary moves the key's window on, and a reading taken just before it
/// but deciding after must not move the window back, which would restart the count (and let
/// up to one window's quota through again). `stored_index` is the window index kept in the
/// state, `bits` wide; a state is never far ahead, so "later" is the nearer half of the
/// index space.
fn not_behind(stored_index: u64, bits: u32, reading_ns: u64, window_ns: u64) -> u64 {
    let mask = (1u64 << bits) - 1;
    let reading_index = reading_ns / window_ns;
    let ahead = stored_index.wrapping_sub(reading_index) & mask;
    if ahead == 0 || ahead > mask / 2 {
        return reading_ns;
    }
    reading_index
        .saturating_add(ahead)
        .saturating_mul(window_ns)
}

/// Ceiling division for the algorithms' "how long until" arithmetic, in u128 so products of
/// counts and nanoseconds cannot overflow.
fn div_ceil(numerator: u128, denominator: u128) -> u64 {
    numerator.div_ceil(denominator.max(1)).min(u64::MAX as u128) as u64
}

#[cfg(test)]
mod tests;
