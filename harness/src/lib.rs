//! Process test harness: real binaries, real sockets, injected faults.
//!
//! The servers in this workspace are tested twice: in-process (a library `run` function on a port
//! bound by the test) and as real processes, the way an operator runs them. This crate is the
//! second kind's toolbox, shared by every server's `tests/` and by the integration suite. The
//! cluster launcher (`cluster/`) runs its processes and fault links with the same pieces:
//!
//! | need | item | module |
//! |---|---|---|
//! | a loopback port nobody else in this test process got | [`free_addr`] | `ports` |
//! | the path of a freshly built workspace binary | [`cargo_bin`], [`try_cargo_bins`] | `cargo_bin` |
//! | start, probe, SIGKILL, SIGSTOP, restart a server | [`ProcessSpec`], [`Process`] | `process` |
//! | a data directory kept when the test fails | [`DataDir`] | `data_dir` |
//! | randomness that a failing test can replay | [`seeded_rng`], [`TestRng`] | `seed` |
//! | latency, bandwidth caps, resets, partitions on a TCP link | [`FaultProxy`], [`Toxic`] | `fault_proxy` |
//!
//! # Synchronous on purpose
//!
//! Every call blocks the calling thread and returns; nothing here needs an async runtime from the
//! caller. That lets one API serve plain `#[test]` functions and `#[tokio::test]` ones alike. The
//! one component that is naturally concurrent, the fault proxy, runs its own single-threaded tokio
//! runtime on a background thread that it owns (see [`fault_proxy`]).
//!
//! # Failing loudly and replayably
//!
//! A chaos test that fails must leave enough behind to understand it. Values here notice when they
//! are dropped during a panic (`std::thread::panicking()`) and then report: a [`Process`] prints the
//! server's captured output, a [`DataDir`] is kept and its path printed, a [`TestRng`] prints the
//! seed to replay with (`TEST_SEED=N`).
//!
//! # Errors
//!
//! Operations whose failure a test may want to inspect return [`Result`] with the [`Error`] enum.
//! Set-up steps that a test cannot recover from ([`free_addr`], [`cargo_bin`]) panic with a message
//! that says what went wrong and how to reproduce it.

mod cargo_bin;
mod data_dir;
mod error;
pub mod fault_proxy;
mod ports;
mod process;
mod seed;

pub use cargo_bin::{cargo_bin, try_cargo_bins};
pub use data_dir::DataDir;
pub use error::{Error, Result};
pub use fault_proxy::{Direction, FaultProxy, ProxyStats, Toxic, ToxicEntry, ToxicId};
pub use ports::free_addr;
pub use process::{
    LOG_LINE_BYTES_MAX, LOG_LINES_MAX, Process, ProcessSpec, Termination, http_get_status,
};
pub use seed::{TestRng, seeded_rng};
