//! `message-broker`: the broker server.
//!
//! ```text
//!  flags + TOML ─▶ validate (exit 2 naming the field) ─▶ logging ─▶ runtime
//!     ─▶ bind --listen and --admin-listen ─▶ open every topic (recovery: torn tails cut,
//!        indexes rebuilt; a corrupt closed segment stops the start, naming file and byte)
//!     ─▶ /readyz says ready ─▶ serve
//!  SIGINT/SIGTERM ─▶ /readyz says draining ─▶ stop accepting ─▶ connections answer what they
//!     have read (at most shutdown_timeout_ms) ─▶ fsync every partition ─▶ exit 0
//! ```

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use message_broker::server::coordinator::Coordinator;
use message_broker::server::{self, Broker, Config, FlushPolicy, Metrics, State};
use service_kit::admin::{self, AdminState};
use service_kit::config::{self, CommonArgs, ConfigError, DataDirArg, Validate};
use service_kit::metrics::Registry;
use service_kit::{launch, shutdown};

#[derive(Parser)]
#[command(
    name = "message-broker",
    version,
    about = "Kafka-like partitioned log broker"
)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    data: DataDirArg,
    /// When appends are fsynced: always (before answering acks=all), interval (every
    /// flush_interval_ms), os (left to the kernel).
    #[arg(long, value_name = "POLICY")]
    flush: Option<FlushPolicy>,
}

fn configure(cli: &Cli) -> Result<Config, ConfigError> {
    let mut config: Config = config::load(cli.common.config.as_deref())?;
    cli.common.apply_to(&mut config.server);
    cli.data.apply_to(&mut config.data_dir);
    if let Some(flush) = cli.flush {
        config.flush = flush;
    }
    config.validate()?;
    Ok(config)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Zero workers: one runtime thread per core.
    launch::main("message-broker", configure(&cli), |c| &c.server, |_| 0, run)
}

async fn run(config: Config) -> anyhow::Result<()> {
    let listen = config.server.listen;
    let admin_listen = config.server.admin_listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (listen)"))?;
    let admin_listener = tokio::net::TcpListener::bind(admin_listen)
        .await
        .with_context(|| format!("cannot listen on {admin_listen} (admin_listen)"))?;

    let registry = Registry::new();
    let metrics = Metrics::register(&registry)?;
    let admin_state = AdminState::new(registry);
    let stop = shutdown::Shutdown::new();
    let drain = config.server.shutdown_timeout();
    let admin_task = tokio::spawn({
        let (state, stop) = (admin_state.clone(), stop.clone());
        async move { admin::serve(admin_listener, state, drain, stop.triggered()).await }
    });
    let signals = tokio::spawn({
        let (stop, admin_state) = (stop.clone(), admin_state.clone());
        async move {
            if let Ok(signal) = shutdown::wait_for_signal().await {
                tracing::info!(?signal, "shutting down");
            }
            admin_state.mark_draining();
            stop.trigger();
        }
    });

    let opened = tokio::task::spawn_blocking({
        let config = config.clone();
        move || {
            let broker = Broker::open(&config)?;
            let coordinator = Coordinator::open(&broker, config.flush, config.limits.clone())?;
            Ok::<_, server::BrokerError>((broker, coordinator))
        }
    })
    .await?;
    let (broker, coordinator) = opened.context("cannot open the data directory")?;
    let broker = Arc::new(broker);
    let state = State::start(
        Arc::clone(&broker),
        Arc::new(coordinator),
        &config,
        metrics,
        stop.clone(),
    );
    let maintenance = tokio::spawn(server::maintain(
        Arc::clone(&state),
        std::time::Duration::from_millis(config.flush_interval_ms),
        std::time::Duration::from_millis(config.retention_check_interval_ms),
    ));
    tracing::info!(%listen, admin = %admin_listen, data_dir = %config.data_dir.display(), flush = ?config.flush, "serving");
    admin_state.mark_ready();
    server::run(listener, state).await;

    let outcome = stop.drain(drain).await;
    maintenance.abort();
    tokio::task::spawn_blocking(move || server::flush_all(&broker)).await?;
    signals.abort();
    admin_task.await?;
    tracing::info!(complete = outcome.is_complete(), "stopped");
    Ok(())
}
