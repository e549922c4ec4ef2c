//! `run`: the gateway as a server, on listeners bound by the caller.
//!
//! ```text
//!  run(listeners, config, clock, shutdown, reloads)
//!    ├─ metrics registry: gateway_* (metrics.rs) and proxy_* (the reverse proxy's)
//!    ├─ reverse_proxy::Proxy over [clusters] (balancers, health checks, pools)
//!    ├─ kv-store client, when [kv] is set (cluster-wide limits, idempotency keys)
//!    ├─ Table (routes, credentials, policies, breakers) ─▶ Gateway
//!    ├─ admin listener: /metrics, /healthz, /readyz
//!    ├─ HTTP listener (and HTTPS with [tls]) ─▶ Gateway::handle
//!    ├─ reloads: each validated Config becomes a new Table and new clusters
//!    └─ shutdown ─▶ /readyz draining ─▶ stop accepting ─▶ in-flight requests finish
//! ```
//!
//! What a reload cannot change, because it belongs to the process or its sockets:
//! `[server]`, `[tls]`, `[kv]`, `[idempotency]` (the store and its keys outlive reloads) and
//! the `[gateway]` settings other than `max_body_bytes` (workers, max_connections, via,
//! access_log, trusted_proxies). A reload that changes them applies the rest and says in
//! the log that these need a restart.

use std::future::Future;
use std::sync::{Arc, RwLock};

use http1::server::{self, AcceptGroup, ServerConfig as HttpConfig};
use http1::{Request, Response};
use reverse_proxy::headers::Scheme;
use reverse_proxy::metrics::ProxyMetrics;
use reverse_proxy::proxy::Proxy;
use reverse_proxy::tls;
use service_kit::admin::{self, AdminState};
use service_kit::metrics::{MetricsError, Registry};
use service_kit::shutdown::Shutdown;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::clock::Clock;
use crate::config::Config;
use crate::gateway::{Gateway, Table, proxy_config};
use crate::idempotency::{Store, StoreKind};
use crate::metrics::GatewayMetrics;

/// The sockets the gateway serves, bound by the caller (tests bind port 0).
#[derive(Debug)]
pub struct Listeners {
    pub http: TcpListener,
    /// HTTPS clients, when the config has `[tls]`.
    pub https: Option<TcpListener>,
    pub admin: TcpListener,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("metrics: {0}")]
    Metrics(#[from] MetricsError),
    #[error("{0}")]
    Setup(String),
}

/// Most reloads queued; a SIGHUP finding the queue full is dropped (the queued reload reads
/// the same file).
pub const RELOAD_QUEUE: usize = 1;

/// The settings only a restart changes, compared by a reload.
#[derive(PartialEq)]
struct Fixed<'c> {
    server: &'c service_kit::config::ServerConfig,
    tls: &'c Option<tls::TlsConfig>,
    workers: usize,
    max_connections: usize,
    via: &'c str,
    access_log: bool,
    trusted_proxies: &'c [std::net::IpAddr],
    kv: &'c Option<crate::config::KvConfig>,
    idempotency: &'c crate::idempotency::IdempotencyConfig,
}

impl<'c> Fixed<'c> {
    fn of(config: &'c Config) -> Fixed<'c> {
        Fixed {
            server: &config.server,
            tls: &config.tls,
            workers: config.gateway.workers,
            max_connections: config.gateway.max_connections,
            via: &config.gateway.via,
            access_log: config.gateway.access_log,
            trusted_proxies: &config.gateway.trusted_proxies,
            kv: &config.kv,
            idempotency: &config.idempotency,
        }
    }
}

/// Serves `config` (validated) until `shutdown`, then drains. Each config received on
/// `reloads` (validated by the sender) replaces routes, credentials, policies and clusters.
pub async fn run(
    listeners: Listeners,
    config: Config,
    clock: Arc<dyn Clock>,
    shutdown: Shutdown,
    reloads: mpsc::Receiver<Config>,
) -> Result<(), RunError> {
    let registry = Registry::new();
    let proxy_metrics = ProxyMetrics::register(&registry)?;
    let metrics = GatewayMetrics::register(&registry)?;
    let proxy = Proxy::new(&proxy_config(&config), proxy_metrics, shutdown.clone())
        .map_err(RunError::Setup)?;
    let kv = config.kv.as_ref().map(|kv| {
        let mut client = kv_store::client::ClientConfig::new(kv.address);
        client.password = kv.password.as_ref().map(|p| p.expose().to_owned());
        client.connect_timeout = kv.timeout();
        client.io_timeout = kv.timeout();
        client.max_idle_connections = kv.max_idle_connections;
        client
    });
    let seed = clock.now_ns();
    let table = Table::build(&config, None, kv.as_ref(), seed)
        .await
        .map_err(RunError::Setup)?;
    let store = match (&config.idempotency.store, &kv) {
        (StoreKind::Kv, Some(kv)) => Store::kv(
            &config.idempotency,
            kv_store::client::Client::new(kv.clone()),
        ),
        _ => Store::local(&config.idempotency),
    };
    let gateway = Arc::new(Gateway::new(
        table,
        Arc::new(proxy),
        Some((config.idempotency.clone(), store)),
        clock,
        metrics.clone(),
        config.gateway.clone(),
    ));
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
    let mut http = HttpConfig {
        max_connections: config.gateway.max_connections,
        drain_timeout: drain,
        ..HttpConfig::default()
    };
    // The decoder admits the largest body any route may be configured with (now or after a
    // reload); each route's own limit is enforced by the gateway (phase/upstream.rs).
    http.limits.max_body_bytes = crate::config::MAX_BODY_BYTES;
    if let (Some(tls_config), Some(listener)) = (&config.tls, listeners.https) {
        let server_config =
            tls::server_config(tls_config).map_err(|e| RunError::Setup(e.to_string()))?;
        tokio::spawn(tls::serve(
            listener,
            Arc::new(RwLock::new(server_config)),
            tls_config.handshake_timeout(),
            Arc::new(http.clone()),
            Arc::new(GatewayHandler {
                gateway: gateway.clone(),
                scheme: Scheme::Https,
            }),
            // One accept loop: the gateway's workers are one multi-threaded runtime.
            AcceptGroup::members(config.gateway.max_connections, 1).remove(0),
            shutdown.clone(),
        ));
    }
    let reloader = tokio::spawn(apply_reloads(
        gateway.clone(),
        config.clone(),
        kv,
        reloads,
        metrics,
    ));
    let local = listeners.http.local_addr().ok();
    tracing::info!(listen = ?local, routes = config.routes.len(), clusters = config.clusters.len(), "serving");
    admin_state.mark_ready();
    let handler = GatewayHandler {
        gateway,
        scheme: Scheme::Http,
    };
    server::serve(listeners.http, http, handler, shutdown.triggered())
        .await
        .map_err(|e| RunError::Setup(e.to_string()))?;
    draining.abort();
    reloader.abort();
    let _ = admin_task.await;
    Ok(())
}

/// The `http1` handler: a named type, so the request future is not boxed.
struct GatewayHandler {
    gateway: Arc<Gateway>,
    scheme: Scheme,
}

impl http1::server::Handler for GatewayHandler {
    fn call(&self, request: Request) -> impl Future<Output = Response> + Send {
        self.gateway.handle(request, self.scheme)
    }
}

async fn apply_reloads(
    gateway: Arc<Gateway>,
    started: Config,
    kv: Option<kv_store::client::ClientConfig>,
    mut reloads: mpsc::Receiver<Config>,
    metrics: GatewayMetrics,
) {
    while let Some(config) = reloads.recv().await {
        let old = gateway.table();
        let seed = gateway.clock.now_ns();
        let table = match Table::build(&config, Some(&old), kv.as_ref(), seed).await {
            Ok(table) => table,
            Err(error) => {
                tracing::error!(%error, "reload refused; still serving the previous config");
                metrics.reloads.with_label_values(&["refused"]).inc();
                continue;
            }
        };
        if let Err(error) = gateway.proxy.reload(&proxy_config(&config)) {
            tracing::error!(%error, "reload refused; still serving the previous config");
            metrics.reloads.with_label_values(&["refused"]).inc();
            continue;
        }
        gateway.swap_table(table);
        // Against the config the process started with: a setting changed by an earlier
        // reload is still not in force.
        if Fixed::of(&config) != Fixed::of(&started) {
            tracing::warn!(
                "reload applied, but [server], [tls], [kv], [idempotency] and gateway.workers, \
                 max_connections, via, access_log and trusted_proxies keep their start-up \
                 values until a restart"
            );
        }
        metrics.reloads.with_label_values(&["applied"]).inc();
        tracing::info!(routes = config.routes.len(), "reloaded");
    }
}
