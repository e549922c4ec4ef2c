//! The node's view of its log: stable storage followed by the unstable tail.
//!
//! ```text
//!   storage (persisted)                      unstable (in memory, not yet persisted)
//!   | first_index ..... unstable_offset - 1 | unstable_offset ..... last_index |
//!                 ^ committed may be anywhere up to last_index
//! ```
//!
//! New entries (a leader's proposals, a follower's AppendEntries) land in `unstable`. The
//! application persists them from a [`crate::Ready`] and then calls [`crate::Node::advance`],
//! which drops them from `unstable` because storage now answers for them. When a follower must
//! replace a conflicting suffix that storage already holds, `unstable_offset` moves back below
//! storage's last index: from then on the log ignores storage past the offset, and the next
//! persist overwrites it (storage's append truncates, see [`crate::MemStorage::append`]).
//!
//! A follower that receives a snapshot (paper, section 7) holds it here too, as `pending_snapshot`,
//! until the application has persisted it: meanwhile the log starts right after the snapshot,
//! whatever storage still says.
//!
//! Invariant: `unstable_offset <= storage.last_index() + 1` (or the pending snapshot's index + 1),
//! and every entry at or below `committed` is identical on every node that holds it (paper,
//! section 5.4.3).

use crate::error::{Result, StorageError};
use crate::membership::Membership;
use crate::message::{ConfState, Entry, Snapshot};
use crate::storage::Storage;

/// Bytes of entries read at a time when a restarting node scans its log for configurations.
const CONF_SCAN_BATCH_BYTES: u64 = 1024 * 1024;

pub(crate) struct RaftLog<S> {
    storage: S,
    /// Index of `unstable[0]`, or where it would go when `unstable` is empty.
    unstable_offset: u64,
    unstable: Vec<Entry>,
    /// A snapshot received from the leader and not yet persisted; it replaces the whole log.
    pending_snapshot: Option<Snapshot>,
    /// Highest index known to be committed (paper, Figure 2, commitIndex).
    pub(crate) committed: u64,
    /// The configurations along this log; the last is in force (see `membership.rs`).
    pub(crate) membership: Membership,
}

impl<S: Storage> RaftLog<S> {
    /// The log as `storage` left it. Its configuration comes from the storage's snapshot, or
    /// `bootstrap` if it has none, followed by every configuration entry stored after it.
    pub(crate) fn new(storage: S, bootstrap: ConfState) -> Result<Self> {
        let hard_state = storage.initial_state()?;
        let unstable_offset = storage.last_index()? + 1;
        let snapshot = storage.snapshot()?;
        let membership = if snapshot.index > 0 {
            Membership::new(snapshot.index, snapshot.conf_state)
        } else {
            Membership::new(0, bootstrap)
        };
        let mut log = RaftLog {
            storage,
            unstable_offset,
            unstable: Vec::new(),
            pending_snapshot: None,
            committed: hard_state.commit.max(snapshot.index),
            membership,
        };
        log.scan_configurations(snapshot.index + 1)?;
        Ok(log)
    }

    /// Replays the configuration entries stored from `from` on into `membership`.
    fn scan_configurations(&mut self, from: u64) -> Result<()> {
        let mut next = from.max(self.storage.first_index()?);
        let end = self.storage.last_index()? + 1;
        while next < end {
            let batch = self.storage.entries(next, end, CONF_SCAN_BATCH_BYTES)?;
            next += batch.len() as u64;
            self.membership.on_append(&batch);
        }
        Ok(())
    }

    pub(crate) fn storage(&self) -> &S {
        &self.storage
    }

    pub(crate) fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    pub(crate) fn first_index(&self) -> Result<u64> {
        match &self.pending_snapshot {
            Some(snapshot) => Ok(snapshot.index + 1),
            None => Ok(self.storage.first_index()?),
        }
    }

    pub(crate) fn last_index(&self) -> Result<u64> {
        if self.unstable.is_empty() {
            return Ok(self.unstable_offset - 1);
        }
        Ok(self.unstable_offset + self.unstable.len() as u64 - 1)
    }

    pub(crate) fn last_term(&self) -> Result<u64> {
        self.term(self.last_index()?)
    }

    /// The term at `index`; an error for an index past the end or compacted away.
    pub(crate) fn term(&self, index: u64) -> Result<u64> {
        if index >= self.unstable_offset {
            return match self.unstable.get((index - self.unstable_offset) as usize) {
                Some(entry) => Ok(entry.term),
                None => Err(StorageError::Unavailable {
                    index,
                    last_index: self.last_index()?,
                })?,
            };
        }
        match &self.pending_snapshot {
            Some(snapshot) if index == snapshot.index => Ok(snapshot.term),
            Some(snapshot) => Err(StorageError::Compacted {
                index,
                first_index: snapshot.index + 1,
            })?,
            None => Ok(self.storage.term(index)?),
        }
    }

    /// The term at `index`, or `None` if the log does not reach it.
    pub(crate) fn term_if_present(&self, index: u64) -> Result<Option<u64>> {
        if index > self.last_index()? {
            return Ok(None);
        }
        self.term(index).map(Some)
    }

    /// Entries `[lo, hi)` within `max_bytes` (at least one if `lo < hi`), from storage and then
    /// from the unstable tail.
    pub(crate) fn entries(&self, lo: u64, hi: u64, max_bytes: u64) -> Result<Vec<Entry>> {
        if let Some(snapshot) = &self.pending_snapshot
            && lo <= snapshot.index
        {
            Err(StorageError::Compacted {
                index: lo,
                first_index: snapshot.index + 1,
            })?;
        }
        let stable_hi = hi.min(self.unstable_offset);
        let mut entries = Vec::new();
        if lo < stable_hi {
            entries = self.storage.entries(lo, stable_hi, max_bytes)?;
            if (entries.len() as u64) < stable_hi - lo {
                return Ok(entries);
            }
        }
        let start = lo.max(self.unstable_offset);
        if start >= hi {
            return Ok(entries);
        }
        let from = (start - self.unstable_offset) as usize;
        let to = (hi - self.unstable_offset) as usize;
        let mut used: u64 = entries.iter().map(Entry::size_bytes).sum();
        for entry in &self.unstable[from..to] {
            used += entry.size_bytes();
            if !entries.is_empty() && used > max_bytes {
                break;
            }
            entries.push(entry.clone());
        }
        Ok(entries)
    }

    /// Whether a log ending at (`last_index`, `last_term`) is at least as up to date as this one:
    /// the later last term wins, and with equal terms the longer log (paper, section 5.4.1).
    pub(crate) fn is_up_to_date(&self, last_index: u64, last_term: u64) -> Result<bool> {
        let our_term = self.last_term()?;
        Ok(last_term > our_term || (last_term == our_term && last_index >= self.last_index()?))
    }

    /// Appends entries that follow on from the log or replace part of its tail, truncating
    /// whatever they overlap. Takes them by value: they move into the unstable tail uncopied.
    pub(crate) fn append(&mut self, mut entries: Vec<Entry>) -> Result<()> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let first_index = first.index;
        assert!(
            first_index > self.committed,
            "truncating committed entry {first_index}"
        );
        self.membership.on_append(&entries);
        let after_unstable = self.unstable_offset + self.unstable.len() as u64;
        if first_index <= self.unstable_offset {
            self.unstable_offset = first_index;
            self.unstable = entries;
            return Ok(());
        }
        if first_index < after_unstable {
            self.unstable
                .truncate((first_index - self.unstable_offset) as usize);
        }
        if self.unstable.is_empty() {
            self.unstable = entries;
        } else {
            self.unstable.append(&mut entries);
        }
        Ok(())
    }

    /// The follower side of AppendEntries (paper, Figure 2, receiver steps 2-5): if the log holds
    /// `prev_index` with `prev_term`, append what is new, truncating at the first conflict, and
    /// advance the commit index. Returns the index up to which the log now matches the leader's,
    /// or `None` if the consistency check failed.
    pub(crate) fn maybe_append(
        &mut self,
        prev_index: u64,
        prev_term: u64,
        leader_commit: u64,
        mut entries: Vec<Entry>,
    ) -> Result<Option<u64>> {
        if self.term_if_present(prev_index)? != Some(prev_term) {
            return Ok(None);
        }
        let last_new_index = prev_index + entries.len() as u64;
        if let Some(conflict) = self.first_conflict(&entries)? {
            assert!(
                conflict > self.committed,
                "entry {conflict} conflicts with a committed entry"
            );
            let skip = (conflict - prev_index - 1) as usize;
            if skip > 0 {
                entries.drain(..skip);
            }
            self.append(entries)?;
        }
        // Only up to the last entry this message vouches for: past it, our log may still hold
        // entries from a deposed leader (paper, Figure 2, receiver step 5).
        self.commit_to(leader_commit.min(last_new_index));
        Ok(Some(last_new_index))
    }

    /// Index of the first entry that this log lacks or holds with another term. Entries before it
    /// are already present, which is what makes a duplicated or reordered (shorter) AppendEntries
    /// harmless: it never truncates entries a later message appended.
    fn first_conflict(&self, entries: &[Entry]) -> Result<Option<u64>> {
        for entry in entries {
            if self.term_if_present(entry.index)? != Some(entry.term) {
                return Ok(Some(entry.index));
            }
        }
        Ok(None)
    }

    /// The first index of the term that holds `index`, not going below `floor`: the conflict hint
    /// a follower returns (paper, end of section 5.3).
    pub(crate) fn first_index_of_term_at(&self, index: u64, floor: u64) -> Result<u64> {
        let term = self.term(index)?;
        let mut first = index;
        while first > floor && self.term(first - 1)? == term {
            first -= 1;
        }
        Ok(first)
    }

    /// The last index at or below `index` whose term is `term`, if any: where a leader resumes
    /// after a conflict hint. Terms only grow along the log, so the scan stops at the first
    /// smaller term.
    pub(crate) fn last_index_of_term(&self, term: u64, index: u64) -> Result<Option<u64>> {
        let first = self.first_index()?;
        let mut candidate = index.min(self.last_index()?);
        while candidate >= first {
            let found = self.term(candidate)?;
            if found == term {
                return Ok(Some(candidate));
            }
            if found < term {
                return Ok(None);
            }
            candidate -= 1;
        }
        Ok(None)
    }

    /// The snapshot to send a follower that needs compacted entries.
    pub(crate) fn snapshot(&self) -> Result<Snapshot> {
        match &self.pending_snapshot {
            Some(snapshot) => Ok(snapshot.clone()),
            None => Ok(self.storage.snapshot()?),
        }
    }

    /// Replaces the whole log with a snapshot from the leader (paper, section 7, Figure 13 step
    /// 7: "Discard the entire log"). Its entries are committed: a leader only snapshots what it
    /// has applied.
    pub(crate) fn restore(&mut self, snapshot: Snapshot) {
        assert!(
            snapshot.index > self.committed,
            "restoring an older snapshot"
        );
        self.committed = snapshot.index;
        self.unstable.clear();
        self.unstable_offset = snapshot.index + 1;
        self.membership
            .restore(snapshot.index, snapshot.conf_state.clone());
        self.pending_snapshot = Some(snapshot);
    }

    /// The snapshot not yet persisted, for [`crate::Ready::snapshot`].
    pub(crate) fn pending_snapshot(&self) -> Option<&Snapshot> {
        self.pending_snapshot.as_ref()
    }

    /// Storage now holds the snapshot at `index`.
    pub(crate) fn snapshot_persisted(&mut self, index: u64) {
        if self
            .pending_snapshot
            .as_ref()
            .is_some_and(|snapshot| snapshot.index == index)
        {
            self.pending_snapshot = None;
        }
    }

    /// Moves the commit index forward; it never moves back.
    pub(crate) fn commit_to(&mut self, index: u64) {
        if index > self.committed {
            self.committed = index;
        }
    }

    /// The entries not yet persisted, for [`crate::Ready::entries`].
    pub(crate) fn unstable_entries(&self) -> &[Entry] {
        &self.unstable
    }

    /// Storage now holds everything up to `index` (with `term`): stop keeping it in memory.
    /// Does nothing if the unstable tail was replaced since (the term no longer matches).
    pub(crate) fn stable_to(&mut self, index: u64, term: u64) {
        if index < self.unstable_offset {
            return;
        }
        let position = (index - self.unstable_offset) as usize;
        if self.unstable.get(position).map(|entry| entry.term) == Some(term) {
            self.unstable.drain(..=position);
            self.unstable_offset = index + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;

    fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
        range
            .map(|index| Entry {
                index,
                term,
                data: vec![1],
                ..Entry::default()
            })
            .collect()
    }

    fn persisted(log: &[Entry]) -> RaftLog<MemStorage> {
        let mut storage = MemStorage::new();
        storage.append(log).unwrap();
        RaftLog::new(storage, ConfState::with_voters(vec![1])).unwrap()
    }

    #[test]
    fn a_conflicting_suffix_in_storage_is_shadowed_until_persisted() {
        let mut log = persisted(&entries(1..=3, 1));
        let reply = log.maybe_append(1, 1, 0, entries(2..=2, 2)).unwrap();
        assert_eq!(reply, Some(2));
        assert_eq!(log.last_index().unwrap(), 2);
        assert_eq!(log.term(2).unwrap(), 2);
        assert!(log.term(3).is_err());
        let all = log.entries(1, 3, u64::MAX).unwrap();
        assert_eq!(all.iter().map(|e| e.term).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn a_stale_shorter_append_does_not_truncate() {
        let mut log = persisted(&[]);
        log.maybe_append(0, 0, 0, entries(1..=3, 1)).unwrap();
        assert_eq!(
            log.maybe_append(0, 0, 0, entries(1..=1, 1)).unwrap(),
            Some(1)
        );
        assert_eq!(log.last_index().unwrap(), 3);
    }

    #[test]
    fn consistency_check_fails_on_a_missing_or_different_previous_entry() {
        let mut log = persisted(&entries(1..=2, 1));
        assert_eq!(log.maybe_append(3, 1, 0, Vec::new()).unwrap(), None);
        assert_eq!(log.maybe_append(2, 2, 0, Vec::new()).unwrap(), None);
    }

    #[test]
    fn commit_stops_at_the_last_entry_the_message_vouches_for() {
        let mut log = persisted(&entries(1..=5, 1));
        log.maybe_append(2, 1, 5, Vec::new()).unwrap();
        assert_eq!(log.committed, 2);
    }

    #[test]
    fn up_to_date_compares_last_term_then_length() {
        let log = persisted(&[entries(1..=2, 1), entries(3..=3, 2)].concat());
        assert!(log.is_up_to_date(1, 3).unwrap());
        assert!(log.is_up_to_date(3, 2).unwrap());
        assert!(!log.is_up_to_date(2, 2).unwrap());
        assert!(!log.is_up_to_date(9, 1).unwrap());
    }

    #[test]
    fn a_restored_snapshot_shadows_storage_until_persisted() {
        let mut log = persisted(&entries(1..=3, 1));
        log.restore(Snapshot {
            index: 7,
            term: 2,
            ..Snapshot::default()
        });
        assert_eq!(
            (log.first_index().unwrap(), log.last_index().unwrap()),
            (8, 7)
        );
        assert_eq!(log.term(7).unwrap(), 2);
        assert!(log.term(3).is_err());
        assert_eq!(
            log.maybe_append(7, 2, 8, entries(8..=8, 2)).unwrap(),
            Some(8)
        );
        assert_eq!(log.committed, 8);
    }

    #[test]
    fn term_scans_find_the_edges_of_a_term() {
        let log = persisted(&[entries(1..=2, 1), entries(3..=6, 3)].concat());
        assert_eq!(log.first_index_of_term_at(5, 0).unwrap(), 3);
        assert_eq!(log.first_index_of_term_at(5, 4).unwrap(), 4);
        assert_eq!(log.last_index_of_term(1, 6).unwrap(), Some(2));
        assert_eq!(log.last_index_of_term(2, 6).unwrap(), None);
    }
}
