//! Per-partition storage settings, each with its unit and default.

use serde::{Deserialize, Serialize};

use super::error::{LogError, Result};
use crate::record_batch::MIN_BATCH_LENGTH;

/// Default `segment_bytes`: 1 GiB, Kafka's `log.segment.bytes`.
pub const DEFAULT_SEGMENT_BYTES: u64 = 1 << 30;
/// Largest `segment_bytes`: index entries store positions as `u32`, so a segment stays under
/// 2 GiB (Kafka has the same bound).
pub const MAX_SEGMENT_BYTES: u64 = (1 << 31) - 1;
/// Default `segment_ms`: 7 days, Kafka's `log.roll.ms`.
pub const DEFAULT_SEGMENT_MS: i64 = 7 * 24 * 3600 * 1000;
/// Default `index_interval_bytes`: one index entry per 4 KiB of log, Kafka's
/// `log.index.interval.bytes`. Memory: 20 bytes of index per entry, 0.5 % of the log.
pub const DEFAULT_INDEX_INTERVAL_BYTES: u32 = 4096;
/// Default `max_batch_bytes`: 1 MiB, about Kafka's `message.max.bytes`.
pub const DEFAULT_MAX_BATCH_BYTES: u32 = 1 << 20;
/// Largest `max_batch_bytes`: 64 MiB, so that a damaged length field cannot make recovery
/// allocate gigabytes.
pub const MAX_MAX_BATCH_BYTES: u32 = 64 << 20;
/// Default `retention_ms`: 7 days, Kafka's `log.retention.ms`. -1 keeps data forever.
pub const DEFAULT_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;
/// Default `retention_bytes`: unlimited (-1), as in Kafka.
pub const DEFAULT_RETENTION_BYTES: i64 = -1;

/// Default `delete_retention_ms`: how long a tombstone survives compaction, 1 day (Kafka's
/// `delete.retention.ms`).
pub const DEFAULT_DELETE_RETENTION_MS: i64 = 24 * 3600 * 1000;

/// What happens to old data of a topic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CleanupPolicy {
    /// Whole closed segments are deleted by retention time and size.
    #[default]
    Delete,
    /// Closed segments are rewritten to keep the newest record per key; tombstones (records
    /// with a null value) are removed once older than `delete_retention_ms`.
    Compact,
}

/// How one partition stores its log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A segment is closed and a new one started before an append would take it past this
    /// many bytes. [`MIN_BATCH_LENGTH`]..=[`MAX_SEGMENT_BYTES`]; default [`DEFAULT_SEGMENT_BYTES`].
    pub segment_bytes: u64,
    /// A non-empty segment is closed on the first append this many ms after its first append
    /// (by the broker's clock; after a restart, counted from the open). Default
    /// [`DEFAULT_SEGMENT_MS`].
    pub segment_ms: i64,
    /// Bytes of log between two sparse index entries. Default [`DEFAULT_INDEX_INTERVAL_BYTES`].
    pub index_interval_bytes: u32,
    /// Largest batch accepted, in bytes. Default [`DEFAULT_MAX_BATCH_BYTES`], at most
    /// [`MAX_MAX_BATCH_BYTES`] and at most `segment_bytes`.
    pub max_batch_bytes: u32,
    /// Closed segments whose newest record is older than this many ms are deleted; -1 keeps
    /// them. Default [`DEFAULT_RETENTION_MS`].
    pub retention_ms: i64,
    /// Oldest closed segments are deleted while the log would stay at least this many bytes
    /// without them; -1 means no size limit. Default [`DEFAULT_RETENTION_BYTES`].
    pub retention_bytes: i64,
    /// At open, read and check every batch of every closed segment (start-up time grows with
    /// the data) rather than trusting index files that pass a sanity check. Default `true`:
    /// damage is found at start, named by file and byte, instead of by a consumer.
    pub verify_closed_segments: bool,
    /// Delete old segments or compact them. Default `delete`.
    pub cleanup: CleanupPolicy,
    /// Under `compact`, a tombstone whose timestamp is older than this many ms is removed.
    /// Default [`DEFAULT_DELETE_RETENTION_MS`].
    pub delete_retention_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            segment_ms: DEFAULT_SEGMENT_MS,
            index_interval_bytes: DEFAULT_INDEX_INTERVAL_BYTES,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            retention_ms: DEFAULT_RETENTION_MS,
            retention_bytes: DEFAULT_RETENTION_BYTES,
            verify_closed_segments: true,
            cleanup: CleanupPolicy::Delete,
            delete_retention_ms: DEFAULT_DELETE_RETENTION_MS,
        }
    }
}

impl LogConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<()> {
        let invalid = |field, reason: String| Err(LogError::InvalidConfig { field, reason });
        if !(MIN_BATCH_LENGTH as u64..=MAX_SEGMENT_BYTES).contains(&self.segment_bytes) {
            return invalid(
                "segment_bytes",
                format!("must be between {MIN_BATCH_LENGTH} and {MAX_SEGMENT_BYTES}"),
            );
        }
        if self.segment_ms < 1 {
            return invalid("segment_ms", "must be at least 1".into());
        }
        if self.index_interval_bytes == 0 {
            return invalid("index_interval_bytes", "must be at least 1".into());
        }
        if self.max_batch_bytes > MAX_MAX_BATCH_BYTES
            || u64::from(self.max_batch_bytes) > self.segment_bytes
            || (self.max_batch_bytes as usize) < MIN_BATCH_LENGTH + 12
        {
            return invalid(
                "max_batch_bytes",
                format!("must be at most {MAX_MAX_BATCH_BYTES} and at most segment_bytes"),
            );
        }
        if self.retention_ms < -1 || self.retention_ms == 0 {
            return invalid("retention_ms", "must be -1 (forever) or at least 1".into());
        }
        if self.delete_retention_ms < 0 {
            return invalid("delete_retention_ms", "must be at least 0".into());
        }
        if self.retention_bytes < -1 {
            return invalid(
                "retention_bytes",
                "must be -1 (no limit) or at least 0".into(),
            );
        }
        Ok(())
    }
}
