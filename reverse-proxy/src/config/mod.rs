//! The proxy's configuration: listeners, routes and clusters, from a TOML file or from the
//! quick-start flags, checked once by [`Config::validate`] before anything binds a socket.
//!
//! ```text
//!  [server]          listen (the HTTP listener), admin_listen, logging, shutdown drain
//!  [proxy]           downstream limits: workers, max_connections; Via pseudonym, which
//!                    fields the proxy adds
//!  [tls]             the HTTPS listener: address, certificates by SNI (optional)
//!  [[tcp]]           L4 listeners: address -> cluster, relayed as bytes (optional)
//!  [[routes]]        host + path prefix  ──▶  cluster name      (first match wins)
//!  [clusters.NAME]   endpoints, lb, health_check, outlier_detection, timeouts, retry,
//!                    circuit_breaker, pool
//! ```
//!
//! `reverse-proxy/example.toml` is the same model written out, field by field.
//!
//! Defaults: `service_kit::config::load` lays the file over `Config::default()`, which covers
//! the fixed sections. Routes and clusters are arrays and maps whose entries the defaults cannot
//! know, so their structs carry `#[serde(default)]`: a cluster that only lists endpoints gets
//! every other setting from [`ClusterConfig::default`].

mod cluster;
mod quick_start;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use service_kit::config::{ConfigError, ServerConfig, Validate};

pub use cluster::{
    CircuitBreakerConfig, ClusterConfig, EndpointConfig, HealthCheckConfig, HealthCheckKind,
    MAX_RETRIES, OutlierConfig, PoolConfig, RetryConfig, TimeoutConfig, UpstreamTlsConfig,
};
pub use quick_start::{QUICK_START_CLUSTER, QuickStartArgs};

/// Most worker threads: more than the cores of any machine this runs on is a mistake.
pub const MAX_WORKERS: usize = 256;
/// Most routes in one config. Routes are matched in order, so a table this long is already a
/// linear scan worth replacing with a trie; the limit keeps the scan short.
pub const MAX_ROUTES: usize = 1024;
/// Most clusters in one config.
pub const MAX_CLUSTERS: usize = 256;

/// The whole configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Shared server settings. `listen` is the HTTP listener; `admin_listen` serves
    /// `/metrics`, `/healthz` and `/readyz`.
    pub server: ServerConfig,
    /// Settings of the downstream side (clients talking to the proxy).
    pub proxy: ProxySettings,
    /// The HTTPS listener; absent: plain HTTP only.
    pub tls: Option<crate::tls::TlsConfig>,
    /// L4 (TCP) listeners, each relaying to a cluster.
    pub tcp: Vec<crate::l4::TcpListenerConfig>,
    /// Which cluster serves a request, tried in order; the first match wins.
    pub routes: Vec<RouteConfig>,
    /// Upstream clusters by name.
    pub clusters: BTreeMap<String, ClusterConfig>,
}

/// Settings of the downstream side.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySettings {
    /// Worker threads, 1 to [`MAX_WORKERS`], each a single-threaded runtime serving its share
    /// of the connections (a new one goes to the worker serving the fewest), like nginx's
    /// `worker_processes` (see `server.rs`). Default 1.
    pub workers: usize,
    /// Most downstream connections served at once; past it the proxy stops accepting and new
    /// clients wait in the kernel's backlog. Default 10,000.
    pub max_connections: usize,
    /// The pseudonym this proxy writes in `Via` (RFC 9110 section 7.6.3), a token such as
    /// `edge-1`. Default `reverse-proxy`.
    pub via: String,
    /// Most upgraded connections (WebSocket and other `101` tunnels) open at once. They no
    /// longer count against `max_connections`; past this limit an upgrade request gets 503.
    /// Default 1,024.
    pub max_tunnels: usize,
    /// Whether each request is logged (one structured line at INFO, target
    /// `reverse_proxy::access`). Default true.
    pub access_log: bool,
    /// Whether requests going upstream get `X-Forwarded-For`, `-Proto`, `-Host` and
    /// `Forwarded` (`headers.rs`). Off, those fields pass as received, as nginx and HAProxy
    /// do unless told: for upstreams that do not read them. Default true.
    pub forwarded_headers: bool,
    /// Whether a request without a usable `X-Request-Id` gets a fresh one, returned on the
    /// response too (`request_id.rs`). Off, an id the client sent still passes through and
    /// is logged, and none is made up. Default true.
    pub request_id: bool,
}

/// One routing rule: requests whose host and path match go to `cluster`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Host to match, without port, case-insensitive: `api.example.com`, or `*.example.com`
    /// for any subdomain. Absent: any host.
    pub host: Option<String>,
    /// Path prefix to match, starting with `/`; a plain string prefix (`/api` also matches
    /// `/apiv2`; write `/api/` to mean the directory). Default `/`: any path.
    #[serde(default = "default_path_prefix")]
    pub path_prefix: String,
    /// Name of the cluster in `[clusters]` that serves the matched requests.
    pub cluster: String,
}

fn default_path_prefix() -> String {
    "/".to_owned()
}

impl Default for Config {
    fn default() -> Self {
        let listen = SocketAddr::from(([127, 0, 0, 1], 8080));
        let admin = SocketAddr::from(([127, 0, 0, 1], 9080));
        Config {
            server: ServerConfig::new(listen, admin),
            proxy: ProxySettings::default(),
            tls: None,
            tcp: Vec::new(),
            routes: Vec::new(),
            clusters: BTreeMap::new(),
        }
    }
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            workers: 1,
            max_connections: 10_000,
            via: "reverse-proxy".to_owned(),
            max_tunnels: 1024,
            access_log: true,
            forwarded_headers: true,
            request_id: true,
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.proxy.validate()?;
        if let Some(tls) = &self.tls {
            tls.validate()?;
            let taken = [self.server.listen, self.server.admin_listen];
            if tls.listen.port() != 0 && taken.contains(&tls.listen) {
                return Err(ConfigError::invalid(
                    "tls.listen",
                    format!(
                        "{} is already server.listen or server.admin_listen",
                        tls.listen
                    ),
                ));
            }
        }
        if self.routes.is_empty() && self.tcp.is_empty() {
            return Err(ConfigError::invalid(
                "routes",
                "no route: add a [[routes]] entry (or a [[tcp]] listener), or give --upstream",
            ));
        }
        for (i, tcp) in self.tcp.iter().enumerate() {
            if !self.clusters.contains_key(&tcp.cluster) {
                return Err(ConfigError::invalid(
                    format!("tcp[{i}].cluster"),
                    format!("no cluster named `{}` in [clusters]", tcp.cluster),
                ));
            }
            let taken = [self.server.listen, self.server.admin_listen];
            let duplicate = self.tcp[..i].iter().any(|t| t.listen == tcp.listen);
            if tcp.listen.port() != 0 && (taken.contains(&tcp.listen) || duplicate) {
                return Err(ConfigError::invalid(
                    format!("tcp[{i}].listen"),
                    format!("{} is already used by another listener", tcp.listen),
                ));
            }
        }
        if self.routes.len() > MAX_ROUTES {
            let reason = format!(
                "{} routes, over the limit of {MAX_ROUTES}",
                self.routes.len()
            );
            return Err(ConfigError::invalid("routes", reason));
        }
        if self.clusters.len() > MAX_CLUSTERS {
            let reason = format!(
                "{} clusters, over the limit of {MAX_CLUSTERS}",
                self.clusters.len()
            );
            return Err(ConfigError::invalid("clusters", reason));
        }
        for (i, route) in self.routes.iter().enumerate() {
            route.validate(&format!("routes[{i}]"), &self.clusters)?;
        }
        for (name, cluster) in &self.clusters {
            check_name(&format!("clusters.{name}"), name)?;
            cluster.validate(&format!("clusters.{name}"))?;
        }
        Ok(())
    }
}

impl ProxySettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_WORKERS).contains(&self.workers) {
            let reason = format!("must be between 1 and {MAX_WORKERS}");
            return Err(ConfigError::invalid("proxy.workers", reason));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::invalid(
                "proxy.max_connections",
                "must be at least 1",
            ));
        }
        if self.max_tunnels == 0 || self.max_tunnels > tokio::sync::Semaphore::MAX_PERMITS {
            return Err(ConfigError::invalid(
                "proxy.max_tunnels",
                "must be at least 1",
            ));
        }
        let is_token = !self.via.is_empty()
            && self
                .via
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        if !is_token {
            return Err(ConfigError::invalid(
                "proxy.via",
                "must be a non-empty token of letters, digits, `-`, `.`, `_` or `~`",
            ));
        }
        Ok(())
    }
}

impl RouteConfig {
    fn validate(
        &self,
        field: &str,
        clusters: &BTreeMap<String, ClusterConfig>,
    ) -> Result<(), ConfigError> {
        if let Some(host) = &self.host {
            let bare = host.strip_prefix("*.").unwrap_or(host);
            let valid = !bare.is_empty()
                && bare
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if !valid {
                return Err(ConfigError::invalid(
                    format!("{field}.host"),
                    format!(
                        "`{host}` is not a host name (letters, digits, `-`, `.`, optionally after `*.`)"
                    ),
                ));
            }
        }
        if !self.path_prefix.starts_with('/') {
            return Err(ConfigError::invalid(
                format!("{field}.path_prefix"),
                "must start with `/`",
            ));
        }
        if !clusters.contains_key(&self.cluster) {
            return Err(ConfigError::invalid(
                format!("{field}.cluster"),
                format!("no cluster named `{}` in [clusters]", self.cluster),
            ));
        }
        Ok(())
    }
}

/// Cluster names appear in metric labels and logs: keep them short tokens.
fn check_name(field: &str, name: &str) -> Result<(), ConfigError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        return Ok(());
    }
    Err(ConfigError::invalid(
        field,
        "a cluster name is 1 to 64 letters, digits, `_` or `-`",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::Algorithm;

    fn parse(text: &str) -> Result<Config, String> {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
        let config =
            service_kit::config::load::<Config>(Some(file.path())).map_err(|e| e.to_string())?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    #[test]
    fn the_example_config_loads_and_validates() {
        let text = include_str!("../../example.toml");
        let config = parse(text).unwrap();
        assert!(config.clusters.len() >= 2);
        assert!(!config.routes.is_empty());
    }

    #[test]
    fn a_cluster_listing_only_endpoints_gets_every_default() {
        let config = parse(
            "[[routes]]\ncluster = \"app\"\n\
             [clusters.app]\nendpoints = [{ address = \"127.0.0.1:9001\" }]\n",
        )
        .unwrap();
        let app = &config.clusters["app"];
        assert_eq!(app.lb, Algorithm::RoundRobin);
        assert_eq!(app.endpoints[0].weight, 1);
        assert_eq!(app.retry, RetryConfig::default());
        assert_eq!(config.routes[0].path_prefix, "/");
    }

    #[test]
    fn errors_name_the_field_at_fault() {
        let cases = [
            ("", "invalid value for `routes`"),
            (
                "[[routes]]\ncluster = \"nope\"\n",
                "invalid value for `routes[0].cluster`: no cluster named `nope`",
            ),
            (
                "[[routes]]\ncluster = \"a\"\npath_prefix = \"api\"\n\
                 [clusters.a]\nendpoints = [{ address = \"127.0.0.1:1\" }]\n",
                "invalid value for `routes[0].path_prefix`",
            ),
            (
                "[[routes]]\ncluster = \"a\"\n[clusters.a]\nendpoints = []\n",
                "invalid value for `clusters.a.endpoints`",
            ),
            (
                "[[routes]]\ncluster = \"a\"\n[clusters.a]\n\
                 endpoints = [{ address = \"127.0.0.1:1\", weight = 0 }]\n",
                "invalid value for `clusters.a.endpoints[0].weight`",
            ),
            (
                "[[routes]]\ncluster = \"a\"\n[clusters.a]\nlb = \"fastest\"\n\
                 endpoints = [{ address = \"127.0.0.1:1\" }]\n",
                "unknown variant `fastest`",
            ),
            (
                "[[routes]]\ncluster = \"a\"\n[clusters.a]\n\
                 endpoints = [{ address = \"127.0.0.1:1\" }]\n\
                 [clusters.a.retry]\nbudget_percent = 150\n",
                "invalid value for `clusters.a.retry.budget_percent`",
            ),
            (
                "[[routes]]\ncluster = \"a\"\n[clusters.a]\n\
                 endpoints = [{ address = \"127.0.0.1:1\" }]\n\
                 [clusters.a.health_check]\nkind = \"http\"\npath = \"healthz\"\n",
                "invalid value for `clusters.a.health_check.path`",
            ),
            (
                "[proxy]\nworkers = 0\n[[routes]]\ncluster = \"a\"\n[clusters.a]\n\
                 endpoints = [{ address = \"127.0.0.1:1\" }]\n",
                "invalid value for `proxy.workers`",
            ),
            (
                "[[routes]]\ncluster = \"a\"\n[clusters.a]\n\
                 endpoints = [{ address = \"127.0.0.1:1\" }]\nlb_typo = 1\n",
                "unknown field `lb_typo`",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.contains(expected), "{text:?}\n  gave: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }
}
