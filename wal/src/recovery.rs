//! Opening a log directory: from whatever a crash left behind to a log that can be appended to.
//!
//! The rules, and why each is safe:
//!
//! 1. **Leftover `*.tmp` files are deleted.** They are files whose atomic creation did not reach
//!    its rename (see [`crate::directory`]), so nothing in the log refers to them.
//! 2. **Segments are opened in index order and must join up**: each starts at the index after the
//!    last record of the one before. A hole is [`Error::Gap`], naming the file: records are
//!    missing and the log refuses to guess which.
//! 3. **A closed segment (any but the last) must be intact to its last byte.** The log fsyncs a
//!    segment before it creates the next one, so a closed segment was complete on disk before its
//!    successor existed; an invalid record there is damage, not a torn write, and is
//!    [`Error::Corrupt`] naming the file and byte offset. Dropping it silently would delete the
//!    middle of the log.
//! 4. **In the last segment, the longest valid prefix is kept.** A crash during an append can
//!    leave a partial record, or (on file systems that extend the size before the data) zeros or
//!    stale bytes after the last good record. Everything from the first invalid record on is cut,
//!    the cut is fsynced before the log accepts new appends at those indexes, a warning is logged,
//!    and [`OpenSummary::truncated_tail`] reports it. Only unacknowledged appends can be lost this
//!    way under [`crate::SyncPolicy::Always`], because an acknowledged one was fsynced.
//! 5. **An empty directory becomes a new log** whose first record will have index
//!    [`FIRST_INDEX`].

use std::path::PathBuf;

use crate::directory::{LogDir, TEMP_SUFFIX};
use crate::error::{Error, IoContext, Result};
use crate::record::Defect;
use crate::segment::{self, Segment};

/// Index of the first record of a new log. Raft numbers its entries from 1 and uses 0 for "no
/// entry", so index 0 is never written by a new log.
pub const FIRST_INDEX: u64 = 1;

/// What [`crate::Wal::open`] found and what it changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenSummary {
    /// Segment files in the log after opening.
    pub segments: usize,
    /// Records in the log after opening.
    pub records: u64,
    /// The invalid tail cut from the last segment, if there was one.
    pub truncated_tail: Option<TruncatedTail>,
    /// Leftover temporary files that were deleted.
    pub removed_temp_files: Vec<PathBuf>,
    /// Whether the directory held no segment and a new log was created.
    pub created: bool,
}

/// The bytes recovery removed from the end of the last segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruncatedTail {
    pub path: PathBuf,
    /// Byte offset where the first invalid record began; the file now ends here.
    pub offset: u64,
    /// How many bytes were removed.
    pub bytes_removed: u64,
    /// Why the record at `offset` was invalid.
    pub defect: Defect,
}

/// Opens every segment in `dir` by the rules above. The returned list is never empty.
pub(crate) fn recover(dir: &LogDir) -> Result<(Vec<Segment>, OpenSummary)> {
    let mut summary = OpenSummary::default();
    let mut found = Vec::new();
    for name in dir.file_names()? {
        if name.ends_with(TEMP_SUFFIX) {
            let path = dir.join(&name);
            std::fs::remove_file(&path).at(&path)?;
            summary.removed_temp_files.push(path);
        } else if let Some(base) = segment::parse_file_name(dir.path(), &name) {
            found.push((base?, dir.join(&name)));
        }
    }
    if !summary.removed_temp_files.is_empty() {
        dir.sync()?;
    }
    found.sort_unstable_by_key(|(base, _)| *base);

    if found.is_empty() {
        summary.created = true;
        summary.segments = 1;
        return Ok((vec![Segment::create(dir, FIRST_INDEX)?], summary));
    }
    let last = found.len() - 1;
    let mut segments: Vec<Segment> = Vec::with_capacity(found.len());
    for (position, (base, path)) in found.into_iter().enumerate() {
        if let Some(previous) = segments.last()
            && previous.next_index() != base
        {
            return Err(Error::Gap {
                path,
                expected: previous.next_index(),
                found: base,
            });
        }
        let scanned = Segment::open(path, base)?;
        if let Some((offset, bytes_removed, defect)) = scanned.defect {
            if position != last {
                return Err(Error::Corrupt {
                    path: scanned.segment.path().to_path_buf(),
                    offset,
                    defect,
                });
            }
            summary.truncated_tail =
                Some(cut_tail(&scanned.segment, offset, bytes_removed, defect)?);
        }
        segments.push(scanned.segment);
    }
    summary.segments = segments.len();
    summary.records = segments.last().map_or(0, Segment::next_index) - segments[0].base_index();
    Ok((segments, summary))
}

fn cut_tail(
    segment: &Segment,
    offset: u64,
    bytes_removed: u64,
    defect: Defect,
) -> Result<TruncatedTail> {
    tracing::warn!(
        path = %segment.path().display(),
        offset,
        bytes_removed,
        %defect,
        "cutting an invalid tail from the last WAL segment (a write torn by a crash)"
    );
    segment.cut_to_end()?;
    Ok(TruncatedTail {
        path: segment.path().to_path_buf(),
        offset,
        bytes_removed,
        defect,
    })
}
