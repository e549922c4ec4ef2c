//! The harness's error type.
//!
//! Variants carry what a reader of a failed test needs: which process, which address, how long
//! was waited, and the captured server output when the server itself is the likely culprit.

use std::io;
use std::net::SocketAddr;
use std::process::ExitStatus;
use std::time::Duration;

use crate::fault_proxy::Toxic;

/// Result of a harness operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a harness operation a test may want to inspect.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The program could not be started at all (missing file, not executable, ...).
    #[error("cannot spawn `{name}` ({program}): {source}")]
    Spawn {
        name: String,
        program: String,
        source: io::Error,
    },

    /// The process exited while the test was waiting for it to become ready.
    #[error("`{name}` exited with {status} before it was ready on {addr}; its output:\n{log}")]
    ExitedEarly {
        name: String,
        addr: SocketAddr,
        status: ExitStatus,
        log: String,
    },

    /// The process kept running but did not become ready in time.
    #[error(
        "`{name}` was not ready on {addr} after {waited:?} (last probe: {last_probe}); its output:\n{log}"
    )]
    NotReady {
        name: String,
        addr: SocketAddr,
        waited: Duration,
        last_probe: String,
        log: String,
    },

    /// The operation needs a live process but it has already exited and been reaped.
    #[error("`{name}` is not running")]
    NotRunning { name: String },

    /// `restart` was called while the previous incarnation still runs; stop it explicitly first,
    /// so that the test says which fault (kill or terminate) it injects.
    #[error("`{name}` is still running as pid {pid}; kill or terminate it before restarting")]
    StillRunning { name: String, pid: u32 },

    /// Sending a signal or reaping the process failed.
    #[error("`{name}` (pid {pid}): {operation} failed: {source}")]
    Os {
        name: String,
        pid: u32,
        operation: &'static str,
        source: io::Error,
    },

    /// A toxic's parameters make no sense (a zero rate, a zero slice size).
    #[error("invalid toxic {toxic:?}: {reason}")]
    InvalidToxic { toxic: Toxic, reason: &'static str },

    /// The fault proxy could not bind, rebind or start its runtime.
    #[error("fault proxy: {operation} failed: {source}")]
    Proxy {
        operation: &'static str,
        source: io::Error,
    },
}
