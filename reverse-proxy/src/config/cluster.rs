//! One upstream cluster: its endpoints and every policy applied on the way to them.
//!
//! Times are in milliseconds with `_ms` in the name; each field's doc gives its default and
//! the limit `validate` enforces.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use service_kit::config::ConfigError;

use crate::balance::{Algorithm, HashKey};

/// Most endpoints in one cluster.
pub const MAX_ENDPOINTS: usize = 1024;
/// Largest endpoint weight. Weights are relative; 1000 levels is finer than any operator
/// needs, and it bounds the ring size of `ring_hash` (points = weight x virtual nodes).
pub const MAX_WEIGHT: u32 = 1000;
/// Most points on a consistent-hash ring (all endpoints, all virtual nodes): 8 MiB of ring.
pub const MAX_RING_POINTS: u64 = 1 << 20;
/// Largest Maglev lookup table (a prime near 5 million, as Envoy's largest suggested size).
pub const MAX_MAGLEV_TABLE_SIZE: u64 = 5_000_011;
/// Longest retry backoff, interval or timeout accepted anywhere in a cluster: one hour.
pub const MAX_DURATION_MS: u64 = 3_600_000;
/// Most retries of one request.
pub const MAX_RETRIES: u32 = 10;
/// Largest request body kept in memory so that the request can be sent again (16 MiB).
pub const MAX_BUFFERED_BODY_BYTES: u64 = 16 * 1024 * 1024;

/// An upstream cluster. Every field has a default; a cluster needs only `endpoints`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// The upstream servers, 1 to [`MAX_ENDPOINTS`], each address at most once.
    pub endpoints: Vec<EndpointConfig>,
    /// The balancing algorithm. Default `round_robin`.
    pub lb: Algorithm,
    /// What `ring_hash` and `maglev` hash to pick an endpoint. Default: the client's IP.
    pub hash_key: HashKey,
    /// Points per unit of weight on the `ring_hash` ring. More points spread keys more evenly
    /// (160 gives a few percent of imbalance, as in ketama). Default 160; the whole ring is at
    /// most [`MAX_RING_POINTS`].
    pub ring_virtual_nodes: u32,
    /// Size of the `maglev` lookup table: a prime, well above the number of endpoints (100
    /// times more keeps the imbalance under 1%). Default 65,537; at most
    /// [`MAX_MAGLEV_TABLE_SIZE`].
    pub maglev_table_size: u64,
    /// Active health checking. Default: off.
    pub health_check: HealthCheckConfig,
    /// Passive health checking: ejecting endpoints that fail live traffic.
    pub outlier_detection: OutlierConfig,
    /// When fewer than this percentage of endpoints are usable (healthy and not ejected), the
    /// proxy ignores health and balances over all of them: overloading the few survivors would
    /// turn a partial outage into a full one. 0 disables. Default 50.
    pub panic_threshold_percent: u8,
    pub timeouts: TimeoutConfig,
    pub retry: RetryConfig,
    pub circuit_breaker: CircuitBreakerConfig,
    pub pool: PoolConfig,
    /// TLS to the endpoints (L7 only). Absent: plain HTTP. With TLS, each try opens a new
    /// connection (the `http1` pool keeps plain TCP connections only).
    pub upstream_tls: Option<UpstreamTlsConfig>,
}

/// TLS from the proxy to a cluster's endpoints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// The name sent as SNI and checked against the endpoints' certificates.
    pub server_name: String,
    /// PEM file of the certificate authorities trusted for the endpoints.
    pub ca_file: std::path::PathBuf,
}

/// One upstream server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// `IP:port`. Names are not resolved: a proxy that resolves names at start-up only is a
    /// trap when the name moves.
    pub address: SocketAddr,
    /// Relative share of traffic, 1 to [`MAX_WEIGHT`]. Default 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Where active health checks probe this endpoint, `IP:port`, when not at `address`: a
    /// server's admin listener, whose `/readyz` turns 503 as soon as the server starts to
    /// drain, so the proxy stops sending before the server stops accepting (Envoy's
    /// per-endpoint `health_check_config`). Probed the same way as `address` would be.
    /// Default none: `address`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_address: Option<SocketAddr>,
}

fn default_weight() -> u32 {
    1
}

/// How an endpoint is probed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheckKind {
    /// No active checks: endpoints are healthy unless outlier detection ejects them.
    #[default]
    None,
    /// `GET path` must answer `expected_status` within `timeout_ms`.
    Http,
    /// A TCP connect must succeed within `timeout_ms`.
    Tcp,
}

/// Active health checks: every `interval_ms`, each endpoint is probed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// `none`, `http` or `tcp`. Default `none`.
    pub kind: HealthCheckKind,
    /// Path requested by `http` checks, starting with `/`. Default `/healthz`.
    pub path: String,
    /// Status an `http` check must get. Default 200.
    pub expected_status: u16,
    /// Time between two probes of one endpoint. Default 5,000.
    pub interval_ms: u64,
    /// Longest a probe may take; it must be under `interval_ms`. Default 1,000.
    pub timeout_ms: u64,
    /// Consecutive successes that make an unhealthy endpoint healthy. Default 2.
    pub healthy_threshold: u32,
    /// Consecutive failures that make a healthy endpoint unhealthy. Default 3.
    pub unhealthy_threshold: u32,
}

/// Passive outlier detection: consecutive failures of live requests eject an endpoint for
/// `base_ejection_ms` times the number of times it has been ejected, at most
/// `max_ejection_ms`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutlierConfig {
    /// Consecutive 5xx responses (502, 503, 504 produced by the proxy for this endpoint
    /// count too) that eject the endpoint. 0 disables this trigger. Default 5.
    pub consecutive_5xx: u32,
    /// Consecutive connect failures (refused, timed out) that eject the endpoint. 0 disables
    /// this trigger. Default 5.
    pub consecutive_connect_failures: u32,
    /// First ejection time; the n-th ejection lasts n times as long. Default 30,000.
    pub base_ejection_ms: u64,
    /// Longest ejection. Default 300,000.
    pub max_ejection_ms: u64,
    /// At most this percentage of the cluster's endpoints is ejected at once (at least one
    /// endpoint may always be ejected). Default 10.
    pub max_ejection_percent: u8,
}

/// Time limits on the way to an endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutConfig {
    /// Longest wait for a TCP connection to an endpoint. Default 5,000.
    pub connect_ms: u64,
    /// Longest wait, per try, from sending the request to the end of the response head;
    /// past it the proxy answers 504 (or retries). Default 15,000.
    pub request_ms: u64,
    /// Longest stall while a request or response body streams (no byte moving either way).
    /// Default 60,000.
    pub idle_ms: u64,
}

/// When and how a failed request is sent again, to another endpoint where possible.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Tries after the first, 0 to [`MAX_RETRIES`]. Default 2.
    pub max_retries: u32,
    /// Upstream statuses that are retried (as well as connect failures and connections reset
    /// before any response byte), each 500 to 599. Default `[502, 503, 504]`.
    pub retry_on_status: Vec<u16>,
    /// Whether non-idempotent requests (POST, PATCH, CONNECT without an `Idempotency-Key`)
    /// are retried after they may have reached the upstream. A connect failure is always
    /// retried: nothing was sent. Default false.
    pub retry_non_idempotent: bool,
    /// Backoff before the first retry; each retry doubles it, up to `backoff_max_ms`, and
    /// the actual wait is drawn uniformly below it ("full jitter"). Default 25.
    pub backoff_base_ms: u64,
    /// Longest backoff. Default 250.
    pub backoff_max_ms: u64,
    /// Retries in flight may be at most this percentage of the requests in flight to the
    /// cluster, so that a struggling upstream is not hit by a retry storm. Default 20.
    pub budget_percent: u8,
    /// ... but this many concurrent retries are always allowed, so that a quiet cluster can
    /// retry at all. Default 3.
    pub budget_min_concurrency: u32,
    /// A request body up to this size is kept in memory so that the request can be retried;
    /// a larger (or unknown-length) body streams straight through and its request is not
    /// retried once sent. At most [`MAX_BUFFERED_BODY_BYTES`]. Default 65,536.
    pub max_buffered_body_bytes: u64,
}

/// Limits on what the proxy asks of a cluster at once. Past a limit the request is answered
/// at once with 503 and a reason, instead of queueing behind an upstream that cannot keep up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// Upstream connections carrying a request at once (HTTP/1.1 carries one request per
    /// connection). A request that finds none free waits as pending. Default 1,024.
    pub max_connections: u32,
    /// Requests waiting for a connection. Default 1,024.
    pub max_pending: u32,
    /// Requests in flight to the cluster, pending ones included. Default 1,024.
    pub max_requests: u32,
}

/// The keep-alive pool of upstream connections, per endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Most idle connections kept per endpoint by each worker; 0 disables reuse. Default 32.
    pub max_idle_per_endpoint: usize,
    /// Idle connections older than this are closed. Default 60,000.
    pub idle_timeout_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            endpoints: Vec::new(),
            lb: Algorithm::default(),
            hash_key: HashKey::default(),
            ring_virtual_nodes: 160,
            maglev_table_size: 65_537,
            health_check: HealthCheckConfig::default(),
            outlier_detection: OutlierConfig::default(),
            panic_threshold_percent: 50,
            timeouts: TimeoutConfig::default(),
            retry: RetryConfig::default(),
            circuit_breaker: CircuitBreakerConfig::default(),
            pool: PoolConfig::default(),
            upstream_tls: None,
        }
    }
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            kind: HealthCheckKind::None,
            path: "/healthz".to_owned(),
            expected_status: 200,
            interval_ms: 5_000,
            timeout_ms: 1_000,
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        }
    }
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            consecutive_5xx: 5,
            consecutive_connect_failures: 5,
            base_ejection_ms: 30_000,
            max_ejection_ms: 300_000,
            max_ejection_percent: 10,
        }
    }
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        TimeoutConfig {
            connect_ms: 5_000,
            request_ms: 15_000,
            idle_ms: 60_000,
        }
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_retries: 2,
            retry_on_status: vec![502, 503, 504],
            retry_non_idempotent: false,
            backoff_base_ms: 25,
            backoff_max_ms: 250,
            budget_percent: 20,
            budget_min_concurrency: 3,
            max_buffered_body_bytes: 64 * 1024,
        }
    }
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        CircuitBreakerConfig {
            max_connections: 1024,
            max_pending: 1024,
            max_requests: 1024,
        }
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_idle_per_endpoint: 32,
            idle_timeout_ms: 60_000,
        }
    }
}

impl TimeoutConfig {
    pub fn connect(&self) -> Duration {
        Duration::from_millis(self.connect_ms)
    }
    pub fn request(&self) -> Duration {
        Duration::from_millis(self.request_ms)
    }
    pub fn idle(&self) -> Duration {
        Duration::from_millis(self.idle_ms)
    }
}

/// `field` must be in `range`; the error names it.
fn check_range<T>(
    field: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<(), ConfigError>
where
    T: PartialOrd + std::fmt::Display + Copy,
{
    if range.contains(&value) {
        return Ok(());
    }
    let reason = format!("{value} is outside {}..={}", range.start(), range.end());
    Err(ConfigError::invalid(field, reason))
}

fn check_ms(field: &str, value: u64) -> Result<(), ConfigError> {
    check_range(field, value, 1..=MAX_DURATION_MS)
}

impl ClusterConfig {
    /// Checks every field; `prefix` is the cluster's dotted path (`clusters.api`).
    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        self.validate_endpoints(prefix)?;
        self.validate_balancing(prefix)?;
        self.health_check
            .validate(&format!("{prefix}.health_check"))?;
        self.outlier_detection
            .validate(&format!("{prefix}.outlier_detection"))?;
        check_range(
            &format!("{prefix}.panic_threshold_percent"),
            self.panic_threshold_percent,
            0..=100,
        )?;
        let t = &self.timeouts;
        check_ms(&format!("{prefix}.timeouts.connect_ms"), t.connect_ms)?;
        check_ms(&format!("{prefix}.timeouts.request_ms"), t.request_ms)?;
        check_ms(&format!("{prefix}.timeouts.idle_ms"), t.idle_ms)?;
        self.retry.validate(&format!("{prefix}.retry"))?;
        let cb = &self.circuit_breaker;
        let field = |name: &str| format!("{prefix}.circuit_breaker.{name}");
        check_range(&field("max_connections"), cb.max_connections, 1..=1_000_000)?;
        check_range(&field("max_pending"), cb.max_pending, 0..=1_000_000)?;
        check_range(&field("max_requests"), cb.max_requests, 1..=1_000_000)?;
        check_range(
            &format!("{prefix}.pool.max_idle_per_endpoint"),
            self.pool.max_idle_per_endpoint,
            0..=10_000,
        )?;
        check_ms(
            &format!("{prefix}.pool.idle_timeout_ms"),
            self.pool.idle_timeout_ms,
        )
    }

    fn validate_endpoints(&self, prefix: &str) -> Result<(), ConfigError> {
        let field = format!("{prefix}.endpoints");
        if self.endpoints.is_empty() || self.endpoints.len() > MAX_ENDPOINTS {
            let reason = format!("a cluster needs 1 to {MAX_ENDPOINTS} endpoints");
            return Err(ConfigError::invalid(field, reason));
        }
        let mut seen = HashSet::new();
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            let at = format!("{field}[{i}]");
            if !seen.insert(endpoint.address) {
                let reason = format!("{} is listed twice", endpoint.address);
                return Err(ConfigError::invalid(format!("{at}.address"), reason));
            }
            check_range(&format!("{at}.weight"), endpoint.weight, 1..=MAX_WEIGHT)?;
        }
        Ok(())
    }

    fn validate_balancing(&self, prefix: &str) -> Result<(), ConfigError> {
        self.hash_key.validate(&format!("{prefix}.hash_key"))?;
        let total_weight: u64 = self.endpoints.iter().map(|e| u64::from(e.weight)).sum();
        let points = total_weight * u64::from(self.ring_virtual_nodes);
        if self.ring_virtual_nodes == 0 || points > MAX_RING_POINTS {
            let reason = format!(
                "must be at least 1, and weights x virtual nodes ({points}) at most {MAX_RING_POINTS}"
            );
            return Err(ConfigError::invalid(
                format!("{prefix}.ring_virtual_nodes"),
                reason,
            ));
        }
        let size = self.maglev_table_size;
        let big_enough = size > self.endpoints.len() as u64 && size <= MAX_MAGLEV_TABLE_SIZE;
        if !big_enough || !is_prime(size) {
            let reason = format!(
                "{size} must be a prime above the number of endpoints and at most {MAX_MAGLEV_TABLE_SIZE} (65537 is a good choice)"
            );
            return Err(ConfigError::invalid(
                format!("{prefix}.maglev_table_size"),
                reason,
            ));
        }
        Ok(())
    }
}

impl HealthCheckConfig {
    fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        if self.kind == HealthCheckKind::None {
            return Ok(());
        }
        let field = |name: &str| format!("{prefix}.{name}");
        if !self.path.starts_with('/') || self.path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(ConfigError::invalid(
                field("path"),
                "must start with `/` and contain no spaces or control characters",
            ));
        }
        check_range(&field("expected_status"), self.expected_status, 100..=599)?;
        check_ms(&field("interval_ms"), self.interval_ms)?;
        check_range(&field("timeout_ms"), self.timeout_ms, 1..=self.interval_ms)?;
        check_range(&field("healthy_threshold"), self.healthy_threshold, 1..=100)?;
        check_range(
            &field("unhealthy_threshold"),
            self.unhealthy_threshold,
            1..=100,
        )
    }
}

impl OutlierConfig {
    fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        let field = |name: &str| format!("{prefix}.{name}");
        check_ms(&field("base_ejection_ms"), self.base_ejection_ms)?;
        check_range(
            &field("max_ejection_ms"),
            self.max_ejection_ms,
            self.base_ejection_ms..=MAX_DURATION_MS,
        )?;
        check_range(
            &field("max_ejection_percent"),
            self.max_ejection_percent,
            0..=100,
        )
    }
}

impl RetryConfig {
    fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        let field = |name: &str| format!("{prefix}.{name}");
        check_range(&field("max_retries"), self.max_retries, 0..=MAX_RETRIES)?;
        for (i, &status) in self.retry_on_status.iter().enumerate() {
            check_range(&format!("{prefix}.retry_on_status[{i}]"), status, 500..=599)?;
        }
        check_ms(&field("backoff_base_ms"), self.backoff_base_ms)?;
        check_range(
            &field("backoff_max_ms"),
            self.backoff_max_ms,
            self.backoff_base_ms..=MAX_DURATION_MS,
        )?;
        check_range(&field("budget_percent"), self.budget_percent, 0..=100)?;
        check_range(
            &field("budget_min_concurrency"),
            self.budget_min_concurrency,
            0..=1_000_000,
        )?;
        check_range(
            &field("max_buffered_body_bytes"),
            self.max_buffered_body_bytes,
            0..=MAX_BUFFERED_BODY_BYTES,
        )
    }
}

/// Trial division: table sizes are checked once at start-up and are at most a few million.
fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primes_are_recognised() {
        assert!(is_prime(65_537));
        assert!(is_prime(MAX_MAGLEV_TABLE_SIZE));
        assert!(!is_prime(65_536));
        assert!(!is_prime(1));
    }
}
