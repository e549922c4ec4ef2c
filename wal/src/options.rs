//! Every tunable of the log, with its unit, default and range, checked once at start-up.

use std::time::Duration;

use crate::error::{Error, Result};

/// Default size at which the active segment is closed and a new one begun: 64 MiB, as etcd's WAL.
///
/// Larger segments mean fewer files and fewer rolls (each roll costs two fsyncs and a directory
/// fsync); smaller ones let [`crate::Wal::drop_prefix`] free space in finer steps after a snapshot.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

/// Smallest accepted segment size: 64 bytes, room for the header and one small record. Only tests
/// want segments this small, to roll every few records.
pub const MIN_SEGMENT_BYTES: u64 = 64;

/// Largest accepted segment size: 1 GiB. With [`crate::MAX_PAYLOAD_BYTES`] this keeps every byte
/// offset in a segment below 2^32, and bounds the memory recovery uses to read one segment.
pub const MAX_SEGMENT_BYTES: u64 = 1 << 30;

/// Default depth of the group-commit request queue.
pub const DEFAULT_QUEUE_DEPTH: usize = 1024;

/// Largest accepted queue depth.
pub const MAX_QUEUE_DEPTH: usize = 1 << 16;

/// Default payload bytes the group-commit writer gathers into one write and one fsync: 4 MiB.
pub const DEFAULT_BATCH_BYTES_MAX: usize = 4 << 20;

/// How often [`SyncPolicy::EverySec`] fsyncs: once a second, as Redis's `appendfsync everysec`.
pub const EVERYSEC_INTERVAL: Duration = Duration::from_secs(1);

/// Options of [`crate::Wal::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalOptions {
    /// Size in bytes past which the active segment is closed and a new one started. A segment
    /// holds at least one record, so one larger than this gets a segment of its own.
    /// Default [`DEFAULT_SEGMENT_BYTES`]; range [`MIN_SEGMENT_BYTES`]..=[`MAX_SEGMENT_BYTES`].
    pub segment_bytes: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
        }
    }
}

impl WalOptions {
    /// Checks every field against its documented range, naming the first one out of range.
    pub fn validate(&self) -> Result<()> {
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&self.segment_bytes) {
            return Err(Error::InvalidOption {
                field: "segment_bytes",
                reason: format!(
                    "{} is outside {MIN_SEGMENT_BYTES}..={MAX_SEGMENT_BYTES}",
                    self.segment_bytes
                ),
            });
        }
        Ok(())
    }
}

/// When an append handed to [`crate::GroupCommit`] is acknowledged, relative to its fsync.
///
/// The names and meanings are Redis's `appendfsync` settings.
///
/// | policy     | an acknowledged write survives | fsyncs                         | latency of an append |
/// |------------|--------------------------------|--------------------------------|----------------------|
/// | `Always`   | a crash of the process or OS   | one per batch of appends       | a write and an fsync |
/// | `EverySec` | a crash of the process; up to about one second of writes is lost if the OS crashes or power fails | one a second | a write |
/// | `No`       | a crash of the process; the OS flushes when it likes (Linux: about 30 s) | only at roll, truncation and shutdown | a write |
///
/// Every policy survives a crash of the process alone: an acknowledged write is in the kernel's
/// page cache. Raft must use `Always`: a node that acknowledges an entry and then forgets it can
/// make a committed entry disappear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncPolicy {
    /// Acknowledge only after the fsync covering the write. Group commit amortizes the fsync:
    /// the appends that arrive while one fsync runs share the next.
    #[default]
    Always,
    /// Acknowledge after the write; fsync in the background about every [`EVERYSEC_INTERVAL`].
    EverySec,
    /// Acknowledge after the write; leave flushing to the operating system.
    No,
}

/// Options of [`crate::GroupCommit::start`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupCommitOptions {
    /// When appends are acknowledged. Default [`SyncPolicy::Always`].
    pub sync_policy: SyncPolicy,
    /// Requests that may wait for the writer. When the queue is full, appenders wait in `send`:
    /// that is the back-pressure that keeps memory bounded when the disk is slower than the
    /// producers. The queue counts requests, not bytes: its memory is bounded by this depth
    /// times the largest request, and the size of an `append_at` batch is the caller's to bound
    /// (Raft bounds it by its message size limit). Default [`DEFAULT_QUEUE_DEPTH`]; range
    /// 1..=[`MAX_QUEUE_DEPTH`].
    pub queue_depth: usize,
    /// Payload bytes the writer gathers into one batch (one `pwrite` per segment, one fsync)
    /// before it stops taking more from the queue. One request larger than this forms a batch
    /// by itself. Default [`DEFAULT_BATCH_BYTES_MAX`]; at least 1.
    pub batch_bytes_max: usize,
}

impl Default for GroupCommitOptions {
    fn default() -> Self {
        GroupCommitOptions {
            sync_policy: SyncPolicy::default(),
            queue_depth: DEFAULT_QUEUE_DEPTH,
            batch_bytes_max: DEFAULT_BATCH_BYTES_MAX,
        }
    }
}

impl GroupCommitOptions {
    /// Checks every field against its documented range, naming the first one out of range.
    pub fn validate(&self) -> Result<()> {
        if !(1..=MAX_QUEUE_DEPTH).contains(&self.queue_depth) {
            return Err(Error::InvalidOption {
                field: "queue_depth",
                reason: format!("{} is outside 1..={MAX_QUEUE_DEPTH}", self.queue_depth),
            });
        }
        if self.batch_bytes_max == 0 {
            return Err(Error::InvalidOption {
                field: "batch_bytes_max",
                reason: "must be at least 1".to_string(),
            });
        }
        Ok(())
    }
}
