//! The storage layer's error type.
//!
//! Every variant about a file names it, and every variant about damaged data names the byte
//! position in that file, so an operator can open it in a hex viewer and see what the log saw.

use std::io;
use std::path::{Path, PathBuf};

use crate::record_batch::Defect;

/// Result of the storage layer.
pub type Result<T, E = LogError> = std::result::Result<T, E>;

/// What went wrong in a partition log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The operating system refused a read, write, fsync, rename or delete.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
    /// A batch in a closed segment (fsynced whole before its successor existed) is damaged:
    /// this is corruption, not a torn write, and the log refuses to guess.
    #[error("corrupt batch in {} at byte {position}: {defect}", path.display())]
    Corrupt {
        /// The `.log` file.
        path: PathBuf,
        /// Byte position of the bad batch in the file.
        position: u64,
        /// What is wrong with it.
        defect: Defect,
    },
    /// Batches whose offsets do not follow on from what precedes them.
    #[error("{}: batch at byte {position} starts at offset {found}, expected {expected} or later", path.display())]
    OffsetsOutOfOrder {
        /// The `.log` file.
        path: PathBuf,
        /// Byte position of the batch.
        position: u64,
        /// Smallest acceptable base offset.
        expected: u64,
        /// What the batch says.
        found: u64,
    },
    /// A produced batch is not valid. Nothing was written.
    #[error("invalid batch: {0}")]
    InvalidBatch(Defect),
    /// A produced batch is larger than the partition accepts.
    #[error("batch of {size} bytes exceeds the limit of {max} bytes")]
    BatchTooLarge {
        /// Its size.
        size: usize,
        /// `LogConfig::max_batch_bytes`.
        max: usize,
    },
    /// A read from an offset the log does not hold.
    #[error("offset {offset} is outside the log's range {start}..{end}")]
    OffsetOutOfRange {
        /// The requested offset.
        offset: u64,
        /// First offset held.
        start: u64,
        /// Next offset to be written.
        end: u64,
    },
    /// A config value outside its documented range.
    #[error("invalid log setting `{field}`: {reason}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// An earlier write or fsync failed; what is on disk is unknown until the log is reopened
    /// (a failed fsync cannot be retried safely: the kernel may have dropped the dirty pages).
    #[error("the partition log stopped accepting writes after an I/O failure; restart to recover")]
    Poisoned,
}

/// Attaches a path to an [`io::Error`].
pub(crate) trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|source| LogError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}
