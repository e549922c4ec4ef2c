//! `run`: the proxy as a server, on listeners bound by the caller.
//!
//! ```text
//!  run(listeners, config, shutdown)
//!    ├─ metrics registry ─▶ Proxy (routes, clusters, pools)
//!    ├─ admin listener: /metrics, /healthz, /readyz          (service_kit::admin)
//!    ├─ HTTP listener: http1::server::serve ─▶ Proxy::handle  (one task per connection)
//!    ├─ reloads: each validated Config received swaps routes and clusters (proxy.rs)
//!    └─ shutdown triggered ─▶ /readyz says draining ─▶ stop accepting
//!         ─▶ in-flight requests finish (server.shutdown_timeout_ms) ─▶ return
//! ```
//!
//! # Reload without dropping a request
//!
//! The binary turns SIGHUP into a [`Config`] (file and flags read again, then validated; an
//! invalid one is logged and ignored) and sends it on the `reloads` channel. Here it becomes a
//! new table of routes and clusters (new balancers, pools, health checks) that replaces the
//! old one in one pointer swap. The listeners are not touched, so no connection is refused
//! and none is closed; a request that started before the swap finishes on the old table (it
//! holds an `Arc` to it), and the old pools and health checks go away with the last such
//! request. Settings that belong to the listeners or the process (`[server]`, `proxy.workers`,
//! `proxy.max_connections`) need a restart; a reload that changes them says so in the log.

use std::future::Future;
use std::sync::{Arc, RwLock};

use http1::server::{self, ServerConfig as HttpConfig};
use http1::{Request, Response};
use service_kit::admin::{self, AdminState};
use service_kit::metrics::{MetricsError, Registry};
use service_kit::shutdown::Shutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};

use crate::config::Config;
use crate::headers::Scheme;
use crate::metrics::ProxyMetrics;
use crate::proxy::{Downstream, Proxy};
use crate::tls::{self, CurrentTls};

/// The sockets the proxy serves, bound by the caller (tests bind port 0).
#[derive(Debug)]
pub struct Listeners {
    /// Plain HTTP clients.
    pub http: TcpListener,
    /// HTTPS clients, when the config has a `[tls]` section (ignored otherwise).
    pub https: Option<TcpListener>,
    /// The L4 listeners, one per `[[tcp]]` entry, in order (std sockets: they go to `mio`).
    pub tcp: Vec<std::net::TcpListener>,
    /// `/metrics`, `/healthz`, `/readyz`.
    pub admin: TcpListener,
}

/// Why the proxy could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("metrics: {0}")]
    Metrics(#[from] MetricsError),
    #[error("{0}")]
    Setup(String),
}

/// Most reloads queued; a SIGHUP that finds the queue full is dropped, since the reload
/// already queued reads the same file.
pub const RELOAD_QUEUE: usize = 1;

/// Serves `config` (already validated) until `shutdown` is triggered, then drains. Each
/// config received on `reloads` (validated by the sender) replaces routes and clusters.
pub async fn run(
    listeners: Listeners,
    config: Config,
    shutdown: Shutdown,
    reloads: mpsc::Receiver<Config>,
) -> Result<(), RunError> {
    let registry = Registry::new();
    let metrics = ProxyMetrics::register(&registry)?;
    let proxy = Arc::new(Proxy::new(&config, metrics, shutdown.clone()).map_err(RunError::Setup)?);
    let admin_state = AdminState::new(registry);
    let drain = config.server.shutdown_timeout();

    let admin_task = tokio::spawn({
        let (state, stop) = (admin_state.clone(), shutdown.clone());
        async move { admin::serve(listeners.admin, state, drain, stop.triggered()).await }
    });
    let draining = tokio::spawn({
        let (state, stop) = (admin_state.clone(), shutdown.clone());
        async move {
            stop.triggered().await;
            state.mark_draining();
        }
    });

    let http = HttpConfig {
        max_connections: config.proxy.max_connections,
        drain_timeout: drain,
        ..HttpConfig::default()
    };
    let current_tls = match (&config.tls, listeners.https) {
        (Some(tls), Some(listener)) => {
            let server_config =
                tls::server_config(tls).map_err(|e| RunError::Setup(e.to_string()))?;
            let current: CurrentTls = Arc::new(RwLock::new(server_config));
            tokio::spawn(tls::serve(
                listener,
                current.clone(),
                tls.handshake_timeout(),
                Arc::new(http.clone()),
                Arc::new(handler(proxy.clone(), Scheme::Https)),
                Arc::new(Semaphore::new(config.proxy.max_connections)),
                shutdown.clone(),
            ));
            Some(current)
        }
        _ => None,
    };
    if listeners.tcp.len() != config.tcp.len() {
        return Err(RunError::Setup(format!(
            "{} L4 listeners for {} [[tcp]] entries",
            listeners.tcp.len(),
            config.tcp.len()
        )));
    }
    if !listeners.tcp.is_empty() {
        let l4_listeners = listeners
            .tcp
            .into_iter()
            .zip(&config.tcp)
            .map(|(socket, tcp)| (socket, tcp.cluster.clone()))
            .collect();
        crate::l4::spawn(
            l4_listeners,
            proxy.clone(),
            config.proxy.max_connections,
            config.proxy.access_log,
            &shutdown,
        )
        .map_err(|e| RunError::Setup(format!("L4 event loop: {e}")))?;
    }
    let reloader = tokio::spawn(apply_reloads(
        proxy.clone(),
        config.clone(),
        reloads,
        current_tls,
    ));
    let sampler = tokio::spawn(crate::metrics::sample_pools(Arc::downgrade(&proxy)));
    let local = listeners.http.local_addr().ok();
    tracing::info!(listen = ?local, clusters = config.clusters.len(), routes = config.routes.len(), "serving");
    admin_state.mark_ready();
    let plain = handler(proxy.clone(), Scheme::Http);
    server::serve(listeners.http, http, plain, shutdown.triggered())
        .await
        .map_err(|e| RunError::Setup(e.to_string()))?;
    draining.abort();
    reloader.abort();
    sampler.abort();
    let _ = admin_task.await;
    Ok(())
}

/// The `http1` handler of a listener whose clients use `scheme`. A named type rather than
/// a closure returning a boxed future: the request's future (the whole try loop) is large,
/// and boxing it would cost an allocation and a copy per request.
fn handler(proxy: Arc<Proxy>, scheme: Scheme) -> ProxyHandler {
    ProxyHandler { proxy, scheme }
}

struct ProxyHandler {
    proxy: Arc<Proxy>,
    scheme: Scheme,
}

impl http1::server::Handler for ProxyHandler {
    fn call(&self, request: Request) -> impl Future<Output = Response> + Send {
        self.proxy.handle(
            request,
            Downstream {
                scheme: self.scheme,
            },
        )
    }
}

async fn apply_reloads(
    proxy: Arc<Proxy>,
    mut current: Config,
    mut reloads: mpsc::Receiver<Config>,
    tls: Option<CurrentTls>,
) {
    while let Some(config) = reloads.recv().await {
        if let (Some(current_tls), Some(tls_config)) = (&tls, &config.tls) {
            match tls::server_config(tls_config) {
                Ok(server_config) => {
                    *current_tls.write().unwrap_or_else(|e| e.into_inner()) = server_config;
                }
                Err(error) => {
                    tracing::error!(%error, "reload failed: keeping the previous config and certificates");
                    continue;
                }
            }
        }
        for field in restart_only_changes(&current, &config) {
            tracing::warn!(
                field,
                "changed in the new config but only applied at restart"
            );
        }
        match proxy.reload(&config) {
            Ok(()) => {
                tracing::info!(
                    clusters = config.clusters.len(),
                    routes = config.routes.len(),
                    "config reloaded"
                );
                current = config;
            }
            Err(error) => {
                tracing::error!(%error, "reload failed; still serving the previous config")
            }
        }
    }
}

/// The settings a reload cannot change, named as in the file, that differ.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if old.server != new.server {
        changed.push("server");
    }
    if old.tls.as_ref().map(|t| t.listen) != new.tls.as_ref().map(|t| t.listen) {
        changed.push("tls.listen");
    }
    if old.tcp != new.tcp {
        changed.push("tcp");
    }
    if old.proxy.workers != new.proxy.workers {
        changed.push("proxy.workers");
    }
    if old.proxy.max_connections != new.proxy.max_connections {
        changed.push("proxy.max_connections");
    }
    if old.proxy.max_tunnels != new.proxy.max_tunnels {
        changed.push("proxy.max_tunnels");
    }
    if old.proxy.via != new.proxy.via || old.proxy.access_log != new.proxy.access_log {
        changed.push("proxy.via / proxy.access_log");
    }
    changed
}
