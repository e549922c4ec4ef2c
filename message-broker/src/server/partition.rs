//! One partition as the server sees it: the log behind a mutex, its idempotent producers,
//! a watch of its end offset for long-polling fetches, and group commit of fsyncs.
//!
//! # Locking
//!
//! The log and the producer state sit behind one `std::sync::Mutex`, not a tokio one: no
//! `.await` happens while it is held, and what is done under it is short (a sequence check, a
//! `pwrite` into the page cache, an index lookup). Batch validation (CRC over the whole batch)
//! happens before the lock; the fsync and the copy of fetched bytes after it.
//!
//! # Group commit
//!
//! ```text
//!  produce A ─ append ─┐                      ┌─ A, B, C acknowledged
//!  produce B ─ append ─┼─ wait_durable ─ one fdatasync covering the end offset ┤
//!  produce C ─ append ─┘   (sync_lock: while one fsync runs, the others queue, and the next
//!                            fsync covers all of them)
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

use super::producer_state::{ProducerState, SequenceCheck};
use crate::log::{
    CleanupPolicy, CompactionOutcome, FileRange, LogConfig, LogError, PartitionLog,
    RetentionOutcome,
};

/// What a cleanup pass did.
#[derive(Debug)]
pub enum Cleaned {
    /// Retention deleted segments.
    Deleted(RetentionOutcome),
    /// Compaction rewrote segments.
    Compacted(CompactionOutcome),
}
use crate::protocol::{ErrorCode, OffsetSpec, PartitionMetadata};
use crate::record_batch;

/// How an append ended.
#[derive(Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Written; the batch holds `base_offset..next_offset`.
    Appended {
        /// First offset of the batch.
        base_offset: u64,
        /// Offset after it.
        next_offset: u64,
    },
    /// A retry of a batch already written at `base_offset`; nothing was written.
    Duplicate {
        /// Where the first copy is.
        base_offset: u64,
    },
}

struct Inner {
    log: PartitionLog,
    producers: ProducerState,
}

/// A partition of a topic.
pub struct Partition {
    /// Its index in the topic.
    pub index: u32,
    max_batch_bytes: usize,
    inner: Mutex<Inner>,
    /// The end offset, for fetches waiting for data.
    end: watch::Sender<u64>,
    /// Every offset below this is durable.
    synced: AtomicU64,
    /// Held by the one task that is running an fsync.
    sync_lock: tokio::sync::Mutex<()>,
}

impl Partition {
    /// Opens the partition's log in `dir` and rebuilds its producer state from the batch
    /// headers of its last two segments.
    pub fn open(
        index: u32,
        dir: &std::path::Path,
        config: LogConfig,
        max_producers: usize,
    ) -> Result<Partition, LogError> {
        let max_batch_bytes = config.max_batch_bytes as usize;
        let log = PartitionLog::open(dir, config)?;
        let mut producers = ProducerState::new(max_producers);
        let segments = log.segments();
        for segment in &segments[segments.len().saturating_sub(2)..] {
            for header in segment.headers(log.config())? {
                producers.record(&header);
            }
        }
        let end = log.end_offset();
        Ok(Partition {
            index,
            max_batch_bytes,
            inner: Mutex::new(Inner { log, producers }),
            end: watch::Sender::new(end),
            synced: AtomicU64::new(end),
            sync_lock: tokio::sync::Mutex::new(()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The log marks itself poisoned on any failed write; a panic elsewhere under the lock
        // leaves it in a state it already handles.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Validates, deduplicates and appends one batch.
    pub fn append(&self, batch: &mut [u8], now_ms: i64) -> Result<AppendOutcome, ErrorCode> {
        if batch.len() > self.max_batch_bytes {
            return Err(ErrorCode::MessageTooLarge);
        }
        let header = record_batch::check(batch, self.max_batch_bytes)
            .map_err(|_| ErrorCode::CorruptMessage)?;
        if header.size != batch.len() {
            return Err(ErrorCode::CorruptMessage);
        }
        let mut inner = self.lock();
        match inner.producers.check(&header) {
            SequenceCheck::Append => {}
            SequenceCheck::Duplicate { base_offset } => {
                return Ok(AppendOutcome::Duplicate { base_offset });
            }
            SequenceCheck::Reject(code) => return Err(code),
        }
        let stored = inner
            .log
            .append_checked(batch, header, now_ms)
            .map_err(|err| error_code(&err))?;
        inner.producers.record(&stored);
        drop(inner);
        self.end.send_replace(stored.next_offset());
        Ok(AppendOutcome::Appended {
            base_offset: stored.base_offset,
            next_offset: stored.next_offset(),
        })
    }

    /// Returns once every offset below `offset` is durable, fsyncing if needed. Concurrent
    /// callers share fsyncs (see the module doc).
    pub async fn wait_durable(&self, offset: u64) -> Result<(), ErrorCode> {
        if self.synced.load(Ordering::Acquire) >= offset {
            return Ok(());
        }
        let _turn = self.sync_lock.lock().await;
        if self.synced.load(Ordering::Acquire) >= offset {
            return Ok(());
        }
        let (file, path, end) = self.lock().log.sync_target();
        let synced = tokio::task::spawn_blocking(move || file.sync_data()).await;
        match synced {
            Ok(Ok(())) => {
                self.synced.fetch_max(end, Ordering::AcqRel);
                Ok(())
            }
            Ok(Err(err)) => {
                tracing::error!(path = %path.display(), %err, "fsync failed; the partition stops taking writes");
                self.lock().log.poison();
                Err(ErrorCode::StorageError)
            }
            Err(_) => Err(ErrorCode::StorageError),
        }
    }

    /// Fsyncs whatever was appended (the `interval` policy and shutdown). Blocking.
    pub fn flush(&self) -> Result<(), LogError> {
        let mut inner = self.lock();
        let end = inner.log.end_offset();
        if self.synced.load(Ordering::Acquire) >= end {
            return Ok(());
        }
        inner.log.flush()?;
        self.synced.fetch_max(end, Ordering::AcqRel);
        Ok(())
    }

    /// The bytes to send for a fetch from `offset`: `Ok(None)` at the end of the log.
    pub fn read(&self, offset: u64, max_bytes: usize) -> Result<Option<FileRange>, ErrorCode> {
        self.lock()
            .log
            .read(offset, max_bytes)
            .map_err(|err| error_code(&err))
    }

    /// (first offset, end offset).
    pub fn offsets(&self) -> (u64, u64) {
        let inner = self.lock();
        (inner.log.start_offset(), inner.log.end_offset())
    }

    /// A receiver that changes whenever the end offset moves.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.end.subscribe()
    }

    /// The offset `spec` names.
    pub fn list_offset(&self, spec: OffsetSpec) -> Result<u64, ErrorCode> {
        let inner = self.lock();
        match spec {
            OffsetSpec::Earliest => Ok(inner.log.start_offset()),
            OffsetSpec::Latest => Ok(inner.log.end_offset()),
            OffsetSpec::Timestamp(ts) => match inner.log.offset_for_timestamp(ts) {
                Ok(found) => Ok(found.unwrap_or(inner.log.end_offset())),
                Err(err) => Err(error_code(&err)),
            },
        }
    }

    /// Applies the cleanup policy: retention (deletes closed segments) or compaction
    /// (rewrites them). Blocking.
    pub fn clean(&self, now_ms: i64) -> Result<Cleaned, LogError> {
        let mut inner = self.lock();
        match inner.log.config().cleanup {
            CleanupPolicy::Delete => inner.log.enforce_retention(now_ms).map(Cleaned::Deleted),
            CleanupPolicy::Compact => inner.log.compact(now_ms).map(Cleaned::Compacted),
        }
    }

    /// Offsets and sizes for `topic describe`.
    pub fn metadata(&self) -> PartitionMetadata {
        let inner = self.lock();
        PartitionMetadata {
            partition: self.index,
            start_offset: inner.log.start_offset(),
            end_offset: inner.log.end_offset(),
            size_bytes: inner.log.size_bytes(),
            segments: inner.log.segments().len() as u32,
        }
    }
}

/// The protocol's code for a storage error.
pub fn error_code(err: &LogError) -> ErrorCode {
    match err {
        LogError::InvalidBatch(_) => ErrorCode::CorruptMessage,
        LogError::BatchTooLarge { .. } => ErrorCode::MessageTooLarge,
        LogError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        LogError::InvalidConfig { .. } => ErrorCode::InvalidConfig,
        LogError::Io { .. }
        | LogError::Corrupt { .. }
        | LogError::OffsetsOutOfOrder { .. }
        | LogError::Poisoned => {
            tracing::error!(%err, "storage error");
            ErrorCode::StorageError
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record_batch::{BatchBuilder, ProducerStamp, Record};

    fn idempotent_batch(sequence: i32) -> Vec<u8> {
        let mut builder = BatchBuilder::new();
        builder.push(&Record {
            value: Some(b"v"),
            timestamp: 1,
            ..Record::default()
        });
        builder.push(&Record {
            value: Some(b"w"),
            timestamp: 1,
            ..Record::default()
        });
        let stamp = ProducerStamp {
            producer_id: 42,
            producer_epoch: 0,
            base_sequence: sequence,
        };
        builder.finish(stamp).to_vec()
    }

    #[test]
    fn a_retry_after_a_restart_is_recognised_from_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let open = || Partition::open(0, dir.path(), LogConfig::default(), 100).unwrap();
        let partition = open();
        let appended = partition.append(&mut idempotent_batch(0), 1).unwrap();
        assert_eq!(
            appended,
            AppendOutcome::Appended {
                base_offset: 0,
                next_offset: 2
            }
        );
        partition.append(&mut idempotent_batch(2), 1).unwrap();
        drop(partition);

        let partition = open();
        assert_eq!(
            partition.append(&mut idempotent_batch(2), 1),
            Ok(AppendOutcome::Duplicate { base_offset: 2 })
        );
        assert_eq!(
            partition.append(&mut idempotent_batch(6), 1),
            Err(ErrorCode::OutOfOrderSequence)
        );
        assert_eq!(partition.offsets(), (0, 4));
    }
}
