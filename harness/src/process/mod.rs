//! Servers under test as real operating-system processes.
//!
//! A [`Process`] is one server started from a [`ProcessSpec`] (program, arguments, environment),
//! with the faults a chaos test injects into a real deployment:
//!
//! ```text
//!               spawn                 kill (SIGKILL), or terminate
//!   spec ──────────────────▶ running ──────────────────────────────▶ exited
//!                             │   ▲   (SIGTERM; SIGKILL past its      │
//!            pause (SIGSTOP)  │   │    deadline)                      │
//!                             ▼   │  resume (SIGCONT)                 │
//!                            stopped                                  │
//!                                                                     │
//!                            running ◀────────────────────────────────┘
//!                                      restart: the same spec, so the same
//!                                      ports and the same data directory
//! ```
//!
//! # Invariants
//!
//! - A signal is only ever sent to a child that has not been reaped. Until it is reaped, an exited
//!   child stays a zombie that holds its pid, so the pid cannot have been reused by an unrelated
//!   process: signalling it can never hit a stranger.
//! - No child outlives its handle: drop sends SIGKILL and reaps, and on Linux the kernel kills the
//!   child if the test process dies first (see `spawner`).
//! - When a handle is dropped during a panic, the captured output of every incarnation is printed
//!   to stderr, so the failing test shows what the server said.
//!
//! # Readiness
//!
//! Servers in this workspace answer `GET /readyz` with 200 on their admin address once they can
//! serve. [`Process::wait_ready`] polls it; [`Process::wait_port`] only waits for a TCP connect,
//! for servers without an admin endpoint. Both give up early, with the server's output, if the
//! process exits meanwhile (a bad flag, a port already taken).

mod log;
mod probe;
mod spawner;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use self::log::ProcessLog;
pub use self::log::{LOG_LINE_BYTES_MAX, LOG_LINES_MAX};
pub use self::probe::http_get_status;
use crate::{Error, Result};

/// Pause between two readiness probes, and between two checks for an exit.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Longest single readiness probe; a server that accepted but hangs is probed again after this.
const PROBE_TIMEOUT_MAX: Duration = Duration::from_secs(1);

/// How long, after reaping, the log readers may take to drain what the process wrote last. A
/// grandchild that inherited the pipes could keep them open forever; the readers are then left
/// to finish on their own.
const READER_DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// What to start: the program, its arguments and extra environment, and a short name that
/// prefixes every captured output line (`[kv-1] ...`).
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Added to (or overriding) the test process's own environment.
    pub env: Vec<(OsString, OsString)>,
    /// When set, every output line is also written to stdout as it arrives, after this prefix.
    pub echo: Option<String>,
}

impl ProcessSpec {
    /// A spec with no arguments and no extra environment.
    pub fn new(name: impl Into<String>, program: impl Into<PathBuf>) -> ProcessSpec {
        ProcessSpec {
            name: name.into(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            echo: None,
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> ProcessSpec {
        self.args.push(arg.into());
        self
    }

    /// Appends several arguments.
    pub fn args<I>(mut self, args: I) -> ProcessSpec
    where
        I: IntoIterator,
        I::Item: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets one environment variable for the process.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> ProcessSpec {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Echoes every line of output to stdout as it arrives, after `prefix` (it is still kept in
    /// the log too).
    pub fn echo(mut self, prefix: impl Into<String>) -> ProcessSpec {
        self.echo = Some(prefix.into());
        self
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }
}

/// How [`Process::terminate`] ended the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// The process exited by itself after SIGTERM, within the deadline.
    Exited(ExitStatus),
    /// The deadline passed, so the process was sent SIGKILL.
    Killed(ExitStatus),
}

impl Termination {
    /// The exit status, however the process ended.
    pub fn status(&self) -> ExitStatus {
        match *self {
            Termination::Exited(status) | Termination::Killed(status) => status,
        }
    }
}

/// A running (or exited, and restartable) server process. See the module docs.
///
/// Methods that change the process take `&mut self`: one owner injects the faults, so two threads
/// can never race a `kill` against a `restart`.
#[derive(Debug)]
pub struct Process {
    spec: ProcessSpec,
    log: Arc<ProcessLog>,
    pid: u32,
    /// `Some` from spawn until the child is reaped.
    running: Option<Running>,
    /// How the latest incarnation ended, once it has been reaped.
    exit_status: Option<ExitStatus>,
}

#[derive(Debug)]
struct Running {
    child: Child,
    readers: Vec<JoinHandle<()>>,
}

impl Process {
    /// Starts the process described by `spec`, capturing its stdout and stderr.
    pub fn spawn(spec: ProcessSpec) -> Result<Process> {
        let log = ProcessLog::new(&spec.name, spec.echo.as_deref());
        let running = start(&spec, &log)?;
        Ok(Process {
            pid: running.child.id(),
            spec,
            log,
            running: Some(running),
            exit_status: None,
        })
    }

    /// Starts the same spec again (same arguments, so the same ports and data directory) after the
    /// previous incarnation was killed or terminated. The log continues across incarnations.
    pub fn restart(&mut self) -> Result<()> {
        if self.is_running() {
            return Err(Error::StillRunning {
                name: self.spec.name.clone(),
                pid: self.pid,
            });
        }
        let running = start(&self.spec, &self.log)?;
        self.pid = running.child.id();
        self.running = Some(running);
        self.exit_status = None;
        Ok(())
    }

    /// The pid of the latest incarnation (which may have exited since).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The name given in the spec.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The captured output so far, every line prefixed with `[name] `.
    pub fn log(&self) -> String {
        self.log.render()
    }

    /// Whether the latest incarnation is still alive (a stopped process counts as running).
    /// Reaps it if it has exited.
    pub fn is_running(&mut self) -> bool {
        self.try_reap().is_none() && self.running.is_some()
    }

    /// Waits until `GET /readyz` on `addr` answers 200, for at most `timeout`.
    pub fn wait_ready(&mut self, addr: SocketAddr, timeout: Duration) -> Result<()> {
        self.poll(addr, timeout, |probe_timeout| {
            match http_get_status(addr, "/readyz", probe_timeout) {
                Ok(200) => Ok(()),
                Ok(status) => Err(format!("GET /readyz answered {status}")),
                Err(e) => Err(format!("GET /readyz: {e}")),
            }
        })
    }

    /// Waits until a TCP connection to `addr` succeeds, for at most `timeout`.
    pub fn wait_port(&mut self, addr: SocketAddr, timeout: Duration) -> Result<()> {
        self.poll(addr, timeout, |probe_timeout| {
            probe::tcp_connects(addr, probe_timeout).map_err(|e| format!("connect: {e}"))
        })
    }

    /// Waits up to `timeout` for the process to exit by itself; `None` if it is still running.
    /// A process that already exited, even before this call, gives its status at once. For
    /// tests that expect a server to refuse to start.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        Ok(self.wait_exit_until(Instant::now() + timeout))
    }

    /// Sends SIGKILL (a crash: no cleanup, no flush) and returns the exit status.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        let pid = self.running_pid()?;
        let child = &mut self.running.as_mut().expect("checked by running_pid").child;
        let status = match child.kill().and_then(|()| child.wait()) {
            Ok(status) => status,
            Err(e) => return Err(self.os_error(pid, "SIGKILL and wait", e)),
        };
        self.reaped(status);
        Ok(status)
    }

    /// Asks the process to shut down (SIGTERM) and waits up to `timeout` for it to exit; past
    /// that, sends SIGKILL and reports [`Termination::Killed`]. A paused process is resumed so
    /// that it can act on the SIGTERM.
    pub fn terminate(&mut self, timeout: Duration) -> Result<Termination> {
        let deadline = Instant::now() + timeout;
        let pid = self.running_pid()?;
        // Both signals go to the pid checked once: nothing reaps it in between, so it is still
        // ours even if SIGTERM already ended it (checking again would reap it and fail).
        self.send_signal(pid, libc::SIGTERM, "SIGTERM")?;
        self.send_signal(pid, libc::SIGCONT, "SIGCONT")?;
        if let Some(status) = self.wait_exit_until(deadline) {
            return Ok(Termination::Exited(status));
        }
        self.log.push(&format!(
            "(harness: still running after {timeout:?}, sending SIGKILL)"
        ));
        self.kill().map(Termination::Killed)
    }

    /// Stops the process (SIGSTOP): it keeps its sockets, but answers nothing, like a machine
    /// frozen by a long GC pause or a hung VM. The kernel still completes TCP handshakes on its
    /// listening sockets, so clients connect and then time out.
    pub fn pause(&mut self) -> Result<()> {
        self.signal(libc::SIGSTOP, "SIGSTOP")
    }

    /// Continues a paused process (SIGCONT).
    pub fn resume(&mut self) -> Result<()> {
        self.signal(libc::SIGCONT, "SIGCONT")
    }

    /// Probes until `probe` succeeds, the process exits, or `timeout` passes.
    fn poll(
        &mut self,
        addr: SocketAddr,
        timeout: Duration,
        probe: impl Fn(Duration) -> Result<(), String>,
    ) -> Result<()> {
        let started = Instant::now();
        let deadline = started + timeout;
        let mut last_probe = String::from("none");
        loop {
            if !self.is_running() {
                return Err(self.exited_early(addr));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::NotReady {
                    name: self.spec.name.clone(),
                    addr,
                    waited: started.elapsed(),
                    last_probe,
                    log: self.log(),
                });
            }
            match probe(left.min(PROBE_TIMEOUT_MAX)) {
                Ok(()) => return Ok(()),
                Err(e) => last_probe = e,
            }
            thread::sleep(POLL_INTERVAL.min(left));
        }
    }

    fn exited_early(&self, addr: SocketAddr) -> Error {
        match self.exit_status {
            Some(status) => Error::ExitedEarly {
                name: self.spec.name.clone(),
                addr,
                status,
                log: self.log(),
            },
            None => Error::NotRunning {
                name: self.spec.name.clone(),
            },
        }
    }

    /// Polls for an exit until `deadline`; the status if the process exited (and was reaped).
    fn wait_exit_until(&mut self, deadline: Instant) -> Option<ExitStatus> {
        loop {
            if let Some(status) = self.try_reap() {
                return Some(status);
            }
            if self.running.is_none() {
                return self.exit_status;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            thread::sleep(POLL_INTERVAL.min(left));
        }
    }

    /// Reaps the child if it has exited; returns its status only on the call that reaps it.
    fn try_reap(&mut self) -> Option<ExitStatus> {
        let running = self.running.as_mut()?;
        match running.child.try_wait() {
            Ok(Some(status)) => {
                self.reaped(status);
                Some(status)
            }
            Ok(None) => None,
            Err(e) => {
                self.log.push(&format!("(harness: waitpid failed: {e})"));
                None
            }
        }
    }

    /// Records the end of an incarnation, after letting the readers drain its last output.
    fn reaped(&mut self, status: ExitStatus) {
        let Some(running) = self.running.take() else {
            return;
        };
        let deadline = Instant::now() + READER_DRAIN_TIMEOUT;
        for reader in running.readers {
            while !reader.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
        }
        self.log
            .push(&format!("(harness: pid {} exited: {status})", self.pid));
        self.exit_status = Some(status);
    }

    fn signal(&mut self, signal: libc::c_int, operation: &'static str) -> Result<()> {
        let pid = self.running_pid()?;
        self.send_signal(pid, signal, operation)
    }

    /// Sends `signal` to `pid`, which the caller has checked is our unreaped child.
    fn send_signal(&self, pid: u32, signal: libc::c_int, operation: &'static str) -> Result<()> {
        // SAFETY: kill(2) has no memory-safety preconditions. The pid is that of our unreaped
        // child, so it cannot belong to another process (module invariant).
        let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
        if rc != 0 {
            return Err(self.os_error(pid, operation, std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// The pid of the live (unreaped) child, or `NotRunning`.
    fn running_pid(&mut self) -> Result<u32> {
        if self.is_running() {
            Ok(self.pid)
        } else {
            Err(Error::NotRunning {
                name: self.spec.name.clone(),
            })
        }
    }

    fn os_error(&self, pid: u32, operation: &'static str, source: std::io::Error) -> Error {
        Error::Os {
            name: self.spec.name.clone(),
            pid,
            operation,
            source,
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(running) = self.running.as_mut() {
            let _ = running.child.kill();
            match running.child.wait() {
                Ok(status) => self.reaped(status),
                Err(e) => eprintln!(
                    "[{}] harness: cannot reap pid {}: {e}",
                    self.spec.name, self.pid
                ),
            }
        }
        if thread::panicking() {
            eprintln!("--- output of `{}` ---\n{}", self.spec.name, self.log());
        }
    }
}

/// Spawns one incarnation and its two log readers.
fn start(spec: &ProcessSpec, log: &Arc<ProcessLog>) -> Result<Running> {
    let mut child = spawner::spawn(spec.command()).map_err(|source| Error::Spawn {
        name: spec.name.clone(),
        program: spec.program.display().to_string(),
        source,
    })?;
    log.push(&format!("(harness: spawned pid {})", child.id()));
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let readers = [
        log::capture(stdout, log.clone()),
        log::capture(stderr, log.clone()),
    ];
    let mut running = Running {
        child,
        readers: Vec::with_capacity(2),
    };
    for reader in readers {
        match reader {
            Ok(handle) => running.readers.push(handle),
            Err(source) => {
                let _ = running.child.kill();
                let _ = running.child.wait();
                return Err(Error::Spawn {
                    name: spec.name.clone(),
                    program: "a log reader thread".into(),
                    source,
                });
            }
        }
    }
    Ok(running)
}
