//! `run`: the whole service on a listener the caller bound.
//!
//! ```text
//!  run ─▶ App::new (id key from the store, cache, metrics) ─▶ click aggregator and
//!      expiry sweeper tasks ─▶ /readyz ready
//!      ─▶ http1::server::serve(App::handle) ............ until shutdown is triggered
//!      ─▶ drain in-flight requests (shutdown_timeout_ms) ─▶ flush pending click counts
//!      ─▶ stop the sweeper ─▶ return
//! ```

use std::sync::Arc;
use std::time::Duration;

use http1::Request;
use http1::server::{self, ServerConfig as HttpConfig};
use service_kit::admin::AdminState;
use service_kit::shutdown::Shutdown;
use tokio::net::TcpListener;

use crate::api::auth::ApiKeys;
use crate::api::{App, Settings, StartError};
use crate::clicks::broker::{self, BrokerMetrics};
use crate::clock::Clock;
use crate::config::Config;
use crate::store::Store;
use crate::{clicks, expiry};

/// Why the service stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
    #[error("http: {0}")]
    Http(#[from] http1::Error),
    #[error("metrics: {0}")]
    Metrics(#[from] service_kit::metrics::MetricsError),
}

/// Serves the API on `listener` from `store` until `shutdown` is triggered, then drains.
/// Marks `admin` ready once it accepts requests.
pub async fn run<S: Store>(
    listener: TcpListener,
    config: Config,
    store: S,
    clock: Arc<dyn Clock>,
    admin: AdminState,
    shutdown: Shutdown,
) -> Result<(), RunError> {
    let settings = Settings {
        public_url: config.public_url(listener.local_addr()?),
        max_body_bytes: config.max_body_bytes,
        permanent_redirect_max_age_seconds: config.permanent_redirect_max_age_seconds,
        url_blocklist: config
            .url_blocklist
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        api_keys: ApiKeys::from_hex(&config.api_key_sha256),
        id_block_size: config.id_block_size,
        cache: config.cache_limits(),
    };
    let store = Arc::new(store);
    let registry = admin.metrics();
    let (recorder, aggregator) = clicks::pipeline(config.click_limits(), registry)?;
    let app = App::new(store.clone(), clock.clone(), settings, recorder, registry).await?;
    let app = Arc::new(app);
    // Clicks: aggregated here, or published to the broker and counted by the group.
    let (aggregator, counter) = match config.broker_settings() {
        None => (tokio::spawn(aggregator.run(store.clone())), None),
        Some(settings) => {
            if config
                .backend()
                .is_ok_and(|b| b == crate::config::Backend::Embedded)
            {
                tracing::warn!(
                    group = %settings.group,
                    "clicks go through the broker but links are in this instance's embedded \
                     store: the group's members must share a store, so run one instance per \
                     click_group or use the kv-store"
                );
            }
            let metrics = BrokerMetrics::register(registry)?;
            let counter = tokio::spawn(broker::count(
                store.clone(),
                settings.clone(),
                metrics.clone(),
                aggregator.flushed_counter(),
                shutdown.clone(),
            ));
            (
                tokio::spawn(aggregator.publish(settings, metrics)),
                Some(counter),
            )
        }
    };

    let swept = registry.counter(
        "url_shortener_expired_links_swept_total",
        "Expired links deleted by the sweep.",
    )?;
    let sweeper = tokio::spawn({
        let stop = shutdown.clone();
        let interval = Duration::from_millis(config.sweep_interval_ms);
        let retention = Duration::from_secs(config.expired_retention_seconds);
        async move {
            let stopped = stop.triggered();
            let on_swept = |n: usize| swept.inc_by(n as u64);
            expiry::sweep_periodically(store, clock, interval, retention, stopped, on_swept).await;
        }
    });

    let http = HttpConfig {
        drain_timeout: config.server.shutdown_timeout(),
        ..HttpConfig::default()
    };
    let handler = move |request: Request| {
        let app = app.clone();
        async move { app.handle(request).await }
    };
    tracing::info!(listen = %listener.local_addr()?, store = %config.store, data_dir = %config.data_dir.display(), "serving");
    admin.mark_ready();
    let served = server::serve(listener, http, handler, shutdown.triggered()).await;
    // `serve` has dropped the handler and with it the last click recorder: the aggregator
    // flushes what is pending and ends.
    if aggregator.await.is_err() {
        tracing::error!("click aggregator panicked");
    }
    if let Some(counter) = counter {
        // Its last add and commit; a broker that does not answer cannot hold the exit up.
        match tokio::time::timeout(config.server.shutdown_timeout(), counter).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => tracing::error!("click counter panicked"),
            Err(_) => tracing::warn!("click counter did not finish its last commit in time"),
        }
    }
    if sweeper.await.is_err() {
        tracing::error!("expiry sweeper panicked");
    }
    Ok(served?)
}
