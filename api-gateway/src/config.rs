//! The gateway's configuration: one TOML file (`api-gateway/example.toml` shows every field),
//! checked once by [`Config::validate`] before anything binds a socket.
//!
//! ```text
//!  [server]                 listen, admin_listen, logging, shutdown drain      (service-kit)
//!  [gateway]                workers, connection limit, Via name, body limit, trusted proxies
//!  [tls]                    the HTTPS listener: certificates by SNI (reverse-proxy's format)
//!  [kv]                     the kv-store shared by cluster-wide limits and idempotency keys
//!  [auth]                   API keys (digests -> consumers), JWT issuers, audiences, JWKS
//!  [consumers.NAME]         who a credential belongs to, and its plan
//!  [plans.NAME]             rate-limit policies every request of the plan's consumers meets
//!  [rate_limits.NAME]       one policy: algorithm, quota, window, key, local or cluster
//!  [idempotency]            header, TTLs, size limits, local or kv store
//!  [circuit_breakers.NAME]  a breaker for the cluster NAME
//!  [cors.NAME]              a CORS policy routes refer to
//!  [[routes]]               host, path, methods, headers ─▶ policies ─▶ upstream clusters
//!  [clusters.NAME]          upstream endpoints, balancing, health, retries  (reverse-proxy's)
//! ```
//!
//! Names are the labels of metrics (routes, consumers, policies, clusters), so they come only
//! from this file: a request can never create a label value.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use reverse_proxy::config::ClusterConfig;
use serde::{Deserialize, Serialize};
use service_kit::config::{ConfigError, Secret, ServerConfig, Validate};

use crate::auth::{AuthConfig, Method as AuthMethod};
use crate::circuit_breaker::BreakerConfig;
use crate::cors::CorsConfig;
use crate::idempotency::{IdempotencyConfig, StoreKind};
use crate::phase::route::PathPattern;
use crate::ratelimit::{PolicyConfig, Scope};

/// Most worker threads.
pub const MAX_WORKERS: usize = 256;
/// Most routes. They are matched in order; past a thousand a linear scan is the wrong design.
pub const MAX_ROUTES: usize = 1024;
/// Most consumers, plans, policies, CORS policies or clusters (each is a metric label set).
pub const MAX_NAMED: usize = 1024;
/// Most upstreams in one route's weighted split.
pub const MAX_UPSTREAMS_PER_ROUTE: usize = 16;
/// Most policies applied to one request (route's and plan's together).
pub const MAX_POLICIES_PER_REQUEST: usize = 8;
/// Largest request body the gateway accepts on any route (64 MiB).
pub const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;
/// Longest per-route timeout: ten minutes.
pub const MAX_TIMEOUT_MS: u64 = 600_000;

/// The whole configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub gateway: GatewaySettings,
    /// The HTTPS listener, in the reverse proxy's format; absent: plain HTTP only.
    pub tls: Option<reverse_proxy::tls::TlsConfig>,
    /// The kv-store; required when a policy has `scope = "cluster"` or idempotency keys are
    /// kept in `store = "kv"`.
    pub kv: Option<KvConfig>,
    pub auth: AuthConfig,
    pub consumers: BTreeMap<String, ConsumerConfig>,
    pub plans: BTreeMap<String, PlanConfig>,
    pub rate_limits: BTreeMap<String, PolicyConfig>,
    pub idempotency: IdempotencyConfig,
    /// Circuit breakers by cluster name; a cluster without one has no breaker.
    pub circuit_breakers: BTreeMap<String, BreakerConfig>,
    pub cors: BTreeMap<String, CorsConfig>,
    pub routes: Vec<RouteConfig>,
    /// Upstream clusters, in the reverse proxy's format (`reverse-proxy/example.toml`).
    pub clusters: BTreeMap<String, ClusterConfig>,
}

/// Settings of the downstream side.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySettings {
    /// Worker threads, 1 to [`MAX_WORKERS`]; 1 is a single-threaded runtime. Default 1.
    pub workers: usize,
    /// Most downstream connections at once on each listener (the plain and the TLS one count
    /// apart); past it new clients wait in the backlog. Default 10,000.
    pub max_connections: usize,
    /// The pseudonym written in `Via`. Default `api-gateway`.
    pub via: String,
    /// One structured line per request at INFO, target `api_gateway::access`. Default true.
    pub access_log: bool,
    /// Largest request body on routes that set no `max_body_bytes`. Default 1 MiB; at most
    /// [`MAX_BODY_BYTES`].
    pub max_body_bytes: u64,
    /// Peers whose `X-Forwarded-For` is believed (a reverse proxy in front). The client IP of
    /// a request from one of them is the right-most address in the field that is not itself
    /// trusted; from any other peer, the peer's address. Default none.
    pub trusted_proxies: Vec<IpAddr>,
}

/// The kv-store connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KvConfig {
    pub address: SocketAddr,
    /// `requirepass` of the store. Default none.
    pub password: Option<Secret>,
    /// Time for one command's round trip; a slower store counts as down. Default 100 ms:
    /// the store is on every limited request's path.
    pub timeout_ms: u64,
    /// Idle connections kept. Default 16.
    pub max_idle_connections: usize,
}

/// A consumer: who an API key or token belongs to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsumerConfig {
    /// The plan in `[plans]` whose rate limits the consumer's requests meet. Default none.
    pub plan: Option<String>,
}

/// A plan: rate limits shared by the consumers on it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlanConfig {
    /// Names in `[rate_limits]`.
    pub rate_limits: Vec<String>,
}

/// One route: what requests it matches, the policies they meet, where they go.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteConfig {
    /// The route's name: metrics label, log field, and the `route` key of rate limits.
    /// Required, unique, `[A-Za-z0-9_.-]`.
    pub name: String,
    /// Host to match (case-insensitive, port ignored), or `*.example.com`. Absent: any.
    pub host: Option<String>,
    /// An exact path, with `{name}` standing for one segment: `/v1/links/{code}`. Exactly one
    /// of `path` and `path_prefix`.
    pub path: Option<String>,
    /// A path prefix, segment-wise: `/v1` matches `/v1` and `/v1/links`, not `/v1beta`.
    pub path_prefix: Option<String>,
    /// Methods matched. Empty: any. A request whose path matches only routes of other
    /// methods gets 405 with `Allow`.
    pub methods: Vec<String>,
    /// Header fields that must be present with exactly these values (`Accept-Version = "2"`).
    pub headers: BTreeMap<String, String>,
    /// With `path_prefix`: the matched prefix is replaced by this before forwarding
    /// (`/v1` -> `/api/v1`, or `/` to strip it). With `path`: the whole path is replaced by
    /// this template, `{name}` filled from the request (`/links/{code}`). The query is kept.
    pub rewrite: Option<String>,
    /// Where matched requests go: `cluster = "links"` for one...
    pub cluster: Option<String>,
    /// ...or a weighted split (canary): `upstreams = [{ cluster = "v1", weight = 95 }, ...]`.
    pub upstreams: Vec<UpstreamConfig>,
    /// Credentials accepted (`api_key`, `jwt`); empty: the route is public.
    pub auth: Vec<AuthMethod>,
    /// Scopes the credential must carry, every one (403 otherwise).
    pub scopes: Vec<String>,
    /// Names in `[rate_limits]` applied to every request of the route, before the
    /// consumer's plan's.
    pub rate_limits: Vec<String>,
    /// Whether `POST` and `PATCH` requests carrying the idempotency header are deduplicated
    /// (see `[idempotency]`). Default true.
    pub idempotency: bool,
    /// Name in `[cors]`. Default none: no CORS headers, preflights are not answered.
    pub cors: Option<String>,
    /// Time for the upstream's response head, retries included; past it, 504. Default none:
    /// the cluster's own timeouts only. At most [`MAX_TIMEOUT_MS`].
    pub timeout_ms: Option<u64>,
    /// Largest request body; default `gateway.max_body_bytes`.
    pub max_body_bytes: Option<u64>,
    /// Header fields changed on the way to the upstream.
    pub request_headers: HeaderTransformConfig,
    /// Header fields changed on the way back to the client.
    pub response_headers: HeaderTransformConfig,
}

/// One member of a weighted split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    pub cluster: String,
    /// Relative weight, 1 to 1,000.
    pub weight: u32,
}

/// Header changes: `remove` first, then `set` (replacing), then `add` (appending).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeaderTransformConfig {
    pub remove: Vec<String>,
    pub set: BTreeMap<String, String>,
    pub add: BTreeMap<String, String>,
}

impl Default for Config {
    fn default() -> Self {
        let listen = SocketAddr::from(([127, 0, 0, 1], 8000));
        let admin = SocketAddr::from(([127, 0, 0, 1], 9000));
        Config {
            server: ServerConfig::new(listen, admin),
            gateway: GatewaySettings::default(),
            tls: None,
            kv: None,
            auth: AuthConfig::default(),
            consumers: BTreeMap::new(),
            plans: BTreeMap::new(),
            rate_limits: BTreeMap::new(),
            idempotency: IdempotencyConfig::default(),
            circuit_breakers: BTreeMap::new(),
            cors: BTreeMap::new(),
            routes: Vec::new(),
            clusters: BTreeMap::new(),
        }
    }
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            workers: 1,
            max_connections: 10_000,
            via: "api-gateway".to_owned(),
            access_log: true,
            max_body_bytes: 1024 * 1024,
            trusted_proxies: Vec::new(),
        }
    }
}

impl Default for KvConfig {
    fn default() -> Self {
        KvConfig {
            address: SocketAddr::from(([127, 0, 0, 1], 6379)),
            password: None,
            timeout_ms: 100,
            max_idle_connections: 16,
        }
    }
}

impl KvConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

impl Default for RouteConfig {
    fn default() -> Self {
        RouteConfig {
            name: String::new(),
            host: None,
            path: None,
            path_prefix: None,
            methods: Vec::new(),
            headers: BTreeMap::new(),
            rewrite: None,
            cluster: None,
            upstreams: Vec::new(),
            auth: Vec::new(),
            scopes: Vec::new(),
            rate_limits: Vec::new(),
            idempotency: true,
            cors: None,
            timeout_ms: None,
            max_body_bytes: None,
            request_headers: HeaderTransformConfig::default(),
            response_headers: HeaderTransformConfig::default(),
        }
    }
}

impl RouteConfig {
    /// The split as a list, whichever form the file used.
    pub fn split(&self) -> Vec<UpstreamConfig> {
        match &self.cluster {
            Some(cluster) => vec![UpstreamConfig {
                cluster: cluster.clone(),
                weight: 1,
            }],
            None => self.upstreams.clone(),
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.gateway.validate()?;
        if let Some(tls) = &self.tls {
            tls.validate()?;
        }
        if let Some(kv) = &self.kv {
            kv.validate()?;
        }
        self.auth.validate("auth")?;
        self.idempotency.validate("idempotency")?;
        for (what, len) in [
            ("consumers", self.consumers.len()),
            ("plans", self.plans.len()),
            ("rate_limits", self.rate_limits.len()),
            ("circuit_breakers", self.circuit_breakers.len()),
            ("cors", self.cors.len()),
            ("clusters", self.clusters.len()),
        ] {
            if len > MAX_NAMED {
                let reason = format!("{len} entries, over the limit of {MAX_NAMED}");
                return Err(ConfigError::invalid(what, reason));
            }
        }
        self.validate_names()?;
        self.validate_references()?;
        self.validate_routes()?;
        let kv_needed = self.idempotency.store == StoreKind::Kv
            || self.rate_limits.values().any(|p| p.scope == Scope::Cluster);
        if kv_needed && self.kv.is_none() {
            return Err(ConfigError::invalid(
                "kv",
                "a [kv] address is needed: a rate limit has scope = \"cluster\" or idempotency.store = \"kv\"",
            ));
        }
        Ok(())
    }
}

impl Config {
    fn validate_names(&self) -> Result<(), ConfigError> {
        let names = [
            ("consumers", self.consumers.keys().collect::<Vec<_>>()),
            ("plans", self.plans.keys().collect()),
            ("rate_limits", self.rate_limits.keys().collect()),
            ("circuit_breakers", self.circuit_breakers.keys().collect()),
            ("cors", self.cors.keys().collect()),
            ("clusters", self.clusters.keys().collect()),
        ];
        for (section, keys) in names {
            for name in keys {
                check_name(&format!("{section}.{name}"), name)?;
            }
        }
        for (name, policy) in &self.rate_limits {
            policy.validate(&format!("rate_limits.{name}"))?;
        }
        for (name, breaker) in &self.circuit_breakers {
            breaker.validate(&format!("circuit_breakers.{name}"))?;
        }
        for (name, cors) in &self.cors {
            cors.validate(&format!("cors.{name}"))?;
        }
        for (name, cluster) in &self.clusters {
            cluster.validate(&format!("clusters.{name}"))?;
        }
        Ok(())
    }

    /// Every name used refers to an entry that exists.
    fn validate_references(&self) -> Result<(), ConfigError> {
        for (name, consumer) in &self.consumers {
            if let Some(plan) = &consumer.plan {
                known(
                    &format!("consumers.{name}.plan"),
                    plan,
                    &self.plans,
                    "plans",
                )?;
            }
        }
        for (name, plan) in &self.plans {
            for policy in &plan.rate_limits {
                let field = format!("plans.{name}.rate_limits");
                known(&field, policy, &self.rate_limits, "rate_limits")?;
            }
        }
        for (i, key) in self.auth.api_keys.iter().enumerate() {
            let field = format!("auth.api_keys[{i}].consumer");
            known(&field, &key.consumer, &self.consumers, "consumers")?;
        }
        for name in self.circuit_breakers.keys() {
            let field = format!("circuit_breakers.{name}");
            known(&field, name, &self.clusters, "clusters")?;
        }
        Ok(())
    }

    fn validate_routes(&self) -> Result<(), ConfigError> {
        if self.routes.is_empty() {
            return Err(ConfigError::invalid(
                "routes",
                "no route: add a [[routes]] entry",
            ));
        }
        if self.routes.len() > MAX_ROUTES {
            let reason = format!(
                "{} routes, over the limit of {MAX_ROUTES}",
                self.routes.len()
            );
            return Err(ConfigError::invalid("routes", reason));
        }
        let mut seen = BTreeSet::new();
        for (i, route) in self.routes.iter().enumerate() {
            let field = format!("routes[{i}]");
            if !seen.insert(route.name.as_str()) {
                let reason = format!("`{}` names an earlier route too", route.name);
                return Err(ConfigError::invalid(format!("{field}.name"), reason));
            }
            self.validate_route(&field, route)?;
        }
        Ok(())
    }

    fn validate_route(&self, field: &str, route: &RouteConfig) -> Result<(), ConfigError> {
        check_name(&format!("{field}.name"), &route.name)?;
        match (&route.path, &route.path_prefix) {
            (Some(path), None) => {
                PathPattern::exact(path)
                    .map_err(|e| ConfigError::invalid(format!("{field}.path"), e))?;
            }
            (None, Some(prefix)) => {
                PathPattern::prefix(prefix)
                    .map_err(|e| ConfigError::invalid(format!("{field}.path_prefix"), e))?;
            }
            _ => {
                return Err(ConfigError::invalid(
                    field,
                    "give exactly one of `path` (exact, with {params}) and `path_prefix`",
                ));
            }
        }
        if let (Some(rewrite), Some(path)) = (&route.rewrite, &route.path) {
            PathPattern::check_template(path, rewrite)
                .map_err(|e| ConfigError::invalid(format!("{field}.rewrite"), e))?;
        }
        if let Some(rewrite) = &route.rewrite
            && !rewrite.starts_with('/')
        {
            let reason = "must start with `/`";
            return Err(ConfigError::invalid(format!("{field}.rewrite"), reason));
        }
        for (j, method) in route.methods.iter().enumerate() {
            if Method::from_bytes(method.as_bytes()).is_err() || method.is_empty() {
                let reason = format!("`{method}` is not an HTTP method token");
                return Err(ConfigError::invalid(
                    format!("{field}.methods[{j}]"),
                    reason,
                ));
            }
        }
        for (name, value) in &route.headers {
            let at = format!("{field}.headers.{name}");
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ConfigError::invalid(&at, "not a valid header field name"))?;
            HeaderValue::from_str(value)
                .map_err(|_| ConfigError::invalid(&at, "not a valid header field value"))?;
        }
        self.validate_split(field, route)?;
        for method in &route.auth {
            if *method == AuthMethod::Jwt && self.auth.jwt.is_none() {
                let reason = "accepts jwt, but [auth.jwt] is not configured";
                return Err(ConfigError::invalid(format!("{field}.auth"), reason));
            }
        }
        if !route.scopes.is_empty() && route.auth.is_empty() {
            let reason = "scopes need credentials: set `auth` too";
            return Err(ConfigError::invalid(format!("{field}.scopes"), reason));
        }
        for policy in &route.rate_limits {
            known(
                &format!("{field}.rate_limits"),
                policy,
                &self.rate_limits,
                "rate_limits",
            )?;
        }
        let most_plan = self
            .plans
            .values()
            .map(|p| p.rate_limits.len())
            .max()
            .unwrap_or(0);
        if route.rate_limits.len() + most_plan > MAX_POLICIES_PER_REQUEST {
            let reason = format!(
                "with the largest plan, over {MAX_POLICIES_PER_REQUEST} policies per request"
            );
            return Err(ConfigError::invalid(format!("{field}.rate_limits"), reason));
        }
        if let Some(cors) = &route.cors {
            known(&format!("{field}.cors"), cors, &self.cors, "cors")?;
        }
        if let Some(timeout) = route.timeout_ms
            && !(1..=MAX_TIMEOUT_MS).contains(&timeout)
        {
            let reason = format!("must be between 1 and {MAX_TIMEOUT_MS}");
            return Err(ConfigError::invalid(format!("{field}.timeout_ms"), reason));
        }
        if let Some(timeout) = route.timeout_ms
            && route.idempotency
            && timeout >= self.idempotency.lock_ttl_ms
        {
            let reason = format!(
                "must be below idempotency.lock_ttl_ms ({}): a key's lock must outlive its request",
                self.idempotency.lock_ttl_ms
            );
            return Err(ConfigError::invalid(format!("{field}.timeout_ms"), reason));
        }
        if let Some(bytes) = route.max_body_bytes
            && bytes > MAX_BODY_BYTES
        {
            let reason = format!("at most {MAX_BODY_BYTES}");
            return Err(ConfigError::invalid(
                format!("{field}.max_body_bytes"),
                reason,
            ));
        }
        route
            .request_headers
            .validate(&format!("{field}.request_headers"))?;
        route
            .response_headers
            .validate(&format!("{field}.response_headers"))?;
        Ok(())
    }

    fn validate_split(&self, field: &str, route: &RouteConfig) -> Result<(), ConfigError> {
        if route.cluster.is_some() != route.upstreams.is_empty() {
            return Err(ConfigError::invalid(
                field,
                "give exactly one of `cluster` and `upstreams`",
            ));
        }
        if route.upstreams.len() > MAX_UPSTREAMS_PER_ROUTE {
            let reason = format!("at most {MAX_UPSTREAMS_PER_ROUTE}");
            return Err(ConfigError::invalid(format!("{field}.upstreams"), reason));
        }
        if let Some(cluster) = &route.cluster {
            known(
                &format!("{field}.cluster"),
                cluster,
                &self.clusters,
                "clusters",
            )?;
        }
        for (j, upstream) in route.upstreams.iter().enumerate() {
            let at = format!("{field}.upstreams[{j}]");
            known(
                &format!("{at}.cluster"),
                &upstream.cluster,
                &self.clusters,
                "clusters",
            )?;
            if !(1..=1000).contains(&upstream.weight) {
                return Err(ConfigError::invalid(
                    format!("{at}.weight"),
                    "must be 1 to 1000",
                ));
            }
        }
        Ok(())
    }
}

impl GatewaySettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_WORKERS).contains(&self.workers) {
            let reason = format!("must be between 1 and {MAX_WORKERS}");
            return Err(ConfigError::invalid("gateway.workers", reason));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::invalid(
                "gateway.max_connections",
                "must be at least 1",
            ));
        }
        check_name("gateway.via", &self.via)?;
        if self.max_body_bytes > MAX_BODY_BYTES {
            let reason = format!("at most {MAX_BODY_BYTES}");
            return Err(ConfigError::invalid("gateway.max_body_bytes", reason));
        }
        Ok(())
    }
}

impl KvConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.address.port() == 0 {
            return Err(ConfigError::invalid("kv.address", "needs a port"));
        }
        if !(1..=60_000).contains(&self.timeout_ms) {
            return Err(ConfigError::invalid("kv.timeout_ms", "must be 1 to 60000"));
        }
        Ok(())
    }
}

impl HeaderTransformConfig {
    fn validate(&self, field: &str) -> Result<(), ConfigError> {
        let names = self
            .remove
            .iter()
            .chain(self.set.keys())
            .chain(self.add.keys());
        for name in names {
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                ConfigError::invalid(format!("{field}.{name}"), "not a valid header field name")
            })?;
        }
        for (name, value) in self.set.iter().chain(&self.add) {
            HeaderValue::from_str(value).map_err(|_| {
                ConfigError::invalid(format!("{field}.{name}"), "not a valid header field value")
            })?;
        }
        Ok(())
    }
}

fn known<V>(
    field: &str,
    name: &str,
    section: &BTreeMap<String, V>,
    section_name: &str,
) -> Result<(), ConfigError> {
    match section.contains_key(name) {
        true => Ok(()),
        false => {
            let reason = format!("no entry named `{name}` in [{section_name}]");
            Err(ConfigError::invalid(field, reason))
        }
    }
}

/// Names become metric labels and log fields: keep them short and plain.
fn check_name(field: &str, name: &str) -> Result<(), ConfigError> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if name.is_empty() || name.len() > 64 || !name.chars().all(plain) {
        let reason = format!("`{name}` must be 1 to 64 characters of [A-Za-z0-9_.-]");
        return Err(ConfigError::invalid(field, reason));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_parses_and_validates() {
        let config: Config = toml::from_str(include_str!("../example.toml")).unwrap();
        config.validate().unwrap();
        let links = &config.clusters["links"];
        assert_eq!(links.health_check.path, "/readyz");
        assert!(links.endpoints.iter().all(|e| e.health_address.is_some()));
    }
}
