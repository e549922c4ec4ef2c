//! The Raft hard state (term, vote, commit), kept in its own small file beside the segments.
//!
//! Raft must persist `currentTerm` and `votedFor` before it answers a vote or an append (Raft
//! paper, figure 2, "Persistent state on all servers"), and the commit index is worth keeping so
//! that a restarted node does not re-apply from zero.
//!
//! **Why a file, not a record type in the log.** The hard state is overwritten, not appended: only
//! the latest value matters. As a log record it would be caught up in the log's own operations:
//! `truncate_suffix` could cut it away, `drop_prefix` could delete the segment holding the latest
//! one, and recovery would have to scan for the last one. A separate file replaced atomically
//! (write `hardstate.tmp`, fsync, rename over `hardstate`, fsync the directory) is always exactly
//! one value, old or new, and is read in one `read`. The cost: a save is two fsyncs plus a
//! rename, where etcd's WAL record would share the entries' fsync. So save it when the term or
//! vote change (rare); the commit index can be saved lazily, since Raft recovers it from the
//! leader.
//!
//! **Ordering.** [`crate::Wal::save_hard_state`] first fsyncs any appended entries, so a saved
//! commit index never points past what is durable in the log.
//!
//! File layout (41 bytes, integers little-endian):
//!
//! | offset | size | field                                           |
//! |-------:|-----:|-------------------------------------------------|
//! |      0 |    8 | magic `89 57 41 4C 48 53 0D 0A` (`\x89WALHS\r\n`) |
//! |      8 |    4 | format version (u32), currently 1               |
//! |     12 |    8 | term (u64)                                      |
//! |     20 |    8 | commit index (u64)                              |
//! |     28 |    1 | 1 if a vote was cast in this term, else 0       |
//! |     29 |    8 | the node voted for (u64; 0 when none)           |
//! |     37 |    4 | CRC-32C of bytes 0..37                          |

use crate::directory::LogDir;
use crate::error::{Error, IoContext, Result};
use crate::record::Defect;
use crate::segment::FORMAT_VERSION;

/// Name of the hard-state file inside the log directory.
pub const HARD_STATE_FILE: &str = "hardstate";

const MAGIC: [u8; 8] = *b"\x89WALHS\r\n";
const ENCODED_BYTES: usize = 41;

/// The state Raft must not forget across a restart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: u64,
    /// The candidate this node voted for in `term`, if any.
    pub vote: Option<u64>,
    /// The highest log index known to be committed.
    pub commit: u64,
}

impl HardState {
    fn encode(&self) -> [u8; ENCODED_BYTES] {
        let mut out = [0; ENCODED_BYTES];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[12..20].copy_from_slice(&self.term.to_le_bytes());
        out[20..28].copy_from_slice(&self.commit.to_le_bytes());
        out[28] = u8::from(self.vote.is_some());
        out[29..37].copy_from_slice(&self.vote.unwrap_or(0).to_le_bytes());
        let crc = crc32c::crc32c(&out[0..37]);
        out[37..41].copy_from_slice(&crc.to_le_bytes());
        out
    }

    fn decode(dir: &LogDir, bytes: &[u8]) -> Result<HardState> {
        let path = dir.join(HARD_STATE_FILE);
        let foreign = |reason: &str| Error::ForeignFile {
            path: path.clone(),
            reason: reason.to_string(),
        };
        if bytes.len() != ENCODED_BYTES || bytes[0..8] != MAGIC {
            return Err(foreign("not a hard-state file (wrong size or magic)"));
        }
        let word = |range: std::ops::Range<usize>| {
            u64::from_le_bytes(bytes[range].try_into().expect("8 bytes"))
        };
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                path,
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let stored = u32::from_le_bytes(bytes[37..41].try_into().expect("4 bytes"));
        let computed = crc32c::crc32c(&bytes[0..37]);
        if stored != computed || bytes[28] > 1 {
            return Err(Error::Corrupt {
                path,
                offset: 0,
                defect: Defect::Checksum { stored, computed },
            });
        }
        Ok(HardState {
            term: word(12..20),
            commit: word(20..28),
            vote: (bytes[28] == 1).then(|| word(29..37)),
        })
    }
}

/// Reads the hard state saved in `dir`, or `None` if none was ever saved.
pub(crate) fn load(dir: &LogDir) -> Result<Option<HardState>> {
    let path = dir.join(HARD_STATE_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => HardState::decode(dir, &bytes).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).at(&path),
    }
}

/// Replaces the saved hard state, atomically and durably.
pub(crate) fn store(dir: &LogDir, state: &HardState) -> Result<()> {
    dir.write_atomically(HARD_STATE_FILE, &state.encode())
}
