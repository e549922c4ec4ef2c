//! The write path's log: records handed over under the keyspace lock, written to the WAL by one
//! thread, acknowledged according to `--fsync`.
//!
//! ```text
//!  connection (keyspace lock held)        writer thread                      connection
//!  ──────────────────────────────         ─────────────                      ──────────
//!  execute batch ─▶ submit(records) ──▶ pending ──take all──▶ append_batch
//!                   (indexes assigned                           [fsync if always]
//!                    here, in apply order)                      acked = last ───────▶ wait_acked
//!                                                               [fsync if a second passed     │
//!                                                                and everysec]            reply
//! ```
//!
//! Why not `wal::GroupCommit`: its queue is entered with an `await`, and the order of records in
//! the log must be the order in which commands changed the keyspace. That order exists only
//! while the keyspace lock is held, where nothing may await. So records are handed over under
//! that lock to a plain queue ([`Log::submit`], which never blocks), and their indexes are
//! assigned there; one writer thread drains it. The group commit is the same idea: whatever
//! queued while the previous write and fsync ran goes out in the next single write.
//!
//! Acknowledgment by policy (Redis's `appendfsync`):
//!
//! | `--fsync`  | a reply is sent after        | lost in an OS crash or power loss |
//! |------------|------------------------------|-----------------------------------|
//! | `always`   | the fsync covering the write | nothing acknowledged              |
//! | `everysec` | the write (page cache)       | about the last second             |
//! | `no`       | the write (page cache)       | whatever the OS had not flushed   |
//!
//! A crash of the process alone loses no acknowledged write under any policy.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::collections::VecDeque;

use tokio::sync::{oneshot, watch};
use wal::Wal;

use crate::config::Fsync;

/// Most record bytes submitted but not yet written before connections wait to execute more
/// writes: 64 MiB. This bounds the queue between the keyspace and the disk.
pub const MAX_PENDING_BYTES: usize = 64 << 20;

/// How often `everysec` fsyncs.
pub const EVERYSEC_INTERVAL: Duration = Duration::from_secs(1);

/// Why a write could not be made durable. Once the log has failed it refuses every later
/// write until the server restarts: a failed fsync cannot be retried safely.
#[derive(Debug, Clone, thiserror::Error)]
#[error("MISCONF Errors writing to the write-ahead log: {0}")]
pub struct LogFailed(pub String);

/// Told when a submitted batch is acknowledged (or the log failed).
type Waiter = oneshot::Sender<Result<(), LogFailed>>;

#[derive(Debug, Default)]
struct Pending {
    records: Vec<Vec<u8>>,
    /// Batches waiting for acknowledgment, by the index of their last record. Submissions come
    /// in index order, so this is sorted, and the writer answers from the front: one wake per
    /// batch, not one per waiter per write.
    waiters: VecDeque<(u64, Waiter)>,
    /// Index of `records[0]`.
    first_index: u64,
    /// Index the next submitted record gets.
    next_index: u64,
    closing: bool,
}

#[derive(Debug)]
struct Inner {
    wal: Mutex<Wal>,
    pending: Mutex<Pending>,
    wake: Condvar,
    /// Highest index acknowledged by the policy (written, or written and fsynced).
    acked: watch::Sender<u64>,
    pending_bytes: AtomicUsize,
    /// Record bytes written since start, for the checkpoint trigger.
    written_bytes: AtomicU64,
    failed: AtomicBool,
    failure: Mutex<Option<String>>,
    fsync: Fsync,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The running log writer.
#[derive(Debug)]
pub struct Log {
    inner: Arc<Inner>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Log {
    /// Starts the writer thread on `wal`; the next submitted record gets `wal.next_index()`.
    pub fn start(wal: Wal, fsync: Fsync) -> std::io::Result<Log> {
        let next = wal.next_index();
        let inner = Arc::new(Inner {
            wal: Mutex::new(wal),
            pending: Mutex::new(Pending {
                first_index: next,
                next_index: next,
                ..Pending::default()
            }),
            wake: Condvar::new(),
            acked: watch::Sender::new(next - 1),
            pending_bytes: AtomicUsize::new(0),
            written_bytes: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            failure: Mutex::new(None),
            fsync,
        });
        let writer = {
            let inner = Arc::clone(&inner);
            std::thread::Builder::new()
                .name("kv-log-writer".into())
                .spawn(move || write_loop(&inner))?
        };
        Ok(Log {
            inner,
            writer: Mutex::new(Some(writer)),
        })
    }

    /// Queues `records` as the next entries of the log and returns the index of the last one.
    /// Called with the keyspace lock held, so log order is apply order; never blocks on I/O.
    pub fn submit(&self, records: Vec<Vec<u8>>) -> u64 {
        self.enqueue(records, None)
    }

    /// [`Log::submit`], and a receiver told when the records are acknowledged.
    pub fn submit_and_wait(
        &self,
        records: Vec<Vec<u8>>,
    ) -> oneshot::Receiver<Result<(), LogFailed>> {
        let (waiter, acked) = oneshot::channel();
        self.enqueue(records, Some(waiter));
        acked
    }

    fn enqueue(&self, records: Vec<Vec<u8>>, waiter: Option<Waiter>) -> u64 {
        let bytes: usize = records.iter().map(Vec::len).sum();
        self.inner.pending_bytes.fetch_add(bytes, Ordering::Relaxed);
        let mut pending = lock(&self.inner.pending);
        if pending.records.is_empty() {
            pending.first_index = pending.next_index;
        }
        pending.next_index += records.len() as u64;
        let last = pending.next_index - 1;
        pending.records.extend(records);
        if let Some(waiter) = waiter {
            pending.waiters.push_back((last, waiter));
        }
        drop(pending);
        self.inner.wake.notify_one();
        last
    }

    /// Index of the last record submitted (0 if none ever was).
    pub fn last_submitted(&self) -> u64 {
        lock(&self.inner.pending).next_index - 1
    }

    /// Bytes of records submitted and not yet written: memory that is the log's buffer, not
    /// data, and that `maxmemory` does not count (as Redis does not count its AOF buffer).
    pub fn pending_bytes(&self) -> usize {
        self.inner.pending_bytes.load(Ordering::Relaxed)
    }

    /// Record bytes written to the WAL since the log was started.
    pub fn written_bytes(&self) -> u64 {
        self.inner.written_bytes.load(Ordering::Relaxed)
    }

    /// Index of the last record acknowledged under the policy.
    pub fn last_acked(&self) -> u64 {
        *self.inner.acked.borrow()
    }

    /// Waits until record `index` is as durable as the policy promises.
    pub async fn wait_acked(&self, index: u64) -> Result<(), LogFailed> {
        let mut acked = self.inner.acked.subscribe();
        let failed = &self.inner.failed;
        let _ = acked
            .wait_for(|&a| a >= index || failed.load(Ordering::Acquire))
            .await;
        self.check()
    }

    /// Waits while more than [`MAX_PENDING_BYTES`] are queued: back-pressure from the disk.
    pub async fn wait_for_room(&self) {
        if self.inner.pending_bytes.load(Ordering::Relaxed) <= MAX_PENDING_BYTES {
            return;
        }
        let mut acked = self.inner.acked.subscribe();
        let inner = &self.inner;
        let _ = acked
            .wait_for(|_| {
                inner.pending_bytes.load(Ordering::Relaxed) <= MAX_PENDING_BYTES
                    || inner.failed.load(Ordering::Acquire)
            })
            .await;
    }

    /// `Err` once a write or fsync has failed.
    pub fn check(&self) -> Result<(), LogFailed> {
        if !self.inner.failed.load(Ordering::Acquire) {
            return Ok(());
        }
        Err(LogFailed(
            lock(&self.inner.failure).clone().unwrap_or_default(),
        ))
    }

    /// Deletes the segments whose records all have indexes below `below` (they are in the state
    /// machine's durable image). Returns how many segments went.
    pub fn drop_prefix(&self, below: u64) -> wal::Result<usize> {
        lock(&self.inner.wal).drop_prefix(below)
    }

    /// Segments in the log, for `INFO persistence`.
    pub fn segment_count(&self) -> usize {
        lock(&self.inner.wal).segment_count()
    }

    /// Writes and fsyncs everything submitted, then stops the writer. Idempotent.
    pub fn close(&self) {
        lock(&self.inner.pending).closing = true;
        self.inner.wake.notify_one();
        if let Some(writer) = lock(&self.writer).take() {
            let _ = writer.join();
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.close();
    }
}

/// Takes the queued records, waiting up to `timeout` for some.
fn take_batch(inner: &Inner, timeout: Duration) -> (Vec<Vec<u8>>, u64, bool) {
    let mut pending = lock(&inner.pending);
    if pending.records.is_empty() && !pending.closing {
        pending = inner
            .wake
            .wait_timeout(pending, timeout)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
    let first = pending.first_index;
    let records = std::mem::take(&mut pending.records);
    pending.first_index = pending.next_index;
    (records, first, pending.closing)
}

fn write_loop(inner: &Inner) {
    let mut last_sync = Instant::now();
    let mut unsynced = false;
    loop {
        let (records, first, closing) = take_batch(inner, EVERYSEC_INTERVAL / 4);
        if !records.is_empty() && inner.failed.load(Ordering::Acquire) {
            // Nothing more is written after a failure; whoever waits is told so.
            refuse_waiters(inner);
        } else if !records.is_empty() {
            let bytes: usize = records.iter().map(Vec::len).sum();
            let result = write(inner, first, &records);
            let count = records.len() as u64;
            // Freed before anyone is told: the queue's memory is gone once a write is answered.
            drop(records);
            inner.pending_bytes.fetch_sub(bytes, Ordering::Relaxed);
            match result {
                Ok(()) => {
                    inner
                        .written_bytes
                        .fetch_add(bytes as u64, Ordering::Relaxed);
                    unsynced = inner.fsync != Fsync::Always;
                    let last = first + count - 1;
                    inner.acked.send_replace(last);
                    answer_waiters(inner, last);
                }
                Err(err) => fail(inner, &err),
            }
        }
        let due = inner.fsync == Fsync::Everysec && last_sync.elapsed() >= EVERYSEC_INTERVAL;
        if unsynced && (due || closing) {
            if let Err(err) = lock(&inner.wal).sync() {
                fail(inner, &err);
            }
            unsynced = false;
            last_sync = Instant::now();
        }
        if closing && lock(&inner.pending).records.is_empty() {
            return;
        }
    }
}

fn write(inner: &Inner, first: u64, records: &[Vec<u8>]) -> wal::Result<()> {
    let mut wal = lock(&inner.wal);
    wal.append_batch(first, records)?;
    if inner.fsync == Fsync::Always {
        wal.sync()?;
    }
    Ok(())
}

/// Tells the batches whose last record is at most `last` that they are acknowledged.
fn answer_waiters(inner: &Inner, last: u64) {
    let mut done = Vec::new();
    {
        let mut pending = lock(&inner.pending);
        while pending
            .waiters
            .front()
            .is_some_and(|(index, _)| *index <= last)
        {
            done.push(pending.waiters.pop_front().expect("front exists").1);
        }
    }
    for waiter in done {
        let _ = waiter.send(Ok(()));
    }
}

fn refuse_waiters(inner: &Inner) {
    let reason = lock(&inner.failure).clone().unwrap_or_default();
    let waiters = std::mem::take(&mut lock(&inner.pending).waiters);
    for (_, waiter) in waiters {
        let _ = waiter.send(Err(LogFailed(reason.clone())));
    }
}

fn fail(inner: &Inner, err: &wal::Error) {
    tracing::error!(%err, "write-ahead log failed; refusing writes until restart");
    *lock(&inner.failure) = Some(err.to_string());
    inner.failed.store(true, Ordering::Release);
    refuse_waiters(inner);
    // Wake every waiter so that it sees the failure.
    inner.acked.send_modify(|_| {});
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn submitted_records_are_acknowledged_in_order_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        for fsync in [Fsync::Always, Fsync::Everysec, Fsync::No] {
            let path = dir.path().join(fsync.name());
            let log =
                Log::start(Wal::open(&path, wal::WalOptions::default()).unwrap(), fsync).unwrap();
            let first = log.submit(vec![b"a".to_vec(), b"b".to_vec()]);
            let second = log.submit(vec![b"c".to_vec()]);
            assert_eq!((first, second), (2, 3));
            log.wait_acked(second).await.unwrap();
            assert_eq!(log.last_acked(), 3);
            log.close();
            let wal = Wal::open(&path, wal::WalOptions::default()).unwrap();
            let records: Vec<_> = wal.iter_from(1).map(|r| r.unwrap().1).collect();
            assert_eq!(records, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        }
    }
}
