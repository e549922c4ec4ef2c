//! [`Wal`]: the log as a whole, a list of segments of which the last is being appended to.
//!
//! ```text
//!  dir/
//!    00000000000000000001.wal   closed: records 1..=4096, fsynced, never written again
//!    00000000000000004097.wal   closed: records 4097..=8210
//!    00000000000000008211.wal   active: records 8211.., appends go here
//!    hardstate                  term, vote, commit (see hard_state)
//! ```
//!
//! Invariants, checked by recovery and kept by every operation:
//!
//! - The segments are contiguous: each starts at the index after the last record of the one
//!   before. Indexes are dense: an append must be at [`Wal::next_index`].
//! - There is always exactly one active segment, the last, and only it can hold unsynced bytes.
//!   A closed segment is fsynced before its successor is created.
//! - Every change to the set of segment files is made durable (directory fsync) before the next
//!   step depends on it, and is ordered so that a crash at any point leaves a directory that
//!   recovery accepts: deletions happen from an end of the log, never the middle.
//!
//! `Wal` is single-owner (`&mut self` to change it) and does no locking. For many concurrent
//! appenders sharing fsyncs, hand it to [`crate::GroupCommit`].

use std::fmt;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use crate::directory::LogDir;
use crate::error::{Error, Result};
use crate::hard_state::{self, HardState};
use crate::options::WalOptions;
use crate::record::{self, MAX_PAYLOAD_BYTES};
use crate::recovery::{self, OpenSummary};
use crate::segment::Segment;

mod truncation;

/// Counters since the log was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Records appended.
    pub records_appended: u64,
    /// Calls to `append` or `append_batch` that wrote something.
    pub appends: u64,
    /// fsyncs of segment data (explicit syncs, group commits, and those at roll and truncation).
    pub data_syncs: u64,
    /// Segments created by rolling.
    pub segments_created: u64,
    /// Segments deleted by `truncate_suffix`, `drop_prefix` and `reset`.
    pub segments_removed: u64,
}

/// The file of an fsync started by [`Wal::begin_sync`].
pub struct SyncPoint {
    file: Arc<File>,
    path: std::path::PathBuf,
    writes: u64,
}

impl SyncPoint {
    /// `fdatasync`s the segment; to be done without holding the log.
    pub fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

/// A segmented write-ahead log of records with dense `u64` indexes and opaque payloads.
pub struct Wal {
    dir: LogDir,
    options: WalOptions,
    /// Contiguous, in index order, never empty. The last one is the active segment.
    segments: Vec<Segment>,
    /// Whether the active segment has bytes written since its last fsync.
    unsynced: bool,
    /// Writes to segment files since open; tells [`Wal::end_sync`] whether anything was
    /// appended while a [`SyncPoint`] was being synced.
    writes: u64,
    /// Set by the first I/O failure of a write path; see [`Error::Poisoned`].
    poisoned: bool,
    hard_state: Option<HardState>,
    summary: OpenSummary,
    stats: WalStats,
    /// Reused encoding buffer, so that steady-state appends do not allocate.
    scratch: Vec<u8>,
}

impl Wal {
    /// Opens the log in `dir` (created if missing), recovering from any crash; see
    /// [`crate::recovery`] for the rules. [`Wal::open_summary`] tells what recovery did.
    pub fn open(dir: impl AsRef<Path>, options: WalOptions) -> Result<Wal> {
        options.validate()?;
        let dir = LogDir::open(dir.as_ref())?;
        let (segments, summary) = recovery::recover(&dir)?;
        let hard_state = hard_state::load(&dir)?;
        tracing::debug!(dir = %dir.path().display(), ?summary, "opened WAL");
        Ok(Wal {
            dir,
            options,
            segments,
            unsynced: false,
            writes: 0,
            poisoned: false,
            hard_state,
            summary,
            stats: WalStats::default(),
            scratch: Vec::new(),
        })
    }

    /// What recovery found and changed when the log was opened.
    pub fn open_summary(&self) -> &OpenSummary {
        &self.summary
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn stats(&self) -> WalStats {
        self.stats
    }

    /// Index of the oldest record, or `None` if the log is empty.
    pub fn first_index(&self) -> Option<u64> {
        (!self.is_empty()).then(|| self.segments[0].base_index())
    }

    /// Index of the newest record, or `None` if the log is empty.
    pub fn last_index(&self) -> Option<u64> {
        (!self.is_empty()).then(|| self.next_index() - 1)
    }

    /// The index the next appended record must have.
    pub fn next_index(&self) -> u64 {
        self.active().next_index()
    }

    pub fn is_empty(&self) -> bool {
        self.next_index() == self.segments[0].base_index()
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Appends one record at `index`, which must be [`Wal::next_index`]. Not durable until
    /// [`Wal::sync`].
    pub fn append(&mut self, index: u64, payload: &[u8]) -> Result<()> {
        self.append_batch(index, &[payload])
    }

    /// Appends `payloads` as records `first_index`, `first_index + 1`, ...; `first_index` must be
    /// [`Wal::next_index`]. Each segment receives its share in one `pwrite`. Not durable until
    /// [`Wal::sync`]. If it fails with an I/O error, some records may have been written: the log
    /// is then poisoned and recovery at the next open decides.
    pub fn append_batch<P: AsRef<[u8]>>(&mut self, first_index: u64, payloads: &[P]) -> Result<()> {
        self.check_writable()?;
        if first_index != self.next_index() {
            return Err(Error::NotContiguous {
                expected: self.next_index(),
                found: first_index,
            });
        }
        if let Some(big) = payloads
            .iter()
            .find(|p| p.as_ref().len() > MAX_PAYLOAD_BYTES)
        {
            return Err(Error::PayloadTooLarge {
                len: big.as_ref().len(),
                max: MAX_PAYLOAD_BYTES,
            });
        }
        if payloads.is_empty() {
            return Ok(());
        }
        let result = self.write_records(payloads);
        self.poison_on_io(result)?;
        self.stats.appends += 1;
        self.stats.records_appended += payloads.len() as u64;
        Ok(())
    }

    fn write_records<P: AsRef<[u8]>>(&mut self, mut payloads: &[P]) -> Result<()> {
        while !payloads.is_empty() {
            let mut fitting = self.fitting_in_active(payloads);
            if fitting == 0 {
                self.roll()?;
                fitting = self.fitting_in_active(payloads);
            }
            let (now, rest) = payloads.split_at(fitting);
            let active = self.segments.last_mut().expect("never empty");
            active.append(now, &mut self.scratch)?;
            self.unsynced = true;
            self.writes += 1;
            payloads = rest;
        }
        Ok(())
    }

    /// How many of `payloads`, in order, fit in the active segment under the size limit. An
    /// empty segment takes at least one record, however large, so that every record has a home.
    fn fitting_in_active<P: AsRef<[u8]>>(&self, payloads: &[P]) -> usize {
        let active = self.active();
        let mut size = active.len_bytes();
        let mut count = 0;
        for payload in payloads {
            let len = record::encoded_len(payload.as_ref().len()) as u64;
            let first_of_empty = active.is_empty() && count == 0;
            if size + len > self.options.segment_bytes && !first_of_empty {
                break;
            }
            size += len;
            count += 1;
        }
        count
    }

    /// Closes the active segment and starts a new one. The old one is fsynced first, so that a
    /// closed segment is always complete on disk (recovery relies on it, rule 3).
    fn roll(&mut self) -> Result<()> {
        self.sync_active()?;
        let next = Segment::create(&self.dir, self.next_index())?;
        self.segments.push(next);
        self.stats.segments_created += 1;
        Ok(())
    }

    /// Makes every appended record durable. Cheap when nothing was written since the last sync.
    pub fn sync(&mut self) -> Result<()> {
        self.check_writable()?;
        let result = self.sync_active();
        self.poison_on_io(result)
    }

    fn sync_active(&mut self) -> Result<()> {
        if self.unsynced {
            self.active().sync()?;
            self.unsynced = false;
            self.stats.data_syncs += 1;
        }
        Ok(())
    }

    /// Reads record `index`, or `None` if it is outside `first_index()..=last_index()`. Records
    /// appended but not yet synced are visible.
    pub fn read(&self, index: u64) -> Result<Option<Vec<u8>>> {
        let slot = self.segments.partition_point(|s| s.base_index() <= index);
        match slot.checked_sub(1) {
            Some(slot) => self.segments[slot].read(index),
            None => Ok(None),
        }
    }

    /// Iterates over records `(index, payload)` from `max(index, first_index())` to the end.
    pub fn iter_from(&self, index: u64) -> Iter<'_> {
        Iter {
            wal: self,
            next: index.max(self.segments[0].base_index()),
        }
    }

    /// The hard state last saved, as read at open or written by [`Wal::save_hard_state`].
    pub fn hard_state(&self) -> Option<HardState> {
        self.hard_state
    }

    /// Replaces the saved hard state, atomically and durably (see [`crate::hard_state`]). Any
    /// appended records are fsynced first, so the saved commit index never runs ahead of the
    /// durable log.
    pub fn save_hard_state(&mut self, state: HardState) -> Result<()> {
        self.check_writable()?;
        let result = self
            .sync_active()
            .and_then(|()| hard_state::store(&self.dir, &state));
        self.poison_on_io(result)?;
        self.hard_state = Some(state);
        Ok(())
    }

    /// First half of an fsync done without holding the log: what to sync, if anything is
    /// unsynced. The caller runs [`SyncPoint::sync`] with the log released (appends may go on
    /// meanwhile), then hands the outcome to [`Wal::end_sync`]. The records appended before this
    /// call are durable once that succeeds.
    pub fn begin_sync(&self) -> Result<Option<SyncPoint>> {
        self.check_writable()?;
        Ok(self.unsynced.then(|| SyncPoint {
            file: Arc::clone(self.active().file()),
            path: self.active().path().to_path_buf(),
            writes: self.writes,
        }))
    }

    /// Second half: records the outcome of [`SyncPoint::sync`]. A failure poisons the log. The
    /// log counts as synced only if nothing was written since [`Wal::begin_sync`]; a segment
    /// closed meanwhile was fsynced when it was closed.
    pub fn end_sync(&mut self, point: SyncPoint, outcome: std::io::Result<()>) -> Result<()> {
        let result = outcome.map_err(|source| Error::Io {
            path: point.path,
            source,
        });
        self.poison_on_io(result)?;
        if self.writes == point.writes {
            self.unsynced = false;
        }
        self.stats.data_syncs += 1;
        Ok(())
    }

    fn active(&self) -> &Segment {
        self.segments
            .last()
            .expect("the log always has an active segment")
    }

    fn check_writable(&self) -> Result<()> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        Ok(())
    }

    /// Marks the log poisoned if `result` is an I/O failure; see [`Error::Poisoned`].
    fn poison_on_io<T>(&mut self, result: Result<T>) -> Result<T> {
        if let Err(Error::Io { path, source }) = &result {
            tracing::error!(path = %path.display(), error = %source, "WAL write failed; refusing further writes until reopened");
            self.poisoned = true;
        }
        result
    }
}

/// Shows where the log is, not its buffers and offset tables.
impl fmt::Debug for Wal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir.path())
            .field("segments", &self.segments.len())
            .field("first_index", &self.first_index())
            .field("next_index", &self.next_index())
            .field("unsynced", &self.unsynced)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

/// Iterator returned by [`Wal::iter_from`].
#[derive(Debug)]
pub struct Iter<'a> {
    wal: &'a Wal,
    next: u64,
}

impl Iterator for Iter<'_> {
    type Item = Result<(u64, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        let index = self.next;
        let payload = self.wal.read(index).transpose()?;
        // After an error the iterator ends rather than skip the bad record.
        self.next = if payload.is_ok() { index + 1 } else { u64::MAX };
        Some(payload.map(|p| (index, p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_fsync_poisons_the_log_until_it_is_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
        wal.append(1, b"written, fsync about to fail").unwrap();
        let point = wal.begin_sync().unwrap().expect("unsynced");
        let failed = wal.end_sync(point, Err(std::io::Error::other("simulated EIO")));
        assert!(matches!(failed, Err(Error::Io { .. })));

        assert!(matches!(wal.append(2, b"x"), Err(Error::Poisoned)));
        assert!(matches!(wal.sync(), Err(Error::Poisoned)));
        assert!(matches!(wal.truncate_suffix(1), Err(Error::Poisoned)));
        assert!(matches!(wal.drop_prefix(1), Err(Error::Poisoned)));
        assert!(matches!(wal.begin_sync(), Err(Error::Poisoned)));
        // Reads still work: the data in the page cache is what the process wrote.
        assert!(wal.read(1).unwrap().is_some());
        drop(wal);

        let mut reopened = Wal::open(dir.path(), WalOptions::default()).unwrap();
        reopened.append(2, b"accepted again").unwrap();
    }

    #[test]
    fn nothing_to_sync_means_no_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
        wal.sync().unwrap();
        assert!(wal.begin_sync().unwrap().is_none());
        wal.append(1, b"x").unwrap();
        wal.sync().unwrap();
        wal.sync().unwrap();
        assert_eq!(wal.stats().data_syncs, 1);
    }

    #[test]
    fn an_append_during_an_unlocked_sync_stays_unsynced() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
        wal.append(1, b"covered by the sync").unwrap();
        let point = wal.begin_sync().unwrap().expect("unsynced");
        wal.append(2, b"written while the fsync ran").unwrap();
        let outcome = point.sync();
        wal.end_sync(point, outcome).unwrap();
        // Record 2 may have missed the fsync: the log still has something to sync.
        let point = wal
            .begin_sync()
            .unwrap()
            .expect("record 2 is not known durable");
        let outcome = point.sync();
        wal.end_sync(point, outcome).unwrap();
        assert!(wal.begin_sync().unwrap().is_none());
    }
}
