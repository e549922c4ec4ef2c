//! What every server binary's `main` does, in the same order and with the same exit codes:
//!
//! ```text
//! flags + config file -> Config        a bad value: one line naming the field, exit 2
//! logging::init                        a bad log setting: exit 2
//! runtime(workers)                     1 worker: current_thread, as nginx's worker_processes 1
//! start(config)                        an error: logged and printed, exit 1; else exit 0
//! ```

use std::fmt::Display;
use std::process::ExitCode;

use crate::config::{EXIT_USAGE, ServerConfig};
use crate::logging;

/// Runs a server binary: `config` is the result of reading its flags and file, `server` finds
/// the shared section in it, `workers` the runtime's thread count (see [`runtime`]), and `run`
/// serves until shutdown. `name` prefixes the messages printed to stderr.
pub fn main<C, E, F>(
    name: &str,
    config: Result<C, E>,
    server: impl Fn(&C) -> &ServerConfig,
    workers: impl Fn(&C) -> usize,
    run: impl FnOnce(C) -> F,
) -> ExitCode
where
    E: Display,
    F: Future<Output = anyhow::Result<()>>,
{
    let config = match config {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{name}: {err}");
            return ExitCode::from(EXIT_USAGE as u8);
        }
    };
    let shared = server(&config);
    if let Err(err) = logging::init(shared.log_format, &shared.log_level) {
        eprintln!("{name}: {err}");
        return ExitCode::from(EXIT_USAGE as u8);
    }
    let served = match runtime(workers(&config)) {
        Ok(runtime) => runtime.block_on(run(config)),
        Err(err) => Err(anyhow::Error::new(err).context("cannot start the runtime")),
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("{name}: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// A tokio runtime with `workers` threads: one means a `current_thread` runtime (no
/// cross-thread wake-ups, the model of one nginx worker), zero means one thread per core.
pub fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    match workers {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        0 => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
}
