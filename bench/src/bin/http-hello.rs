//! `http-hello`: a hello-world HTTP server on the workspace's HTTP/1.1 layer.
//!
//! Two jobs. It is the server `bench/http-hello.sh` runs against nginx's `return 200` (one
//! worker each, the same `wrk` load), and it is the smallest complete server built the way every
//! server here is built, so it doubles as the template:
//!
//! ```text
//!  flags + TOML ─▶ validate (exit 2 naming the field) ─▶ logging ─▶ runtime (1 worker = one thread)
//!     ─▶ bind --listen and --admin-listen ─▶ /readyz says ready ─▶ serve
//!  SIGINT/SIGTERM ─▶ /readyz says draining ─▶ stop accepting ─▶ finish in-flight requests
//!     (at most shutdown_timeout_ms) ─▶ exit 0
//! ```
//!
//! Every request, whatever its method and path, gets `200 hello, world`.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use http1::server::{self, ServerConfig as HttpConfig};
use http1::{Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use service_kit::admin::{self, AdminState};
use service_kit::config::{self, CommonArgs, ConfigError, ServerConfig, Validate};
use service_kit::metrics::Registry;
use service_kit::{launch, shutdown};

/// Most worker threads: more than the cores of any machine this runs on is a mistake.
const MAX_WORKERS: usize = 256;

#[derive(Parser)]
#[command(
    name = "http-hello",
    version,
    about = "Hello-world HTTP server on the http1 layer"
)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// Worker threads. 1 runs a single-threaded runtime, like nginx's `worker_processes 1`.
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    server: ServerConfig,
    /// Worker threads, 1 to [`MAX_WORKERS`]. Default 1.
    workers: usize,
}

impl Default for Config {
    fn default() -> Self {
        let listen = SocketAddr::from(([127, 0, 0, 1], 8080));
        let admin = SocketAddr::from(([127, 0, 0, 1], 9080));
        Config {
            server: ServerConfig::new(listen, admin),
            workers: 1,
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        if !(1..=MAX_WORKERS).contains(&self.workers) {
            let reason = format!("must be between 1 and {MAX_WORKERS}");
            return Err(ConfigError::invalid("workers", reason));
        }
        Ok(())
    }
}

fn configure(cli: &Cli) -> Result<Config, ConfigError> {
    let mut config: Config = config::load(cli.common.config.as_deref())?;
    cli.common.apply_to(&mut config.server);
    if let Some(workers) = cli.workers {
        config.workers = workers;
    }
    config.validate()?;
    Ok(config)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    launch::main(
        "http-hello",
        configure(&cli),
        |c| &c.server,
        |c| c.workers,
        run,
    )
}

async fn run(config: Config) -> anyhow::Result<()> {
    let server = &config.server;
    let listener = tokio::net::TcpListener::bind(server.listen)
        .await
        .with_context(|| format!("cannot listen on {} (listen)", server.listen))?;
    let admin_listener = tokio::net::TcpListener::bind(server.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {} (admin_listen)", server.admin_listen))?;

    let registry = Registry::new();
    let requests = registry.counter("http_hello_requests_total", "Requests answered.")?;
    let admin_state = AdminState::new(registry);
    let stop = shutdown::Shutdown::new();
    let drain = server.shutdown_timeout();

    let admin_task = tokio::spawn({
        let (state, stop) = (admin_state.clone(), stop.clone());
        async move { admin::serve(admin_listener, state, drain, stop.triggered()).await }
    });
    let signals = tokio::spawn({
        let stop = stop.clone();
        let admin_state = admin_state.clone();
        async move {
            if let Ok(signal) = shutdown::wait_for_signal().await {
                tracing::info!(?signal, "shutting down");
            }
            admin_state.mark_draining();
            stop.trigger();
        }
    });

    let handler = move |_request: Request| {
        requests.inc();
        async { Response::text(StatusCode::OK, "hello, world\n") }
    };
    let http = HttpConfig {
        drain_timeout: drain,
        ..HttpConfig::default()
    };
    tracing::info!(listen = %listener.local_addr()?, admin = %server.admin_listen, "serving");
    admin_state.mark_ready();
    server::serve(listener, http, handler, stop.triggered()).await?;
    signals.abort();
    admin_task.await?;
    Ok(())
}
