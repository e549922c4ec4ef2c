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

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use http1::client::{Client, ClientConfig};
use http1::{Limits, RequestHead};

use crate::balance::{self, Balancer, Candidates, HashKey};
use crate::config::ClusterConfig;

/// One upstream server and what the proxy knows about it now.
#[derive(Debug)]
pub struct Endpoint {
    pub address: SocketAddr,
    pub weight: u32,
    /// Requests in flight (see the module invariant).
    in_flight: AtomicU64,
    /// Whether the endpoint may get requests.
    healthy: AtomicBool,
}

impl Endpoint {
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
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
}

impl Cluster {
    /// Builds the run-time cluster. `seed` drives the balancer's random choices. Fails only
    /// when the client settings derived from the config are invalid, which validation rules
    /// out; the error names the cluster.
    pub fn new(name: &str, config: &ClusterConfig, seed: u64) -> Result<Cluster, String> {
        let endpoints = config
            .endpoints
            .iter()
            .map(|e| Endpoint {
                address: e.address,
                weight: e.weight,
                in_flight: AtomicU64::new(0),
                healthy: AtomicBool::new(true),
            })
            .collect();
        let client = Client::new(client_config(config))
            .map_err(|e| format!("cluster {name}: client settings: {e}"))?;
        Ok(Cluster {
            name: name.to_owned(),
            config: config.clone(),
            endpoints,
            balancer: balance::build(config, seed),
            client,
        })
    }

    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    pub fn client(&self) -> &Client {
        &self.client
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
        let fresh = View {
            endpoints: &self.endpoints,
            tried,
        };
        if let Some(index) = self.balancer.pick(&fresh, key) {
            return Some(index);
        }
        if tried.is_empty() {
            return None;
        }
        // Every healthy endpoint was tried already: trying one again beats giving up.
        let any = View {
            endpoints: &self.endpoints,
            tried: &[],
        };
        self.balancer.pick(&any, key)
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
}

impl Candidates for View<'_> {
    fn count(&self) -> usize {
        self.endpoints.len()
    }

    fn is_eligible(&self, index: usize) -> bool {
        self.endpoints[index].is_healthy() && !self.tried.contains(&index)
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
                })
                .collect(),
            lb,
            ..ClusterConfig::default()
        };
        Arc::new(Cluster::new("test", &config, 1).unwrap())
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
}
