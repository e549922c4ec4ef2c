//! The request lifecycle: every request runs the same phases, in this order, each in its own
//! module under `phase/`. A phase either lets the request go on (possibly changed) or answers
//! it ([`GatewayError`], one JSON shape for every refusal).
//!
//! ```text
//!  Request (from http1::server)
//!    │  X-Request-Id kept or generated; one clock reading for every phase
//!    ▼
//!  1 route            host, path ({params}), headers, method ─▶ route     404 · 405 + Allow
//!    │                dot segments refused                                400
//!    │  CORS preflight answered here, before credentials                  204 · 403   cors.rs
//!    ▼
//!  2 authenticate     API key (digest) or JWT bearer ─▶ identity, consumer, scopes
//!    │                                                                    401 + WWW-Authenticate · 403
//!    ▼
//!  3 rate limit       the route's policies, then the consumer's plan's, each keyed by
//!    │                consumer, API key, client IP, route or header        429 + Retry-After
//!    │                (local or in the kv-store; a store down fails open or closed)
//!    ▼
//!  4 idempotency      POST/PATCH with Idempotency-Key: first ─▶ go on; same request again
//!    │                ─▶ the stored response; still running ─▶ 409; other request ─▶ 422
//!    ▼
//!  5 circuit breaker  the chosen cluster's breaker admits the call, or     503 + Retry-After
//!    ▼
//!  6 upstream         canary split picks the cluster; rewrite, header transforms, claims
//!    │                as headers, credentials stripped; reverse_proxy::Proxy forwards with
//!    │                its balancing, health, retries and pool; the route's timeout  504
//!    │  the outcome goes back to the breaker (5xx and failures count against it) and to
//!    │  the idempotency store (stored, or released when nothing reached the upstream)
//!    ▼
//!  7 respond          the route's response header transforms, CORS fields, RateLimit
//!                     fields, X-Request-Id; metrics and the access log when the body ends
//! ```
//!
//! A reload swaps the whole [`Table`] (routes, credentials, policies, breakers) at once; a
//! request keeps the table it started with. Policies and breakers whose config did not
//! change carry their state over, so a reload neither refills every bucket nor closes an open
//! circuit. The idempotency store lives outside the table: its keys survive reloads.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::HeaderName;
use http::header::HeaderValue;
use http1::{Body, BodyStream, Frame, Request, Response};
use reverse_proxy::headers::Scheme;
use reverse_proxy::proxy::{Downstream, Proxy};
use reverse_proxy::request_id::{RequestIds, X_REQUEST_ID};

use crate::auth::{Authenticator, Identity};
use crate::circuit_breaker::{BreakerConfig, CircuitBreaker};
use crate::clock::Clock;
use crate::config::{Config, GatewaySettings};
use crate::cors::{self, Cors};
use crate::error::GatewayError;
use crate::idempotency::{IdempotencyConfig, Store};
use crate::metrics::{ANONYMOUS, GatewayMetrics, NO_ROUTE, UNKNOWN_CONSUMER, status_class};
use crate::phase::route::{self as routing, Matcher, PathPattern, Split};
use crate::phase::transform::HeaderTransform;
use crate::phase::{
    authenticate, circuit_breaker, idempotency, rate_limit, route, transform, upstream,
};
use crate::ratelimit::{Policy, PolicyConfig};

/// One route at run time.
#[derive(Debug)]
pub struct Route {
    pub name: String,
    /// `route:NAME`, the rate-limit key of `key = "route"`.
    pub limit_key: String,
    pub matcher: Matcher,
    pub rewrite: Option<String>,
    pub split: Split,
    pub auth: Vec<crate::auth::Method>,
    pub scopes: Vec<String>,
    pub policies: Vec<Arc<Policy>>,
    pub idempotency: bool,
    pub cors: Option<Arc<Cors>>,
    pub timeout: Option<Duration>,
    pub max_body_bytes: u64,
    pub request_headers: HeaderTransform,
    pub response_headers: HeaderTransform,
}

/// A configured consumer.
#[derive(Debug)]
pub struct Consumer {
    pub name: String,
    /// `consumer:NAME`, the rate-limit key of `key = "consumer"`.
    pub limit_key: String,
    /// The plan's policies.
    pub policies: Vec<Arc<Policy>>,
}

/// Everything a reload replaces.
#[derive(Debug)]
pub struct Table {
    pub routes: Vec<Arc<Route>>,
    pub authenticator: Authenticator,
    pub consumers: HashMap<String, Arc<Consumer>>,
    /// Breakers by cluster name.
    pub breakers: HashMap<String, Arc<CircuitBreaker>>,
    /// Header fields the gateway itself sets from credentials (claims, `X-Consumer`): removed from every incoming
    /// request first, so that a client cannot pose as someone by sending them.
    pub claim_headers: Vec<HeaderName>,
    /// For the state carried over by the next reload.
    policy_configs: HashMap<String, (PolicyConfig, Arc<Policy>)>,
    breaker_configs: HashMap<String, (BreakerConfig, Arc<CircuitBreaker>)>,
}

impl Table {
    /// Builds the table of a validated config; `previous` lends the state of unchanged
    /// policies and breakers.
    pub async fn build(
        config: &Config,
        previous: Option<&Table>,
        kv: Option<&kv_store::client::ClientConfig>,
        seed: u64,
    ) -> Result<Table, String> {
        let mut policy_configs = HashMap::new();
        for (name, policy) in &config.rate_limits {
            let kept = previous
                .and_then(|p| p.policy_configs.get(name))
                .filter(|(old, _)| old == policy)
                .map(|(_, p)| p.clone());
            let runtime = match kept {
                Some(p) => p,
                // Each policy has its own small pool of connections to the store.
                None => {
                    let store = kv.map(|c| kv_store::client::Client::new(c.clone()));
                    Arc::new(Policy::new(name, policy, store)?)
                }
            };
            policy_configs.insert(name.clone(), (policy.clone(), runtime));
        }
        let policy = |name: &String| policy_configs.get(name).map(|(_, p)| p.clone());
        let mut breaker_configs = HashMap::new();
        for (cluster, breaker) in &config.circuit_breakers {
            let kept = previous
                .and_then(|p| p.breaker_configs.get(cluster))
                .filter(|(old, _)| old == breaker)
                .map(|(_, b)| b.clone());
            let runtime = kept.unwrap_or_else(|| Arc::new(CircuitBreaker::new(breaker)));
            breaker_configs.insert(cluster.clone(), (breaker.clone(), runtime));
        }
        let consumers = config
            .consumers
            .iter()
            .map(|(name, consumer)| {
                let plan = consumer.plan.as_ref().and_then(|p| config.plans.get(p));
                let policies = plan.map_or(Vec::new(), |p| {
                    p.rate_limits.iter().filter_map(policy).collect()
                });
                (
                    name.clone(),
                    Arc::new(Consumer {
                        name: name.clone(),
                        limit_key: format!("consumer:{name}"),
                        policies,
                    }),
                )
            })
            .collect();
        let cors: HashMap<&String, Arc<Cors>> = config
            .cors
            .iter()
            .map(|(name, c)| (name, Arc::new(Cors::new(c))))
            .collect();
        let mut routes = Vec::with_capacity(config.routes.len());
        for (i, r) in config.routes.iter().enumerate() {
            let path = match (&r.path, &r.path_prefix) {
                (Some(path), _) => PathPattern::exact(path)?,
                (None, Some(prefix)) => PathPattern::prefix(prefix)?,
                (None, None) => return Err(format!("route {} has no path", r.name)),
            };
            let members: Vec<(String, u32)> = r
                .split()
                .into_iter()
                .map(|u| (u.cluster, u.weight))
                .collect();
            routes.push(Arc::new(Route {
                name: r.name.clone(),
                limit_key: format!("route:{}", r.name),
                matcher: routing::matcher(r.host.as_deref(), path, &r.methods, &r.headers),
                rewrite: r.rewrite.clone(),
                split: Split::new(&members, seed.wrapping_add(i as u64)),
                auth: r.auth.clone(),
                scopes: r.scopes.clone(),
                policies: r.rate_limits.iter().filter_map(policy).collect(),
                idempotency: r.idempotency,
                cors: r.cors.as_ref().and_then(|c| cors.get(c).cloned()),
                timeout: r.timeout_ms.map(Duration::from_millis),
                max_body_bytes: r.max_body_bytes.unwrap_or(config.gateway.max_body_bytes),
                request_headers: HeaderTransform::new(&r.request_headers),
                response_headers: HeaderTransform::new(&r.response_headers),
            }));
        }
        let mut claim_headers: Vec<HeaderName> = config
            .auth
            .jwt
            .iter()
            .flat_map(|jwt| jwt.forward_claims.values())
            .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
            .collect();
        claim_headers.push(upstream::X_CONSUMER.clone());
        Ok(Table {
            routes,
            authenticator: Authenticator::new(&config.auth).await?,
            consumers,
            breakers: breaker_configs
                .iter()
                .map(|(k, (_, b))| (k.clone(), b.clone()))
                .collect(),
            claim_headers,
            policy_configs,
            breaker_configs,
        })
    }
}

/// The reverse proxy's config for the gateway's clusters: no routes (the gateway routes),
/// no access log of its own (the gateway writes one line per request).
pub fn proxy_config(config: &Config) -> reverse_proxy::config::Config {
    let mut proxy = reverse_proxy::config::Config {
        server: config.server.clone(),
        clusters: config.clusters.clone(),
        ..Default::default()
    };
    proxy.proxy.via = config.gateway.via.clone();
    proxy.proxy.access_log = false;
    proxy
}

/// The gateway: the current table and what every request shares.
#[derive(Debug)]
pub struct Gateway {
    table: RwLock<Arc<Table>>,
    pub(crate) proxy: Arc<Proxy>,
    pub(crate) idempotency: Option<(IdempotencyConfig, Store)>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) metrics: GatewayMetrics,
    ids: RequestIds,
    pub(crate) settings: GatewaySettings,
}

/// What the request has gathered on its way, for the response phase, metrics and the log.
#[derive(Debug)]
pub struct Exchange {
    pub request_id: HeaderValue,
    pub now_ns: u64,
    pub client_ip: Option<IpAddr>,
    pub route: Option<Arc<Route>>,
    pub identity: Option<Identity>,
    /// The configured consumer, when the credential names one.
    pub consumer: Option<Arc<Consumer>>,
    /// `RateLimit-Policy`, `RateLimit` and `Retry-After` for the response.
    pub rate_limit_headers: Vec<(HeaderName, HeaderValue)>,
    pub origin: Option<HeaderValue>,
    pub cluster: Option<Arc<str>>,
}

impl Exchange {
    /// The consumer label of the metrics.
    pub fn consumer_label(&self) -> &str {
        match (&self.consumer, &self.identity) {
            (Some(consumer), _) => &consumer.name,
            (None, Some(_)) => UNKNOWN_CONSUMER,
            (None, None) => ANONYMOUS,
        }
    }
}

impl Gateway {
    pub fn new(
        table: Table,
        proxy: Arc<Proxy>,
        idempotency: Option<(IdempotencyConfig, Store)>,
        clock: Arc<dyn Clock>,
        metrics: GatewayMetrics,
        settings: GatewaySettings,
    ) -> Gateway {
        Gateway {
            table: RwLock::new(Arc::new(table)),
            proxy,
            idempotency,
            clock,
            metrics,
            ids: RequestIds::default(),
            settings,
        }
    }

    pub fn table(&self) -> Arc<Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the table; requests already started keep the old one.
    pub fn swap_table(&self, table: Table) {
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
    }

    /// Serves one request through every phase.
    pub async fn handle(&self, mut request: Request, scheme: Scheme) -> Response {
        let started = Instant::now();
        let active = Active::new(&self.metrics.active);
        let request_id = self.ids.ensure(&mut request.head.headers);
        let table = self.table();
        let mut exchange = Exchange {
            request_id,
            now_ns: self.clock.now_ns(),
            client_ip: client_ip(request.remote_addr, &request.head.headers, &self.settings),
            route: None,
            identity: None,
            consumer: None,
            rate_limit_headers: Vec::new(),
            origin: request.head.headers.get(http::header::ORIGIN).cloned(),
            cluster: None,
        };
        let method = request.head.method.clone();
        let path = match self.settings.access_log {
            true => request.head.path().to_owned(),
            false => String::new(),
        };
        let response = match self.phases(&table, request, scheme, &mut exchange).await {
            Ok(response) => response,
            Err(error) => {
                let route = exchange
                    .route
                    .as_ref()
                    .map_or(NO_ROUTE, |r| r.name.as_str());
                self.metrics
                    .rejections
                    .with_label_values(&[route, error.code()])
                    .inc();
                tracing::debug!(request_id = ?exchange.request_id, %error, "refused by the gateway");
                error.to_response(&exchange.request_id)
            }
        };
        let mut response = transform::respond(response, &exchange);
        let end = End {
            exchange,
            status: response.status().as_u16(),
            started,
            method,
            path,
            access_log: self.settings.access_log,
            metrics: self.metrics.clone(),
            _active: active,
        };
        let body = std::mem::take(&mut response.body);
        response.body = Body::from_stream(Counted {
            body,
            bytes: 0,
            end: Some(end),
        });
        response
    }

    async fn phases(
        &self,
        table: &Table,
        mut request: Request,
        scheme: Scheme,
        exchange: &mut Exchange,
    ) -> Result<Response, GatewayError> {
        let (route, rewritten) = route::run(table, &request)?;
        exchange.route = Some(route.clone());
        upstream::check_body(&route, &mut request)?;
        if let (Some(policy), Some(origin)) = (&route.cors, &exchange.origin)
            && cors::preflight_method(&request.head.method, &request.head.headers).is_some()
        {
            return Ok(policy.preflight(origin));
        }
        let identity = authenticate::run(table, &route, &mut request, exchange).await?;
        exchange.consumer = identity
            .as_ref()
            .and_then(|id| id.consumer.as_ref())
            .and_then(|name| table.consumers.get(name).cloned());
        exchange.identity = identity;
        rate_limit::run(self, &route, &request.head, exchange).await?;
        let claim = match idempotency::begin(self, &route, &mut request, exchange).await? {
            idempotency::Begun::Replay(response) => return Ok(response),
            idempotency::Begun::Claimed(claimed) => Some(claimed),
            idempotency::Begun::NotApplicable => None,
        };
        let cluster = route.split.pick().clone();
        exchange.cluster = Some(cluster.clone());
        let call = match circuit_breaker::admit(self, table, &cluster, exchange) {
            Ok(call) => call,
            Err(error) => {
                if let Some(claimed) = claim {
                    idempotency::release(self, &route, claimed).await;
                }
                return Err(error);
            }
        };
        upstream::prepare(&route, &mut request, rewritten, exchange);
        let downstream = Downstream { scheme };
        let outcome = upstream::forward(self, &route, &cluster, request, downstream).await;
        circuit_breaker::record(self, table, &cluster, call, &outcome);
        idempotency::finish(self, &route, claim, outcome, exchange).await
    }
}

/// The client's address: the peer, or, behind a trusted proxy, the right-most address of
/// `X-Forwarded-For` that is not itself a trusted proxy (the left-most entries are whatever
/// the client wrote; only the entries the trusted proxies appended can be believed). The walk
/// from the right stops at the first entry that is not an address (`unknown`, a port, a
/// field that is not text): what lies left of it was not vouched for, so the last trusted
/// hop stands for the client.
fn client_ip(
    peer: Option<SocketAddr>,
    headers: &http::HeaderMap,
    settings: &GatewaySettings,
) -> Option<IpAddr> {
    let peer = peer?.ip();
    if !settings.trusted_proxies.contains(&peer) {
        return Some(peer);
    }
    let mut client = peer;
    let fields: Vec<&http::HeaderValue> = headers.get_all("x-forwarded-for").iter().collect();
    let entries = fields.iter().rev().flat_map(|v| match v.to_str() {
        Ok(text) => text.rsplit(',').map(Some).collect::<Vec<_>>(),
        Err(_) => vec![None],
    });
    for entry in entries {
        if !settings.trusted_proxies.contains(&client) {
            break;
        }
        match entry.and_then(|e| e.trim().parse::<IpAddr>().ok()) {
            Some(ip) => client = ip,
            None => break,
        }
    }
    Some(client)
}

/// Counts a request in `gateway_requests_active` for as long as it lives.
#[derive(Debug)]
struct Active(service_kit::metrics::IntGauge);

impl Active {
    fn new(gauge: &service_kit::metrics::IntGauge) -> Active {
        gauge.inc();
        Active(gauge.clone())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Recorded once, when the response body ends or is dropped.
#[derive(Debug)]
struct End {
    exchange: Exchange,
    status: u16,
    started: Instant,
    method: http::Method,
    path: String,
    access_log: bool,
    metrics: GatewayMetrics,
    _active: Active,
}

impl End {
    fn record(self, bytes: u64, complete: bool) {
        let elapsed = self.started.elapsed();
        let route = self
            .exchange
            .route
            .as_ref()
            .map_or(NO_ROUTE, |r| r.name.as_str());
        let consumer = self.exchange.consumer_label();
        self.metrics
            .requests
            .with_label_values(&[route, consumer, status_class(self.status)])
            .inc();
        self.metrics
            .duration
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
        if self.access_log {
            tracing::info!(
                target: "api_gateway::access",
                request_id = self.exchange.request_id.to_str().unwrap_or("-"),
                client = ?self.exchange.client_ip,
                method = %self.method,
                path = %self.path,
                route,
                consumer,
                cluster = self.exchange.cluster.as_deref().unwrap_or("-"),
                status = self.status,
                bytes,
                complete,
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                "request",
            );
        }
    }
}

/// The response body on its way to the client.
struct Counted {
    body: Body,
    bytes: u64,
    end: Option<End>,
}

impl BodyStream for Counted {
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<http1::Result<Frame>>> {
        let this = self.get_mut();
        let polled = this.body.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(Frame::Data(data)))) => this.bytes += data.len() as u64,
            Poll::Ready(None) => this.end_now(true),
            Poll::Ready(Some(Err(_))) => this.end_now(false),
            _ => {}
        }
        polled
    }

    fn exact_len(&self) -> Option<u64> {
        self.body.exact_len()
    }
}

impl Counted {
    fn end_now(&mut self, complete: bool) {
        if let Some(end) = self.end.take() {
            end.record(self.bytes, complete);
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.end_now(false);
    }
}

/// The `X-Request-Id` of a response: the request's.
pub fn set_request_id(response: &mut Response, id: &HeaderValue) {
    if !response.head.headers.contains_key(&X_REQUEST_ID) {
        response
            .head
            .headers
            .insert(X_REQUEST_ID.clone(), id.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_addresses_appended_by_trusted_proxies_are_believed() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let settings = GatewaySettings {
            trusted_proxies: vec![proxy],
            ..GatewaySettings::default()
        };
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 203.0.113.9, 10.0.0.1"),
        );
        let from_proxy = Some(SocketAddr::new(proxy, 5000));
        let ip = client_ip(from_proxy, &headers, &settings).unwrap();
        assert_eq!(ip, "203.0.113.9".parse::<IpAddr>().unwrap());
        let mut junk = http::HeaderMap::new();
        junk.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, unknown, 10.0.0.1"),
        );
        let ip = client_ip(from_proxy, &junk, &settings).unwrap();
        assert_eq!(
            ip, proxy,
            "nothing left of an entry that is not an address is believed"
        );
        let direct = Some(SocketAddr::from(([192, 0, 2, 7], 5000)));
        let ip = client_ip(direct, &headers, &settings).unwrap();
        assert_eq!(
            ip,
            "192.0.2.7".parse::<IpAddr>().unwrap(),
            "an untrusted peer's field is ignored"
        );
    }
}
