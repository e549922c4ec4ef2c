//! The one error type of the crate.
//!
//! Every variant that concerns a file names it, and every variant about damaged data names the byte
//! offset, so that an operator can open the file in a hex viewer and see what the log saw.

use std::io;
use std::path::{Path, PathBuf};

use crate::record::Defect;

/// Result type of every fallible operation in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in the log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The operating system refused a read, write, fsync, rename or delete.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A file in the log directory that looks like a segment is not one of ours: wrong magic,
    /// wrong name, or too short to hold a header.
    #[error("{} is not a WAL file: {reason}", path.display())]
    ForeignFile { path: PathBuf, reason: String },

    /// The file was written by a newer (or older, incompatible) version of this crate.
    #[error("{} has format version {found}; this build reads version {supported}", path.display())]
    UnsupportedVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    /// A record that should be intact is not. Raised for any record of a closed segment (those
    /// were fsynced before the next segment existed, so damage there is not a torn write) and by
    /// reads that find a record changed since the log was opened.
    #[error("corrupt record in {} at byte offset {offset}: {defect}", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        defect: Defect,
    },

    /// Two consecutive segments do not join up: the later one does not start right after the
    /// last record of the earlier one. Records in between are missing; the log refuses to guess.
    #[error(
        "gap between segments: {} starts at index {found}, but the previous segment ends before index {expected}",
        path.display()
    )]
    Gap {
        path: PathBuf,
        expected: u64,
        found: u64,
    },

    /// An append whose index is not the log's next index. Indexes are dense: no holes, no reuse
    /// without [`crate::Wal::truncate_suffix`] first.
    #[error("append at index {found}, but the next index of the log is {expected}")]
    NotContiguous { expected: u64, found: u64 },

    /// A payload larger than [`crate::MAX_PAYLOAD_BYTES`].
    #[error("payload of {len} bytes exceeds the limit of {max} bytes")]
    PayloadTooLarge { len: usize, max: usize },

    /// `truncate_suffix` below the first index: those records were already dropped after a
    /// snapshot, so the request cannot mean what the caller thinks. Use [`crate::Wal::reset`].
    #[error("cannot truncate from index {from}: the log starts at index {first}")]
    TruncateBeforeStart { from: u64, first: u64 },

    /// An option out of its documented range.
    #[error("invalid option {field}: {reason}")]
    InvalidOption { field: &'static str, reason: String },

    /// An earlier write or fsync failed, so what is on disk is unknown. After a failed fsync
    /// Linux may already have dropped the dirty pages and report the next fsync as a success
    /// (PostgreSQL's "fsyncgate", 2018), so retrying is unsafe. Reopen the log: recovery reads
    /// back what really reached the disk.
    #[error("the log stopped accepting writes after an I/O failure; reopen it to recover")]
    Poisoned,

    /// The operating system would not start one of the group-commit threads.
    #[error("cannot start the {name} thread: {source}")]
    Thread {
        name: &'static str,
        #[source]
        source: io::Error,
    },

    /// The group-commit writer thread has stopped (shut down, or it panicked).
    #[error("the group-commit writer has stopped")]
    Closed,
}

/// Attaches the path to an [`io::Error`], so that no error leaves the crate without one.
pub(crate) trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}
