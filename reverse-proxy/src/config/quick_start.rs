//! The quick start: a proxy in one command line, without a file.
//!
//! ```text
//! reverse-proxy --listen 127.0.0.1:8080 --upstream 127.0.0.1:9001 --upstream 127.0.0.1:9002 \
//!               [--lb ALGORITHM] [--health-path /healthz]
//! ```
//!
//! The flags describe one cluster, named [`QUICK_START_CLUSTER`], and a catch-all route to it.
//! With `--config` as well, the flags replace that cluster in the file and add the catch-all
//! route after the file's routes, so the file's more specific routes still win.

use std::net::SocketAddr;

use clap::Args;

use super::{Config, EndpointConfig, HealthCheckKind, RouteConfig};
use crate::balance::Algorithm;

/// Name of the cluster the quick-start flags describe.
pub const QUICK_START_CLUSTER: &str = "default";

/// The quick-start flags.
#[derive(Args, Clone, Debug, Default, PartialEq)]
pub struct QuickStartArgs {
    /// An upstream server, IP:port; repeat for several. Defines the `default` cluster and a
    /// catch-all route to it.
    #[arg(long = "upstream", value_name = "ADDR")]
    pub upstreams: Vec<SocketAddr>,
    /// Balancing algorithm of the `default` cluster.
    #[arg(long, value_name = "ALGORITHM", value_enum)]
    pub lb: Option<Algorithm>,
    /// Turn on HTTP health checks of the `default` cluster's upstreams at this path.
    #[arg(long, value_name = "PATH")]
    pub health_path: Option<String>,
}

impl QuickStartArgs {
    /// Lays the flags over `config`. Without `--upstream`, `--lb` and `--health-path` change
    /// the `default` cluster of the file, if it has one.
    pub fn apply_to(&self, config: &mut Config) {
        if !self.upstreams.is_empty() {
            let cluster = config
                .clusters
                .entry(QUICK_START_CLUSTER.to_owned())
                .or_default();
            cluster.endpoints = self
                .upstreams
                .iter()
                .map(|&address| EndpointConfig {
                    address,
                    weight: 1,
                    health_address: None,
                })
                .collect();
            let catch_all = RouteConfig {
                host: None,
                path_prefix: "/".to_owned(),
                cluster: QUICK_START_CLUSTER.to_owned(),
            };
            if !config.routes.contains(&catch_all) {
                config.routes.push(catch_all);
            }
        }
        let Some(cluster) = config.clusters.get_mut(QUICK_START_CLUSTER) else {
            return;
        };
        if let Some(lb) = self.lb {
            cluster.lb = lb;
        }
        if let Some(path) = &self.health_path {
            cluster.health_check.kind = HealthCheckKind::Http;
            cluster.health_check.path.clone_from(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use service_kit::config::Validate;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        quick: QuickStartArgs,
    }

    #[test]
    fn flags_alone_make_a_complete_config() {
        let cli = Cli::parse_from([
            "reverse-proxy",
            "--upstream",
            "127.0.0.1:9001",
            "--upstream",
            "127.0.0.1:9002",
            "--lb",
            "maglev",
            "--health-path",
            "/ping",
        ]);
        let mut config = Config::default();
        cli.quick.apply_to(&mut config);
        config.validate().unwrap();
        let cluster = &config.clusters[QUICK_START_CLUSTER];
        assert_eq!(cluster.endpoints.len(), 2);
        assert_eq!(cluster.lb, Algorithm::Maglev);
        assert_eq!(cluster.health_check.kind, HealthCheckKind::Http);
        assert_eq!(cluster.health_check.path, "/ping");
        assert_eq!(config.routes.len(), 1);
    }

    #[test]
    fn every_algorithm_is_named_the_same_in_flags_and_config() {
        for algorithm in Algorithm::ALL {
            let name = algorithm.name();
            let cli = Cli::parse_from(["reverse-proxy", "--lb", name]);
            assert_eq!(cli.quick.lb, Some(algorithm));
            let from_toml: Algorithm = toml::Value::String(name.to_owned()).try_into().unwrap();
            assert_eq!(from_toml, algorithm);
        }
    }

    #[test]
    fn an_unknown_algorithm_is_refused_naming_the_flag() {
        let Err(err) = Cli::try_parse_from(["reverse-proxy", "--lb", "fastest"]) else {
            panic!("`fastest` is not an algorithm");
        };
        assert!(err.to_string().contains("--lb"), "{err}");
    }
}
