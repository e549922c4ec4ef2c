//! Each instance's command line, and the config files the launcher writes for it.
//!
//! The kv-store, the broker and the url-shortener are configured by flags alone. The API
//! gateway and the reverse proxy need a file (routes, clusters, policies), which is written to
//! the instance's directory as `gateway.toml` or `proxy.toml`, so that a reader can open the
//! exact configuration each process runs with.
//!
//! Where one instance reaches another, the address comes from `route(client, server, port)`:
//! the listen address of the fault link between them ([`crate::links`]), or the server's own
//! address when the cluster runs without fault links.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use harness::ProcessSpec;
use sha2::{Digest, Sha256};

use crate::topology::{Instance, Kind, Port, Topology};

/// Where `client` connects to reach `server`'s `port`.
pub type Route<'a> = dyn Fn(&str, &str, Port) -> SocketAddr + 'a;

/// The consumer that the gateway's API keys belong to.
pub const CONSUMER: &str = "demo";

/// The header the gateway reads API keys from.
pub const API_KEY_HEADER: &str = "x-api-key";

/// How each hop times out a request, in milliseconds: a paused (SIGSTOPped) server answers
/// nothing, and the caller should move on well before a person gives up. The proxy's limit
/// covers the gateway's, which covers the url-shortener's own store calls.
const PROXY_REQUEST_TIMEOUT_MS: u64 = 4_000;
const GATEWAY_ROUTE_TIMEOUT_MS: u64 = 3_000;

/// Health checks of every balanced cluster: the endpoint's admin `/readyz` (which turns 503
/// as a server starts to drain) twice a second; two failures take it out, one success brings
/// it back.
const HEALTH_CHECK: &str = "{ kind = \"http\", path = \"/readyz\", interval_ms = 500, \
    timeout_ms = 250, unhealthy_threshold = 2, healthy_threshold = 1 }";

/// Passive ejection after consecutive failures, for 5 s (then 10, 15, ...).
const OUTLIER_DETECTION: &str = "{ consecutive_5xx = 5, consecutive_connect_failures = 3, base_ejection_ms = 5000, \
    max_ejection_ms = 30000, max_ejection_percent = 50 }";

/// The directory of one instance: its data and its generated config.
pub fn instance_dir(topology: &Topology, instance: &Instance) -> PathBuf {
    topology.data_dir.join(&instance.name)
}

/// The command that starts `instance`; writes its config file first where it has one.
pub fn process_spec(
    topology: &Topology,
    instance: &Instance,
    binary: &Path,
    route: &Route<'_>,
) -> std::io::Result<ProcessSpec> {
    let dir = instance_dir(topology, instance);
    std::fs::create_dir_all(&dir)?;
    let mut args: Vec<OsString> = vec![
        "--listen".into(),
        instance.listen.to_string().into(),
        "--admin-listen".into(),
        instance.admin_listen.to_string().into(),
    ];
    match instance.kind {
        Kind::KvStore | Kind::MessageBroker => {
            args.extend(["--data-dir".into(), dir.clone().into_os_string()]);
        }
        Kind::UrlShortener => {
            let kv = only(topology, Kind::KvStore);
            args.extend(["--data-dir".into(), dir.clone().into_os_string()]);
            args.push("--store".into());
            args.push(format!("kv://{}", route(&instance.name, &kv.name, Port::Service)).into());
            if let Some(broker) = topology.of(Kind::MessageBroker).next() {
                args.push("--broker".into());
                args.push(
                    route(&instance.name, &broker.name, Port::Service)
                        .to_string()
                        .into(),
                );
            }
            args.push("--public-url".into());
            args.push(format!("http://{}", topology.entry()).into());
        }
        Kind::ApiGateway => {
            let file = dir.join("gateway.toml");
            std::fs::write(&file, gateway_config(topology, instance, route))?;
            args.extend(["--config".into(), file.into_os_string()]);
        }
        Kind::ReverseProxy => {
            let file = dir.join("proxy.toml");
            std::fs::write(&file, proxy_config(topology, instance, route))?;
            args.extend(["--config".into(), file.into_os_string()]);
        }
    }
    args.extend(instance.flags.iter().map(OsString::from));
    Ok(ProcessSpec::new(&instance.name, binary).args(args))
}

fn only(topology: &Topology, kind: Kind) -> &Instance {
    topology
        .of(kind)
        .next()
        .unwrap_or_else(|| panic!("the topology was validated to have a {kind}"))
}

/// SHA-256 of an API key, in hex: the gateway's config holds digests, never the keys.
pub fn key_digest(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

/// `endpoints = [...]` of a cluster over `servers`, each health-checked at its admin listener
/// (through a link of its own).
fn endpoints<'a>(
    client: &Instance,
    servers: impl Iterator<Item = &'a Instance>,
    route: &Route<'_>,
) -> String {
    let entries: Vec<String> = servers
        .map(|server| {
            format!(
                "{{ address = \"{}\", health_address = \"{}\" }}",
                route(&client.name, &server.name, Port::Service),
                route(&client.name, &server.name, Port::Admin)
            )
        })
        .collect();
    format!("[{}]", entries.join(", "))
}

/// The gateway: the write API behind API keys, one cluster-wide limit on creations,
/// idempotency keys in the kv-store, reads passed through.
fn gateway_config(topology: &Topology, gateway: &Instance, route: &Route<'_>) -> String {
    let settings = &topology.gateway;
    let kv = only(topology, Kind::KvStore);
    let keys: Vec<String> = settings
        .api_keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            format!(
                "  {{ id = \"key-{}\", consumer = \"{CONSUMER}\", sha256 = \"{}\" }},",
                i + 1,
                key_digest(key)
            )
        })
        .collect();
    format!(
        r#"# Written by the cluster launcher for {name}; edit cluster.toml instead.
[server]
listen = "{listen}"
admin_listen = "{admin}"

[gateway]
workers = 1
access_log = false
trusted_proxies = ["127.0.0.1"]

# Shared rate-limit counters and idempotency keys.
[kv]
address = "{kv}"
timeout_ms = 200

[auth]
api_key = {{ header = "{API_KEY_HEADER}" }}
api_keys = [
{keys}
]

[consumers.{CONSUMER}]
plan = "default"

[plans.default]
rate_limits = ["creations"]

# One limit for every gateway: the counters live in the kv-store.
[rate_limits.creations]
algorithm = "fixed_window"
limit = {limit}
window_ms = 1000
key = "consumer"
scope = "cluster"
on_store_error = "fail_open"

[idempotency]
store = "kv"

[circuit_breakers.links]

[[routes]]
name = "links-write"
path_prefix = "/api/v1/links"
methods = ["POST", "PATCH", "DELETE"]
auth = ["api_key"]
idempotency = true
timeout_ms = {GATEWAY_ROUTE_TIMEOUT_MS}
cluster = "links"

[[routes]]
name = "api-read"
path_prefix = "/api"
methods = ["GET", "HEAD"]
timeout_ms = {GATEWAY_ROUTE_TIMEOUT_MS}
cluster = "links"

[clusters.links]
endpoints = {shorteners}
lb = "least_conn"
health_check = {HEALTH_CHECK}
outlier_detection = {OUTLIER_DETECTION}
"#,
        name = gateway.name,
        listen = gateway.listen,
        admin = gateway.admin_listen,
        kv = route(&gateway.name, &kv.name, Port::Service),
        keys = keys.join("\n"),
        limit = settings.create_limit_per_second,
        shorteners = endpoints(gateway, topology.of(Kind::UrlShortener), route),
    )
}

/// The proxy: `/api/` to the gateways (or straight to the url-shorteners when there is no
/// gateway), everything else, the redirects, to the url-shorteners.
fn proxy_config(topology: &Topology, proxy: &Instance, route: &Route<'_>) -> String {
    let shorteners = endpoints(proxy, topology.of(Kind::UrlShortener), route);
    let mut api = String::new();
    if topology.of(Kind::ApiGateway).next().is_some() {
        let gateways = endpoints(proxy, topology.of(Kind::ApiGateway), route);
        api = format!(
            r#"
[[routes]]
path_prefix = "/api/"
cluster = "gateways"

[clusters.gateways]
endpoints = {gateways}
lb = "round_robin"
health_check = {HEALTH_CHECK}
outlier_detection = {OUTLIER_DETECTION}
timeouts = {{ connect_ms = 1000, request_ms = {PROXY_REQUEST_TIMEOUT_MS} }}
"#
        );
    }
    format!(
        r#"# Written by the cluster launcher for {name}; edit cluster.toml instead.
[server]
listen = "{listen}"
admin_listen = "{admin}"

[proxy]
workers = 1
access_log = false
{api}
[[routes]]
cluster = "shorteners"

[clusters.shorteners]
endpoints = {shorteners}
lb = "round_robin"
health_check = {HEALTH_CHECK}
outlier_detection = {OUTLIER_DETECTION}
timeouts = {{ connect_ms = 1000, request_ms = {PROXY_REQUEST_TIMEOUT_MS} }}
"#,
        name = proxy.name,
        listen = proxy.listen,
        admin = proxy.admin_listen,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::ClusterFile;

    #[test]
    fn key_digests_are_sha256_in_hex() {
        // printf %s 'alice-demo-key' | sha256sum (api-gateway/example.toml)
        assert_eq!(
            key_digest("alice-demo-key"),
            "0572c17ed012b3efdf9df98db1718f225887132739b8da945d81ac5a7d1fea45"
        );
    }

    #[test]
    fn generated_configs_are_valid_toml_naming_every_upstream_through_its_link() {
        let dir = tempfile::tempdir().unwrap();
        let file: ClusterFile = toml::from_str("").unwrap();
        let topology = Topology::resolve(file, dir.path()).unwrap();
        let route = |from: &str, to: &str, port: Port| -> SocketAddr {
            // A made-up link address per path, to see that each one is used.
            let admin = if port == Port::Admin { 5_000 } else { 0 };
            let port = 20_000 + admin + (from.len() * 100 + to.len()) as u16;
            SocketAddr::from(([127, 0, 0, 1], port))
        };
        let gateway = topology.instance("api-gateway-1").unwrap();
        let text = gateway_config(&topology, gateway, &route);
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(
            parsed["kv"]["address"].as_str(),
            Some(
                route("api-gateway-1", "kv-store", Port::Service)
                    .to_string()
                    .as_str()
            )
        );
        let endpoints = parsed["clusters"]["links"]["endpoints"].as_array().unwrap();
        assert_eq!(endpoints.len(), 2);
        let admin = route("api-gateway-1", "url-shortener-2", Port::Admin);
        assert_eq!(
            endpoints[1]["health_address"].as_str(),
            Some(admin.to_string().as_str())
        );
        let proxy = topology.instance("reverse-proxy").unwrap();
        let parsed: toml::Table = toml::from_str(&proxy_config(&topology, proxy, &route)).unwrap();
        let routes = parsed["routes"].as_array().unwrap();
        assert_eq!(routes[0]["cluster"].as_str(), Some("gateways"));
        assert_eq!(routes[1]["cluster"].as_str(), Some("shorteners"));
    }
}
