//! The proxy's metrics, registered once at start-up and served on the admin listener's
//! `/metrics`.
//!
//! Label values come only from the configuration (cluster names, at most
//! `config::MAX_CLUSTERS`) or from small fixed sets (status classes), never from requests:
//! a request for a host or path nobody configured is counted under `cluster="none"`.

use std::sync::{Arc, Weak};
use std::time::Duration;

use http::StatusCode;
use http1::ClientStats;
use http1::server::AcceptGroup;
use service_kit::metrics::{
    Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    LATENCY_SECONDS_BUCKETS, MetricsError, Registry,
};

/// Cluster label of requests that matched no route.
pub const NO_CLUSTER: &str = "none";

/// Handles to every metric the request path updates. Cloning shares them.
#[derive(Clone, Debug)]
pub struct ProxyMetrics {
    /// `proxy_requests_total{cluster, class}`: answered requests by status class.
    pub requests: IntCounterVec,
    /// `proxy_request_duration_seconds{cluster}`: from the request head to the end of the
    /// response body.
    pub duration: HistogramVec,
    /// `proxy_requests_active`: requests being served now.
    pub active: IntGauge,
    /// `proxy_retries_total{cluster}`: tries sent again.
    pub retries: IntCounterVec,
    /// `proxy_retries_over_budget_total{cluster}`: retries not made because the cluster's
    /// retry budget was spent.
    pub retries_over_budget: IntCounterVec,
    /// `proxy_circuit_breaker_rejections_total{cluster, limit}`: requests answered 503 by a
    /// circuit-breaker limit.
    pub rejections: IntCounterVec,
    /// `proxy_outlier_ejections_total{cluster}`: endpoints ejected by outlier detection.
    pub ejections: IntCounterVec,
    /// `proxy_endpoint_healthy{cluster, endpoint}`: 1 when active health checks pass (or are
    /// off), 0 when they fail. Endpoints are configured addresses: a bounded set.
    pub endpoint_healthy: IntGaugeVec,
    /// `proxy_upstream_connections_opened_total{cluster}`: TCP connections opened to
    /// endpoints. With the next one, the pool's reuse ratio is
    /// `reused / (opened + reused)`.
    pub connections_opened: IntCounterVec,
    /// `proxy_upstream_connections_reused_total{cluster}`: tries sent on a pooled connection.
    pub connections_reused: IntCounterVec,
    /// `proxy_upstream_connections_idle{cluster}`: idle pooled connections now.
    pub connections_idle: IntGaugeVec,
    /// `proxy_connections_active{listener, worker}`: client connections being served by each
    /// worker, on the `http` and `https` listeners; one that became a tunnel (WebSocket,
    /// CONNECT) counts under `proxy.max_tunnels` instead. Sampled, like the pools' counters.
    pub connections_active: IntGaugeVec,
    /// `proxy_tunnels_active`: tunnels (WebSocket, CONNECT) being relayed, and upgrade
    /// requests waiting for the upstream's answer: the permits of `proxy.max_tunnels` in
    /// use. Sampled with the connection counts.
    pub tunnels_active: IntGauge,
    /// `proxy_l4_connections_active`: TCP connections being relayed (or connecting).
    pub l4_active: IntGauge,
    /// `proxy_l4_connections_total{cluster, outcome}`: L4 connections by how they started
    /// (`relayed`, `no_endpoint`).
    pub l4_connections: IntCounterVec,
}

impl ProxyMetrics {
    pub fn register(registry: &Registry) -> Result<ProxyMetrics, MetricsError> {
        Ok(ProxyMetrics {
            requests: registry.counter_vec(
                "proxy_requests_total",
                "Requests answered, by cluster and status class.",
                &["cluster", "class"],
            )?,
            duration: registry.histogram_vec(
                "proxy_request_duration_seconds",
                "Time from the request head to the end of the response body, by cluster.",
                &["cluster"],
                LATENCY_SECONDS_BUCKETS,
            )?,
            active: registry.gauge("proxy_requests_active", "Requests being served.")?,
            retries: registry.counter_vec(
                "proxy_retries_total",
                "Tries sent again after a failure, by cluster.",
                &["cluster"],
            )?,
            retries_over_budget: registry.counter_vec(
                "proxy_retries_over_budget_total",
                "Retries not made because the cluster's retry budget was spent.",
                &["cluster"],
            )?,
            rejections: registry.counter_vec(
                "proxy_circuit_breaker_rejections_total",
                "Requests refused with 503 by a circuit-breaker limit.",
                &["cluster", "limit"],
            )?,
            ejections: registry.counter_vec(
                "proxy_outlier_ejections_total",
                "Endpoints ejected by outlier detection.",
                &["cluster"],
            )?,
            endpoint_healthy: registry.gauge_vec(
                "proxy_endpoint_healthy",
                "1 when the endpoint passes active health checks (or none are configured).",
                &["cluster", "endpoint"],
            )?,
            connections_opened: registry.counter_vec(
                "proxy_upstream_connections_opened_total",
                "TCP connections opened to upstream endpoints, by cluster.",
                &["cluster"],
            )?,
            connections_reused: registry.counter_vec(
                "proxy_upstream_connections_reused_total",
                "Tries sent on a pooled keep-alive connection, by cluster.",
                &["cluster"],
            )?,
            connections_idle: registry.gauge_vec(
                "proxy_upstream_connections_idle",
                "Idle keep-alive connections in the pool now, by cluster.",
                &["cluster"],
            )?,
            connections_active: registry.gauge_vec(
                "proxy_connections_active",
                "Client HTTP connections being served (tunnels not included), by listener and worker.",
                &["listener", "worker"],
            )?,
            tunnels_active: registry.gauge(
                "proxy_tunnels_active",
                "Tunnels (WebSocket, CONNECT) being relayed or waiting for the upstream's 101.",
            )?,
            l4_active: registry.gauge(
                "proxy_l4_connections_active",
                "TCP connections being relayed or connecting in L4 mode.",
            )?,
            l4_connections: registry.counter_vec(
                "proxy_l4_connections_total",
                "L4 connections by cluster and how they started (relayed, no_endpoint).",
                &["cluster", "outcome"],
            )?,
        })
    }
}

/// The status classes, in the order of [`status_class`]'s index.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The index of a status's class in [`CLASSES`] (`2xx` is 1).
fn status_class(status: StatusCode) -> usize {
    (usize::from(status.as_u16() / 100)).clamp(1, 5) - 1
}

/// One cluster's per-request series, looked up once: a label lookup hashes the label values
/// under a lock, which is worth avoiding on every request.
#[derive(Debug)]
pub struct ClusterSeries {
    by_class: [IntCounter; 5],
    duration: Histogram,
}

impl ClusterSeries {
    /// Counts a request answered with `status` after `seconds`.
    pub fn observe(&self, status: StatusCode, seconds: f64) {
        self.by_class[status_class(status)].inc();
        self.duration.observe(seconds);
    }
}

impl ProxyMetrics {
    /// The per-request series of `cluster` (or [`NO_CLUSTER`]).
    pub fn series(&self, cluster: &str) -> Arc<ClusterSeries> {
        let by_class = CLASSES.map(|class| self.requests.with_label_values(&[cluster, class]));
        Arc::new(ClusterSeries {
            by_class,
            duration: self.duration.with_label_values(&[cluster]),
        })
    }
}

/// How often the counters `http1` keeps are copied into the metrics.
pub const SAMPLE_PERIOD: Duration = Duration::from_secs(1);

/// Copies the counters `http1` keeps (it knows nothing of Prometheus) into the metrics every
/// [`SAMPLE_PERIOD`]: the pools' counters, and the connections of each listener's workers
/// (`listeners`: name and accept group). A cluster replaced by a reload starts from zero, and
/// only what it added since its last sample is counted. Ends when the proxy is dropped.
pub async fn sample(
    proxy: Weak<crate::proxy::Proxy>,
    listeners: Vec<(&'static str, Arc<AcceptGroup>)>,
) {
    let mut last: Vec<(Weak<crate::cluster::Cluster>, ClientStats)> = Vec::new();
    let mut tick = tokio::time::interval(SAMPLE_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(proxy) = proxy.upgrade() else { return };
        let metrics = proxy.metrics();
        for (listener, group) in &listeners {
            for (worker, open) in group.open().into_iter().enumerate() {
                metrics
                    .connections_active
                    .with_label_values(&[*listener, worker.to_string().as_str()])
                    .set(open as i64);
            }
        }
        metrics.tunnels_active.set(proxy.tunnels_open() as i64);
        let table = proxy.table();
        let mut next = Vec::with_capacity(table.clusters.len());
        for cluster in &table.clusters {
            let stats = cluster.client().stats();
            let before = last
                .iter()
                .find(|(seen, _)| std::ptr::eq(seen.as_ptr(), Arc::as_ptr(cluster)))
                .map_or_else(ClientStats::default, |(_, stats)| *stats);
            let name = [cluster.name.as_str()];
            metrics
                .connections_opened
                .with_label_values(&name)
                .inc_by(stats.connections_opened - before.connections_opened);
            metrics
                .connections_reused
                .with_label_values(&name)
                .inc_by(stats.connections_reused - before.connections_reused);
            metrics
                .connections_idle
                .with_label_values(&name)
                .set(stats.idle_connections as i64);
            next.push((Arc::downgrade(cluster), stats));
        }
        last = next;
    }
}
