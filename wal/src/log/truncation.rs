//! Removing records from either end of the log.
//!
//! - [`Wal::truncate_suffix`]: Raft's leader overwrote a conflicting tail (Raft paper §5.3, "If an
//!   existing entry conflicts with a new one ..., delete the existing entry and all that follow
//!   it"). Drops records `>= from`.
//! - [`Wal::drop_prefix`]: after a snapshot covers a prefix, the segments wholly below it go
//!   (§7, log compaction). Whole files only: cheaper than rewriting, and a segment is never half
//!   alive.
//! - [`Wal::reset`]: after installing a snapshot from the leader, the whole log is discarded and
//!   restarts after the snapshot's last index (§7, "the follower discards its entire log").
//!
//! Crash safety comes from the order of deletions: files go from one end of the log, each
//! deletion made durable by a directory fsync before the next, so whatever a crash interrupts,
//! the files left are contiguous and recovery accepts them. The one cut inside a file
//! (`ftruncate` of the segment holding `from`) is fsynced before `truncate_suffix` returns, so it
//! is durable before any new record at those indexes can be appended and acknowledged.
//!
//! The in-memory list of segments changes only after the disk changes succeeded; if one fails
//! the log is poisoned and readers keep the old view (the files stay readable through the open
//! handles).

use crate::error::{Error, Result};
use crate::log::Wal;
use crate::segment::Segment;

impl Wal {
    /// Drops every record with index `>= from`, across segments, durably.
    ///
    /// `from` past the last index does nothing. `from` equal to the first index empties the log,
    /// whose next index is then `from`. `from` below the first index is
    /// [`Error::TruncateBeforeStart`].
    pub fn truncate_suffix(&mut self, from: u64) -> Result<()> {
        self.check_writable()?;
        let first = self.segments[0].base_index();
        if from < first {
            return Err(Error::TruncateBeforeStart { from, first });
        }
        if from >= self.next_index() {
            return Ok(());
        }
        let result = self.cut_from(from);
        self.poison_on_io(result)
    }

    fn cut_from(&mut self, from: u64) -> Result<()> {
        // Segments that start at or after `from` go whole, newest first, so that a crash part-way
        // leaves a shorter log and never a hole. The first segment stays even if it empties: the
        // log always has an active segment.
        let keep = self
            .segments
            .partition_point(|s| s.base_index() < from)
            .max(1);
        for segment in self.segments[keep..].iter().rev() {
            self.dir.remove(segment.path())?;
            self.stats.segments_removed += 1;
        }
        self.segments.truncate(keep);
        let active = self.segments.last_mut().expect("kept at least one");
        active.truncate_from(from)?;
        // truncate_from fsynced the whole file, including any appends not yet synced.
        self.unsynced = false;
        self.stats.data_syncs += 1;
        Ok(())
    }

    /// Deletes every segment whose records all have indexes `< below`, oldest first, and returns
    /// how many were deleted. The active segment is never deleted, so records below `below` may
    /// remain: [`Wal::first_index`] tells where the log now starts.
    pub fn drop_prefix(&mut self, below: u64) -> Result<usize> {
        self.check_writable()?;
        // Segment i holds records up to the base of segment i + 1, exclusive.
        let removable = self.segments[1..]
            .iter()
            .take_while(|next| next.base_index() <= below)
            .count();
        let result = self.remove_oldest(removable);
        self.poison_on_io(result)?;
        Ok(removable)
    }

    fn remove_oldest(&mut self, count: usize) -> Result<()> {
        for segment in &self.segments[..count] {
            self.dir.remove(segment.path())?;
            self.stats.segments_removed += 1;
        }
        self.segments.drain(..count);
        Ok(())
    }

    /// Discards the whole log; the next record appended must have index `next_index`.
    ///
    /// If a crash interrupts it, the log reopens as a prefix of the old log or empty (at
    /// [`crate::FIRST_INDEX`]); the caller (which knows its snapshot) compares
    /// [`Wal::next_index`] with what it expects and resets again.
    pub fn reset(&mut self, next_index: u64) -> Result<()> {
        self.check_writable()?;
        let result = self.replace_all(next_index);
        self.poison_on_io(result)
    }

    fn replace_all(&mut self, next_index: u64) -> Result<()> {
        for segment in self.segments.iter().rev() {
            self.dir.remove(segment.path())?;
            self.stats.segments_removed += 1;
        }
        let fresh = Segment::create(&self.dir, next_index)?;
        self.segments = vec![fresh];
        self.unsynced = false;
        Ok(())
    }
}
