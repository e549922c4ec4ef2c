//! `cluster.toml`: which servers run, how many of each, on which ports, with which flags.
//!
//! The file names components by kind; the launcher turns it into a [`Topology`]: one
//! [`Instance`] per process, named, with its addresses, in start order. Every field has a
//! default, so an empty file (or none) describes the default cluster, the URL shortener
//! at scale:
//!
//! ```text
//!   clients ─▶ reverse-proxy ─┬─ /api/... ─▶ api-gateway ─┬─▶ url-shortener-1 ─┬─▶ kv-store
//!                             │   (API keys, rate limits,  └─▶ url-shortener-2 ─┤
//!                             │    idempotency keys)             ▲              └─▶ message-broker
//!                             └─ /{code} redirects ──────────────┘                 (click events)
//! ```
//!
//! The gateway also keeps its shared rate-limit counters and idempotency keys in the
//! kv-store. The redirect path skips the gateway, as the hot read path of a real shortener
//! does: it needs no credentials, and it keeps working while the gateway is down.
//!
//! # Addresses
//!
//! A component's `listen` and `admin_listen` are those of its first instance; instance `n`
//! adds `n - 1` to both ports. Port 0 gives every instance a free port of its own (the tests
//! use this). Every address must be on loopback: this is a local cluster.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Most instances of one component.
pub const MAX_INSTANCES: usize = 16;

/// Most API keys the gateway is given.
pub const MAX_API_KEYS: usize = 100;

/// Largest rate limit accepted for link creation, per second.
pub const MAX_CREATE_LIMIT_PER_SECOND: u64 = 1_000_000;

/// The servers the launcher knows, in the order they start (each only needs those before it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    KvStore,
    MessageBroker,
    UrlShortener,
    ApiGateway,
    ReverseProxy,
}

impl Kind {
    /// Every kind, in start order.
    pub const ALL: [Kind; 5] = [
        Kind::KvStore,
        Kind::MessageBroker,
        Kind::UrlShortener,
        Kind::ApiGateway,
        Kind::ReverseProxy,
    ];

    /// The workspace binary, which is also the section name in `cluster.toml` and the base of
    /// instance names.
    pub fn binary(self) -> &'static str {
        match self {
            Kind::KvStore => "kv-store",
            Kind::MessageBroker => "message-broker",
            Kind::UrlShortener => "url-shortener",
            Kind::ApiGateway => "api-gateway",
            Kind::ReverseProxy => "reverse-proxy",
        }
    }

    /// The start tier: kinds of one tier have no links between them and start together.
    pub fn tier(self) -> usize {
        match self {
            Kind::KvStore | Kind::MessageBroker => 0,
            Kind::UrlShortener => 1,
            Kind::ApiGateway => 2,
            Kind::ReverseProxy => 3,
        }
    }

    /// Default and allowed instance counts: the kv-store and the broker are single nodes
    /// (their replication is later work), the proxy is the one entry point.
    fn counts(self) -> (usize, std::ops::RangeInclusive<usize>) {
        match self {
            Kind::KvStore | Kind::ReverseProxy => (1, 1..=1),
            Kind::MessageBroker => (1, 0..=1),
            Kind::UrlShortener => (2, 1..=MAX_INSTANCES),
            Kind::ApiGateway => (1, 0..=MAX_INSTANCES),
        }
    }

    /// Default `listen` and `admin_listen` ports.
    fn default_ports(self) -> (u16, u16) {
        match self {
            // Not 6379: a Redis of the user's own may be running there.
            Kind::KvStore => (6390, 9390),
            Kind::MessageBroker => (9093, 9193),
            Kind::UrlShortener => (8091, 9091),
            Kind::ApiGateway => (8000, 9000),
            Kind::ReverseProxy => (8080, 9080),
        }
    }

    /// Default `flags`: durability settings like the production peers' defaults (Redis's
    /// `appendfsync everysec`, a broker flush on an interval), and one worker thread per
    /// server, since the whole cluster shares the machine's cores.
    fn default_flags(self) -> &'static [&'static str] {
        match self {
            Kind::KvStore => &["--fsync", "everysec", "--workers", "1"],
            Kind::MessageBroker => &["--flush", "interval"],
            Kind::UrlShortener => &["--workers", "1"],
            Kind::ApiGateway | Kind::ReverseProxy => &[],
        }
    }

    /// Flags the launcher sets itself, which `flags` may therefore not repeat.
    pub fn reserved_flags(self) -> &'static [&'static str] {
        match self {
            Kind::KvStore | Kind::MessageBroker => &["--listen", "--admin-listen", "--data-dir"],
            Kind::UrlShortener => &[
                "--listen",
                "--admin-listen",
                "--data-dir",
                "--store",
                "--broker",
                "--public-url",
            ],
            Kind::ApiGateway | Kind::ReverseProxy => &["--listen", "--admin-listen", "--config"],
        }
    }

    fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.binary() == name)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.binary())
    }
}

/// Which of a server's two listeners a path leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Port {
    /// `listen`: the server's protocol.
    Service,
    /// `admin_listen`: `/readyz`, which health checks probe.
    Admin,
}

/// What the launcher does when a process exits without being told to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Report it and leave it down (`cluster restart NAME` brings it back).
    #[default]
    No,
    /// Report it and start it again after [`crate::supervisor::RESTART_DELAY`].
    OnFailure,
}

/// `cluster.toml` as written. Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterFile {
    pub cluster: ClusterSection,
    #[serde(rename = "kv-store")]
    pub kv_store: ComponentSection,
    #[serde(rename = "message-broker")]
    pub message_broker: ComponentSection,
    #[serde(rename = "url-shortener")]
    pub url_shortener: ComponentSection,
    #[serde(rename = "api-gateway")]
    pub api_gateway: ComponentSection,
    #[serde(rename = "reverse-proxy")]
    pub reverse_proxy: ComponentSection,
}

/// `[cluster]`: the launcher's own settings.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSection {
    /// Where the running launcher takes `cluster status`, `kill`, ... Default
    /// `127.0.0.1:7700`.
    pub control_listen: Option<SocketAddr>,
    /// One directory per process (data, generated config), relative to the file. Kept across
    /// runs; `cluster up --fresh` empties it. Default `target/cluster`.
    pub data_dir: Option<PathBuf>,
    /// Default `no`.
    pub restart: Option<RestartPolicy>,
    /// Whether every connection between two components goes through a fault proxy, so that
    /// `partition`, `heal` and `latency` work. Default true.
    pub fault_links: Option<bool>,
}

/// One component's section. The gateway-only fields are refused elsewhere.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ComponentSection {
    pub count: Option<usize>,
    pub listen: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    /// Extra command-line flags, after the ones the launcher sets.
    pub flags: Option<Vec<String>>,
    /// Overrides `[cluster] restart` for this component.
    pub restart: Option<RestartPolicy>,
    /// `[api-gateway]` only: the API keys of the write API.
    pub api_keys: Option<Vec<String>>,
    /// `[api-gateway]` only: link creations admitted per second per consumer, counted in
    /// the kv-store so that every gateway enforces one limit.
    pub create_limit_per_second: Option<u64>,
}

/// A bad `cluster.toml`: the field at fault and why.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> TopologyError {
    TopologyError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The cluster to run, resolved from a [`ClusterFile`].
#[derive(Clone, Debug)]
pub struct Topology {
    pub control_listen: SocketAddr,
    pub data_dir: PathBuf,
    pub fault_links: bool,
    /// Every process, in start order.
    pub instances: Vec<Instance>,
    pub gateway: GatewaySettings,
}

/// What the launcher writes into the gateway's generated config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewaySettings {
    /// Keys accepted on the write API, for consumer `demo`. Default `["demo-key"]`.
    pub api_keys: Vec<String>,
    /// Link creations per second per consumer, cluster-wide. Default 100.
    pub create_limit_per_second: u64,
}

/// One process of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    /// `kv-store`, or `url-shortener-2` when its kind has several instances.
    pub name: String,
    pub kind: Kind,
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub flags: Vec<String>,
    pub restart: RestartPolicy,
}

impl Topology {
    /// Reads `path` (a missing file is the default cluster only if `allow_missing`). Relative
    /// paths inside it are relative to its directory.
    pub fn load(path: &Path, allow_missing: bool) -> Result<Topology, TopologyError> {
        let shown = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if allow_missing && e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(TopologyError::Read {
                    path: shown,
                    source,
                });
            }
        };
        let file: ClusterFile = toml::from_str(&text).map_err(|e| TopologyError::Parse {
            path: shown,
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Topology::resolve(file, base)
    }

    /// Checks `file` and resolves defaults, ports and names. `base` is the directory that a
    /// relative `data_dir` is relative to.
    pub fn resolve(file: ClusterFile, base: &Path) -> Result<Topology, TopologyError> {
        let cluster = file.cluster;
        let control_listen = cluster
            .control_listen
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 7700)));
        check_loopback("cluster.control_listen", control_listen)?;
        let data_dir = base.join(
            cluster
                .data_dir
                .unwrap_or_else(|| PathBuf::from("target/cluster")),
        );
        let restart = cluster.restart.unwrap_or_default();
        let sections = [
            (Kind::KvStore, &file.kv_store),
            (Kind::MessageBroker, &file.message_broker),
            (Kind::UrlShortener, &file.url_shortener),
            (Kind::ApiGateway, &file.api_gateway),
            (Kind::ReverseProxy, &file.reverse_proxy),
        ];
        let mut instances = Vec::new();
        for (kind, section) in sections {
            instances.extend(resolve_component(kind, section, restart)?);
        }
        check_distinct(control_listen, &instances)?;
        let gateway = resolve_gateway(&file.api_gateway)?;
        Ok(Topology {
            control_listen,
            data_dir,
            fault_links: cluster.fault_links.unwrap_or(true),
            instances,
            gateway,
        })
    }

    /// The instances of one kind, in order.
    pub fn of(&self, kind: Kind) -> impl Iterator<Item = &Instance> {
        self.instances.iter().filter(move |i| i.kind == kind)
    }

    /// The instance called `name`.
    pub fn instance(&self, name: &str) -> Option<&Instance> {
        self.instances.iter().find(|i| i.name == name)
    }

    /// The names that `selector` picks: an instance name, or a kind for all its instances.
    pub fn select(&self, selector: &str) -> Vec<String> {
        match Kind::from_name(selector) {
            Some(kind) => self.of(kind).map(|i| i.name.clone()).collect(),
            None => self
                .instance(selector)
                .map(|i| vec![i.name.clone()])
                .unwrap_or_default(),
        }
    }

    /// Every path from one instance to another: `(client, server, port)`. A client calls its
    /// servers' service ports, and health-checks the admin port (`/readyz`) of those it
    /// balances over.
    pub fn connections(&self) -> Vec<(String, String, Port)> {
        let names = |kind| self.of(kind).map(|i: &Instance| i.name.clone());
        let mut paths = Vec::new();
        let mut add = |client: &str, servers: Vec<String>, port| {
            for server in servers {
                paths.push((client.to_owned(), server, port));
            }
        };
        for shortener in names(Kind::UrlShortener) {
            let servers = names(Kind::KvStore).chain(names(Kind::MessageBroker));
            add(&shortener, servers.collect(), Port::Service);
        }
        for gateway in names(Kind::ApiGateway) {
            let servers = names(Kind::UrlShortener).chain(names(Kind::KvStore));
            add(&gateway, servers.collect(), Port::Service);
            add(&gateway, names(Kind::UrlShortener).collect(), Port::Admin);
        }
        for proxy in names(Kind::ReverseProxy) {
            let balanced: Vec<String> = names(Kind::ApiGateway)
                .chain(names(Kind::UrlShortener))
                .collect();
            add(&proxy, balanced.clone(), Port::Service);
            add(&proxy, balanced, Port::Admin);
        }
        paths
    }

    /// The address clients outside the cluster use: the reverse proxy's.
    pub fn entry(&self) -> SocketAddr {
        self.of(Kind::ReverseProxy)
            .next()
            .expect("a topology always has its reverse proxy")
            .listen
    }
}

fn resolve_component(
    kind: Kind,
    section: &ComponentSection,
    cluster_restart: RestartPolicy,
) -> Result<Vec<Instance>, TopologyError> {
    let name = kind.binary();
    let (default_count, allowed) = kind.counts();
    let count = section.count.unwrap_or(default_count);
    if !allowed.contains(&count) {
        let reason = match (allowed.start(), allowed.end()) {
            (start, end) if start == end => format!("must be {start}"),
            (start, end) => format!("must be between {start} and {end}"),
        };
        return Err(invalid(format!("{name}.count"), reason));
    }
    if kind != Kind::ApiGateway {
        if section.api_keys.is_some() {
            return Err(invalid(
                format!("{name}.api_keys"),
                "only [api-gateway] has API keys",
            ));
        }
        if section.create_limit_per_second.is_some() {
            return Err(invalid(
                format!("{name}.create_limit_per_second"),
                "only [api-gateway] has rate limits",
            ));
        }
    }
    let flags = section.flags.clone().unwrap_or_else(|| {
        kind.default_flags()
            .iter()
            .map(|flag| flag.to_string())
            .collect()
    });
    for flag in &flags {
        let key = flag.split('=').next().unwrap_or(flag);
        if kind.reserved_flags().contains(&key) {
            return Err(invalid(
                format!("{name}.flags"),
                format!("{key} is set by the launcher (from listen, admin_listen and the links)"),
            ));
        }
    }
    let (port, admin_port) = kind.default_ports();
    let listen = section
        .listen
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], port)));
    let admin = section
        .admin_listen
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], admin_port)));
    check_loopback(&format!("{name}.listen"), listen)?;
    check_loopback(&format!("{name}.admin_listen"), admin)?;
    let max = *allowed.end();
    (0..count)
        .map(|i| {
            let instance_name = match max {
                1 => name.to_owned(),
                _ => format!("{name}-{}", i + 1),
            };
            Ok(Instance {
                name: instance_name,
                kind,
                listen: nth_address(&format!("{name}.listen"), listen, i)?,
                admin_listen: nth_address(&format!("{name}.admin_listen"), admin, i)?,
                flags: flags.clone(),
                restart: section.restart.unwrap_or(cluster_restart),
            })
        })
        .collect()
}

fn resolve_gateway(section: &ComponentSection) -> Result<GatewaySettings, TopologyError> {
    let api_keys = section
        .api_keys
        .clone()
        .unwrap_or_else(|| vec!["demo-key".to_owned()]);
    if api_keys.is_empty() || api_keys.len() > MAX_API_KEYS {
        return Err(invalid(
            "api-gateway.api_keys",
            format!("must hold 1 to {MAX_API_KEYS} keys"),
        ));
    }
    for key in &api_keys {
        let visible = !key.is_empty() && key.bytes().all(|b| b.is_ascii_graphic());
        if !visible {
            return Err(invalid(
                "api-gateway.api_keys",
                "a key must be printable ASCII without spaces",
            ));
        }
    }
    let create_limit_per_second = section.create_limit_per_second.unwrap_or(100);
    if !(1..=MAX_CREATE_LIMIT_PER_SECOND).contains(&create_limit_per_second) {
        return Err(invalid(
            "api-gateway.create_limit_per_second",
            format!("must be between 1 and {MAX_CREATE_LIMIT_PER_SECOND}"),
        ));
    }
    Ok(GatewaySettings {
        api_keys,
        create_limit_per_second,
    })
}

fn check_loopback(field: &str, addr: SocketAddr) -> Result<(), TopologyError> {
    if !addr.ip().is_loopback() {
        return Err(invalid(
            field,
            format!("{addr} is not a loopback address: this is a local cluster"),
        ));
    }
    Ok(())
}

/// The address of instance `i` (from 0): the port plus `i`, or a free port when it is 0.
fn nth_address(field: &str, first: SocketAddr, i: usize) -> Result<SocketAddr, TopologyError> {
    if first.port() == 0 {
        return Ok(harness::free_addr());
    }
    let port = u16::try_from(usize::from(first.port()) + i).map_err(|_| {
        invalid(
            field,
            format!("instance {} would be past port 65535", i + 1),
        )
    })?;
    Ok(SocketAddr::new(first.ip(), port))
}

fn check_distinct(control: SocketAddr, instances: &[Instance]) -> Result<(), TopologyError> {
    let mut seen = BTreeSet::from([control]);
    for instance in instances {
        for (what, addr) in [
            ("listen", instance.listen),
            ("admin_listen", instance.admin_listen),
        ] {
            if !seen.insert(addr) {
                return Err(invalid(
                    format!("{}.{what}", instance.kind),
                    format!("{} of {} is used twice", addr, instance.name),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Topology, TopologyError> {
        let file: ClusterFile = toml::from_str(text).map_err(|e| TopologyError::Parse {
            path: "test".into(),
            message: e.to_string(),
        })?;
        Topology::resolve(file, Path::new("/base"))
    }

    #[test]
    fn an_empty_file_is_the_default_cluster() {
        let topology = parse("").unwrap();
        let names: Vec<_> = topology.instances.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "kv-store",
                "message-broker",
                "url-shortener-1",
                "url-shortener-2",
                "api-gateway-1",
                "reverse-proxy"
            ]
        );
        let second = topology.instance("url-shortener-2").unwrap();
        assert_eq!(second.listen, "127.0.0.1:8092".parse().unwrap());
        assert_eq!(second.admin_listen, "127.0.0.1:9092".parse().unwrap());
        assert_eq!(topology.data_dir, Path::new("/base/target/cluster"));
        assert_eq!(topology.entry(), "127.0.0.1:8080".parse().unwrap());
        assert_eq!(topology.gateway.api_keys, ["demo-key"]);
    }

    #[test]
    fn the_workspace_cluster_toml_spells_out_the_defaults() {
        let written = parse(include_str!("../../cluster.toml")).unwrap();
        let default = parse("").unwrap();
        assert_eq!(written.instances, default.instances);
        assert_eq!(written.gateway, default.gateway);
        assert_eq!(written.control_listen, default.control_listen);
        assert_eq!(written.data_dir, default.data_dir);
        assert_eq!(written.fault_links, default.fault_links);
    }

    #[test]
    fn selectors_name_an_instance_or_every_instance_of_a_kind() {
        let topology = parse("[api-gateway]\ncount = 2\n").unwrap();
        assert_eq!(
            topology.select("api-gateway"),
            ["api-gateway-1", "api-gateway-2"]
        );
        assert_eq!(topology.select("api-gateway-2"), ["api-gateway-2"]);
        assert_eq!(topology.select("kv-store"), ["kv-store"]);
        assert!(topology.select("postgres").is_empty());
    }

    #[test]
    fn connections_follow_the_dependencies() {
        let topology = parse("[message-broker]\ncount = 0\n[url-shortener]\ncount = 1\n").unwrap();
        let paths: Vec<_> = topology
            .connections()
            .into_iter()
            .map(|(a, b, port)| format!("{a}->{b} {port:?}"))
            .collect();
        assert_eq!(
            paths,
            [
                "url-shortener-1->kv-store Service",
                "api-gateway-1->url-shortener-1 Service",
                "api-gateway-1->kv-store Service",
                "api-gateway-1->url-shortener-1 Admin",
                "reverse-proxy->api-gateway-1 Service",
                "reverse-proxy->url-shortener-1 Service",
                "reverse-proxy->api-gateway-1 Admin",
                "reverse-proxy->url-shortener-1 Admin",
            ]
        );
    }

    #[test]
    fn bad_values_are_named() {
        let cases = [
            ("[kv-store]\ncount = 2\n", "kv-store.count: must be 1"),
            (
                "[url-shortener]\ncount = 0\n",
                "url-shortener.count: must be between 1 and 16",
            ),
            (
                "[kv-store]\nflags = [\"--listen=127.0.0.1:1\"]\n",
                "kv-store.flags: --listen is set by the launcher",
            ),
            (
                "[kv-store]\napi_keys = [\"k\"]\n",
                "kv-store.api_keys: only [api-gateway]",
            ),
            (
                "[reverse-proxy]\nlisten = \"10.0.0.1:80\"\n",
                "reverse-proxy.listen: 10.0.0.1:80 is not a loopback address",
            ),
            (
                "[api-gateway]\nlisten = \"127.0.0.1:8091\"\n",
                "api-gateway.listen: 127.0.0.1:8091 of api-gateway-1 is used twice",
            ),
            (
                "[api-gateway]\napi_keys = [\"two words\"]\n",
                "api-gateway.api_keys: a key must be printable ASCII",
            ),
            ("[cluster]\nport = 1\n", "unknown field `port`"),
        ];
        for (text, expected) in cases {
            let error = parse(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn port_zero_gives_each_instance_a_free_port() {
        let text = "[url-shortener]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n";
        let topology = parse(text).unwrap();
        let shorteners: Vec<_> = topology.of(Kind::UrlShortener).collect();
        assert_ne!(shorteners[0].listen.port(), 0);
        assert_ne!(shorteners[0].listen, shorteners[1].listen);
    }
}
