//! `kv-store`: a Redis-compatible key-value node.
//!
//! ```text
//!  flags + TOML ─▶ validate (exit 2 naming the field) ─▶ logging ─▶ recover (image + log replay)
//!     ─▶ bind --listen and --admin-listen ─▶ /readyz says ready ─▶ serve
//!  SIGINT/SIGTERM ─▶ /readyz says draining ─▶ stop accepting ─▶ finish batches in flight
//!     (at most shutdown_timeout_ms) ─▶ checkpoint, fsync the log ─▶ exit 0
//! ```

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use kv_store::clock::Clock;
use kv_store::config::{Config, Fsync, MaxmemoryPolicy};
use kv_store::memory::{self, CountingAllocator};
use kv_store::node::Node;
use service_kit::admin::{self, AdminState};
use service_kit::config::{self, CommonArgs, ConfigError, DataDirArg, Secret, Validate};
use service_kit::metrics::Registry;
use service_kit::{launch, shutdown};

/// Counts allocated bytes, so `maxmemory` and `INFO memory` know the memory in use.
#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[derive(Parser)]
#[command(
    name = "kv-store",
    version,
    about = "A Redis-compatible key-value node"
)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    data_dir: DataDirArg,
    /// When writes are acknowledged: after their fsync (always), with an fsync every second
    /// (everysec), or leaving flushing to the OS (no). Redis's appendfsync.
    #[arg(long, value_name = "POLICY")]
    fsync: Option<Fsync>,
    /// Password for AUTH and HELLO ... AUTH.
    #[arg(long, value_name = "PASSWORD")]
    requirepass: Option<String>,
    /// Memory limit for data, in bytes or with a unit (100mb, 1gb); 0 for none.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    maxmemory: Option<u64>,
    /// What to do at the memory limit.
    #[arg(long, value_name = "POLICY")]
    maxmemory_policy: Option<MaxmemoryPolicy>,
    /// Most connected clients.
    #[arg(long, value_name = "N")]
    maxclients: Option<usize>,
    /// Runtime worker threads (0: one per CPU).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
}

fn parse_bytes(text: &str) -> Result<u64, String> {
    memory::parse_memory(text)
        .ok_or_else(|| format!("{text:?} is not a memory amount (100, 10kb, 5mb, 1gb)"))
}

fn configure(cli: &Cli) -> Result<Config, ConfigError> {
    let mut config: Config = config::load(cli.common.config.as_deref())?;
    cli.common.apply_to(&mut config.server);
    cli.data_dir.apply_to(&mut config.data_dir);
    config.fsync = cli.fsync.unwrap_or(config.fsync);
    config.requirepass = cli
        .requirepass
        .clone()
        .map(Secret::new)
        .or(config.requirepass);
    config.maxmemory = cli.maxmemory.unwrap_or(config.maxmemory);
    config.maxmemory_policy = cli.maxmemory_policy.unwrap_or(config.maxmemory_policy);
    config.maxclients = cli.maxclients.unwrap_or(config.maxclients);
    config.workers = cli.workers.unwrap_or(config.workers);
    config.validate()?;
    Ok(config)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    launch::main(
        "kv-store",
        configure(&cli),
        |c| &c.server,
        |c| c.workers,
        run,
    )
}

async fn run(config: Config) -> anyhow::Result<()> {
    let server = &config.server;
    let node = Node::open(&config, Clock::system())
        .with_context(|| format!("cannot recover from {}", config.data_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(server.listen)
        .await
        .with_context(|| format!("cannot listen on {} (listen)", server.listen))?;
    let admin_listener = tokio::net::TcpListener::bind(server.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {} (admin_listen)", server.admin_listen))?;

    let registry = Registry::new();
    kv_store::metrics::register(&registry, node.shared())?;
    let admin_state = AdminState::new(registry);
    let stop = shutdown::Shutdown::new();
    let drain = server.shutdown_timeout();
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
    tracing::info!(listen = %listener.local_addr()?, admin = %server.admin_listen, "serving");
    admin_state.mark_ready();
    let result = node.run(listener, stop).await;
    signals.abort();
    admin_task.await?;
    result.context("shutting down")
}
