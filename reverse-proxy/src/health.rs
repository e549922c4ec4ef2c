//! Active health checks: every `interval_ms`, each endpoint is probed, and its health flips
//! after enough consecutive results the other way.
//!
//! ```text
//!            unhealthy_threshold failures in a row
//!   healthy ───────────────────────────────────────▶ unhealthy
//!      ▲                                                 │
//!      └──────── healthy_threshold successes in a row ───┘
//! ```
//!
//! A probe is `GET <path>` that must answer `expected_status` (on a fresh connection each
//! time, so a dead endpoint is not hidden behind a pooled connection), or a TCP connect; both
//! within `timeout_ms`, at the endpoint's address or at its `health_address` (an admin
//! listener's `/readyz`, which fails as soon as the server drains). The thresholds keep one lost probe from flapping an endpoint. So an
//! endpoint that dies is out of rotation at most about `interval_ms x unhealthy_threshold +
//! timeout_ms` later (the "health-check window"); until then retries (`retry.rs`) and the
//! outlier detector (`outlier.rs`) cover for it.
//!
//! Endpoints start healthy: a proxy that restarts (or reloads) does not refuse traffic until
//! its first probes come back.
//!
//! One task per endpoint, started with a random delay within the first interval so that
//! probes of many endpoints do not go out in bursts. A task holds only a weak reference to
//! its cluster and ends when the cluster is dropped (replaced by a reload) or at shutdown.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use http::Method;
use http1::client::{Client, ClientConfig};
use http1::{Body, Request};
use service_kit::shutdown::Shutdown;
use tokio::net::TcpStream;

use crate::balance::PickRng;
use crate::cluster::Cluster;
use crate::config::{HealthCheckConfig, HealthCheckKind};

/// Largest health-check response body read (and thrown away) before the connection closes.
pub const MAX_PROBE_BODY_BYTES: u64 = 64 * 1024;

/// Starts the checker tasks of `cluster`, if its config asks for active checks.
pub fn spawn_checks(cluster: &Arc<Cluster>, shutdown: &Shutdown, seed: u64) {
    let config = cluster.config.health_check.clone();
    if config.kind == HealthCheckKind::None {
        return;
    }
    let timeout = Duration::from_millis(config.timeout_ms);
    let client_config = ClientConfig {
        connect_timeout: timeout,
        response_header_timeout: timeout,
        max_idle_per_endpoint: 0,
        ..ClientConfig::default()
    };
    let Ok(client) = Client::new(client_config) else {
        tracing::error!(cluster = %cluster.name, "health-check client settings refused");
        return;
    };
    let rng = PickRng::new(seed);
    for index in 0..cluster.endpoints().len() {
        let first_delay = Duration::from_millis(rng.below(config.interval_ms));
        let checker = Checker {
            cluster: Arc::downgrade(cluster),
            index,
            config: config.clone(),
            client: client.clone(),
        };
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = stop.triggered() => {}
                () = checker.run(first_delay) => {}
            }
        });
    }
}

struct Checker {
    cluster: Weak<Cluster>,
    index: usize,
    config: HealthCheckConfig,
    client: Client,
}

impl Checker {
    async fn run(self, first_delay: Duration) {
        let interval = Duration::from_millis(self.config.interval_ms);
        tokio::time::sleep(first_delay).await;
        let (mut successes, mut failures) = (0u32, 0u32);
        loop {
            let Some(address) = self.endpoint_address() else {
                return;
            };
            let passed = self.probe(address).await;
            if passed {
                (successes, failures) = (successes.saturating_add(1), 0);
            } else {
                (successes, failures) = (0, failures.saturating_add(1));
            }
            let Some(cluster) = self.cluster.upgrade() else {
                return;
            };
            if failures == self.config.unhealthy_threshold {
                cluster.set_active_health(self.index, false);
            }
            if successes == self.config.healthy_threshold {
                cluster.set_active_health(self.index, true);
            }
            drop(cluster);
            tokio::time::sleep(interval).await;
        }
    }

    fn endpoint_address(&self) -> Option<SocketAddr> {
        let cluster = self.cluster.upgrade()?;
        Some(cluster.endpoints()[self.index].health_address)
    }

    async fn probe(&self, address: SocketAddr) -> bool {
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let probe = async {
            match self.config.kind {
                HealthCheckKind::Tcp => TcpStream::connect(address).await.is_ok(),
                _ => self.http_probe(address).await,
            }
        };
        tokio::time::timeout(timeout, probe).await.unwrap_or(false)
    }

    async fn http_probe(&self, address: SocketAddr) -> bool {
        let Some(cluster) = self.cluster.upgrade() else {
            return false;
        };
        let mut request = Request::new(Method::GET, self.config.path.clone(), Body::empty());
        if let Some(tls) = &cluster.config.upstream_tls
            && let Ok(host) = http::HeaderValue::from_str(&tls.server_name)
        {
            request.head.headers.insert(http::header::HOST, host);
        }
        let sent = cluster
            .send_with(&self.client, address, &request.head, request.body)
            .await;
        drop(cluster);
        let Ok(response) = sent else {
            return false;
        };
        let status_ok = response.status().as_u16() == self.config.expected_status;
        // Read the body so the upstream sees a complete exchange; a huge one is cut off.
        let _ = response.body.collect(MAX_PROBE_BODY_BYTES).await;
        status_ok
    }
}
