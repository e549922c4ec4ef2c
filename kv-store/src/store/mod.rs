//! Durability: the write-ahead log, the state machine's durable image, start-up recovery and
//! checkpoints.
//!
//! ```text
//!  start-up:  open image (sled) ─▶ applied index A, load keys, close it ─▶ open WAL (torn
//!             tail cut, with a warning; corruption before it refuses to start, naming file
//!             and offset) ─▶ replay records A+1.. through the same command code ─▶ serve
//!  serving:   commands ─▶ keyspace ─▶ records ─▶ Log (WAL) ─▶ reply
//!  every 64 MiB of log or 100,000 changes (or 60 s with changes), and at shutdown:
//!             under the keyspace lock: encode the dirty entries (and note removed keys), take
//!             the last submitted index N ─▶ wait until the log holds N ─▶ write them + N to
//!             the image in one atomic, durable batch ─▶ delete WAL segments wholly below N + 1
//!             ─▶ give freed memory back to the system
//! ```
//!
//! Invariant: the image at index N plus the log records after N is the keyspace. A segment is
//! deleted only after a durable image covers all its records, so the log never loses a record
//! the image lacks.

mod codec;
pub mod log;
pub mod state_machine;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use wal::{Wal, WalOptions};

pub use log::{Log, LogFailed};
pub use state_machine::{Change, SledStateMachine, StateMachine, StateMachineError};

use crate::command::{self, Ctx};
use crate::db::Db;
use crate::resp::request::{Limits, parse_command};
use crate::server::{Session, Shared};

/// Default longest time between checkpoints of the state machine while anything changed: 60 s.
pub const DEFAULT_CHECKPOINT_INTERVAL_MS: u64 = 60_000;

/// Default log bytes written that trigger a checkpoint before the interval is up: 64 MiB (one
/// default segment). With the interval, this bounds the log kept on disk and replayed at
/// start-up. Checkpoints are not free: each encodes the changed keys' values (whole collections)
/// under the keyspace lock and writes them to sled, so they are spaced by volume, not only time.
pub const DEFAULT_CHECKPOINT_LOG_BYTES: u64 = 64 << 20;

/// Default changes (see `Db::dirty_len`) that trigger a checkpoint: 100,000. This bounds what
/// one checkpoint encodes under the keyspace lock and hands to sled in one batch (a bulk load
/// of a million keys becomes several checkpoints, not one that briefly doubles the memory in
/// use).
pub const DEFAULT_CHECKPOINT_DIRTY_KEYS: usize = 100_000;

/// How often the checkpoint task looks at the log's growth.
pub const CHECKPOINT_POLL: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create or lock data directory {}: {source}", path.display())]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("data directory is in use by another process (lock {} held)", path.display())]
    Locked { path: PathBuf },
    #[error(transparent)]
    StateMachine(#[from] StateMachineError),
    #[error("write-ahead log: {0}")]
    Wal(#[from] wal::Error),
    #[error(
        "the write-ahead log starts at index {first}, but the state machine has applied only up \
         to {applied}: the records in between are missing"
    )]
    Gap { first: u64, applied: u64 },
    #[error("write-ahead log record {index} is not a command")]
    BadRecord { index: u64 },
    #[error("cannot start the log writer thread: {0}")]
    Thread(std::io::Error),
    #[error(transparent)]
    LogFailed(#[from] LogFailed),
    #[error(
        "maxmemory is set but memory is not being counted: install \
         kv_store::memory::CountingAllocator as the global allocator"
    )]
    NoMemoryAccounting,
    #[error("checkpoint task stopped: {0}")]
    Join(String),
}

/// The lock file in `--data-dir`: an exclusive `flock` on it is held while a node has the
/// directory open, so a second process is refused instead of writing the same log and image.
/// (sled's own lock does not cover this: the image is open only at times.)
pub const LOCK_FILE: &str = "LOCK";

/// Takes the data directory's lock; the returned file holds it until dropped.
pub fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File, StoreError> {
    let path = data_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StoreError::DataDir {
            path: path.clone(),
            source,
        })?;
    use std::os::fd::AsRawFd;
    // SAFETY: `flock` on a descriptor this function owns; no memory is passed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(file);
    }
    let source = std::io::Error::last_os_error();
    if source.kind() == std::io::ErrorKind::WouldBlock {
        return Err(StoreError::Locked { path });
    }
    Err(StoreError::DataDir { path, source })
}

/// Subdirectories of `--data-dir`.
pub fn wal_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("wal")
}

pub fn state_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("state")
}

/// What start-up recovered, for the log.
#[derive(Debug, Default, Clone, Copy)]
pub struct Recovered {
    pub applied_index: u64,
    pub loaded_keys: usize,
    pub replayed_records: u64,
}

/// Opens the image and loads it into a fresh keyspace; returns the applied index.
pub fn load_image(state_machine: &dyn StateMachine) -> Result<(Db, u64), StoreError> {
    let applied = state_machine.applied_index()?;
    let mut db = Db::new();
    state_machine.load(&mut |key, entry| db.insert_loaded(key, entry))?;
    Ok((db, applied))
}

/// Opens the WAL and lines it up with an image at `applied`.
pub fn open_wal(dir: &Path, segment_bytes: u64, applied: u64) -> Result<Wal, StoreError> {
    let mut wal = Wal::open(dir, WalOptions { segment_bytes })?;
    if let Some(tail) = &wal.open_summary().truncated_tail {
        tracing::warn!(
            file = %tail.path.display(),
            offset = tail.offset,
            bytes_removed = tail.bytes_removed,
            defect = %tail.defect,
            "write-ahead log had a torn tail (a write cut short by a crash); truncated it"
        );
    }
    if let Some(first) = wal.first_index()
        && first > applied + 1
    {
        return Err(StoreError::Gap { first, applied });
    }
    if wal.next_index() <= applied {
        // Every record is in the image already (the log was behind when it was checkpointed,
        // or its tail was lost): start the log after the image.
        wal.reset(applied + 1)?;
    }
    Ok(wal)
}

/// Applies the log records after `applied` to the keyspace, through the same command code
/// that produced them. Returns how many were applied.
pub fn replay(shared: &Shared, wal: &Wal, applied: u64) -> Result<u64, StoreError> {
    // The records were accepted under the limits of their day; do not refuse them under today's.
    let limits = Limits {
        max_bulk_bytes: usize::MAX,
        max_array_len: usize::MAX,
        max_inline_bytes: usize::MAX,
        query_buffer_bytes: usize::MAX,
    };
    let mut state = shared.lock();
    let mut session = Session::internal();
    let mut ignored = Vec::new();
    let mut count = 0;
    for item in wal.iter_from(applied + 1) {
        let (index, payload) = item?;
        let mut buf = BytesMut::from(&payload[..]);
        let args = match parse_command(&mut buf, &limits) {
            Ok(Some(args)) if !args.is_empty() && buf.is_empty() => args,
            _ => return Err(StoreError::BadRecord { index }),
        };
        let mut ctx = Ctx::new(&mut state, &mut session, shared, shared.clock.now_ms());
        ctx.replaying = true;
        let reply = command::execute(&mut ctx, &args, &mut ignored);
        ignored.clear();
        if let crate::resp::Frame::Error(error) = reply {
            tracing::warn!(index, %error, "a logged command failed when replayed");
        }
        count += 1;
    }
    Ok(count)
}

/// Writes the keys changed since the last checkpoint to the image, with the index they reflect,
/// then deletes the log segments the image now covers. Returns the index checkpointed.
pub async fn checkpoint(
    shared: &Arc<Shared>,
    state_machine: &Arc<dyn StateMachine>,
) -> Result<u64, StoreError> {
    let log = shared.log();
    let (changes, index) = {
        let mut state = shared.lock();
        // Encoded here, under the lock, rather than cloned out: a clone of a stored `Bytes`
        // allocates a shared header that then stays with the value for good.
        let mut changes = Vec::with_capacity(state.db.dirty_len());
        state.db.drain_dirty(|key, entry| {
            changes.push(Change {
                key: Bytes::copy_from_slice(key),
                entry: entry.map(codec::encode),
            });
        });
        (changes, log.last_submitted())
    };
    if changes.is_empty() && index == shared.checkpointed() {
        return Ok(index);
    }
    if let Err(err) = log.wait_acked(index).await {
        restore_dirty(shared, &changes);
        return Err(err.into());
    }
    let started = std::time::Instant::now();
    let (sm, sh) = (Arc::clone(state_machine), Arc::clone(shared));
    let written = tokio::task::spawn_blocking(move || {
        // A panic in the engine must not lose `changes`: their marks are restored below, or a
        // later checkpoint would advance the index without them and the log would be dropped.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            sm.checkpoint(&changes, index)
        }))
        .unwrap_or_else(|panic| Err(StateMachineError::Panicked(panic_message(&*panic))))
        .map_err(StoreError::from);
        match result.and_then(|()| Ok(sh.log().drop_prefix(index + 1)?)) {
            Ok(dropped) => {
                let keys = changes.len();
                drop(changes);
                // Off the runtime's thread: trimming a large heap takes milliseconds.
                crate::memory::release_free_memory();
                Ok((keys, dropped))
            }
            Err(err) => Err((err, changes)),
        }
    })
    .await
    .map_err(|err| StoreError::Join(err.to_string()))?;
    match written {
        Ok((keys, dropped)) => {
            let elapsed_ms = started.elapsed().as_millis() as u64;
            tracing::debug!(
                index,
                keys,
                segments_deleted = dropped,
                elapsed_ms,
                "checkpoint"
            );
            shared.set_checkpointed(index);
            Ok(index)
        }
        Err((err, changes)) => {
            restore_dirty(shared, &changes);
            Err(err)
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// After a failed checkpoint, marks its keys dirty again so the next one writes them.
fn restore_dirty(shared: &Shared, changes: &[Change]) {
    let mut state = shared.lock();
    for change in changes {
        state.db.mark_dirty(change.key.clone());
    }
}

/// Checkpoints whenever `log_bytes` more bytes have been logged, `dirty_keys` keys have changed,
/// or `interval` has passed with something changed, until `stop` resolves.
pub async fn checkpoint_loop(
    shared: Arc<Shared>,
    state_machine: Arc<dyn StateMachine>,
    interval: Duration,
    log_bytes: u64,
    dirty_keys: usize,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut last = tokio::time::Instant::now();
    let mut written_at_last = shared.log().written_bytes();
    loop {
        tokio::select! {
            () = tokio::time::sleep(CHECKPOINT_POLL.min(interval)) => {}
            () = &mut stop => return,
        }
        let written = shared.log().written_bytes();
        let dirty = shared.lock().db.dirty_len();
        if written - written_at_last < log_bytes && dirty < dirty_keys && last.elapsed() < interval
        {
            continue;
        }
        match checkpoint(&shared, &state_machine).await {
            Ok(_) => {
                last = tokio::time::Instant::now();
                written_at_last = written;
            }
            Err(err) => tracing::error!(%err, "checkpoint failed; will retry"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_directory_is_locked_while_it_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock_data_dir(dir.path()).unwrap();
        let refused = lock_data_dir(dir.path()).unwrap_err();
        assert!(
            matches!(&refused, StoreError::Locked { .. }) && refused.to_string().contains("LOCK"),
            "{refused}"
        );
        drop(held);
        lock_data_dir(dir.path()).expect("free again once the holder is gone");
    }
}
