//! `run`: the proxy as a server, on listeners bound by the caller.
//!
//! ```text
//!  run(listeners, config, shutdown)
//!    ├─ metrics registry ─▶ Proxy (routes, clusters, pools)
//!    ├─ admin listener: /metrics, /healthz, /readyz          (service_kit::admin)
//!    ├─ HTTP listener: http1::server::serve ─▶ Proxy::handle  (one task per connection)
//!    └─ shutdown triggered ─▶ /readyz says draining ─▶ stop accepting
//!         ─▶ in-flight requests finish (server.shutdown_timeout_ms) ─▶ return
//! ```

use std::sync::Arc;

use http1::server::{self, ServerConfig as HttpConfig};
use http1::{Request, Response};
use service_kit::admin::{self, AdminState};
use service_kit::metrics::{MetricsError, Registry};
use service_kit::shutdown::Shutdown;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::headers::Scheme;
use crate::metrics::ProxyMetrics;
use crate::proxy::{Downstream, Proxy};

/// The sockets the proxy serves, bound by the caller (tests bind port 0).
#[derive(Debug)]
pub struct Listeners {
    /// Plain HTTP clients.
    pub http: TcpListener,
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

/// Serves `config` (already validated) until `shutdown` is triggered, then drains.
pub async fn run(listeners: Listeners, config: Config, shutdown: Shutdown) -> Result<(), RunError> {
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

    let handler = {
        let proxy = proxy.clone();
        move |request: Request| {
            let proxy = proxy.clone();
            async move { serve_one(&proxy, request).await }
        }
    };
    let http = HttpConfig {
        max_connections: config.proxy.max_connections,
        drain_timeout: drain,
        ..HttpConfig::default()
    };
    let local = listeners.http.local_addr().ok();
    tracing::info!(listen = ?local, clusters = config.clusters.len(), routes = config.routes.len(), "serving");
    admin_state.mark_ready();
    server::serve(listeners.http, http, handler, shutdown.triggered())
        .await
        .map_err(|e| RunError::Setup(e.to_string()))?;
    draining.abort();
    let _ = admin_task.await;
    Ok(())
}

async fn serve_one(proxy: &Proxy, request: Request) -> Response {
    let downstream = Downstream {
        scheme: Scheme::Http,
    };
    proxy.handle(request, downstream).await
}
