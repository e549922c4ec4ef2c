//! A segmented write-ahead log: records with dense `u64` indexes and opaque payloads, CRC-checked,
//! recovered after a crash to exactly what reached the disk, with group commit for concurrent
//! appenders.
//!
//! Two users share it. The Raft library keeps its log here (entries plus the [`HardState`]); the
//! KV store keeps its write-ahead log here (a Raft group of one). It knows nothing of either:
//! payloads are bytes.
//!
//! Where each idea lives:
//!
//! | module           | what it holds                                                         |
//! |------------------|-----------------------------------------------------------------------|
//! | [`record`]       | one record's byte layout and checksum                                 |
//! | [`segment`]      | one file: header, naming, scanning, positioned reads and writes       |
//! | [`directory`]    | durable create, replace and delete in the log directory              |
//! | [`recovery`]     | what `open` does with a crashed directory, rule by rule               |
//! | [`Wal`]          | the log: append, read, roll, sync, truncate either end                 |
//! | [`hard_state`]   | Raft's term, vote and commit, replaced atomically beside the log      |
//! | [`GroupCommit`]  | one writer thread and one fsync per batch for many async appenders     |
//! | [`options`]      | every limit and tunable, with its default                             |
//!
//! # fsync ordering
//!
//! Each rule closes a window in which a crash would lose or invent data:
//!
//! 1. **Data before acknowledgment.** Under [`SyncPolicy::Always`] an append is answered only
//!    after the fsync that covers it has returned. (The weaker policies trade exactly this.)
//! 2. **A segment is fsynced before its successor is created**, so a closed segment is always
//!    complete on disk and any damage found in it later is corruption, not a torn write.
//! 3. **A new segment is created atomically**: header written to a temporary file, fsynced,
//!    renamed, then the directory fsynced. A segment never exists with half a header, and its
//!    name survives a crash once appends to it can be acknowledged.
//! 4. **The directory is fsynced after every segment deletion**, one by one, from an end of the
//!    log, so a crash never leaves a hole between segments.
//! 5. **A truncation is durable before new appends at those indexes are acknowledged**: the cut
//!    segment is fsynced (and deletions made durable) before `truncate_suffix` returns. Likewise a
//!    torn tail cut at open is fsynced before the log accepts appends.
//! 6. **Entries before hard state**: [`Wal::save_hard_state`] fsyncs pending appends first.
//!
//! # Limits
//!
//! Payload size: [`MAX_PAYLOAD_BYTES`]. Segment size: [`WalOptions::segment_bytes`] within
//! [`MIN_SEGMENT_BYTES`]..=[`MAX_SEGMENT_BYTES`]. Group commit: [`GroupCommitOptions`]. Memory:
//! 4 bytes per record for the offset index, plus one open file per segment.
//!
//! # Example
//!
//! ```
//! # fn main() -> wal::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let mut log = wal::Wal::open(dir.path(), wal::WalOptions::default())?;
//! log.append(1, b"set a 1")?;
//! log.append_batch(2, &[&b"set b 2"[..], b"del a"])?;
//! log.sync()?;
//! assert_eq!(log.read(2)?.as_deref(), Some(&b"set b 2"[..]));
//!
//! log.truncate_suffix(3)?; // Raft: a conflicting tail from index 3 on
//! assert_eq!(log.last_index(), Some(2));
//! # Ok(())
//! # }
//! ```

pub mod directory;
mod error;
mod group_commit;
pub mod hard_state;
mod log;
pub mod options;
pub mod record;
pub mod recovery;
pub mod segment;

pub use error::{Error, Result};
pub use group_commit::{CommitHandle, GroupCommit};
pub use hard_state::HardState;
pub use log::{Iter, SyncPoint, Wal, WalStats};
pub use options::{
    GroupCommitOptions, MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES, SyncPolicy, WalOptions,
};
pub use record::{Defect, MAX_PAYLOAD_BYTES};
pub use recovery::{FIRST_INDEX, OpenSummary, TruncatedTail};
