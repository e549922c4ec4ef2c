//! The gateway's metrics, served on the admin listener's `/metrics` beside the reverse
//! proxy's (`proxy_*`, per upstream cluster).
//!
//! Every label value comes from the config (route, consumer, policy and cluster names) or from
//! a fixed set (status classes, rejection reasons, decisions): a consumer that presents a
//! valid token whose subject is not a configured consumer is counted as `unknown`, a request
//! without credentials as `anonymous`, a request that matched no route under `route="none"`.

use service_kit::metrics::{
    HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, LATENCY_SECONDS_BUCKETS, MetricsError,
    Registry,
};

/// Route label of requests that matched no route.
pub const NO_ROUTE: &str = "none";
/// Consumer label of requests without credentials.
pub const ANONYMOUS: &str = "anonymous";
/// Consumer label of credentials that name no configured consumer.
pub const UNKNOWN_CONSUMER: &str = "unknown";

#[derive(Clone, Debug)]
pub struct GatewayMetrics {
    /// `gateway_requests_total{route, consumer, class}`.
    pub requests: IntCounterVec,
    /// `gateway_request_duration_seconds{route}`: request head to the end of the response body.
    pub duration: HistogramVec,
    /// `gateway_requests_active`.
    pub active: IntGauge,
    /// `gateway_rejections_total{route, reason}`: requests the gateway answered itself, by the
    /// phase that refused them (`no_route`, `method_not_allowed`, `bad_request`,
    /// `unauthenticated`, `forbidden`, `rate_limited`, `idempotency_conflict`,
    /// `idempotency_mismatch`, `circuit_open`, `body_too_large`, `timeout`, `unavailable`).
    pub rejections: IntCounterVec,
    /// `gateway_rate_limit_decisions_total{policy, decision}`: `allowed`, `denied`,
    /// `store_error_allowed` (fail open), `store_error_denied` (fail closed).
    pub rate_limit_decisions: IntCounterVec,
    /// `gateway_idempotency_requests_total{route, outcome}`: `first`, `replayed`,
    /// `in_progress`, `mismatch`, `released`.
    pub idempotency: IntCounterVec,
    /// `gateway_circuit_breaker_state{cluster}`: 0 closed, 1 half-open, 2 open.
    pub breaker_state: IntGaugeVec,
    /// `gateway_circuit_breaker_rejections_total{cluster}`.
    pub breaker_rejections: IntCounterVec,
    /// `gateway_config_reloads_total{result}`: `applied`, `refused`.
    pub reloads: IntCounterVec,
}

impl GatewayMetrics {
    pub fn register(registry: &Registry) -> Result<GatewayMetrics, MetricsError> {
        Ok(GatewayMetrics {
            requests: registry.counter_vec(
                "gateway_requests_total",
                "Requests answered, by route, consumer and status class.",
                &["route", "consumer", "class"],
            )?,
            duration: registry.histogram_vec(
                "gateway_request_duration_seconds",
                "Time from the request head to the end of the response body, by route.",
                &["route"],
                LATENCY_SECONDS_BUCKETS,
            )?,
            active: registry.gauge("gateway_requests_active", "Requests being served.")?,
            rejections: registry.counter_vec(
                "gateway_rejections_total",
                "Requests the gateway answered itself, by route and reason.",
                &["route", "reason"],
            )?,
            rate_limit_decisions: registry.counter_vec(
                "gateway_rate_limit_decisions_total",
                "Rate-limit decisions, by policy and outcome.",
                &["policy", "decision"],
            )?,
            idempotency: registry.counter_vec(
                "gateway_idempotency_requests_total",
                "Requests carrying an idempotency key, by route and outcome.",
                &["route", "outcome"],
            )?,
            breaker_state: registry.gauge_vec(
                "gateway_circuit_breaker_state",
                "Circuit breaker state by cluster: 0 closed, 1 half-open, 2 open.",
                &["cluster"],
            )?,
            breaker_rejections: registry.counter_vec(
                "gateway_circuit_breaker_rejections_total",
                "Requests refused with 503 by an open circuit, by cluster.",
                &["cluster"],
            )?,
            reloads: registry.counter_vec(
                "gateway_config_reloads_total",
                "Configuration reloads on SIGHUP, by result.",
                &["result"],
            )?,
        })
    }
}

/// `2xx` for 200..=299, and so on.
pub fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}
