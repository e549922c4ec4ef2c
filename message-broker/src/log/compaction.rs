//! Log compaction: keep the newest record of each key (`cleanup = compact`).
//!
//! ```text
//!  before   [k1=a k2=b] [k1=c k3=d] [k2=∅ k1=e]  | active
//!  after    [      ]    [     k3=d] [k2=∅ k1=e]  | active    (k2=∅ removed later, once older
//!             (dropped)                                       than delete_retention_ms)
//! ```
//!
//! 1. One pass over every batch of the log (closed and active segments) records the newest
//!    offset of each key: memory grows with the number of distinct keys.
//! 2. Each closed segment is rewritten batch by batch with [`record_batch::retain`]: a record
//!    stays if it is the newest of its key (or has no key), unless it is a tombstone (null
//!    value) older than `delete_retention_ms`. Kept records are copied byte for byte and keep
//!    their offsets; a batch left empty disappears, which leaves a gap in the offsets (readers
//!    skip to the next batch). The last batch of a segment always keeps at least its last
//!    record, so that the segment still ends where the next one starts.
//! 3. The rewritten segment is written to `<base>.log.cleaned`, fsynced, renamed over the
//!    `.log` and the directory fsynced: a crash leaves the old segment or the new one, never
//!    a mix (a leftover `.cleaned` file is removed at open). Its indexes are rebuilt.
//!
//! The active segment is never rewritten. Compaction runs under the partition's lock, so
//! appends wait for it (Kafka's cleaner runs beside them; a later step).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use super::config::{CleanupPolicy, LogConfig};
use super::error::{IoContext, LogError, Result};
use super::segment::{Segment, file_name};
use super::{PartitionLog, sync_dir};
use crate::record_batch::{self, BatchHeader, LOG_OVERHEAD};

/// Suffix of a segment being rewritten by compaction.
pub(crate) const CLEANED_SUFFIX: &str = ".cleaned";

/// What a compaction pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CompactionOutcome {
    /// Closed segments rewritten.
    pub segments_rewritten: usize,
    /// Records removed.
    pub records_removed: u64,
    /// Bytes of log removed.
    pub bytes_removed: u64,
}

impl PartitionLog {
    /// Compacts the closed segments if the log's cleanup policy is `compact` (see the module
    /// doc); `now_ms` decides which tombstones have expired.
    pub fn compact(&mut self, now_ms: i64) -> Result<CompactionOutcome> {
        let mut outcome = CompactionOutcome::default();
        if self.config.cleanup != CleanupPolicy::Compact || self.segments.len() < 2 {
            return Ok(outcome);
        }
        if self.poisoned {
            return Err(LogError::Poisoned);
        }
        let mut newest: HashMap<Vec<u8>, u64> = HashMap::new();
        for segment in &self.segments {
            for_each_batch(segment, &self.config, |batch, header| {
                for record in record_batch::records(batch, header) {
                    let record = record.map_err(|defect| corrupt(segment, 0, defect))?;
                    if let Some(key) = record.key {
                        newest.insert(key.to_vec(), record.offset);
                    }
                }
                Ok(())
            })?;
        }
        let tombstone_horizon = now_ms.saturating_sub(self.config.delete_retention_ms);
        for i in 0..self.segments.len() - 1 {
            let Some((rewritten, removed)) = rewrite(
                &self.dir,
                &self.segments[i],
                &self.config,
                &newest,
                tombstone_horizon,
            )?
            else {
                continue;
            };
            outcome.segments_rewritten += 1;
            outcome.records_removed += removed;
            outcome.bytes_removed += self.segments[i].size() - rewritten.size();
            self.segments[i] = rewritten;
        }
        Ok(outcome)
    }
}

/// Rewrites one closed segment; `None` if nothing in it can go.
fn rewrite(
    dir: &Path,
    segment: &Segment,
    config: &LogConfig,
    newest: &HashMap<Vec<u8>, u64>,
    tombstone_horizon: i64,
) -> Result<Option<(Segment, u64)>> {
    let newest_or_unkeyed = |record: &record_batch::RecordView<'_>| match record.key {
        None => true,
        Some(key) => {
            newest.get(key) == Some(&record.offset)
                && (record.value.is_some() || record.timestamp >= tombstone_horizon)
        }
    };
    // The segment's last batch keeps the record at its last offset, whatever it is: the batch
    // then survives, and with it the segment's end offset.
    let keep = |record: &record_batch::RecordView<'_>, header: &BatchHeader, last_batch: bool| {
        newest_or_unkeyed(record) || (last_batch && record.offset == header.last_offset())
    };
    let mut removable = 0u64;
    let mut position = 0u64;
    for_each_batch(segment, config, |batch, header| {
        position += header.size as u64;
        let last_batch = position == segment.size();
        for record in record_batch::records(batch, header) {
            let record = record.map_err(|defect| corrupt(segment, position, defect))?;
            removable += u64::from(!keep(&record, &header, last_batch));
        }
        Ok(())
    })?;
    if removable == 0 {
        return Ok(None);
    }
    let base = segment.base_offset();
    let cleaned = dir.join(format!("{}{CLEANED_SUFFIX}", file_name(base, "log")));
    let mut out = BufWriter::new(File::create(&cleaned).at(&cleaned)?);
    let mut position = 0u64;
    let mut removed = 0u64;
    for_each_batch(segment, config, |batch, header| {
        let start = position;
        position += header.size as u64;
        let last_batch = position == segment.size();
        let retained = record_batch::retain(batch, header, |record| {
            let kept = keep(record, &header, last_batch);
            removed += u64::from(!kept);
            kept
        })
        .map_err(|defect| corrupt(segment, start, defect))?;
        match retained {
            Some(retained) => out.write_all(&retained).at(&cleaned),
            None if last_batch => Err(corrupt(
                segment,
                start,
                record_batch::Defect::Records("the last batch has no record at its last offset"),
            )),
            None => Ok(()),
        }
    })?;
    let file = out
        .into_inner()
        .map_err(|err| err.into_error())
        .at(&cleaned)?;
    file.sync_all().at(&cleaned)?;
    drop(file);
    std::fs::rename(&cleaned, segment.path()).at(segment.path())?;
    sync_dir(dir)?;
    let (rewritten, stop) = Segment::open_scanned(dir, base, config)?;
    if let Some(stop) = stop {
        return Err(stop.error);
    }
    rewritten.write_index_files(dir)?;
    Ok(Some((rewritten, removed)))
}

/// Calls `each` with every batch of `segment`, in order, read sequentially.
fn for_each_batch(
    segment: &Segment,
    config: &LogConfig,
    mut each: impl FnMut(&[u8], BatchHeader) -> Result<()>,
) -> Result<()> {
    let path = segment.path();
    let mut reader = BufReader::with_capacity(1 << 20, File::open(path).at(path)?);
    let mut buf = Vec::new();
    let mut position = 0u64;
    while position < segment.size() {
        buf.resize(LOG_OVERHEAD, 0);
        reader.read_exact(&mut buf).at(path)?;
        let size = record_batch::batch_size(&buf, config.max_batch_bytes as usize)
            .map_err(|defect| corrupt(segment, position, defect))?;
        buf.resize(size, 0);
        reader.read_exact(&mut buf[LOG_OVERHEAD..]).at(path)?;
        let header = record_batch::check_stored(&buf, config.max_batch_bytes as usize)
            .map_err(|defect| corrupt(segment, position, defect))?;
        each(&buf, header)?;
        position += size as u64;
    }
    Ok(())
}

fn corrupt(segment: &Segment, position: u64, defect: record_batch::Defect) -> LogError {
    LogError::Corrupt {
        path: segment.path().to_path_buf(),
        position,
        defect,
    }
}
