//! The write path's log: records handed over under the keyspace lock, written to the WAL,
//! acknowledged according to `--fsync`.
//!
//! ```text
//!  connection (keyspace lock held)         after the lock is released
//!  ──────────────────────────────          ──────────────────────────────────────────────────
//!  execute batch ─▶ submit_for_reply ─▶ pending queue
//!                   (indexes assigned       │
//!                    here, in apply order)  ├─ everysec, no: the connection itself, after
//!                                           │  yielding once to the other ready connections,
//!                                           │  under the WAL lock: take all queued,
//!                                           │  append_batch, acked = last ─▶ reply
//!                                           └─ always: the writer thread (woken): take all,
//!                                              append_batch, fsync, acked = last ─▶ reply
//!  writer thread, besides: fsync once a second under everysec (without the WAL lock), write
//!  what was submitted with nobody to write it (active expiry's deletions) and, every quarter
//!  second, anything left queued; at close, the last write and fsync.
//! ```
//!
//! Why not `wal::GroupCommit`: its queue is entered with an `await`, and the order of records in
//! the log must be the order in which commands changed the keyspace. That order exists only
//! while the keyspace lock is held, where nothing may await. So records are handed over under
//! that lock to a plain queue ([`Log::submit`], which never blocks), and their indexes are
//! assigned there. Whoever writes takes everything queued, under the WAL's lock, in one write:
//! a group commit, whether the writer is the thread (waiting on fsyncs under `always`) or a
//! connection.
//!
//! Why the connection writes under `everysec` and `no`: the reply needs only the `write(2)`,
//! a few microseconds. Handing it to a thread and being woken back cost two context switches
//! per batch, more than the write itself; Redis likewise writes its AOF buffer on the thread
//! that executed the commands, before it replies. The `fsync` stays off that path: the writer
//! thread runs it once a second with the WAL's lock released, so writes go on meanwhile. What
//! a connection can still wait on, holding up its runtime thread (the only one by default), is
//! a segment roll (the closed segment is fsynced: at most the second written since the last
//! periodic fsync) and a checkpoint deleting segments (a directory fsync).
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

/// How a connection learns that its batch's records are acknowledged; from
/// [`Log::submit_for_reply`], for [`Log::acknowledged`].
#[derive(Debug)]
#[must_use]
pub enum Acknowledgment {
    /// `always`: the writer thread answers after the group commit's write and fsync.
    GroupCommit(oneshot::Receiver<Result<(), LogFailed>>),
    /// `everysec`, `no`: the connection writes the queue itself, up to at least this index.
    WriteThrough(u64),
}

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
    /// Records were queued that the writer thread is to write (under `always`, all of them;
    /// otherwise those nobody writes through). Under `everysec` and `no`, records that a
    /// connection is about to write itself do not set this, so the thread does not race it.
    wake: bool,
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
    /// The writer thread writes them; nobody waits for that here.
    pub fn submit(&self, records: Vec<Vec<u8>>) -> u64 {
        self.enqueue(records, None, true)
    }

    /// [`Log::submit`] for records a reply depends on: hand the result to [`Log::acknowledged`]
    /// once the keyspace lock is released.
    pub fn submit_for_reply(&self, records: Vec<Vec<u8>>) -> Acknowledgment {
        if self.inner.fsync == Fsync::Always {
            let (waiter, acked) = oneshot::channel();
            self.enqueue(records, Some(waiter), true);
            Acknowledgment::GroupCommit(acked)
        } else {
            // Not worth waking the writer: the caller writes them in a moment.
            Acknowledgment::WriteThrough(self.enqueue(records, None, false))
        }
    }

    /// Returns once the records behind `ack` are as durable as the policy promises.
    pub async fn acknowledged(&self, ack: Acknowledgment) -> Result<(), LogFailed> {
        match ack {
            Acknowledgment::GroupCommit(acked) => acked
                .await
                .unwrap_or_else(|_| Err(LogFailed("the log writer stopped".into()))),
            Acknowledgment::WriteThrough(index) => {
                // Let the other connections that are ready run first: they queue their records,
                // and whoever comes back first writes them all in one `pwrite`, as Redis writes
                // its AOF buffer once per event-loop turn rather than once per client.
                if *self.inner.acked.borrow() < index {
                    tokio::task::yield_now().await;
                }
                let mut wal = lock(&self.inner.wal);
                // Someone else's write may have taken this batch along already.
                if *self.inner.acked.borrow() < index {
                    write_pending(&self.inner, &mut wal);
                }
                drop(wal);
                self.check()
            }
        }
    }

    fn enqueue(&self, records: Vec<Vec<u8>>, waiter: Option<Waiter>, wake: bool) -> u64 {
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
        pending.wake |= wake;
        drop(pending);
        if wake {
            self.inner.wake.notify_one();
        }
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

/// Waits up to `timeout` for records to write or for closing; returns whether closing.
fn wait_for_work(inner: &Inner, timeout: Duration) -> bool {
    let mut pending = lock(&inner.pending);
    if !pending.wake && !pending.closing {
        pending = inner
            .wake
            .wait_timeout(pending, timeout)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
    pending.wake = false;
    pending.closing
}

fn write_loop(inner: &Inner) {
    let mut last_sync = Instant::now();
    loop {
        let closing = wait_for_work(inner, EVERYSEC_INTERVAL / 4);
        write_pending(inner, &mut lock(&inner.wal));
        let due = inner.fsync == Fsync::Everysec && last_sync.elapsed() >= EVERYSEC_INTERVAL;
        if due || closing {
            sync_unlocked(inner);
            last_sync = Instant::now();
        }
        if closing && lock(&inner.pending).records.is_empty() {
            return;
        }
    }
}

/// Writes every queued record (and fsyncs under `always`), then acknowledges them. Called with
/// the WAL's lock held, so that taking records off the queue and appending them is one step:
/// two writers can never append out of order.
fn write_pending(inner: &Inner, wal: &mut Wal) {
    let (records, first) = {
        let mut pending = lock(&inner.pending);
        let first = pending.first_index;
        pending.first_index = pending.next_index;
        (std::mem::take(&mut pending.records), first)
    };
    if records.is_empty() {
        return;
    }
    let bytes: usize = records.iter().map(Vec::len).sum();
    if inner.failed.load(Ordering::Acquire) {
        // Nothing more is written after a failure; whoever waits is told so.
        inner.pending_bytes.fetch_sub(bytes, Ordering::Relaxed);
        refuse_waiters(inner);
        return;
    }
    let result = wal.append_batch(first, &records).and_then(|()| {
        if inner.fsync == Fsync::Always {
            wal.sync()
        } else {
            Ok(())
        }
    });
    let count = records.len() as u64;
    // Freed before anyone is told: the queue's memory is gone once a write is answered.
    drop(records);
    inner.pending_bytes.fetch_sub(bytes, Ordering::Relaxed);
    match result {
        Ok(()) => {
            inner
                .written_bytes
                .fetch_add(bytes as u64, Ordering::Relaxed);
            let last = first + count - 1;
            inner.acked.send_replace(last);
            answer_waiters(inner, last);
        }
        Err(err) => fail(inner, &err),
    }
}

/// fsyncs what has been written without holding the WAL's lock, so that connections writing
/// through (`everysec`, `no`) are not held up by the disk.
fn sync_unlocked(inner: &Inner) {
    let point = match lock(&inner.wal).begin_sync() {
        Ok(Some(point)) => point,
        Ok(None) => return,
        Err(err) => return fail(inner, &err),
    };
    let outcome = point.sync();
    if let Err(err) = lock(&inner.wal).end_sync(point, outcome) {
        fail(inner, &err);
    }
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

    /// Connections on several threads submit under one lock (the keyspace's) and then write
    /// through or wait: every acknowledged record is in the log, in submission order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_keep_submission_order_under_every_policy() {
        let dir = tempfile::tempdir().unwrap();
        for fsync in [Fsync::Always, Fsync::Everysec, Fsync::No] {
            let path = dir.path().join(fsync.name());
            let log = Log::start(Wal::open(&path, wal::WalOptions::default()).unwrap(), fsync);
            let log = Arc::new(log.unwrap());
            // The keyspace lock, and the order in which records were submitted under it.
            let submitted = Arc::new(Mutex::new(Vec::new()));
            let mut tasks = Vec::new();
            for task in 0..4 {
                let (log, submitted) = (Arc::clone(&log), Arc::clone(&submitted));
                tasks.push(tokio::spawn(async move {
                    for batch in 0..50 {
                        let records: Vec<Vec<u8>> = (0..3)
                            .map(|i| format!("{task}/{batch}/{i}").into_bytes())
                            .collect();
                        let ack = {
                            let mut order = lock(&submitted);
                            order.extend(records.iter().cloned());
                            log.submit_for_reply(records)
                        };
                        log.acknowledged(ack).await.unwrap();
                    }
                }));
            }
            for task in tasks {
                task.await.unwrap();
            }
            assert_eq!(log.last_acked(), 600);
            log.close();
            let wal = Wal::open(&path, wal::WalOptions::default()).unwrap();
            let records: Vec<_> = wal.iter_from(1).map(|r| r.unwrap().1).collect();
            assert_eq!(records, *lock(&submitted), "{}", fsync.name());
        }
    }
}
