//! `reverse-proxy`: the binary. Parses flags, loads and validates the config, and calls
//! [`reverse_proxy::server::run`].
//!
//! ```text
//!  flags + TOML ─▶ validate (one line naming the field, exit 2) ─▶ logging ─▶ runtime
//!     ─▶ bind --listen and --admin-listen ─▶ run ─▶ SIGINT/SIGTERM: drain, exit 0
//! ```

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use reverse_proxy::config::{Config, QuickStartArgs};
use reverse_proxy::server::{self, Listeners};
use service_kit::config::{self, CommonArgs, ConfigError, Validate};
use service_kit::{launch, shutdown};

#[global_allocator]
static ALLOCATOR: reverse_proxy::alloc::Allocator = reverse_proxy::alloc::Allocator;

#[derive(Parser, Clone)]
#[command(
    name = "reverse-proxy",
    version,
    about = "L7 HTTP/1.1 reverse proxy and load balancer",
    after_help = "Quick start: reverse-proxy --listen 127.0.0.1:8080 --upstream 127.0.0.1:9001 --upstream 127.0.0.1:9002"
)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    quick: QuickStartArgs,
    /// Worker threads, each a single-threaded runtime (as nginx's `worker_processes`).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
}

fn configure(cli: &Cli) -> Result<Config, ConfigError> {
    let mut config: Config = config::load(cli.common.config.as_deref())?;
    cli.common.apply_to(&mut config.server);
    cli.quick.apply_to(&mut config);
    if let Some(workers) = cli.workers {
        config.proxy.workers = workers;
    }
    config.validate()?;
    // Reads the certificate, key and CA files: a bad one is a usage error at start-up.
    if let Some(tls) = &config.tls {
        reverse_proxy::tls::server_config(tls)?;
    }
    for (name, cluster) in &config.clusters {
        if let Some(tls) = &cluster.upstream_tls {
            reverse_proxy::tls::client_config(tls, &format!("clusters.{name}.upstream_tls"))?;
        }
    }
    Ok(config)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = configure(&cli);
    launch::main(
        "reverse-proxy",
        config,
        |c| &c.server,
        // One runtime here; `server::run` starts the other workers' (one each, see there).
        |_| 1,
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
    let mut tcp = Vec::with_capacity(config.tcp.len());
    for (i, l4) in config.tcp.iter().enumerate() {
        let listener = std::net::TcpListener::bind(l4.listen)
            .with_context(|| format!("cannot listen on {} (tcp[{i}].listen)", l4.listen))?;
        tcp.push(listener);
    }
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
    let (reload_tx, reloads) = tokio::sync::mpsc::channel(server::RELOAD_QUEUE);
    let hangups = tokio::spawn(shutdown::reload_on_sighup(
        move || configure(&cli),
        reload_tx,
    ));
    let drain = server.shutdown_timeout();
    let listeners = Listeners {
        http,
        https,
        tcp,
        admin,
    };
    server::run(listeners, config, stop.clone(), reloads).await?;
    signals.abort();
    hangups.abort();
    let outcome = stop.drain(drain).await;
    if !outcome.is_complete() {
        tracing::warn!(?outcome, "shutdown cut off unfinished work");
    }
    Ok(())
}
