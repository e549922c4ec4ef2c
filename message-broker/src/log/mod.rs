//! The partition log: an ordered list of segments, the last one active.
//!
//! ```text
//!  partition dir/
//!    00000000000000000000.log  .index  .timeindex   closed: fsynced, indexes on disk
//!    00000000000000052817.log  .index  .timeindex   closed
//!    00000000000000104032.log                        active: appends go here, index in memory
//! ```
//!
//! - **append**: the batch is checked (`record_batch::check`), given the next offset, and
//!   written with one `pwrite` at the end of the active segment. Before that, the active
//!   segment is rolled if the batch would take it past `segment_bytes` or it is older than
//!   `segment_ms` (by the broker's clock since its first append, not by record timestamps).
//! - **read**: the segment holding the offset is found by base offset, the batch by its sparse
//!   index plus a short walk over batch headers; the answer is a [`FileRange`], the bytes a
//!   fetch sends as they are.
//! - **retention** deletes whole closed segments from the old end, by age of their newest record
//!   and by total size; the active segment is never deleted.
//! - **compaction** (`cleanup = compact`, `compaction.rs`) rewrites closed segments to keep the
//!   newest record per key, leaving gaps in the offsets.
//!
//! # Recovery at open
//!
//! Rules, in order:
//!
//! 1. Index files without their `.log` (left by a deletion cut short) are removed.
//! 2. The active segment (highest base offset) is read batch by batch; at the first batch that
//!    is cut short, fails its CRC or does not continue the offsets, the file is truncated and
//!    the truncation fsynced: that tail is a write torn by the crash and was never acknowledged
//!    under `--flush always`.
//! 3. Closed segments were fsynced whole before their successor was created, so damage in
//!    one is corruption, never a torn write: open fails with the file and byte position.
//!    With `verify_closed_segments` (the default) every batch is checked; otherwise only index
//!    files that fail their sanity check cause a scan.
//! 4. A missing or bad index is rebuilt from the scan and written back.
//! 5. Segments must join up: each starts at the offset after the previous one ends. Inside a
//!    segment offsets continue exactly, except for the gaps compaction leaves.
//! 6. A `.log.cleaned` file (a compaction cut short) is removed; the original is intact.
//!
//! # Durability
//!
//! An append reaches the page cache; [`PartitionLog::sync_target`] hands out the active file
//! and the offset a sync of it covers, so the caller can `fdatasync` outside the partition's
//! lock and acknowledge every append below that offset (group commit). A roll fsyncs the
//! closing segment and its indexes before creating the next file, and then the directory.

mod compaction;
mod config;
mod error;
mod index;
mod segment;

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use compaction::CompactionOutcome;
pub use config::{
    CleanupPolicy, DEFAULT_DELETE_RETENTION_MS, DEFAULT_INDEX_INTERVAL_BYTES,
    DEFAULT_MAX_BATCH_BYTES, DEFAULT_RETENTION_BYTES, DEFAULT_RETENTION_MS, DEFAULT_SEGMENT_BYTES,
    DEFAULT_SEGMENT_MS, LogConfig, MAX_MAX_BATCH_BYTES, MAX_SEGMENT_BYTES,
};
pub use error::{LogError, Result};
pub use index::{OFFSET_ENTRY_BYTES, OffsetEntry, SegmentIndex, TIME_ENTRY_BYTES};
pub use segment::{FileRange, Segment, file_name, parse_log_name};

use crate::record_batch::{self, BatchHeader};
use error::IoContext;

/// What [`PartitionLog::open`] found and repaired.
#[derive(Debug, Default)]
pub struct RecoverySummary {
    /// Segments in the log after open.
    pub segments: usize,
    /// The torn tail cut from the active segment, if any.
    pub truncated: Option<TornTail>,
    /// Index files rebuilt because they were missing or failed their checks.
    pub rebuilt_indexes: Vec<PathBuf>,
    /// Index files removed because their `.log` was gone.
    pub removed_orphans: Vec<PathBuf>,
}

/// A tail cut from the active segment at open.
#[derive(Debug)]
pub struct TornTail {
    /// The `.log` file.
    pub path: PathBuf,
    /// Byte position where the file now ends.
    pub position: u64,
    /// Bytes removed.
    pub bytes_removed: u64,
    /// Why the batch there was not valid.
    pub reason: String,
}

/// What [`PartitionLog::enforce_retention`] deleted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    /// Segments deleted.
    pub segments: usize,
    /// Bytes of log deleted.
    pub bytes: u64,
}

/// A partition's log. Not internally synchronized: the owner serializes appends (a mutex per
/// partition in the server).
#[derive(Debug)]
pub struct PartitionLog {
    dir: PathBuf,
    config: LogConfig,
    /// Ordered by base offset; never empty; the last is the active segment.
    segments: Vec<Segment>,
    /// Set after a failed write or fsync: what is on disk is unknown until reopened.
    poisoned: bool,
    recovery: RecoverySummary,
}

impl PartitionLog {
    /// Opens (or creates) the log in `dir`, recovering it by the rules in the module doc.
    pub fn open(dir: &Path, config: LogConfig) -> Result<PartitionLog> {
        config.validate()?;
        std::fs::create_dir_all(dir).at(dir)?;
        let mut recovery = RecoverySummary::default();
        let bases = list_segments(dir, &mut recovery)?;
        let mut segments = Vec::with_capacity(bases.len().max(1));
        let last = bases.len().saturating_sub(1);
        for (i, &base) in bases.iter().enumerate() {
            let segment = if i == last {
                open_active(dir, base, &config, &mut recovery)?
            } else {
                open_closed(dir, base, &config, &mut recovery)?
            };
            if let Some(previous) = segments.last().map(Segment::next_offset)
                && previous != base
            {
                return Err(LogError::OffsetsOutOfOrder {
                    path: segment.path().to_path_buf(),
                    position: 0,
                    expected: previous,
                    found: base,
                });
            }
            segments.push(segment);
        }
        if segments.is_empty() {
            segments.push(Segment::create(dir, 0)?);
            sync_dir(dir)?;
        }
        let wall_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        segments.last_mut().expect("not empty").start_aging(wall_ms);
        recovery.segments = segments.len();
        Ok(PartitionLog {
            dir: dir.to_path_buf(),
            config,
            segments,
            poisoned: false,
            recovery,
        })
    }

    /// What the open found and repaired.
    pub fn recovery(&self) -> &RecoverySummary {
        &self.recovery
    }

    /// The log's settings.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Replaces the settings that apply from now on (retention, roll sizes).
    pub fn set_config(&mut self, config: LogConfig) -> Result<()> {
        config.validate()?;
        self.config = config;
        Ok(())
    }

    /// Checks a produced batch: its structure and CRC, and the size limit.
    pub fn validate(&self, batch: &[u8]) -> Result<BatchHeader> {
        let max = self.config.max_batch_bytes as usize;
        if batch.len() > max {
            return Err(LogError::BatchTooLarge {
                size: batch.len(),
                max,
            });
        }
        let header = record_batch::check(batch, max).map_err(LogError::InvalidBatch)?;
        if header.size != batch.len() {
            return Err(LogError::InvalidBatch(record_batch::Defect::Records(
                "bytes after the batch",
            )));
        }
        Ok(header)
    }

    /// Checks and appends one batch; see [`PartitionLog::append_checked`].
    pub fn append(&mut self, batch: &mut [u8], now_ms: i64) -> Result<BatchHeader> {
        let header = self.validate(batch)?;
        self.append_checked(batch, header, now_ms)
    }

    /// Appends a batch that [`PartitionLog::validate`] accepted: assigns it the next offsets
    /// (writing them into `batch`), rolls first if needed, and returns the stored header.
    pub fn append_checked(
        &mut self,
        batch: &mut [u8],
        mut header: BatchHeader,
        now_ms: i64,
    ) -> Result<BatchHeader> {
        if self.poisoned {
            return Err(LogError::Poisoned);
        }
        if self.should_roll(header.size, now_ms) {
            self.roll()?;
        }
        let base_offset = self.end_offset();
        record_batch::set_base_offset(batch, base_offset);
        header.base_offset = base_offset;
        let active = self.segments.last_mut().expect("never empty");
        if let Err(err) = active.append(batch, &header, &self.config, now_ms) {
            self.poisoned = true;
            return Err(err);
        }
        Ok(header)
    }

    fn should_roll(&self, batch_size: usize, now_ms: i64) -> bool {
        let active = self.active();
        if active.size() == 0 {
            return false;
        }
        let full = active.size() + batch_size as u64 > self.config.segment_bytes;
        let old = active
            .age_start_ms()
            .is_some_and(|first| now_ms.saturating_sub(first) >= self.config.segment_ms);
        full || old
    }

    /// Closes the active segment and starts a new one at the end offset. The closing segment
    /// and its indexes are fsynced before the new file exists, and the directory after.
    pub fn roll(&mut self) -> Result<()> {
        if self.poisoned {
            return Err(LogError::Poisoned);
        }
        let result = self.roll_inner();
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    fn roll_inner(&mut self) -> Result<()> {
        let active = self.active();
        active.sync()?;
        active.write_index_files(&self.dir)?;
        let next = Segment::create(&self.dir, active.next_offset())?;
        sync_dir(&self.dir)?;
        self.segments.push(next);
        Ok(())
    }

    /// Batches from the one holding `offset`, at most `max_bytes` (but at least one whole
    /// batch). `Ok(None)` at the end of the log.
    pub fn read(&self, offset: u64, max_bytes: usize) -> Result<Option<FileRange>> {
        let (start, end) = (self.start_offset(), self.end_offset());
        if offset < start || offset > end {
            return Err(LogError::OffsetOutOfRange { offset, start, end });
        }
        let first = self
            .segments
            .partition_point(|s| s.base_offset() <= offset)
            .saturating_sub(1);
        for segment in &self.segments[first..] {
            if let Some(range) = segment.read(offset, max_bytes)? {
                return Ok(Some(range));
            }
        }
        Ok(None)
    }

    /// The offset of the first record whose timestamp is at or above `timestamp`, or `None`
    /// if every record is older.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<u64>> {
        for segment in &self.segments {
            if segment.max_timestamp() >= timestamp {
                return segment.offset_for_timestamp(timestamp, &self.config);
            }
        }
        Ok(None)
    }

    /// Deletes closed segments past the retention limits, oldest first (see [`LogConfig`]).
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<RetentionOutcome> {
        let mut outcome = RetentionOutcome::default();
        let mut total: u64 = self.size_bytes();
        while self.segments.len() > 1 {
            let oldest = &self.segments[0];
            let retention_ms = self.config.retention_ms;
            let too_old =
                retention_ms >= 0 && oldest.max_timestamp() < now_ms.saturating_sub(retention_ms);
            let retention_bytes = self.config.retention_bytes;
            let too_big = retention_bytes >= 0 && total - oldest.size() >= retention_bytes as u64;
            if !(too_old || too_big) {
                break;
            }
            let oldest = self.segments.remove(0);
            oldest.delete(&self.dir)?;
            total -= oldest.size();
            outcome.segments += 1;
            outcome.bytes += oldest.size();
        }
        if outcome.segments > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(outcome)
    }

    /// The active file and the end offset that a sync of it will cover: every batch below that
    /// offset is either in this file or in a closed segment (fsynced when it was closed).
    pub fn sync_target(&self) -> (Arc<File>, PathBuf, u64) {
        let active = self.active();
        (
            Arc::clone(active.file()),
            active.path().to_path_buf(),
            self.end_offset(),
        )
    }

    /// Fsyncs the active segment.
    pub fn flush(&mut self) -> Result<()> {
        let result = self.active().sync();
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    /// Marks the log unusable after a failed sync made outside it (see `sync_target`).
    pub fn poison(&mut self) {
        self.poisoned = true;
    }

    /// First offset held.
    pub fn start_offset(&self) -> u64 {
        self.segments[0].base_offset()
    }

    /// Offset the next record will get (Kafka's log end offset).
    pub fn end_offset(&self) -> u64 {
        self.active().next_offset()
    }

    /// Bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(Segment::size).sum()
    }

    /// The segments, oldest first.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The partition's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn active(&self) -> &Segment {
        self.segments.last().expect("never empty")
    }
}

/// Base offsets of the segments in `dir`, sorted; removes orphaned index files.
fn list_segments(dir: &Path, recovery: &mut RecoverySummary) -> Result<Vec<u64>> {
    let mut logs = HashSet::new();
    let mut indexes = Vec::new();
    for entry in std::fs::read_dir(dir).at(dir)? {
        let name = entry.at(dir)?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(base) = parse_log_name(name) {
            logs.insert(base);
        } else if name.ends_with(compaction::CLEANED_SUFFIX) {
            // A compaction cut short: the original segment is still in place.
            let path = dir.join(name);
            std::fs::remove_file(&path).at(&path)?;
            recovery.removed_orphans.push(path);
        } else if let Some(stem) = name
            .strip_suffix(".index")
            .or_else(|| name.strip_suffix(".timeindex"))
            && let Some(base) = parse_log_name(&format!("{stem}.log"))
        {
            indexes.push((base, name.to_owned()));
        }
    }
    for (base, name) in indexes {
        if !logs.contains(&base) {
            let path = dir.join(name);
            std::fs::remove_file(&path).at(&path)?;
            recovery.removed_orphans.push(path);
        }
    }
    let mut bases: Vec<u64> = logs.into_iter().collect();
    bases.sort_unstable();
    Ok(bases)
}

fn open_active(
    dir: &Path,
    base: u64,
    config: &LogConfig,
    recovery: &mut RecoverySummary,
) -> Result<Segment> {
    let (segment, stop) = Segment::open_scanned(dir, base, config)?;
    if let Some(stop) = stop {
        let file_len = std::fs::metadata(segment.path()).at(segment.path())?.len();
        tracing::warn!(
            path = %segment.path().display(),
            position = stop.position,
            bytes_removed = file_len - segment.size(),
            reason = %stop.error,
            "truncating a torn tail of the active segment"
        );
        segment.truncate_to_valid()?;
        recovery.truncated = Some(TornTail {
            path: segment.path().to_path_buf(),
            position: stop.position,
            bytes_removed: file_len - segment.size(),
            reason: stop.error.to_string(),
        });
    }
    Ok(segment)
}

fn open_closed(
    dir: &Path,
    base: u64,
    config: &LogConfig,
    recovery: &mut RecoverySummary,
) -> Result<Segment> {
    if !config.verify_closed_segments
        && let Some(segment) = Segment::open_indexed(dir, base, config)?
    {
        return Ok(segment);
    }
    let (segment, stop) = Segment::open_scanned(dir, base, config)?;
    if let Some(stop) = stop {
        return Err(stop.error);
    }
    let on_disk = |ext: &str| std::fs::read(dir.join(file_name(base, ext))).ok();
    let index = segment.index();
    if on_disk("index") != Some(index.encode_offsets())
        || on_disk("timeindex") != Some(index.encode_times())
    {
        tracing::warn!(path = %segment.path().display(), "rebuilding a missing or bad index");
        segment.write_index_files(dir)?;
        recovery
            .rebuilt_indexes
            .push(dir.join(file_name(base, "index")));
    }
    Ok(segment)
}

/// Makes file creations and deletions in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

#[cfg(test)]
mod tests;
