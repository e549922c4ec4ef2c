//! Group commit: many concurrent appenders, one writer thread, one fsync per batch.
//!
//! An fsync costs about the same whether it covers one record or a thousand: the disk's cache
//! flush dominates. So instead of each appender paying for its own, appenders hand their records
//! to one writer and wait; the writer takes everything that queued up while the previous fsync
//! ran, writes it in one `pwrite`, fsyncs once, and answers them all. The busier the log, the
//! larger the batches: throughput grows with concurrency while the fsync rate stays at what the
//! disk can do. No artificial delay is added to grow batches (PostgreSQL's `commit_delay`): the
//! time of one fsync is the natural gathering window.
//!
//! ```text
//!  appender tasks            bounded queue            writer thread                 disk
//!  ──────────────            ─────────────            ─────────────                 ────
//!  append(a) ──send──▶ ┌──┬──┬──┬──┐
//!  append(b) ──send──▶ │a │b │c │  │ ──take all (≤ batch_bytes_max)──▶ lock, pwrite a b c ──▶
//!  append(c) ──send──▶ └──┴──┴──┴──┘                 unlock, fsync ──────────────────────▶
//!      ▲                                             answer a, b, c
//!      └────────────────── oneshot replies ◀─────────┘
//! ```
//!
//! Design decisions:
//!
//! - **A dedicated OS thread, not a tokio task.** `pwrite` and `fsync` block; on a runtime worker
//!   they would stall every task scheduled there. The thread talks to async code through a tokio
//!   `mpsc` queue (`send().await` on one side, `blocking_recv` on the other) and a `oneshot` per
//!   request.
//! - **Bounded queue.** When the disk falls behind, `send` waits: back-pressure reaches the
//!   appenders instead of memory growing without limit ([`GroupCommitOptions::queue_depth`]).
//! - **fsync outside the lock.** The [`Wal`] sits behind a mutex so that readers
//!   ([`CommitHandle::read`], [`CommitHandle::with_wal`]) can run beside the writer. The writer
//!   holds the lock to write, and releases it for the fsync, so readers never wait for the disk
//!   to flush. This is safe because the writer is the only thread that changes the log.
//! - **Every change goes through the queue**, truncations and hard-state saves included, so
//!   their order relative to appends is the order in which they were sent.
//! - **Indexes**: [`CommitHandle::append`] lets the writer assign the next index (the KV store's
//!   case: concurrent clients, any order). [`CommitHandle::append_at`] gives the index explicitly
//!   (Raft's case: the index is part of the entry) and fails if it is not the next one.
//!
//! When an append is answered depends on the [`SyncPolicy`]: after the batch fsync (`Always`),
//! or right after the write (`EverySec`, `No`). Under `EverySec` a ticker thread enqueues a sync
//! request every [`EVERYSEC_INTERVAL`]; if the queue is full the tick is skipped, and the sync
//! happens on a later tick.

use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::hard_state::HardState;
use crate::log::{Wal, WalStats};
use crate::options::{EVERYSEC_INTERVAL, GroupCommitOptions, SyncPolicy};

/// What the writer thread is asked to do.
enum Request {
    /// `first_index: None` means "at the next index".
    Append {
        first_index: Option<u64>,
        payloads: Vec<Vec<u8>>,
        reply: oneshot::Sender<Result<u64>>,
    },
    Sync(oneshot::Sender<Result<()>>),
    TruncateSuffix(u64, oneshot::Sender<Result<()>>),
    DropPrefix(u64, oneshot::Sender<Result<usize>>),
    Reset(u64, oneshot::Sender<Result<()>>),
    SaveHardState(HardState, oneshot::Sender<Result<()>>),
    /// From the `EverySec` ticker: fsync if anything is unsynced.
    Tick,
    Shutdown(oneshot::Sender<Result<()>>),
}

/// A reply held back until the batch's fsync has completed.
enum Deferred {
    Append(oneshot::Sender<Result<u64>>, u64),
    Sync(oneshot::Sender<Result<()>>),
}

/// The running writer thread (and, under `EverySec`, its ticker). Dropping it without
/// [`GroupCommit::shutdown`] lets the writer finish once every [`CommitHandle`] is dropped.
#[derive(Debug)]
pub struct GroupCommit {
    handle: CommitHandle,
    writer: Option<JoinHandle<()>>,
    /// Dropping the sender stops the ticker.
    ticker: Option<(std_mpsc::Sender<()>, JoinHandle<()>)>,
}

/// A cheap, cloneable handle for appending to and reading from a log run by [`GroupCommit`].
#[derive(Debug, Clone)]
pub struct CommitHandle {
    requests: mpsc::Sender<Request>,
    wal: Arc<Mutex<Wal>>,
}

impl GroupCommit {
    /// Starts the writer thread for `wal`.
    pub fn start(wal: Wal, options: GroupCommitOptions) -> Result<GroupCommit> {
        options.validate()?;
        let wal = Arc::new(Mutex::new(wal));
        let (requests, receiver) = mpsc::channel(options.queue_depth);
        let writer = Writer {
            wal: Arc::clone(&wal),
            requests: receiver,
            options: options.clone(),
        };
        let writer = std::thread::Builder::new()
            .name("wal-writer".to_string())
            .spawn(move || writer.run())
            .map_err(|source| Error::Thread {
                name: "wal-writer",
                source,
            })?;
        let ticker = (options.sync_policy == SyncPolicy::EverySec)
            .then(|| start_ticker(requests.clone()))
            .transpose()?;
        Ok(GroupCommit {
            handle: CommitHandle { requests, wal },
            writer: Some(writer),
            ticker,
        })
    }

    /// A handle for appenders and readers.
    pub fn handle(&self) -> CommitHandle {
        self.handle.clone()
    }

    /// Stops the writer after the requests sent before this call, with a final fsync whatever the
    /// policy. Requests sent later fail with [`Error::Closed`].
    pub async fn shutdown(mut self) -> Result<()> {
        self.stop_ticker();
        let result = self.handle.call(Request::Shutdown).await;
        if let Some(writer) = self.writer.take() {
            // The writer replies as its last act, so this joins a thread that is returning.
            let _ = writer.join();
        }
        result
    }

    fn stop_ticker(&mut self) {
        if let Some((stop, ticker)) = self.ticker.take() {
            drop(stop);
            let _ = ticker.join();
        }
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.stop_ticker();
    }
}

fn start_ticker(requests: mpsc::Sender<Request>) -> Result<(std_mpsc::Sender<()>, JoinHandle<()>)> {
    let (stop, stopped) = std_mpsc::channel::<()>();
    let ticker = std::thread::Builder::new()
        .name("wal-everysec".to_string())
        .spawn(move || {
            while let Err(std_mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(EVERYSEC_INTERVAL)
            {
                if let Err(mpsc::error::TrySendError::Closed(_)) = requests.try_send(Request::Tick)
                {
                    return;
                }
            }
        })
        .map_err(|source| Error::Thread {
            name: "wal-everysec",
            source,
        })?;
    Ok((stop, ticker))
}

/// Every async method queues one request and waits for its reply. Dropping the future after the
/// request was queued does not withdraw it: the writer still applies it, and the caller just
/// does not learn the outcome (for an append, its index). A caller that must know, such as Raft,
/// reads [`Wal::last_index`] through [`CommitHandle::with_wal`] after a cancellation.
impl CommitHandle {
    /// Appends `payload` at the next index and returns that index, once the write is as durable
    /// as the [`SyncPolicy`] promises.
    pub async fn append(&self, payload: Vec<u8>) -> Result<u64> {
        self.call(|reply| Request::Append {
            first_index: None,
            payloads: vec![payload],
            reply,
        })
        .await
    }

    /// Appends `payloads` as records `first_index..`; fails with [`Error::NotContiguous`] unless
    /// `first_index` is the log's next index when the writer reaches this request.
    pub async fn append_at(&self, first_index: u64, payloads: Vec<Vec<u8>>) -> Result<()> {
        self.call(|reply| Request::Append {
            first_index: Some(first_index),
            payloads,
            reply,
        })
        .await
        .map(drop)
    }

    /// Makes every append sent before this call durable, whatever the policy.
    pub async fn sync(&self) -> Result<()> {
        self.call(Request::Sync).await
    }

    /// See [`Wal::truncate_suffix`].
    pub async fn truncate_suffix(&self, from: u64) -> Result<()> {
        self.call(|reply| Request::TruncateSuffix(from, reply))
            .await
    }

    /// See [`Wal::drop_prefix`].
    pub async fn drop_prefix(&self, below: u64) -> Result<usize> {
        self.call(|reply| Request::DropPrefix(below, reply)).await
    }

    /// See [`Wal::reset`].
    pub async fn reset(&self, next_index: u64) -> Result<()> {
        self.call(|reply| Request::Reset(next_index, reply)).await
    }

    /// See [`Wal::save_hard_state`]; ordered after every append sent before it.
    pub async fn save_hard_state(&self, state: HardState) -> Result<()> {
        self.call(|reply| Request::SaveHardState(state, reply))
            .await
    }

    /// Reads one record; see [`Wal::read`]. Takes the log's lock briefly, never across an fsync.
    pub fn read(&self, index: u64) -> Result<Option<Vec<u8>>> {
        self.with_wal(|wal| wal.read(index))?
    }

    /// Runs `f` on the log under its lock, for reads that must see one consistent state (a range
    /// of records, first and last index together). Keep `f` short: the writer waits for it.
    pub fn with_wal<R>(&self, f: impl FnOnce(&Wal) -> R) -> Result<R> {
        let wal = lock(&self.wal)?;
        Ok(f(&wal))
    }

    pub fn stats(&self) -> Result<WalStats> {
        self.with_wal(Wal::stats)
    }

    async fn call<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<Result<T>>) -> Request,
    ) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(request(reply))
            .await
            .map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }
}

/// The mutex is poisoned only if a thread panicked while holding it; treat the log as gone.
fn lock(wal: &Mutex<Wal>) -> Result<MutexGuard<'_, Wal>> {
    wal.lock().map_err(|_| Error::Closed)
}

/// The writer thread's state.
struct Writer {
    wal: Arc<Mutex<Wal>>,
    requests: mpsc::Receiver<Request>,
    options: GroupCommitOptions,
}

/// What a batch left to do once its requests were applied.
#[derive(Default)]
struct BatchOutcome {
    /// Replies waiting for the fsync.
    deferred: Vec<Deferred>,
    /// Whether to fsync even with no reply waiting (a tick).
    sync_wanted: bool,
    shutdown: Option<oneshot::Sender<Result<()>>>,
}

impl Writer {
    fn run(mut self) {
        while let Some(first) = self.requests.blocking_recv() {
            let batch = self.gather(first);
            let mut outcome = BatchOutcome::default();
            {
                let Ok(mut wal) = lock(&self.wal) else {
                    return;
                };
                for request in batch {
                    self.apply(&mut wal, request, &mut outcome);
                }
            }
            let sync_needed =
                outcome.sync_wanted || !outcome.deferred.is_empty() || outcome.shutdown.is_some();
            let synced = if sync_needed { self.sync() } else { Ok(()) };
            answer_deferred(outcome.deferred, &synced);
            if let Some(reply) = outcome.shutdown {
                let _ = reply.send(synced);
                return;
            }
        }
        // Every handle is gone: flush what was acknowledged without an fsync.
        let _ = self.sync();
    }

    /// The first request plus whatever else is already queued, up to `batch_bytes_max` bytes of
    /// payload. It never waits for more: an idle log answers a lone append at once.
    fn gather(&mut self, first: Request) -> Vec<Request> {
        let mut bytes = payload_bytes(&first);
        let mut batch = vec![first];
        while bytes < self.options.batch_bytes_max {
            let Ok(next) = self.requests.try_recv() else {
                break;
            };
            bytes += payload_bytes(&next);
            let stop = matches!(next, Request::Shutdown(_));
            batch.push(next);
            if stop {
                break;
            }
        }
        batch
    }

    /// Performs one request under the lock. An append's reply waits for the fsync under
    /// `Always` and is sent at once otherwise; truncations and hard-state saves are durable when
    /// they return, so they are answered at once.
    fn apply(&self, wal: &mut Wal, request: Request, outcome: &mut BatchOutcome) {
        match request {
            Request::Append {
                first_index,
                payloads,
                reply,
            } => {
                let index = first_index.unwrap_or_else(|| wal.next_index());
                match wal.append_batch(index, &payloads) {
                    Ok(()) if self.options.sync_policy == SyncPolicy::Always => {
                        outcome.deferred.push(Deferred::Append(reply, index));
                    }
                    result => drop(reply.send(result.map(|()| index))),
                }
            }
            Request::Sync(reply) => outcome.deferred.push(Deferred::Sync(reply)),
            Request::TruncateSuffix(from, reply) => drop(reply.send(wal.truncate_suffix(from))),
            Request::DropPrefix(below, reply) => drop(reply.send(wal.drop_prefix(below))),
            Request::Reset(next, reply) => drop(reply.send(wal.reset(next))),
            Request::SaveHardState(state, reply) => drop(reply.send(wal.save_hard_state(state))),
            Request::Tick => outcome.sync_wanted = true,
            Request::Shutdown(reply) => outcome.shutdown = Some(reply),
        }
    }

    /// fsyncs the active segment with the lock released, so readers are not held up by the disk.
    fn sync(&self) -> Result<()> {
        let Some(point) = lock(&self.wal)?.begin_sync()? else {
            return Ok(());
        };
        let outcome = point.sync();
        lock(&self.wal)?.end_sync(point, outcome)
    }
}

fn payload_bytes(request: &Request) -> usize {
    match request {
        Request::Append { payloads, .. } => payloads.iter().map(Vec::len).sum(),
        _ => 0,
    }
}

/// Answers the requests that waited for the fsync. If it failed, none of them is durable; the
/// failure itself was logged once, where the log was poisoned.
fn answer_deferred(deferred: Vec<Deferred>, synced: &Result<()>) {
    for waiting in deferred {
        match waiting {
            Deferred::Append(reply, index) => {
                let _ = reply.send(synced.as_ref().map(|()| index).map_err(|_| Error::Poisoned));
            }
            Deferred::Sync(reply) => {
                let _ = reply.send(synced.as_ref().copied().map_err(|_| Error::Poisoned));
            }
        }
    }
}
