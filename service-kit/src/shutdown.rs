//! Graceful shutdown on SIGINT and SIGTERM.
//!
//! # The guarantee
//!
//! After the signal, no new connection is accepted; in-flight work (connections, requests)
//! gets up to `shutdown_timeout_ms` to finish; then whatever is left is cut off and the
//! process exits 0.
//!
//! # Lifecycle
//!
//! ```text
//!  running ──SIGINT/SIGTERM──▶ triggered ──all tracked tasks done──▶ drained ──▶ exit 0
//!                                  │                                    ▲
//!                                  └──── deadline passes ───▶ cut off ──┘
//!                                        (log what was left; forced() fires)
//! ```
//!
//! A [`Shutdown`] is one cheap-to-clone handle shared by the whole server:
//!
//! - The accept loop `select!`s on [`Shutdown::triggered`] and returns when it fires, dropping
//!   the listener: from then on the kernel refuses new connections.
//! - Each connection (or other unit of in-flight work) is started with [`Shutdown::spawn`], so
//!   the handle knows what is still running. A connection loop checks
//!   [`Shutdown::is_triggered`] between requests and closes instead of waiting for the next
//!   one; a request already being served is allowed to finish.
//! - `main` waits for [`wait_for_signal`], calls [`Shutdown::trigger`], waits for `run` to
//!   return and then calls [`Shutdown::drain`] with the configured deadline.
//!
//! ```no_run
//! # async fn run(_: tokio::net::TcpListener, _: service_kit::shutdown::Shutdown) {}
//! use std::time::Duration;
//! use service_kit::shutdown::{Shutdown, wait_for_signal};
//!
//! # async fn example() -> std::io::Result<()> {
//! let shutdown = Shutdown::new();
//! let signal = shutdown.clone();
//! tokio::spawn(async move {
//!     let _ = wait_for_signal().await;
//!     signal.trigger();
//! });
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! run(listener, shutdown.clone()).await; // returns once triggered and no longer accepting
//! shutdown.drain(Duration::from_secs(10)).await;
//! Ok(())
//! # }
//! ```
//!
//! # What "cut off" means
//!
//! Tokio cannot stop a task in the middle of a poll. When the deadline passes, [`Shutdown::drain`]
//! fires [`Shutdown::forced`] (tasks that hold something worth closing politely may watch it)
//! and returns; `main` then returns, the runtime is dropped, and every remaining task is dropped
//! at its next `.await`, which closes its sockets. Work that must be durable (a WAL flush) must
//! therefore happen *before* the deadline, or outside the tracked tasks, in `main` after
//! `drain`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The handle through which a server learns it must stop, and reports what is still running.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    /// Cancelled when shutdown begins.
    triggered: CancellationToken,
    /// Cancelled when the drain deadline has passed.
    forced: CancellationToken,
    /// Every task started with [`Shutdown::spawn`]; `drain` waits on it.
    tracker: TaskTracker,
    /// Count of running tasks per kind, only so that `drain` can say what it cut off.
    in_flight: Arc<Mutex<BTreeMap<&'static str, usize>>>,
}

/// How a [`Shutdown::drain`] ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DrainOutcome {
    /// Every tracked task finished before the deadline.
    Complete,
    /// The deadline passed; these tasks (kind, count) were still running and are cut off.
    DeadlinePassed {
        /// Unfinished tasks by the kind given to [`Shutdown::spawn`], sorted by kind.
        unfinished: Vec<(&'static str, usize)>,
    },
}

impl DrainOutcome {
    /// True if nothing was cut off.
    pub fn is_complete(&self) -> bool {
        matches!(self, DrainOutcome::Complete)
    }
}

impl Shutdown {
    /// A handle in the running state, tracking nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Begins shutdown: [`triggered`](Self::triggered) resolves everywhere. Idempotent.
    pub fn trigger(&self) {
        self.triggered.cancel();
    }

    /// True once [`trigger`](Self::trigger) has been called.
    pub fn is_triggered(&self) -> bool {
        self.triggered.is_cancelled()
    }

    /// Resolves when shutdown begins (at once if it already has). Cancel-safe, for `select!`.
    pub async fn triggered(&self) {
        self.triggered.cancelled().await;
    }

    /// Resolves when the drain deadline has passed and remaining work is being cut off.
    pub async fn forced(&self) {
        self.forced.cancelled().await;
    }

    /// Spawns `task` on the current runtime as in-flight work that [`drain`](Self::drain)
    /// waits for. `kind` ("connection", "request", "replication") names it in the drain log.
    ///
    /// Spawning after shutdown was triggered still works (the task is tracked), but a server
    /// should not accept new work by then.
    pub fn spawn<F>(&self, kind: &'static str, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let guard = InFlightGuard::enter(Arc::clone(&self.in_flight), kind);
        self.tracker.spawn(async move {
            let _guard = guard;
            task.await
        })
    }

    /// Resolves once [`drain`](Self::drain) is over: every spawned task finished, or the
    /// deadline passed. A thread that ran spawned tasks on a runtime of its own waits for this
    /// before dropping the runtime, which would cancel them.
    pub async fn drained(&self) {
        tokio::select! {
            () = self.tracker.wait() => {}
            () = self.forced() => {}
        }
    }

    /// Number of spawned tasks that have not finished.
    pub fn in_flight(&self) -> usize {
        self.tracker.len()
    }

    /// Waits up to `deadline` for every spawned task to finish. If some are still running at
    /// the deadline, logs them, fires [`forced`](Self::forced) and returns what was cut off.
    ///
    /// Also triggers shutdown, in case the caller has not.
    pub async fn drain(&self, deadline: Duration) -> DrainOutcome {
        self.trigger();
        self.tracker.close();
        let waiting = self.in_flight();
        tracing::info!(in_flight = waiting, ?deadline, "draining in-flight work");
        if tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_ok()
        {
            tracing::info!("drained: all in-flight work finished");
            return DrainOutcome::Complete;
        }
        self.forced.cancel();
        let unfinished: Vec<_> = self
            .lock_in_flight()
            .iter()
            .map(|(&kind, &count)| (kind, count))
            .collect();
        for (kind, count) in &unfinished {
            tracing::warn!(
                kind,
                count,
                "shutdown deadline passed; cutting off unfinished work"
            );
        }
        DrainOutcome::DeadlinePassed { unfinished }
    }

    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, usize>> {
        // The map holds plain counters, always consistent between statements, so a panic
        // elsewhere while it was locked cannot have left it half-updated.
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Counts one running task of a kind; uncounts it when the task ends or is dropped.
struct InFlightGuard {
    counts: Arc<Mutex<BTreeMap<&'static str, usize>>>,
    kind: &'static str,
}

impl InFlightGuard {
    fn enter(counts: Arc<Mutex<BTreeMap<&'static str, usize>>>, kind: &'static str) -> Self {
        *counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(kind)
            .or_default() += 1;
        InFlightGuard { counts, kind }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(self.kind) {
            *count -= 1;
            if *count == 0 {
                counts.remove(self.kind);
            }
        }
    }
}

/// The signal that asked the process to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT: Ctrl-C in a terminal.
    Interrupt,
    /// SIGTERM: the polite stop of `kill`, systemd, Kubernetes and the test harness.
    Terminate,
}

/// Waits for SIGINT or SIGTERM.
///
/// The handlers are installed when the returned future is first polled, and from then on the
/// signals no longer kill the process by default: spawn this early. The error is the OS
/// refusing to install a handler. Only the first signal is awaited; a server that wants a
/// second Ctrl-C to skip the drain can call this again after the first.
#[cfg(unix)]
pub async fn wait_for_signal() -> std::io::Result<Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = interrupt.recv() => Ok(Signal::Interrupt),
        _ = terminate.recv() => Ok(Signal::Terminate),
    }
}

/// Waits for Ctrl-C (the only stop signal outside Unix).
#[cfg(not(unix))]
pub async fn wait_for_signal() -> std::io::Result<Signal> {
    tokio::signal::ctrl_c().await?;
    Ok(Signal::Interrupt)
}

/// Turns every SIGHUP into a reload: `configure` reads the file and flags again and
/// validates them; a valid config goes on `reloads` (dropped if a reload is already queued:
/// the queued one reads the same file), an invalid one is logged, naming the field, and the
/// server keeps serving the previous config. Runs until the task is aborted.
#[cfg(unix)]
pub async fn reload_on_sighup<C>(
    configure: impl Fn() -> Result<C, crate::config::ConfigError>,
    reloads: tokio::sync::mpsc::Sender<C>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(hangup) => hangup,
        Err(error) => {
            tracing::error!(%error, "cannot handle SIGHUP: reload disabled");
            return;
        }
    };
    while hangup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the config");
        match configure() {
            Ok(config) => {
                if reloads.try_send(config).is_err() {
                    tracing::info!("a reload is already queued");
                }
            }
            Err(error) => {
                tracing::error!(%error, "reload refused; still serving the previous config")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;

    use super::*;

    const DEADLINE: Duration = Duration::from_secs(5);

    #[tokio::test(start_paused = true)]
    async fn work_that_finishes_inside_the_deadline_is_waited_for() {
        let shutdown = Shutdown::new();
        let (done_tx, done_rx) = oneshot::channel();
        shutdown.spawn("request", async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            done_tx.send(()).unwrap();
        });
        assert_eq!(shutdown.in_flight(), 1);

        let started = tokio::time::Instant::now();
        assert_eq!(shutdown.drain(DEADLINE).await, DrainOutcome::Complete);
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        assert!(done_rx.await.is_ok(), "the request ran to completion");
        assert_eq!(shutdown.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn work_past_the_deadline_is_cut_off_and_reported() {
        let shutdown = Shutdown::new();
        shutdown.spawn("request", tokio::time::sleep(Duration::from_secs(1)));
        shutdown.spawn("connection", tokio::time::sleep(Duration::from_secs(60)));
        shutdown.spawn("connection", tokio::time::sleep(Duration::from_secs(60)));

        let started = tokio::time::Instant::now();
        let outcome = shutdown.drain(DEADLINE).await;
        assert_eq!(started.elapsed(), DEADLINE);
        assert_eq!(
            outcome,
            DrainOutcome::DeadlinePassed {
                unfinished: vec![("connection", 2)]
            }
        );
        assert!(!outcome.is_complete());
    }

    #[tokio::test(start_paused = true)]
    async fn forced_fires_only_after_the_deadline() {
        let shutdown = Shutdown::new();
        let task = shutdown.clone();
        let closed_politely = shutdown.spawn("connection", async move {
            task.forced().await;
            tokio::time::Instant::now()
        });
        let started = tokio::time::Instant::now();
        shutdown.drain(DEADLINE).await;
        assert_eq!(closed_politely.await.unwrap() - started, DEADLINE);
    }

    #[tokio::test]
    async fn an_accept_loop_stops_when_triggered() {
        let shutdown = Shutdown::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = shutdown.clone();
        let accept_loop = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = server.triggered() => return,
                    accepted = listener.accept() => {
                        let (stream, _) = accepted.unwrap();
                        server.spawn("connection", async move { drop(stream) });
                    }
                }
            }
        });
        tokio::net::TcpStream::connect(addr).await.unwrap();
        shutdown.trigger();
        assert!(shutdown.is_triggered());
        accept_loop.await.unwrap();
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "the listener is closed once the accept loop returns"
        );
        assert!(shutdown.drain(DEADLINE).await.is_complete());
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn sigterm_is_reported_as_terminate() {
        let waiting = wait_for_signal();
        tokio::pin!(waiting);
        // Poll once so the handlers are installed before the signal is raised; otherwise the
        // default action would kill the test process.
        tokio::select! {
            biased;
            _ = &mut waiting => panic!("no signal was sent yet"),
            _ = std::future::ready(()) => {}
        }
        // SAFETY: raise(3) has no memory-safety preconditions.
        let raised = unsafe { libc::raise(libc::SIGTERM) };
        assert_eq!(raised, 0);
        let signal = tokio::time::timeout(DEADLINE, waiting).await;
        assert_eq!(signal.unwrap().unwrap(), Signal::Terminate);
    }
}
