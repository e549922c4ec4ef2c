//! Stable storage: what survives a crash.
//!
//! [`Storage`] is the read side the algorithm needs. Writing is the application's job, done while
//! handling a [`crate::Ready`] (append its entries, save its hard state), so the trait does not
//! name it: [`crate::WalStorage`] (the write-ahead log, durable), a database or [`MemStorage`]
//! (tests and the simulation) each write in their own way. The only contract is that once
//! `Ready` is handled, the reads below see what was written.
//!
//! The log as storage sees it, once the application has taken a snapshot and compacted the log
//! (paper, section 7):
//!
//! ```text
//!   | snapshot: the state machine   | first_index ........................ last_index |
//!   | after entries 1..=snapshot.index | entries still held                           |
//! ```
//!
//! `term(first_index - 1)` must still answer (the snapshot's term, or 0 for a new log), because an
//! AppendEntries that starts at `first_index` needs it as `prev_log_term`.

use crate::error::StorageError;
use crate::message::{ConfState, Entry, HardState, Snapshot};

/// The read side of stable storage.
pub trait Storage {
    /// The hard state persisted last (all zeros and no vote for a new node).
    fn initial_state(&self) -> Result<HardState, StorageError>;
    /// Entries `[lo, hi)`, stopping early once their [`Entry::size_bytes`] would exceed
    /// `max_bytes`, but always returning at least one entry if `lo < hi`.
    fn entries(&self, lo: u64, hi: u64, max_bytes: u64) -> Result<Vec<Entry>, StorageError>;
    /// The term of the entry at `index`, for `first_index() - 1 <= index <= last_index()`.
    fn term(&self, index: u64) -> Result<u64, StorageError>;
    /// The first index still held (1 until compaction exists).
    fn first_index(&self) -> Result<u64, StorageError>;
    /// The last index held (`first_index() - 1` when empty).
    fn last_index(&self) -> Result<u64, StorageError>;
    /// The latest snapshot (index 0 and no data before the first one), for a leader to send to
    /// a follower that needs compacted entries, and for a restarting node to learn its
    /// membership from (its `conf_state`).
    fn snapshot(&self) -> Result<Snapshot, StorageError>;
}

/// Storage in memory, for tests and the simulation: cloning one is taking a copy of the "disk".
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    hard_state: HardState,
    /// `entries[i]` has index `offset_index + 1 + i`.
    entries: Vec<Entry>,
    /// Index and term of the entry just before `entries`: the last compacted one, or 0 and 0.
    offset_index: u64,
    offset_term: u64,
    /// The latest snapshot. It covers at least up to `offset_index` (compaction only drops what a
    /// snapshot covers) and may cover more (entries kept after a snapshot).
    snapshot: Snapshot,
}

impl MemStorage {
    pub fn new() -> Self {
        MemStorage::default()
    }

    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    pub fn set_hard_state(&mut self, hard_state: HardState) {
        self.hard_state = hard_state;
    }

    /// Appends `entries`, first discarding any held entry at or after the first new index: a
    /// follower's conflicting suffix is replaced, never merged (paper, Figure 2, AppendEntries
    /// step 3).
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let last_index = self.last_index_held();
        if first.index > last_index + 1 || first.index <= self.offset_index {
            return Err(StorageError::Gap {
                index: first.index,
                last_index,
            });
        }
        let keep = (first.index - self.offset_index - 1) as usize;
        self.entries.truncate(keep);
        self.entries.extend_from_slice(entries);
        Ok(())
    }

    /// Records a snapshot of the state machine as of `index` (which the application has applied),
    /// with the membership in force there ([`crate::Node::conf_state_at`]). Entries stay until
    /// [`MemStorage::compact`]: keeping a tail lets a follower that is only a little behind catch
    /// up from entries rather than a whole snapshot.
    pub fn create_snapshot(
        &mut self,
        index: u64,
        conf_state: ConfState,
        data: Vec<u8>,
    ) -> Result<(), StorageError> {
        if index <= self.snapshot.index {
            return Err(StorageError::SnapshotOutOfDate {
                index,
                snapshot_index: self.snapshot.index,
            });
        }
        let term = self.term(index)?;
        self.snapshot = Snapshot {
            index,
            term,
            conf_state,
            data,
        };
        Ok(())
    }

    /// Discards the entries up to `index`, which the snapshot must cover.
    pub fn compact(&mut self, index: u64) -> Result<(), StorageError> {
        if index <= self.offset_index {
            return Ok(());
        }
        if index > self.snapshot.index {
            return Err(StorageError::Unavailable {
                index,
                last_index: self.snapshot.index,
            });
        }
        let term = self.term(index)?;
        self.entries.drain(..(index - self.offset_index) as usize);
        self.offset_index = index;
        self.offset_term = term;
        Ok(())
    }

    /// Installs a snapshot received from the leader: it replaces the whole log.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) -> Result<(), StorageError> {
        if snapshot.index <= self.snapshot.index {
            return Err(StorageError::SnapshotOutOfDate {
                index: snapshot.index,
                snapshot_index: self.snapshot.index,
            });
        }
        self.entries.clear();
        self.offset_index = snapshot.index;
        self.offset_term = snapshot.term;
        self.hard_state.commit = self.hard_state.commit.max(snapshot.index);
        self.snapshot = snapshot;
        Ok(())
    }

    /// Every entry held, oldest first.
    pub fn all_entries(&self) -> &[Entry] {
        &self.entries
    }

    fn last_index_held(&self) -> u64 {
        self.offset_index + self.entries.len() as u64
    }

    fn check_range(&self, index: u64) -> Result<(), StorageError> {
        check_held(index, self.offset_index, self.last_index_held())
    }
}

/// Whether a storage holding entries `offset + 1..=last_index` (and the term of `offset`) can
/// answer for `index`; the error says which side it falls off.
pub(crate) fn check_held(index: u64, offset: u64, last_index: u64) -> Result<(), StorageError> {
    if index < offset {
        return Err(StorageError::Compacted {
            index,
            first_index: offset + 1,
        });
    }
    if index > last_index {
        return Err(StorageError::Unavailable { index, last_index });
    }
    Ok(())
}

impl Storage for MemStorage {
    fn initial_state(&self) -> Result<HardState, StorageError> {
        Ok(self.hard_state)
    }

    fn entries(&self, lo: u64, hi: u64, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        if lo >= hi {
            return Ok(Vec::new());
        }
        if lo <= self.offset_index {
            return Err(StorageError::Compacted {
                index: lo,
                first_index: self.offset_index + 1,
            });
        }
        self.check_range(hi - 1)?;
        let start = (lo - self.offset_index - 1) as usize;
        let end = (hi - self.offset_index - 1) as usize;
        Ok(limit_size(&self.entries[start..end], max_bytes).to_vec())
    }

    fn term(&self, index: u64) -> Result<u64, StorageError> {
        self.check_range(index)?;
        if index == self.offset_index {
            return Ok(self.offset_term);
        }
        Ok(self.entries[(index - self.offset_index - 1) as usize].term)
    }

    fn first_index(&self) -> Result<u64, StorageError> {
        Ok(self.offset_index + 1)
    }

    fn last_index(&self) -> Result<u64, StorageError> {
        Ok(self.last_index_held())
    }

    fn snapshot(&self) -> Result<Snapshot, StorageError> {
        Ok(self.snapshot.clone())
    }
}

/// The longest prefix of `entries` within `max_bytes`, but never empty if `entries` is not: one
/// entry larger than the limit must still be able to travel, alone.
pub(crate) fn limit_size(entries: &[Entry], max_bytes: u64) -> &[Entry] {
    let mut total = 0;
    let mut count = 0;
    for entry in entries {
        total += entry.size_bytes();
        if count > 0 && total > max_bytes {
            break;
        }
        count += 1;
    }
    &entries[..count]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8],
            ..Entry::default()
        }
    }

    #[test]
    fn append_replaces_a_conflicting_suffix() {
        let mut storage = MemStorage::new();
        storage
            .append(&[entry(1, 1), entry(2, 1), entry(3, 1)])
            .unwrap();
        storage.append(&[entry(2, 2)]).unwrap();
        assert_eq!(storage.last_index().unwrap(), 2);
        assert_eq!(storage.term(2).unwrap(), 2);
        assert_eq!(storage.term(0).unwrap(), 0);
    }

    #[test]
    fn append_refuses_a_gap() {
        let mut storage = MemStorage::new();
        assert!(matches!(
            storage.append(&[entry(2, 1)]),
            Err(StorageError::Gap { .. })
        ));
    }

    #[test]
    fn entries_respect_the_byte_limit_but_return_at_least_one() {
        let mut storage = MemStorage::new();
        storage
            .append(&[entry(1, 1), entry(2, 1), entry(3, 1)])
            .unwrap();
        assert_eq!(storage.entries(1, 4, 0).unwrap().len(), 1);
        assert_eq!(
            storage
                .entries(1, 4, 2 * entry(1, 1).size_bytes())
                .unwrap()
                .len(),
            2
        );
        assert_eq!(storage.entries(1, 4, u64::MAX).unwrap().len(), 3);
        assert!(matches!(
            storage.term(4),
            Err(StorageError::Unavailable { .. })
        ));
    }

    #[test]
    fn compaction_keeps_the_term_of_the_last_compacted_entry() {
        let mut storage = MemStorage::new();
        storage
            .append(&[entry(1, 1), entry(2, 2), entry(3, 2)])
            .unwrap();
        storage
            .create_snapshot(2, ConfState::default(), b"state".to_vec())
            .unwrap();
        storage.compact(2).unwrap();
        assert_eq!(storage.first_index().unwrap(), 3);
        assert_eq!(storage.term(2).unwrap(), 2);
        assert!(matches!(
            storage.term(1),
            Err(StorageError::Compacted { .. })
        ));
        assert!(matches!(
            storage.entries(2, 4, u64::MAX),
            Err(StorageError::Compacted { .. })
        ));
        assert_eq!(storage.entries(3, 4, u64::MAX).unwrap(), vec![entry(3, 2)]);
        assert_eq!(storage.all_entries(), &[entry(3, 2)]);
    }

    #[test]
    fn a_snapshot_may_keep_entries_it_covers_until_compacted() {
        let mut storage = MemStorage::new();
        storage
            .append(&[entry(1, 1), entry(2, 1), entry(3, 1)])
            .unwrap();
        storage
            .create_snapshot(3, ConfState::default(), Vec::new())
            .unwrap();
        assert_eq!(storage.first_index().unwrap(), 1);
        assert_eq!(storage.entries(2, 3, u64::MAX).unwrap(), vec![entry(2, 1)]);
        storage.compact(1).unwrap();
        assert_eq!(
            storage.entries(2, 4, u64::MAX).unwrap(),
            vec![entry(2, 1), entry(3, 1)]
        );
    }

    #[test]
    fn an_installed_snapshot_replaces_the_log() {
        let mut storage = MemStorage::new();
        storage.append(&[entry(1, 1), entry(2, 1)]).unwrap();
        storage
            .apply_snapshot(Snapshot {
                index: 5,
                term: 3,
                ..Snapshot::default()
            })
            .unwrap();
        assert_eq!(
            (
                storage.first_index().unwrap(),
                storage.last_index().unwrap()
            ),
            (6, 5)
        );
        assert_eq!(storage.hard_state().commit, 5);
        storage.append(&[entry(6, 3)]).unwrap();
        assert_eq!(storage.term(6).unwrap(), 3);
    }
}
