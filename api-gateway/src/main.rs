//! `api-gateway`: the binary. Parses flags, loads and validates the config, and calls
//! [`api_gateway::server::run`].
//!
//! ```text
//!  flags + TOML ─▶ validate (one line naming the field, exit 2) ─▶ logging ─▶ runtime
//!     ─▶ bind listen, admin_listen (and tls.listen) ─▶ run
//!     ─▶ SIGHUP: read and validate again, swap  ·  SIGINT/SIGTERM: drain, exit 0
//! ```

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use api_gateway::clock::SystemClock;
use api_gateway::config::Config;
use api_gateway::server::{self, Listeners};
use clap::Parser;
use service_kit::config::{self, CommonArgs, ConfigError, Validate};
use service_kit::{launch, shutdown};
use tokio::sync::mpsc;

#[global_allocator]
static ALLOCATOR: reverse_proxy::alloc::Allocator = reverse_proxy::alloc::Allocator;

#[derive(Parser, Clone)]
#[command(
    name = "api-gateway",
    version,
    about = "API gateway: routing and versions, API keys and JWT, rate limits, idempotency keys, circuit breakers",
    after_help = "Example: api-gateway --config api-gateway/example.toml"
)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// Worker threads (1 = a single-threaded runtime).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
}

fn configure(cli: &Cli) -> Result<Config, ConfigError> {
    let mut config: Config = config::load(cli.common.config.as_deref())?;
    cli.common.apply_to(&mut config.server);
    if let Some(workers) = cli.workers {
        config.gateway.workers = workers;
    }
    config.validate()?;
    // Reads the certificate and key files: a bad one is a usage error at start-up.
    if let Some(tls) = &config.tls {
        reverse_proxy::tls::server_config(tls)?;
    }
    Ok(config)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = configure(&cli);
    launch::main(
        "api-gateway",
        config,
        |c| &c.server,
        |c| c.gateway.workers,
        move |config| serve(config, cli),
    )
}

async fn serve(config: Config, cli: Cli) -> anyhow::Result<()> {
    let server = &config.server;
    let http = tokio::net::TcpListener::bind(server.listen)
        .await
        .with_context(|| format!("cannot listen on {} (listen)", server.listen))?;
    let admin = tokio::net::TcpListener::bind(server.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {} (admin_listen)", server.admin_listen))?;
    let https = match &config.tls {
        Some(tls) => Some(
            tokio::net::TcpListener::bind(tls.listen)
                .await
                .with_context(|| format!("cannot listen on {} (tls.listen)", tls.listen))?,
        ),
        None => None,
    };
    let stop = shutdown::Shutdown::new();
    let signals = tokio::spawn({
        let stop = stop.clone();
        async move {
            if let Ok(signal) = shutdown::wait_for_signal().await {
                tracing::info!(?signal, "shutting down");
            }
            stop.trigger();
        }
    });
    let (reload_tx, reloads) = mpsc::channel(server::RELOAD_QUEUE);
    let hangups = tokio::spawn(shutdown::reload_on_sighup(
        move || configure(&cli),
        reload_tx,
    ));
    let drain = server.shutdown_timeout();
    let listeners = Listeners { http, https, admin };
    server::run(
        listeners,
        config,
        Arc::new(SystemClock::new()),
        stop.clone(),
        reloads,
    )
    .await?;
    signals.abort();
    hangups.abort();
    let outcome = stop.drain(drain).await;
    if !outcome.is_complete() {
        tracing::warn!(?outcome, "shutdown cut off unfinished work");
    }
    Ok(())
}
