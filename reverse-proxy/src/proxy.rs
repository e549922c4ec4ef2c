//! The L7 request path: from a request received on a listener to the response relayed back.
//! This is the reusable piece: the API gateway calls [`Proxy::handle`] (or
//! [`Proxy::forward_to`] with a cluster it chose itself) from its own handler.
//!
//! ```text
//!  Request (from http1::server)
//!    │  X-Request-Id kept or generated (proxy.request_id)     request_id.rs
//!    │  CONNECT refused (405): this is not a forward proxy
//!    ▼
//!  route: Host + path prefix ──no match──▶ 404              route.rs
//!    ▼
//!  rewrite the head: hop-by-hop fields out, Upgrade back     headers.rs
//!    if upgrading; Via in, and X-Forwarded-*, Forwarded (proxy.forwarded_headers);
//!    target in origin-form
//!    ▼
//!  pick an endpoint (balancer over healthy endpoints) ──none──▶ 503   cluster.rs, balance/
//!    ▼
//!  http1::Client::send_head (pooled connection, connect and request timeouts; every try
//!    sends the same head)
//!    │  connect failure ──▶ 502 · timeout ──▶ 504 · reset ──▶ 502 · malformed ──▶ 502   error.rs
//!    ▼
//!  response head: hop-by-hop fields out, Via in, X-Request-Id echoed (proxy.request_id)
//!    │  101 to an upgrade: both sides become a raw tunnel     tunnel.rs
//!    ▼
//!  Response to http1::server; its body streams from the upstream connection as the client
//!  reads it (back-pressure both ways), and when it ends or is dropped: the endpoint's
//!  in-flight count goes down, metrics and the access log line are written.
//! ```
//!
//! A reload swaps the whole [`Table`] (routes and clusters) at once; each request takes the
//! table current when it starts and keeps it to the end.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, Entry, HeaderValue};
use http::{Method, StatusCode, Version};
use http1::{Body, BodyStream, Frame, Request, RequestHead, Response};
use service_kit::metrics::IntGauge;
use service_kit::shutdown::Shutdown;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::circuit_breaker::RequestSlot;
use crate::cluster::{Cluster, InFlight};
use crate::config::{Config, MAX_RETRIES, RetryConfig};
use crate::error::ProxyError;
use crate::headers::{self, Forwarding, Scheme};
use crate::health;
use crate::metrics::{ClusterSeries, NO_CLUSTER, ProxyMetrics};
use crate::outlier::Outcome;
use crate::request_id::{self, RequestIds, X_REQUEST_ID};
use crate::retry::{self, RetryPermit};
use crate::route::Router;
use crate::tunnel::{self, TunnelLimit};

/// Routes and clusters: everything a reload replaces.
#[derive(Debug)]
pub struct Table {
    pub router: Router,
    pub clusters: Vec<Arc<Cluster>>,
}

impl Table {
    /// Builds the run-time table from a validated config.
    pub fn build(config: &Config, seed: u64, metrics: &ProxyMetrics) -> Result<Table, String> {
        let mut clusters = Vec::with_capacity(config.clusters.len());
        for (i, (name, cluster)) in config.clusters.iter().enumerate() {
            let seed = seed.wrapping_add(i as u64);
            clusters.push(Arc::new(Cluster::new(name, cluster, seed, metrics)?));
        }
        let names: Vec<&String> = config.clusters.keys().collect();
        let router = Router::new(&config.routes, |name| {
            names.iter().position(|n| n.as_str() == name)
        });
        Ok(Table { router, clusters })
    }

    pub fn cluster(&self, name: &str) -> Option<&Arc<Cluster>> {
        self.clusters.iter().find(|c| c.name == name)
    }
}

/// The proxy: the current table and what every request shares.
#[derive(Debug)]
pub struct Proxy {
    table: RwLock<Arc<Table>>,
    /// The `Via` pseudonym (also the `Proxy-Status` name).
    pseudonym: String,
    via_11: HeaderValue,
    via_10: HeaderValue,
    /// Generates `X-Request-Id`s; `None` when `proxy.request_id` is off.
    ids: Option<RequestIds>,
    /// `proxy.forwarded_headers`.
    forwarded_headers: bool,
    metrics: ProxyMetrics,
    /// The series of requests that matched no route.
    unrouted: Arc<ClusterSeries>,
    access_log: bool,
    tunnels: TunnelLimit,
    /// `proxy.max_tunnels`, the permits `tunnels` started with.
    max_tunnels: usize,
    shutdown: Shutdown,
}

/// Where a request came from, as the listener knows it.
#[derive(Clone, Copy, Debug)]
pub struct Downstream {
    pub scheme: Scheme,
}

impl Proxy {
    /// A proxy serving `config` (already validated). `shutdown` tracks the tunnels of
    /// upgraded connections.
    pub fn new(
        config: &Config,
        metrics: ProxyMetrics,
        shutdown: Shutdown,
    ) -> Result<Proxy, String> {
        let table = Table::build(config, seed_from_clock(), &metrics)?;
        start_health_checks(&table, &shutdown);
        let pseudonym = config.proxy.via.clone();
        Ok(Proxy {
            table: RwLock::new(Arc::new(table)),
            via_11: headers::via_value(Version::HTTP_11, &pseudonym),
            via_10: headers::via_value(Version::HTTP_10, &pseudonym),
            pseudonym,
            ids: config.proxy.request_id.then(RequestIds::default),
            forwarded_headers: config.proxy.forwarded_headers,
            unrouted: metrics.series(NO_CLUSTER),
            metrics,
            access_log: config.proxy.access_log,
            tunnels: Arc::new(Semaphore::new(config.proxy.max_tunnels)),
            max_tunnels: config.proxy.max_tunnels,
            shutdown,
        })
    }

    /// Tunnels being relayed now, with the upgrade requests still waiting for their answer.
    pub fn tunnels_open(&self) -> usize {
        self.max_tunnels - self.tunnels.available_permits()
    }

    /// The table requests start on now.
    pub fn table(&self) -> Arc<Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the table; requests already started keep the old one. The new clusters'
    /// health checks start; the old ones' stop when their last request is done.
    pub fn swap_table(&self, table: Table) {
        start_health_checks(&table, &self.shutdown);
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
    }

    /// Replaces routes and clusters with those of `config` (validated by the caller).
    /// Endpoints that stay keep their active-health verdict; the health gauges of endpoints
    /// that are gone are removed.
    pub fn reload(&self, config: &Config) -> Result<(), String> {
        let table = Table::build(config, seed_from_clock(), &self.metrics)?;
        let old = self.table();
        for cluster in &table.clusters {
            if let Some(before) = old.cluster(&cluster.name) {
                cluster.inherit_health(before);
            }
        }
        self.swap_table(table);
        let new = self.table();
        for cluster in &old.clusters {
            for endpoint in cluster.endpoints() {
                let kept = new
                    .cluster(&cluster.name)
                    .is_some_and(|c| c.endpoints().iter().any(|e| e.address == endpoint.address));
                if !kept {
                    let address = endpoint.address.to_string();
                    let labels = [cluster.name.as_str(), address.as_str()];
                    let _ = self.metrics.endpoint_healthy.remove_label_values(&labels);
                }
            }
        }
        Ok(())
    }

    /// The metric handles, to build a new table for a reload.
    pub fn metrics(&self) -> &ProxyMetrics {
        &self.metrics
    }

    /// Serves one request received from a client: routes it, forwards it, and relays the
    /// answer (or answers itself when that fails).
    pub async fn handle(&self, request: Request, downstream: Downstream) -> Response {
        let table = self.table();
        let routed = self.route(&table, &request).cloned();
        self.serve(routed, request, downstream).await.0
    }

    /// [`Proxy::handle`] for a request whose cluster the caller chose (the API gateway routes
    /// by its own rules): the same request id, forwarding, retries, metrics and access log.
    /// Returns the response and, when the proxy answered itself, why (a caller deciding whether
    /// the upstream may have acted on the request reads [`ProxyError::nothing_sent`]).
    pub async fn handle_in(
        &self,
        cluster: &Arc<Cluster>,
        request: Request,
        downstream: Downstream,
    ) -> (Response, Option<ProxyError>) {
        self.serve(Ok(cluster.clone()), request, downstream).await
    }

    async fn serve(
        &self,
        routed: Result<Arc<Cluster>, ProxyError>,
        mut request: Request,
        downstream: Downstream,
    ) -> (Response, Option<ProxyError>) {
        let started = Instant::now();
        let id = match &self.ids {
            Some(ids) => Some(ids.ensure(&mut request.head.headers)),
            // The client's id is still logged, if it is one a log line can carry.
            None => request
                .head
                .headers
                .get(&X_REQUEST_ID)
                .filter(|id| request_id::is_usable(id))
                .cloned(),
        };
        let mut record = Record {
            id,
            method: request.head.method.clone(),
            // Only the access log reads it: no copy without one.
            path: match self.access_log {
                true => request.head.path().to_owned(),
                false => String::new(),
            },
            client: request.remote_addr,
            cluster: None,
            started,
            _active: Active::new(&self.metrics.active),
        };
        let result = match routed {
            Ok(cluster) => {
                record.cluster = Some(cluster.clone());
                self.forward_to(&cluster, request, downstream).await
            }
            Err(error) => Err(error),
        };
        let (mut response, upstream, failure) = match result {
            Ok((response, upstream)) => (response, Some(upstream), None),
            Err(error) => {
                tracing::debug!(request_id = ?record.id, %error, "answered by the proxy");
                (error.to_response(&self.pseudonym), None, Some(error))
            }
        };
        // The id goes back to the client only when this proxy is the one that gives ids.
        if self.ids.is_some()
            && let Some(id) = &record.id
            && let Entry::Vacant(entry) = response.head.headers.entry(&X_REQUEST_ID)
        {
            entry.insert(id.clone());
        }
        (self.finish(response, record, upstream), failure)
    }

    fn route<'t>(
        &self,
        table: &'t Table,
        request: &Request,
    ) -> Result<&'t Arc<Cluster>, ProxyError> {
        if request.head.method == Method::CONNECT {
            return Err(ProxyError::MethodNotAllowed);
        }
        let host = request
            .head
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok());
        let index = table
            .router
            .route(host, request.head.path())
            .ok_or(ProxyError::NoRoute)?;
        Ok(&table.clusters[index])
    }

    /// Forwards `request` to an endpoint of `cluster`, retrying as the cluster's policy
    /// allows (`retry.rs`), and returns the upstream's response, its head rewritten for the
    /// client, with the guard that counts it in flight.
    pub async fn forward_to(
        &self,
        cluster: &Arc<Cluster>,
        mut request: Request,
        downstream: Downstream,
    ) -> Result<(Response, Upstream), ProxyError> {
        let slot = cluster
            .breaker
            .admit()
            .map_err(|limit| rejected(cluster, limit))?;
        let client_upgrade = request.take_upgrade();
        let client = request.remote_addr;
        let upgrading =
            self.prepare_request(&mut request, client, downstream, client_upgrade.is_some());
        let tunnel_permit = match upgrading {
            true => Some(
                self.tunnels
                    .clone()
                    .try_acquire_owned()
                    .map_err(|_| rejected(cluster, "max_tunnels"))?,
            ),
            false => None,
        };
        let key = cluster.key_of(&request.head, client);
        let idempotent = request.head.is_idempotent();
        let policy = &cluster.config.retry;
        let mut tries = Tries::new(request, upgrading, policy);
        if tries.unread.is_some() {
            // Boxed: the read's state would otherwise size this future, and the ones enclosing
            // it, for every request, most of which have no body to read.
            Box::pin(tries.buffer(policy.max_buffered_body_bytes)).await?;
        }
        // The endpoints tried, in order: at most one try plus MAX_RETRIES, so no allocation.
        let max_retries = policy.max_retries.min(MAX_RETRIES) as usize;
        let mut tried = [0; MAX_RETRIES as usize + 1];
        let mut tries_made = 0;
        let mut _retry_permit = None;
        loop {
            let index = cluster.pick(key, &tried[..tries_made]).ok_or_else(|| {
                ProxyError::NoHealthyEndpoint {
                    cluster: cluster.name.clone(),
                }
            })?;
            tried[tries_made] = index;
            tries_made += 1;
            // A retry follows only while this holds, so `tried` never overflows.
            let retries_left = tries_made <= max_retries;
            let connection = cluster
                .breaker
                .connection(cluster.config.timeouts.connect())
                .await
                .map_err(|limit| rejected(cluster, limit))?;
            let in_flight = cluster.start_request(index);
            let endpoint = in_flight.endpoint().address;
            let (body, replayable) = tries.next();
            let may_retry = retries_left && replayable;
            // The upstream exchange's state (2.4 KB: client, connection, reader, writer)
            // lives on the heap: inline, it would make this future and every one enclosing it
            // that much larger, and each is copied whole when created.
            let http_client = cluster.client();
            let sent = Box::pin(cluster.send_with(http_client, endpoint, &tries.head, body)).await;
            let permit = match sent {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let outcome = match status >= 500 {
                        true => Outcome::ServerError,
                        false => Outcome::Success,
                    };
                    cluster.record(index, outcome);
                    let retry = may_retry && retry::retryable_status(status, idempotent, policy);
                    match retry.then(|| start_retry(cluster)).flatten() {
                        Some(permit) => {
                            tracing::debug!(%endpoint, status, "retrying a retryable status");
                            permit
                        }
                        None => {
                            let upstream = Upstream {
                                in_flight,
                                _slot: slot,
                                _connection: connection,
                            };
                            let response =
                                self.relay_head(response, endpoint, client_upgrade, tunnel_permit)?;
                            return Ok((response, upstream));
                        }
                    }
                }
                Err(e) => {
                    let error = ProxyError::from_client(endpoint, e);
                    if error.is_endpoint_failure() {
                        let outcome = match error.nothing_sent() {
                            true => Outcome::ConnectFailure,
                            false => Outcome::ServerError,
                        };
                        cluster.record(index, outcome);
                    }
                    let retry = may_retry && retry::retryable_error(&error, idempotent, policy);
                    match retry.then(|| start_retry(cluster)).flatten() {
                        Some(permit) => {
                            tracing::debug!(%endpoint, %error, "retrying a failed try");
                            permit
                        }
                        None => return Err(error),
                    }
                }
            };
            // The permit counts this retry in the budget until its own outcome is known.
            _retry_permit = Some(permit);
            drop((in_flight, connection));
            let wait = retry::backoff(tries_made as u32, policy, &cluster.rng);
            tokio::time::sleep(wait).await;
        }
    }

    /// Rewrites the upstream's response head for the client, and opens the tunnel of an
    /// accepted upgrade.
    fn relay_head(
        &self,
        mut response: Response,
        endpoint: SocketAddr,
        client_upgrade: Option<http1::OnUpgrade>,
        tunnel_permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Result<Response, ProxyError> {
        let accepted_upgrade = headers::remove_hop_by_hop(&mut response.head.headers);
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let (Some(from_client), Some(from_server), Some(permit), Some(protocol)) = (
                client_upgrade,
                response.take_upgrade(),
                tunnel_permit,
                accepted_upgrade,
            ) else {
                return Err(ProxyError::UpstreamProtocol {
                    endpoint,
                    source: http1::Error::Other(
                        "101 to a request that asked for no upgrade".into(),
                    ),
                });
            };
            headers::restore_upgrade(&mut response.head.headers, protocol);
            tunnel::spawn(from_client, from_server, permit, &self.shutdown);
        }
        response
            .head
            .headers
            .append(header::VIA, self.via_11.clone());
        Ok(response)
    }

    /// Rewrites the request head for the upstream (see `headers.rs`). Returns whether an
    /// upgrade is being forwarded.
    fn prepare_request(
        &self,
        request: &mut Request,
        client: Option<SocketAddr>,
        downstream: Downstream,
        client_can_upgrade: bool,
    ) -> bool {
        let head = &mut request.head;
        let upgrade = headers::remove_hop_by_hop(&mut head.headers);
        let upgrading = match upgrade {
            Some(protocol) if client_can_upgrade => {
                headers::restore_upgrade(&mut head.headers, protocol);
                true
            }
            _ => false,
        };
        let via = match head.version {
            Version::HTTP_10 => &self.via_10,
            _ => &self.via_11,
        };
        if self.forwarded_headers {
            let forwarding = Forwarding {
                client,
                scheme: downstream.scheme,
            };
            headers::add_forwarding(&mut head.headers, forwarding);
        }
        head.headers.append(header::VIA, via.clone());
        if let Some(origin_form) = origin_form(&head.target) {
            head.target = origin_form;
        }
        upgrading
    }

    /// Wraps the response body so that the end of the exchange (body relayed, failed, or
    /// dropped) is recorded once: in-flight count, metrics, access log.
    fn finish(
        &self,
        mut response: Response,
        record: Record,
        upstream: Option<Upstream>,
    ) -> Response {
        let body = std::mem::take(&mut response.body);
        let status = response.status();
        let series = match &record.cluster {
            Some(cluster) => cluster.series.clone(),
            None => self.unrouted.clone(),
        };
        response.body = Body::from_stream(Relayed {
            body,
            bytes: 0,
            complete: false,
            end: Some(End {
                record,
                status,
                upstream,
                series,
                access_log: self.access_log,
            }),
        });
        response
    }
}

/// Answers a request refused by a circuit-breaker limit, and counts it.
fn rejected(cluster: &Cluster, limit: &'static str) -> ProxyError {
    cluster
        .metrics
        .rejections
        .with_label_values(&[cluster.name.as_str(), limit])
        .inc();
    ProxyError::CircuitOpen {
        cluster: cluster.name.clone(),
        limit,
    }
}

/// A permit for one retry if the cluster's budget allows it; counts the retry or its refusal.
fn start_retry(cluster: &Cluster) -> Option<RetryPermit> {
    let name = [cluster.name.as_str()];
    match cluster
        .retry_budget
        .try_start(cluster.breaker.requests(), &cluster.config.retry)
    {
        Some(permit) => {
            cluster.metrics.retries.with_label_values(&name).inc();
            Some(permit)
        }
        None => {
            tracing::debug!(cluster = %cluster.name, "retry budget spent: not retrying");
            cluster
                .metrics
                .retries_over_budget
                .with_label_values(&name)
                .inc();
            None
        }
    }
}

/// What a request holds on its cluster while its response streams: its place under the
/// circuit-breaker limits and its count in the endpoint's load.
#[derive(Debug)]
pub struct Upstream {
    in_flight: InFlight,
    _slot: RequestSlot,
    _connection: OwnedSemaphorePermit,
}

impl Upstream {
    pub fn endpoint(&self) -> SocketAddr {
        self.in_flight.endpoint().address
    }
}

/// The request, ready to be sent once or several times. The client only reads the head, so
/// every try sends the same one, uncopied.
///
/// A body that can be sent again is kept in memory: an empty one, or one whose announced
/// length is at most `retry.max_buffered_body_bytes` (read whole before the first try). Any
/// other body streams through once, and its request is not retried after the first try.
struct Tries {
    head: RequestHead,
    /// A body to keep for retries, still to be read whole ([`Tries::buffer`]).
    unread: Option<Body>,
    /// The body for a retry, when there can be one.
    replay: Option<Bytes>,
    /// The body of a request that cannot be retried.
    stream: Option<Body>,
}

impl Tries {
    /// The tries of `request`. A body to keep for retries that is not in memory yet is left
    /// in `unread`, for the caller to read with [`Tries::buffer`] before the first try.
    fn new(request: Request, upgrading: bool, policy: &RetryConfig) -> Tries {
        let Request { head, body, .. } = request;
        let limit = policy.max_buffered_body_bytes;
        let replayable = !upgrading && policy.max_retries > 0;
        let mut tries = Tries {
            head,
            unread: None,
            replay: None,
            stream: None,
        };
        match body.exact_len() {
            Some(0) if replayable => tries.replay = Some(Bytes::new()),
            Some(len) if replayable && len <= limit => tries.unread = Some(body),
            _ => tries.stream = Some(body),
        }
        tries
    }

    /// Reads the `unread` body whole (at most `limit` bytes) to send it with every try.
    async fn buffer(&mut self, limit: u64) -> Result<(), ProxyError> {
        if let Some(body) = self.unread.take() {
            let collected = body.collect(limit).await.map_err(ProxyError::RequestBody)?;
            self.replay = Some(collected.data);
        }
        Ok(())
    }

    /// The body for the next try, and whether it could be sent again after this one.
    fn next(&mut self) -> (Body, bool) {
        let body = match (&self.replay, self.stream.take()) {
            (Some(bytes), _) => Body::full(bytes.clone()),
            (None, Some(stream)) => stream,
            (None, None) => Body::empty(),
        };
        (body, self.replay.is_some())
    }
}

/// `http://host/path?q` -> `/path?q`; `None` when the target is already origin-form (or `*`).
/// A gateway forwards origin-form (RFC 9112 section 3.2.1): the upstream is an origin server.
fn origin_form(target: &str) -> Option<String> {
    if target.starts_with('/') || target == "*" {
        return None;
    }
    let after_scheme = target.split_once("://")?.1;
    let rest = &after_scheme[after_scheme.find(['/', '?']).unwrap_or(after_scheme.len())..];
    Some(match rest.starts_with('/') {
        true => rest.to_owned(),
        false => format!("/{rest}"),
    })
}

fn start_health_checks(table: &Table, shutdown: &Shutdown) {
    let seed = seed_from_clock();
    for (i, cluster) in table.clusters.iter().enumerate() {
        health::spawn_checks(cluster, shutdown, seed.wrapping_add(i as u64));
    }
}

pub(crate) fn seed_from_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// What the access log says about a request, gathered as it goes.
#[derive(Debug)]
struct Record {
    /// The request's `X-Request-Id`, if it has one.
    id: Option<HeaderValue>,
    method: Method,
    path: String,
    client: Option<SocketAddr>,
    cluster: Option<Arc<Cluster>>,
    started: Instant,
    _active: Active,
}

/// Counts a request in `proxy_requests_active` for as long as it lives, however it ends.
#[derive(Debug)]
struct Active(IntGauge);

impl Active {
    fn new(gauge: &IntGauge) -> Active {
        gauge.inc();
        Active(gauge.clone())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Recorded when the response body ends or is dropped.
#[derive(Debug)]
struct End {
    record: Record,
    status: StatusCode,
    upstream: Option<Upstream>,
    series: Arc<ClusterSeries>,
    access_log: bool,
}

impl End {
    fn record(self, bytes: u64, complete: bool) {
        let elapsed = self.record.started.elapsed();
        let cluster = self
            .record
            .cluster
            .as_ref()
            .map_or(NO_CLUSTER, |c| c.name.as_str());
        self.series.observe(self.status, elapsed.as_secs_f64());
        if self.access_log {
            let endpoint = self.upstream.as_ref().map(Upstream::endpoint);
            tracing::info!(
                target: "reverse_proxy::access",
                request_id = self.record.id.as_ref().and_then(|id| id.to_str().ok()).unwrap_or("-"),
                client = ?self.record.client,
                method = %self.record.method,
                path = %self.record.path,
                status = self.status.as_u16(),
                cluster,
                endpoint = ?endpoint,
                bytes,
                complete,
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                "request",
            );
        }
    }
}

/// The response body on its way to the client, counting what passes.
struct Relayed {
    body: Body,
    bytes: u64,
    /// The body reached its end (as opposed to failing or being dropped half-read).
    complete: bool,
    end: Option<End>,
}

impl BodyStream for Relayed {
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<http1::Result<Frame>>> {
        let this = self.get_mut();
        let polled = this.body.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(Frame::Data(data)))) => this.bytes += data.len() as u64,
            Poll::Ready(None) => {
                this.complete = true;
                this.end_now();
            }
            Poll::Ready(Some(Err(_))) => this.end_now(),
            _ => {}
        }
        polled
    }

    fn exact_len(&self) -> Option<u64> {
        self.body.exact_len()
    }
}

impl Relayed {
    fn end_now(&mut self) {
        if let Some(end) = self.end.take() {
            end.record(self.bytes, self.complete);
        }
    }
}

impl Drop for Relayed {
    fn drop(&mut self) {
        self.end_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_form_targets_become_origin_form() {
        assert_eq!(origin_form("/a?b"), None);
        assert_eq!(origin_form("*"), None);
        assert_eq!(
            origin_form("http://h:80/a/b?c=d").as_deref(),
            Some("/a/b?c=d")
        );
        assert_eq!(origin_form("http://h").as_deref(), Some("/"));
        assert_eq!(origin_form("http://h?x=1").as_deref(), Some("/?x=1"));
    }
}
