//! The foundation every server binary in this workspace stands on.
//!
//! Each server (`kv-store`, `message-broker`, `reverse-proxy`, `api-gateway`, `url-shortener`)
//! is a library with a `run(listener(s), config, shutdown)` function and a thin binary that
//! parses flags and calls it. This crate holds what all of them share, so that the conventions
//! (the same flags, the same admin endpoint, the same shutdown guarantee, the same frame format)
//! are written once and read once.
//!
//! | module       | what a server gets from it                                             |
//! |--------------|------------------------------------------------------------------------|
//! | [`config`]   | `--config`, `--listen`, `--admin-listen`, `--log-*`, `--shutdown-timeout-ms` and `--data-dir` flags; TOML loading with flag > file > default precedence; a `Validate` check that names the bad field |
//! | [`logging`]  | `tracing` to stderr as text or JSON, filtered by one `--log-level` directive |
//! | [`shutdown`] | SIGINT/SIGTERM handling; stop accepting, drain in-flight work up to a deadline, report what was cut off; SIGHUP as a config reload |
//! | [`metrics`]  | a Prometheus registry with checked names and the 0.0.4 text format      |
//! | [`admin`]    | `/metrics`, `/healthz`, `/readyz` on its own listener, over `http1`     |
//! | [`frame`]    | versioned, length-delimited postcard frames for internal RPC (Raft, the broker protocol) |
//!
//! # Start-up and shutdown of a server, in order
//!
//! ```text
//!  parse flags ─▶ config::load ─▶ CommonArgs::apply_to ─▶ validate   (error: one line, exit 2)
//!       ─▶ logging::init ─▶ metrics::Registry::new ─▶ register metrics
//!       ─▶ bind listeners ─▶ AdminState::mark_ready ─▶ serve ...
//!  SIGTERM ─▶ Shutdown::trigger ─▶ AdminState::mark_draining ─▶ accept loop returns
//!       ─▶ Shutdown::drain(shutdown_timeout) ─▶ flush durable state ─▶ exit 0
//! ```
//!
//! Nothing here opens a socket on its own: a server binds its listeners and hands them in, so
//! tests can bind `127.0.0.1:0` and read the address back.

pub mod admin;
pub mod config;
pub mod frame;
pub mod launch;
pub mod logging;
pub mod metrics;
pub mod shutdown;
