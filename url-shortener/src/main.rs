//! `url-shortener`: the binary. Flags and config, logging, the store, the admin endpoint, then
//! [`url_shortener::run`].
//!
//! ```text
//!  flags + TOML ─▶ validate (exit 2 naming the field) ─▶ logging
//!     ─▶ open the sled store, or check that the kv-store answers (--store kv://HOST:PORT)
//!     ─▶ bind --listen and --admin-listen ─▶ run (ready once serving)
//!  SIGINT/SIGTERM ─▶ /readyz draining ─▶ stop accepting ─▶ finish in-flight requests ─▶ exit 0
//! ```

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use service_kit::admin::{self, AdminState};
use service_kit::config::{self, CommonArgs, ConfigError, DataDirArg, Validate};
use service_kit::metrics::Registry;
use service_kit::{launch, shutdown};
use url_shortener::clock::SystemClock;
use url_shortener::config::{Backend, Config};
use url_shortener::store::{KvStore, SledStore, Store};

#[derive(Parser)]
#[command(
    name = "url-shortener",
    version,
    about = "URL shortener: JSON API, base62 codes, 301/302 redirects, on an embedded sled store or the kv-store"
)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    data_dir: DataDirArg,
    /// Prefix of the short URLs the API returns, e.g. https://sho.rt (default: http:// and --listen).
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Worker threads; 1 runs a single-threaded runtime (default: the number of CPUs).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Where links live: `embedded` (sled in --data-dir, the default) or `kv://HOST:PORT`, a
    /// kv-store that several instances share (a name is resolved at start-up).
    #[arg(long, value_name = "STORE")]
    store: Option<String>,
    /// Send click events through the message broker at HOST:PORT (topic `clicks`), counted by
    /// a consumer group of the instances (default: counted in this process).
    #[arg(long, value_name = "HOST:PORT")]
    broker: Option<String>,
}

fn configure(cli: &Cli) -> Result<Config, ConfigError> {
    let mut config: Config = config::load(cli.common.config.as_deref())?;
    cli.common.apply_to(&mut config.server);
    cli.data_dir.apply_to(&mut config.data_dir);
    if let Some(workers) = cli.workers {
        config.workers = workers;
    }
    if let Some(url) = &cli.public_url {
        config.public_url = Some(url.clone());
    }
    if let Some(store) = &cli.store {
        config.store = store.clone();
    }
    if let Some(broker) = &cli.broker {
        config.broker = Some(broker.clone());
    }
    config.validate()?;
    Ok(config)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    launch::main(
        "url-shortener",
        configure(&cli),
        |c| &c.server,
        |c| c.workers,
        start,
    )
}

async fn start(config: Config) -> anyhow::Result<()> {
    match config.backend()? {
        Backend::Embedded => {
            let store =
                SledStore::open(&config.data_dir, config.store_cache_bytes).with_context(|| {
                    format!(
                        "cannot open the store in {} (data_dir)",
                        config.data_dir.display()
                    )
                })?;
            serve(config, store).await
        }
        Backend::Kv(addr) => {
            let retention = std::time::Duration::from_secs(config.expired_retention_seconds);
            let store = KvStore::new(config.kv_client(addr), retention);
            store
                .ping()
                .await
                .with_context(|| format!("the kv-store at {addr} does not answer (store)"))?;
            serve(config, store).await
        }
    }
}

async fn serve(config: Config, store: impl Store) -> anyhow::Result<()> {
    let server = config.server.clone();
    let listener = tokio::net::TcpListener::bind(server.listen)
        .await
        .with_context(|| format!("cannot listen on {} (listen)", server.listen))?;
    let admin_listener = tokio::net::TcpListener::bind(server.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {} (admin_listen)", server.admin_listen))?;

    let admin_state = AdminState::new(Registry::new());
    let stop = shutdown::Shutdown::new();
    let drain = server.shutdown_timeout();
    let admin_task = tokio::spawn({
        let (state, stop) = (admin_state.clone(), stop.clone());
        async move { admin::serve(admin_listener, state, drain, stop.triggered()).await }
    });
    let signals = tokio::spawn({
        let (stop, state) = (stop.clone(), admin_state.clone());
        async move {
            if let Ok(signal) = shutdown::wait_for_signal().await {
                tracing::info!(?signal, "shutting down");
            }
            state.mark_draining();
            stop.trigger();
        }
    });

    let clock = Arc::new(SystemClock);
    let result =
        url_shortener::run(listener, config, store, clock, admin_state, stop.clone()).await;
    stop.trigger();
    signals.abort();
    admin_task.await?;
    result?;
    Ok(())
}
