//! The crate's error type. Expected conditions a caller reacts to (not the leader, a compacted
//! index) are their own variants; a bug inside the algorithm is a panic, never an `Error`.

use thiserror::Error;

use crate::config::ConfigError;
use crate::membership::ConfChangeError;
use crate::message::NodeId;

/// Result of the fallible operations of this crate.
pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, Error)]
pub enum Error {
    #[error("invalid config: {0}")]
    Config(#[from] ConfigError),
    /// Only the leader accepts proposals (paper, section 8); `leader` is who this node believes
    /// leads, for the client to retry there.
    #[error("this node is not the leader (known leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    /// Empty entries are reserved for the leader's no-op (paper, section 8).
    #[error("a proposal must carry a non-empty command")]
    EmptyProposal,
    /// The leader already holds `limit` entries it could not commit yet
    /// ([`crate::Config::max_uncommitted_entries`]); retry once the group catches up.
    #[error("{limit} entries are already waiting to commit")]
    TooManyUncommitted { limit: u64 },
    /// The leader is handing leadership to `to` and takes no writes meanwhile (dissertation,
    /// section 3.10); retry at the new leader.
    #[error("leadership is moving to node {to}")]
    TransferringLeadership { to: NodeId },
    /// The leader is already confirming `limit` reads ([`crate::Config::max_pending_reads`]).
    #[error("{limit} reads are already waiting for confirmation")]
    TooManyPendingReads { limit: usize },
    /// A message claiming to come from this node itself or from id 0.
    #[error("node {0} is not a valid peer here")]
    UnknownPeer(NodeId),
    /// Leadership can only go to a voter of the configuration in force.
    #[error("node {0} is not a voter")]
    NotAVoter(NodeId),
    /// A membership change the leader refused (see `membership.rs`).
    #[error("membership change refused: {0}")]
    ConfChange(#[from] ConfChangeError),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

/// What a [`crate::Storage`] read or write can report.
#[derive(Debug, Error)]
pub enum StorageError {
    /// The index was discarded by log compaction (paper, section 7).
    #[error("log index {index} is compacted (first available is {first_index})")]
    Compacted { index: u64, first_index: u64 },
    /// The index is past the end of the log.
    #[error("log index {index} is past the last index {last_index}")]
    Unavailable { index: u64, last_index: u64 },
    /// An append would leave a hole in the log.
    #[error("appending index {index} would leave a gap after last index {last_index}")]
    Gap { index: u64, last_index: u64 },
    /// A snapshot older than (or as old as) the one already held.
    #[error("snapshot at index {index} is not newer than the held one at {snapshot_index}")]
    SnapshotOutOfDate { index: u64, snapshot_index: u64 },
    /// A failure of a real backend (I/O, corruption), passed through unchanged.
    #[error("storage backend: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}
