//! A cluster at run time: its endpoints' live state, its balancer, and the connection pool
//! that reaches them.
//!
//! Built from a `ClusterConfig` when the configuration is loaded (or reloaded); shared by every
//! request routed to it through an `Arc`, so a request that started before a reload finishes on
//! the cluster it started with.
//!
//! Invariant: `Endpoint::in_flight` counts the requests holding an [`InFlight`] guard for that
//! endpoint; the guard is the only thing that changes it, and it lives until the response body
//! has been relayed (or dropped), so `least_conn` and `p2c` see the load the endpoint really
//! carries, streaming bodies included.
//!
//! # Which endpoints a pick may choose
//!
//! An endpoint is *usable* when its active health checks pass (`health.rs`) and outlier
//! detection has not ejected it (`outlier.rs`). Normally only usable endpoints are picked.
//! But when fewer than `panic_threshold_percent` of the endpoints are usable, the cluster
//! *panics* (Envoy's word): it ignores health and balances over all of them. If most of a
//! cluster looks down, either the checks are wrong or the survivors would collapse under the
//! whole load; spreading it keeps some requests succeeding in both cases.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use http1::client::{Client, ClientConfig};
use http1::{Body, Limits, RequestHead};

use crate::balance::{self, Balancer, Candidates, HashKey, PickRng};
use crate::circuit_breaker::CircuitBreaker;
use crate::config::ClusterConfig;
use crate::metrics::{ClusterSeries, ProxyMetrics};
use crate::outlier::{Clock, Outcome, OutlierState};
use crate::retry::RetryBudget;

/// One upstream server and what the proxy knows about it now.
#[derive(Debug)]
pub struct Endpoint {
    pub address: SocketAddr,
    pub weight: u32,
    /// Where active health checks probe it (`address` unless configured otherwise).
    pub health_address: SocketAddr,
    /// Requests in flight (see the module invariant).
    in_flight: AtomicU64,
    /// Whether active health checks pass (true when there are none).
    healthy: AtomicBool,
    outlier: OutlierState,
}

impl Endpoint {
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Whether active health checks pass.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Healthy and not ejected at `now_ms`.
    fn is_usable(&self, now_ms: u64) -> bool {
        self.is_healthy() && !self.outlier.is_ejected(now_ms)
    }
}

/// A cluster of endpoints.
#[derive(Debug)]
pub struct Cluster {
    pub name: String,
    pub config: ClusterConfig,
    endpoints: Vec<Endpoint>,
    balancer: Box<dyn Balancer>,
    client: Client,
    clock: Clock,
    pub breaker: CircuitBreaker,
    pub retry_budget: RetryBudget,
    /// Jitter of retry backoffs.
    pub rng: PickRng,
    pub metrics: ProxyMetrics,
    /// This cluster's request counters and latency histogram.
    pub series: Arc<ClusterSeries>,
    /// TLS to the endpoints, when configured.
    tls: Option<UpstreamTls>,
}

/// What a TLS connection to an endpoint needs.
struct UpstreamTls {
    connector: tokio_rustls::TlsConnector,
    name: rustls_pki_types::ServerName<'static>,
    /// `Host` for a request that has none (an HTTP/1.0 client's): the name the upstream's
    /// certificate is checked against. `None` if it cannot be a field value.
    host: Option<http::HeaderValue>,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("name", &self.name)
            .finish()
    }
}

impl Cluster {
    /// Builds the run-time cluster. `seed` drives the balancer's random choices. Fails only
    /// when the client settings derived from the config are invalid, which validation rules
    /// out; the error names the cluster.
    pub fn new(
        name: &str,
        config: &ClusterConfig,
        seed: u64,
        metrics: &ProxyMetrics,
    ) -> Result<Cluster, String> {
        let endpoints = config
            .endpoints
            .iter()
            .map(|e| Endpoint {
                address: e.address,
                weight: e.weight,
                health_address: e.health_address.unwrap_or(e.address),
                in_flight: AtomicU64::new(0),
                healthy: AtomicBool::new(true),
                outlier: OutlierState::default(),
            })
            .collect();
        let client = Client::new(client_config(config))
            .map_err(|e| format!("cluster {name}: client settings: {e}"))?;
        let tls = match &config.upstream_tls {
            Some(tls) => {
                let field = format!("clusters.{name}.upstream_tls");
                let client_config =
                    crate::tls::client_config(tls, &field).map_err(|e| e.to_string())?;
                let server_name = rustls_pki_types::ServerName::try_from(tls.server_name.clone())
                    .map_err(|e| format!("{field}.server_name: {e}"))?;
                Some(UpstreamTls {
                    connector: tokio_rustls::TlsConnector::from(client_config),
                    name: server_name,
                    host: http::HeaderValue::from_str(&tls.server_name).ok(),
                })
            }
            None => None,
        };
        let cluster = Cluster {
            name: name.to_owned(),
            config: config.clone(),
            endpoints,
            balancer: balance::build(config, seed),
            client,
            clock: Clock::default(),
            breaker: CircuitBreaker::new(&config.circuit_breaker),
            retry_budget: RetryBudget::default(),
            rng: PickRng::new(seed ^ 0x2545_f491_4f6c_dd1d),
            metrics: metrics.clone(),
            series: metrics.series(name),
            tls,
        };
        for endpoint in &cluster.endpoints {
            cluster.health_gauge(endpoint.address).set(1);
        }
        Ok(cluster)
    }

    fn health_gauge(&self, address: SocketAddr) -> service_kit::metrics::IntGauge {
        self.metrics
            .endpoint_healthy
            .with_label_values(&[self.name.as_str(), address.to_string().as_str()])
    }

    /// Sets the verdict of active health checks on endpoint `index`.
    pub fn set_active_health(&self, index: usize, healthy: bool) {
        let endpoint = &self.endpoints[index];
        let was = endpoint.healthy.swap(healthy, Ordering::Relaxed);
        if was != healthy {
            tracing::info!(cluster = %self.name, endpoint = %endpoint.address, healthy, "active health changed");
            self.health_gauge(endpoint.address).set(i64::from(healthy));
        }
    }

    /// Takes over the verdict of active health checks from the cluster this one replaces
    /// (a reload), for the endpoints both have: a reload must not put an endpoint known to be
    /// down back into rotation until its checks fail again.
    pub fn inherit_health(&self, old: &Cluster) {
        for endpoint in &self.endpoints {
            let Some(before) = old.endpoints.iter().find(|e| e.address == endpoint.address) else {
                continue;
            };
            let healthy = before.is_healthy();
            endpoint.healthy.store(healthy, Ordering::Relaxed);
            self.health_gauge(endpoint.address).set(i64::from(healthy));
        }
    }

    /// Counts the outcome of a try against endpoint `index` for outlier detection.
    pub fn record(&self, index: usize, outcome: Outcome) {
        let endpoint = &self.endpoints[index];
        if outcome == Outcome::Success {
            // The path of every good answer: counters reset, no clock read.
            endpoint.outlier.record_success();
            return;
        }
        let now_ms = self.clock.now_ms();
        let ejected_elsewhere = || {
            self.endpoints
                .iter()
                .filter(|e| e.outlier.is_ejected(now_ms))
                .count()
        };
        let ejected = endpoint.outlier.record(
            outcome,
            &self.config.outlier_detection,
            now_ms,
            ejected_elsewhere,
            self.endpoints.len(),
        );
        if ejected {
            tracing::warn!(cluster = %self.name, endpoint = %endpoint.address, ?outcome, "endpoint ejected");
            self.metrics
                .ejections
                .with_label_values(&[self.name.as_str()])
                .inc();
        }
    }

    /// Whether endpoint `index` is healthy and not ejected now.
    pub fn is_usable(&self, index: usize) -> bool {
        self.endpoints[index].is_usable(self.clock.now_ms())
    }

    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Sends one try to `endpoint` through `client`: on a pooled connection, or, with
    /// `upstream_tls`, on a new TLS connection (connect and handshake within
    /// `timeouts.connect_ms`; a failed handshake is a connect failure: nothing was sent).
    pub async fn send_with(
        &self,
        client: &Client,
        endpoint: SocketAddr,
        head: &RequestHead,
        body: Body,
    ) -> http1::Result<http1::Response> {
        match &self.tls {
            None => client.send_head(endpoint, head, body).await,
            // The handshake's state (a whole TLS connection) is on the heap: inline, it would
            // size this future, and every one enclosing it, for every request.
            Some(tls) => Box::pin(self.send_tls(tls, client, endpoint, head, body)).await,
        }
    }

    async fn send_tls(
        &self,
        tls: &UpstreamTls,
        client: &Client,
        endpoint: SocketAddr,
        head: &RequestHead,
        body: Body,
    ) -> http1::Result<http1::Response> {
        let connect = async {
            let tcp = tokio::net::TcpStream::connect(endpoint)
                .await
                .map_err(http1::Error::Connect)?;
            let _ = tcp.set_nodelay(true);
            tls.connector
                .connect(tls.name.clone(), tcp)
                .await
                .map_err(|e| {
                    let message = format!("TLS handshake: {e}");
                    http1::Error::Connect(std::io::Error::new(e.kind(), message))
                })
        };
        let stream = tokio::time::timeout(self.config.timeouts.connect(), connect)
            .await
            .map_err(|_| http1::Error::Timeout("connect"))??;
        // Every HTTP/1.1 request carries Host (RFC 9112 section 3.2); on a connection of its
        // own the client adds none, so a head without one (HTTP/1.0) gets a copy that has it.
        let with_host;
        let head = match (&tls.host, head.headers.contains_key(http::header::HOST)) {
            (Some(host), false) => {
                let mut copy = head.clone();
                copy.headers.insert(http::header::HOST, host.clone());
                with_host = copy;
                &with_host
            }
            _ => head,
        };
        client.send_head_on(stream, head, body).await
    }

    pub fn hash_key(&self) -> &HashKey {
        &self.config.hash_key
    }

    /// The hash of the request's affinity key, for the hashing balancers.
    pub fn key_of(&self, head: &RequestHead, client: Option<SocketAddr>) -> Option<u64> {
        self.config.hash_key.hash_of(head, client)
    }

    /// Picks an endpoint for a request, avoiding those in `tried` (earlier tries of the same
    /// request) when another is eligible. `None` when no endpoint is healthy.
    pub fn pick(&self, key: Option<u64>, tried: &[usize]) -> Option<usize> {
        // Ejection deadlines need the clock only once there is one (an endpoint that was never
        // ejected is not ejected at any time): most picks read no clock.
        let now_ms = match self.endpoints.iter().any(|e| e.outlier.was_ever_ejected()) {
            true => self.clock.now_ms(),
            false => 0,
        };
        let usable = self
            .endpoints
            .iter()
            .filter(|e| e.is_usable(now_ms))
            .count();
        let threshold = usize::from(self.config.panic_threshold_percent);
        let panic = usable * 100 < threshold * self.endpoints.len();
        let view = |tried| View {
            endpoints: &self.endpoints,
            tried,
            now_ms,
            panic,
        };
        if let Some(index) = self.balancer.pick(&view(tried), key) {
            return Some(index);
        }
        if tried.is_empty() {
            return None;
        }
        // Every usable endpoint was tried already: trying one again beats giving up.
        self.balancer.pick(&view(&[]), key)
    }

    /// Counts a request in flight to endpoint `index` until the guard is dropped.
    pub fn start_request(self: &Arc<Self>, index: usize) -> InFlight {
        self.endpoints[index]
            .in_flight
            .fetch_add(1, Ordering::Relaxed);
        InFlight {
            cluster: self.clone(),
            index,
        }
    }
}

/// The per-cluster `http1` client settings: timeouts and pool from the cluster's config.
fn client_config(config: &ClusterConfig) -> ClientConfig {
    let defaults = ClientConfig::default();
    ClientConfig {
        limits: Limits {
            idle_timeout: config.timeouts.idle(),
            ..defaults.limits.clone()
        },
        connect_timeout: config.timeouts.connect(),
        response_header_timeout: config.timeouts.request(),
        max_idle_per_endpoint: config.pool.max_idle_per_endpoint,
        idle_timeout: std::time::Duration::from_millis(config.pool.idle_timeout_ms),
        ..defaults
    }
}

/// The endpoints as one pick sees them.
struct View<'a> {
    endpoints: &'a [Endpoint],
    tried: &'a [usize],
    now_ms: u64,
    /// Below the panic threshold: health is ignored.
    panic: bool,
}

impl Candidates for View<'_> {
    fn count(&self) -> usize {
        self.endpoints.len()
    }

    fn is_eligible(&self, index: usize) -> bool {
        (self.panic || self.endpoints[index].is_usable(self.now_ms)) && !self.tried.contains(&index)
    }

    fn in_flight(&self, index: usize) -> u64 {
        self.endpoints[index].in_flight()
    }
}

/// A request in flight to one endpoint; see the module invariant.
#[derive(Debug)]
pub struct InFlight {
    cluster: Arc<Cluster>,
    index: usize,
}

impl InFlight {
    pub fn endpoint(&self) -> &Endpoint {
        &self.cluster.endpoints[self.index]
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.cluster.endpoints[self.index]
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::Algorithm;
    use crate::config::EndpointConfig;

    fn cluster(lb: Algorithm, n: usize) -> Arc<Cluster> {
        let config = ClusterConfig {
            endpoints: (0..n)
                .map(|i| EndpointConfig {
                    address: format!("127.0.0.1:{}", 9000 + i).parse().unwrap(),
                    weight: 1,
                    health_address: None,
                })
                .collect(),
            lb,
            ..ClusterConfig::default()
        };
        cluster_with(config)
    }

    fn cluster_with(config: ClusterConfig) -> Arc<Cluster> {
        let metrics = ProxyMetrics::register(&service_kit::metrics::Registry::new()).unwrap();
        Arc::new(Cluster::new("test", &config, 1, &metrics).unwrap())
    }

    #[test]
    fn in_flight_counts_live_guards() {
        let c = cluster(Algorithm::LeastConn, 2);
        let first = c.start_request(c.pick(None, &[]).unwrap());
        let first_index = c
            .endpoints()
            .iter()
            .position(|e| e.in_flight() == 1)
            .unwrap();
        // least_conn now prefers the other endpoint.
        let second = c.pick(None, &[]).unwrap();
        assert_ne!(second, first_index);
        drop(first);
        assert!(c.endpoints().iter().all(|e| e.in_flight() == 0));
    }

    #[test]
    fn a_retry_avoids_tried_endpoints_until_none_is_left() {
        let c = cluster(Algorithm::RoundRobin, 3);
        for _ in 0..6 {
            let picked = c.pick(None, &[0, 1]).unwrap();
            assert_eq!(picked, 2);
        }
        assert!(c.pick(None, &[0, 1, 2]).is_some());
    }

    #[test]
    fn unhealthy_and_ejected_endpoints_are_skipped() {
        let c = cluster(Algorithm::RoundRobin, 4);
        c.set_active_health(0, false);
        for _ in 0..5 {
            c.record(1, Outcome::ConnectFailure);
        }
        assert!(!c.is_usable(1), "five connect failures eject");
        for _ in 0..8 {
            let picked = c.pick(None, &[]).unwrap();
            assert!(picked == 2 || picked == 3, "picked {picked}");
        }
    }

    #[test]
    fn below_the_panic_threshold_every_endpoint_is_used_again() {
        let mut config = cluster(Algorithm::RoundRobin, 4).config.clone();
        config.panic_threshold_percent = 50;
        let c = cluster_with(config.clone());
        // Two of four down: 50% usable is not below 50%, so only the usable two are picked.
        c.set_active_health(0, false);
        c.set_active_health(1, false);
        let picked: std::collections::BTreeSet<_> =
            (0..8).map(|_| c.pick(None, &[]).unwrap()).collect();
        assert_eq!(picked, [2, 3].into());
        // Three of four down: panic, all four are picked.
        c.set_active_health(2, false);
        let picked: std::collections::BTreeSet<_> =
            (0..8).map(|_| c.pick(None, &[]).unwrap()).collect();
        assert_eq!(picked, [0, 1, 2, 3].into());
        // With the threshold off, only the last usable endpoint is left.
        config.panic_threshold_percent = 0;
        let strict = cluster_with(config);
        for i in 0..3 {
            strict.set_active_health(i, false);
        }
        assert!((0..8).all(|_| strict.pick(None, &[]) == Some(3)));
        strict.set_active_health(3, false);
        assert_eq!(strict.pick(None, &[]), None);
    }
}
