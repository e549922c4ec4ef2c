//! [`WalStorage`]: durable Raft storage on the `wal` crate's segmented write-ahead log, for
//! servers (the KV store, the broker) that need a node to survive a crash.
//!
//! This is the one module of the crate that does I/O; the algorithm only sees the [`Storage`]
//! trait. On disk:
//!
//! ```text
//!   dir/
//!     wal/        the write-ahead log (see the wal crate): one record per Raft entry, the WAL
//!                 index being the Raft index; plus wal's `hardstate` file (term, vote, commit)
//!     snapshot    the latest snapshot, metadata and data, replaced atomically
//! ```
//!
//! A record's payload is the entry in postcard encoding (term, index, command, kind). The
//! snapshot file:
//!
//! | offset | size | field                                                    |
//! |-------:|-----:|----------------------------------------------------------|
//! |      0 |    8 | magic `89 52 41 46 54 53 4E 50` (`\x89RAFTSNP`)          |
//! |      8 |    4 | format version (u32 LE), currently 1                     |
//! |     12 |    8 | length N of the encoded snapshot (u64 LE)                |
//! |     20 |    N | the [`Snapshot`] in postcard: index, term, conf_state, data |
//! | 20 + N |    4 | CRC-32C of bytes `0..20 + N` (u32 LE)                    |
//!
//! # What is durable when
//!
//! - **Entries** are written by [`WalStorage::append`] and durable after [`WalStorage::sync`]
//!   (one `fdatasync` for however many entries). [`WalStorage::persist`] does a whole
//!   [`crate::Ready`] with a single sync, which is what the persistence contract in `node.rs`
//!   asks before the `Ready`'s messages may leave. A conflicting suffix is cut durably at once
//!   (the wal's `truncate_suffix`), before anything can be appended in its place.
//! - **Term and vote** are saved (atomically, after an fsync of the entries) whenever they
//!   change: a vote must never be forgotten (paper, Figure 2). **The commit index** is only saved
//!   along with them: Raft does not need it durable (a restarted node relearns it from the
//!   leader), and saving it on every commit would cost two fsyncs and a rename each time. After
//!   a restart it is at least the snapshot's index.
//! - **Snapshots** are written to a temporary file, fsynced, renamed over `snapshot`, and the
//!   directory fsynced, so the file holds the old snapshot or the new one, whole. Installing a
//!   leader's snapshot then discards the log ([`WalStorage::apply_snapshot`]); a crash between
//!   the two is repaired at open (rule 3 below).
//!
//! # Opening after a crash
//!
//! 1. The wal recovers its own files: a torn or unsynced tail in the last segment is cut back to
//!    the last whole record (see the wal crate's `recovery`); no acknowledged entry is lost
//!    because none was acknowledged before its fsync.
//! 2. The snapshot file must be whole (magic, version, CRC); otherwise opening fails with
//!    [`StorageError::Backend`]: the atomic replace never leaves a torn one.
//! 3. The log is reconciled with the snapshot at index S: if it holds entry S with the
//!    snapshot's term, the entries after S stay (they follow on from it); otherwise everything
//!    up to the snapshot is covered by it and the rest cannot be trusted to follow on from it,
//!    so the log restarts empty after S (paper, Figure 13, steps 6 and 7).
//!
//! Memory: eight bytes per entry held (its term, so that `term` needs no disk read), plus the
//! latest snapshot, kept whole since a leader may need to send it at any time.
//!
//! Errors: every failure is [`StorageError::Backend`]. After an I/O error on a write the wal
//! refuses further writes (a failed fsync cannot be retried safely); the node must be restarted,
//! and `open` reads back what really reached the disk.
//!
//! # Example: a group of one, restarted
//!
//! ```
//! use raft::{Config, Node, WalStorage};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let open = || WalStorage::open(dir.path(), wal::WalOptions::default());
//! let mut node = Node::new(Config::new(1, vec![1]), open()?)?;
//! node.campaign()?;
//! node.propose(b"set x 1".to_vec())?;
//! let ready = node.ready()?;
//! node.storage_mut().persist(&ready)?; // durable before anything is sent or applied
//! // ... send ready.messages, apply ready.committed_entries ...
//! node.advance();
//! drop(node);
//!
//! let restarted = Node::new(Config::new(1, vec![1]), open()?)?;
//! assert_eq!(restarted.status().last_index, 2); // the no-op and the command
//! # Ok(())
//! # }
//! ```

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use wal::{Wal, WalOptions};

use crate::error::StorageError;
use crate::message::{ConfState, Entry, HardState, Snapshot};
use crate::node::Ready;
use crate::storage::{Storage, check_held, limit_size};

const WAL_DIR: &str = "wal";
const SNAPSHOT_FILE: &str = "snapshot";
const SNAPSHOT_MAGIC: [u8; 8] = *b"\x89RAFTSNP";
const SNAPSHOT_VERSION: u32 = 1;
const SNAPSHOT_HEADER_BYTES: usize = 20;

/// Raft storage in a directory, durable across crashes. See the module docs.
pub struct WalStorage {
    dir: PathBuf,
    wal: Wal,
    /// The last entry hidden by compaction (0 for none): the storage holds `offset + 1..`.
    offset: u64,
    offset_term: u64,
    /// `terms[i]` is the term of entry `offset + 1 + i`.
    terms: VecDeque<u64>,
    snapshot: Snapshot,
    /// The latest hard state set; its term and vote are durable, its commit maybe not.
    hard_state: HardState,
    /// The hard state last saved to disk.
    saved_hard_state: HardState,
}

fn backend(error: impl std::error::Error + Send + Sync + 'static) -> StorageError {
    StorageError::Backend(Box::new(error))
}

fn corrupt(what: String) -> StorageError {
    StorageError::Backend(what.into())
}

impl WalStorage {
    /// Opens the storage in `dir` (created if missing), recovering from a crash as the module
    /// docs describe.
    pub fn open(dir: impl AsRef<Path>, options: WalOptions) -> Result<Self, StorageError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(backend)?;
        let snapshot = read_snapshot(&dir.join(SNAPSHOT_FILE))?.unwrap_or_default();
        let mut wal = Wal::open(dir.join(WAL_DIR), options).map_err(backend)?;
        let saved = wal.hard_state().unwrap_or_default();
        let saved_hard_state = HardState {
            term: saved.term,
            vote: saved.vote,
            commit: saved.commit,
        };
        reconcile_with_snapshot(&mut wal, &snapshot)?;
        let mut storage = WalStorage {
            dir,
            wal,
            offset: snapshot.index,
            offset_term: snapshot.term,
            terms: VecDeque::new(),
            hard_state: HardState {
                commit: saved_hard_state.commit.max(snapshot.index),
                ..saved_hard_state
            },
            saved_hard_state,
            snapshot,
        };
        storage.load_terms()?;
        Ok(storage)
    }

    /// Reads every entry after the offset once, to learn its term and check it decodes.
    fn load_terms(&mut self) -> Result<(), StorageError> {
        for record in self.wal.iter_from(self.offset + 1) {
            let (index, payload) = record.map_err(backend)?;
            let entry = decode_entry(index, &payload)?;
            self.terms.push_back(entry.term);
        }
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The hard state as last set (its commit index may not be durable yet; see the module docs).
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    fn last_index_held(&self) -> u64 {
        self.offset + self.terms.len() as u64
    }

    /// Writes `entries` after discarding any held entry at or after the first one's index (a
    /// conflicting suffix, paper, Figure 2, AppendEntries step 3). Durable after
    /// [`WalStorage::sync`].
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let last_index = self.last_index_held();
        if first.index > last_index + 1 || first.index <= self.offset {
            return Err(StorageError::Gap {
                index: first.index,
                last_index,
            });
        }
        if first.index <= last_index {
            self.wal.truncate_suffix(first.index).map_err(backend)?;
            self.terms
                .truncate((first.index - self.offset - 1) as usize);
        }
        let payloads = entries
            .iter()
            .map(|entry| postcard::to_allocvec(entry).map_err(backend))
            .collect::<Result<Vec<_>, _>>()?;
        self.wal
            .append_batch(first.index, &payloads)
            .map_err(backend)?;
        self.terms.extend(entries.iter().map(|entry| entry.term));
        Ok(())
    }

    /// Records `hard_state`. A new term or vote is saved durably at once (after an fsync of the
    /// entries written so far); a new commit index alone is kept in memory until then.
    pub fn set_hard_state(&mut self, hard_state: HardState) -> Result<(), StorageError> {
        self.hard_state = hard_state;
        let saved = self.saved_hard_state;
        if (hard_state.term, hard_state.vote) == (saved.term, saved.vote) {
            return Ok(());
        }
        self.save_hard_state()
    }

    fn save_hard_state(&mut self) -> Result<(), StorageError> {
        let state = wal::HardState {
            term: self.hard_state.term,
            vote: self.hard_state.vote,
            commit: self.hard_state.commit,
        };
        self.wal.save_hard_state(state).map_err(backend)?;
        self.saved_hard_state = self.hard_state;
        Ok(())
    }

    /// Makes every appended entry durable (one fsync, or none if nothing is pending).
    pub fn sync(&mut self) -> Result<(), StorageError> {
        self.wal.sync().map_err(backend)
    }

    /// Persists what a [`Ready`] asks for, in order: its snapshot, its entries, its hard state,
    /// then one fsync. When this returns, the `Ready`'s messages may be sent.
    pub fn persist(&mut self, ready: &Ready) -> Result<(), StorageError> {
        if let Some(snapshot) = &ready.snapshot {
            self.apply_snapshot(snapshot.clone())?;
        }
        self.append(&ready.entries)?;
        if let Some(hard_state) = ready.hard_state {
            self.set_hard_state(hard_state)?;
        }
        self.sync()
    }

    /// Records a snapshot of the state machine at `index` (applied by the application), with the
    /// membership in force there ([`crate::Node::conf_state_at`]). Entries stay until
    /// [`WalStorage::compact`].
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
        let snapshot = Snapshot {
            index,
            term: self.term(index)?,
            conf_state,
            data,
        };
        write_snapshot(&self.dir, &snapshot)?;
        self.snapshot = snapshot;
        Ok(())
    }

    /// Stops serving entries up to `index`, which the snapshot must cover, and deletes the WAL
    /// segments that hold nothing newer (whole files: the wal never rewrites one).
    pub fn compact(&mut self, index: u64) -> Result<(), StorageError> {
        if index <= self.offset {
            return Ok(());
        }
        if index > self.snapshot.index {
            return Err(StorageError::Unavailable {
                index,
                last_index: self.snapshot.index,
            });
        }
        let term = self.term(index)?;
        self.terms.drain(..(index - self.offset) as usize);
        self.offset = index;
        self.offset_term = term;
        self.wal.drop_prefix(index + 1).map_err(backend)?;
        Ok(())
    }

    /// Installs a snapshot from the leader: it replaces the whole log. The snapshot is durable
    /// first, then the log is discarded, so a crash in between leaves a snapshot that `open`
    /// reconciles the old log with.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) -> Result<(), StorageError> {
        if snapshot.index <= self.snapshot.index {
            return Err(StorageError::SnapshotOutOfDate {
                index: snapshot.index,
                snapshot_index: self.snapshot.index,
            });
        }
        write_snapshot(&self.dir, &snapshot)?;
        self.wal.reset(snapshot.index + 1).map_err(backend)?;
        self.terms.clear();
        self.offset = snapshot.index;
        self.offset_term = snapshot.term;
        self.hard_state.commit = self.hard_state.commit.max(snapshot.index);
        self.snapshot = snapshot;
        Ok(())
    }

    fn check_range(&self, index: u64) -> Result<(), StorageError> {
        check_held(index, self.offset, self.last_index_held())
    }
}

impl Storage for WalStorage {
    fn initial_state(&self) -> Result<HardState, StorageError> {
        Ok(self.hard_state)
    }

    fn entries(&self, lo: u64, hi: u64, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        if lo >= hi {
            return Ok(Vec::new());
        }
        if lo <= self.offset {
            return Err(StorageError::Compacted {
                index: lo,
                first_index: self.offset + 1,
            });
        }
        self.check_range(hi - 1)?;
        let mut entries = Vec::new();
        let mut bytes = 0;
        for index in lo..hi {
            let payload = self
                .wal
                .read(index)
                .map_err(backend)?
                .ok_or_else(|| corrupt(format!("entry {index} missing from the WAL")))?;
            let entry = decode_entry(index, &payload)?;
            bytes += entry.size_bytes();
            entries.push(entry);
            if bytes > max_bytes {
                break;
            }
        }
        Ok(limit_size(&entries, max_bytes).to_vec())
    }

    fn term(&self, index: u64) -> Result<u64, StorageError> {
        self.check_range(index)?;
        if index == self.offset {
            return Ok(self.offset_term);
        }
        Ok(self.terms[(index - self.offset - 1) as usize])
    }

    fn first_index(&self) -> Result<u64, StorageError> {
        Ok(self.offset + 1)
    }

    fn last_index(&self) -> Result<u64, StorageError> {
        Ok(self.last_index_held())
    }

    fn snapshot(&self) -> Result<Snapshot, StorageError> {
        Ok(self.snapshot.clone())
    }
}

fn decode_entry(index: u64, payload: &[u8]) -> Result<Entry, StorageError> {
    let entry: Entry = postcard::from_bytes(payload)
        .map_err(|error| corrupt(format!("entry {index} does not decode: {error}")))?;
    if entry.index != index {
        return Err(corrupt(format!(
            "WAL record {index} holds entry {}",
            entry.index
        )));
    }
    Ok(entry)
}

/// Rule 3 of the module docs: keep the log after the snapshot only if it follows on from it.
/// Afterwards the log holds entry `snapshot.index + 1` first, or starts at or before it.
fn reconcile_with_snapshot(wal: &mut Wal, snapshot: &Snapshot) -> Result<(), StorageError> {
    let after = snapshot.index + 1;
    let follows_on = snapshot.index == 0
        || match wal.read(snapshot.index).map_err(backend)? {
            Some(payload) => decode_entry(snapshot.index, &payload)?.term == snapshot.term,
            // Restarted right after the snapshot (by `apply_snapshot`, or empty and waiting there).
            None => wal.first_index().unwrap_or(wal.next_index()) == after,
        };
    if !follows_on {
        wal.reset(after).map_err(backend)?;
    }
    if let Some(first) = wal.first_index()
        && first > after
    {
        return Err(corrupt(format!(
            "the WAL starts at entry {first}, but the snapshot ends at {}",
            snapshot.index
        )));
    }
    Ok(())
}

fn encode_snapshot(snapshot: &Snapshot) -> Result<Vec<u8>, StorageError> {
    let body = postcard::to_allocvec(snapshot).map_err(backend)?;
    let mut bytes = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + body.len() + 4);
    bytes.extend_from_slice(&SNAPSHOT_MAGIC);
    bytes.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&body);
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    Ok(bytes)
}

fn decode_snapshot(path: &Path, bytes: &[u8]) -> Result<Snapshot, StorageError> {
    let bad = |what: &str| corrupt(format!("{}: {what}", path.display()));
    if bytes.len() < SNAPSHOT_HEADER_BYTES + 4 || bytes[..8] != SNAPSHOT_MAGIC {
        return Err(bad("not a snapshot file"));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != SNAPSHOT_VERSION {
        return Err(bad(&format!("unsupported version {version}")));
    }
    let length = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let end = SNAPSHOT_HEADER_BYTES as u64 + length;
    if bytes.len() as u64 != end + 4 {
        return Err(bad("length does not match the file size"));
    }
    let end = end as usize;
    let stored = u32::from_le_bytes(bytes[end..].try_into().expect("4 bytes"));
    if crc32c::crc32c(&bytes[..end]) != stored {
        return Err(bad("checksum mismatch"));
    }
    postcard::from_bytes(&bytes[SNAPSHOT_HEADER_BYTES..end])
        .map_err(|error| bad(&format!("does not decode: {error}")))
}

fn read_snapshot(path: &Path) -> Result<Option<Snapshot>, StorageError> {
    match fs::read(path) {
        Ok(bytes) => decode_snapshot(path, &bytes).map(Some),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(backend(error)),
    }
}

/// Replaces the snapshot file atomically and durably: temporary file, fsync, rename, directory
/// fsync. (The wal crate does the same for its own files; its helper is private to it.)
fn write_snapshot(dir: &Path, snapshot: &Snapshot) -> Result<(), StorageError> {
    let bytes = encode_snapshot(snapshot)?;
    let temp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)
        .map_err(backend)?;
    file.write_all(&bytes).map_err(backend)?;
    file.sync_all().map_err(backend)?;
    drop(file);
    fs::rename(&temp, dir.join(SNAPSHOT_FILE)).map_err(backend)?;
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(backend)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_file_round_trips_and_damage_is_refused() {
        let snapshot = Snapshot {
            index: 7,
            term: 2,
            conf_state: ConfState::with_voters(vec![1, 2, 3]),
            data: b"state".to_vec(),
        };
        let bytes = encode_snapshot(&snapshot).unwrap();
        let path = Path::new("snapshot");
        assert_eq!(decode_snapshot(path, &bytes).unwrap(), snapshot);
        for position in [0, 9, 13, SNAPSHOT_HEADER_BYTES + 2, bytes.len() - 1] {
            let mut damaged = bytes.clone();
            damaged[position] ^= 0x40;
            assert!(decode_snapshot(path, &damaged).is_err(), "byte {position}");
        }
        assert!(decode_snapshot(path, &bytes[..bytes.len() - 1]).is_err());
    }
}
