//! Node configuration: the timing, flow-control and safety-feature knobs, each with its default
//! and its relation to the others, checked once by [`Config::validate`].

use thiserror::Error;

use crate::message::NodeId;

/// Default [`Config::election_tick`].
pub const DEFAULT_ELECTION_TICK: u32 = 10;
/// Default [`Config::heartbeat_tick`].
pub const DEFAULT_HEARTBEAT_TICK: u32 = 1;
/// Default [`Config::max_inflight_msgs`].
pub const DEFAULT_MAX_INFLIGHT_MSGS: usize = 256;
/// Default [`Config::max_size_per_msg`]: 1 MiB.
pub const DEFAULT_MAX_SIZE_PER_MSG: u64 = 1024 * 1024;
/// Default [`Config::max_uncommitted_entries`].
pub const DEFAULT_MAX_UNCOMMITTED_ENTRIES: u64 = 4096;
/// Default [`Config::max_pending_reads`].
pub const DEFAULT_MAX_PENDING_READS: usize = 1024;
/// Default [`Config::max_apply_bytes_per_ready`]: 64 MiB.
pub const DEFAULT_MAX_APPLY_BYTES_PER_READY: u64 = 64 * 1024 * 1024;

/// How one node of a Raft group behaves. Time is counted in ticks: the caller decides how long a
/// tick is by how often it calls [`crate::Node::tick`] (100 ms is a common choice).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This node's id; non-zero, and one of `voters` unless `voters` is empty.
    pub id: NodeId,
    /// The group's first configuration: every voting member of a new group, this node included,
    /// the same list on every founding member. It counts only until the log or a snapshot says
    /// otherwise (see `membership.rs`), so a founding member restarts with the same list whatever
    /// changed since. A node that joins an existing group passes an empty list: it learns the
    /// membership from the leader (it is added as a learner first, see
    /// [`crate::MembershipChange`]).
    pub voters: Vec<NodeId>,
    /// Ticks without hearing from a leader before a follower campaigns. Each node draws its real
    /// timeout uniformly from `[election_tick, 2 * election_tick)` after every role change, so
    /// that split votes resolve (paper, section 5.2). Must exceed `heartbeat_tick`, ideally by
    /// an order of magnitude (paper, section 5.6). Default 10.
    pub election_tick: u32,
    /// Ticks between a leader's heartbeats. Default 1.
    pub heartbeat_tick: u32,
    /// How many AppendEntries a leader may have unacknowledged to one follower while pipelining.
    /// Bounds the leader's memory per follower and the follower's receive queue. Default 256.
    pub max_inflight_msgs: usize,
    /// Bytes of entries (see [`crate::Entry::size_bytes`]) per AppendEntries. A single larger entry
    /// still goes out alone, so 0 means "one entry per message". Default 1 MiB.
    pub max_size_per_msg: u64,
    /// Bytes of committed entries handed to the application per [`crate::Ready`]; the rest come in
    /// the next one. At least one entry is always handed out. Default 64 MiB.
    pub max_apply_bytes_per_ready: u64,
    /// Entries a leader holds beyond its commit index before it refuses proposals
    /// ([`crate::Error::TooManyUncommitted`]). A leader cut off from its majority would otherwise
    /// accept writes, and grow its log, without bound. Default 4096.
    pub max_uncommitted_entries: u64,
    /// ReadIndex requests a leader holds while it confirms its leadership
    /// ([`crate::Error::TooManyPendingReads`] beyond). Default 1024.
    pub max_pending_reads: usize,
    /// Run a pre-vote round before a real election, so that a node cut off from the majority
    /// does not inflate its term and depose a healthy leader when it comes back (dissertation,
    /// section 9.6). Default true.
    pub pre_vote: bool,
    /// A leader steps down when it has not heard from a majority within an election timeout, and
    /// followers ignore vote requests while they believe a leader is alive (paper, section 6, on
    /// disruptive servers). Default true.
    pub check_quorum: bool,
    /// How a leader confirms a linearizable read (see `read_index.rs`). Default
    /// [`ReadMode::Safe`].
    pub read_mode: ReadMode,
    /// Seed of this node's random election timeouts. The node mixes its id in, so nodes given the
    /// same seed still draw different timeouts; the same seed and id always replay the same draws.
    pub seed: u64,
}

impl Config {
    /// A configuration with every default, for node `id` of the group `voters`.
    pub fn new(id: NodeId, voters: Vec<NodeId>) -> Self {
        Config {
            id,
            voters,
            election_tick: DEFAULT_ELECTION_TICK,
            heartbeat_tick: DEFAULT_HEARTBEAT_TICK,
            max_inflight_msgs: DEFAULT_MAX_INFLIGHT_MSGS,
            max_size_per_msg: DEFAULT_MAX_SIZE_PER_MSG,
            max_apply_bytes_per_ready: DEFAULT_MAX_APPLY_BYTES_PER_READY,
            max_uncommitted_entries: DEFAULT_MAX_UNCOMMITTED_ENTRIES,
            max_pending_reads: DEFAULT_MAX_PENDING_READS,
            pre_vote: true,
            check_quorum: true,
            read_mode: ReadMode::Safe,
            seed: 0,
        }
    }

    /// Checks the relations documented on each field and names the first one broken.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == 0 {
            return Err(ConfigError::ZeroId);
        }
        if self.voters.contains(&0) {
            return Err(ConfigError::ZeroVoter);
        }
        if !self.voters.is_empty() && !self.voters.contains(&self.id) {
            return Err(ConfigError::NotAVoter(self.id));
        }
        let mut sorted = self.voters.clone();
        sorted.sort_unstable();
        if let Some(pair) = sorted.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(ConfigError::DuplicateVoter(pair[0]));
        }
        if self.heartbeat_tick == 0 {
            return Err(ConfigError::ZeroHeartbeatTick);
        }
        if self.election_tick <= self.heartbeat_tick {
            return Err(ConfigError::ElectionTickTooSmall {
                election_tick: self.election_tick,
                heartbeat_tick: self.heartbeat_tick,
            });
        }
        if self.max_inflight_msgs == 0 {
            return Err(ConfigError::ZeroMaxInflightMsgs);
        }
        if self.max_uncommitted_entries == 0 {
            return Err(ConfigError::ZeroMaxUncommittedEntries);
        }
        if self.max_pending_reads == 0 {
            return Err(ConfigError::ZeroMaxPendingReads);
        }
        if let ReadMode::Lease { lease_ticks } = self.read_mode {
            if !self.check_quorum {
                return Err(ConfigError::LeaseWithoutCheckQuorum);
            }
            if lease_ticks == 0 || lease_ticks >= self.election_tick {
                return Err(ConfigError::LeaseTooLong {
                    lease_ticks,
                    election_tick: self.election_tick,
                });
            }
        }
        Ok(())
    }
}

/// A [`Config`] field that breaks its documented rule.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    #[error("id must not be 0")]
    ZeroId,
    #[error("voters must not contain 0")]
    ZeroVoter,
    #[error("id {0} is not in voters")]
    NotAVoter(NodeId),
    #[error("voters lists {0} twice")]
    DuplicateVoter(NodeId),
    #[error("heartbeat_tick must be at least 1")]
    ZeroHeartbeatTick,
    #[error(
        "election_tick ({election_tick}) must be greater than heartbeat_tick ({heartbeat_tick})"
    )]
    ElectionTickTooSmall {
        election_tick: u32,
        heartbeat_tick: u32,
    },
    #[error("max_inflight_msgs must be at least 1")]
    ZeroMaxInflightMsgs,
    #[error("max_uncommitted_entries must be at least 1")]
    ZeroMaxUncommittedEntries,
    #[error("max_pending_reads must be at least 1")]
    ZeroMaxPendingReads,
    #[error("read_mode Lease needs check_quorum: followers must refuse votes while they follow")]
    LeaseWithoutCheckQuorum,
    #[error(
        "read_mode Lease: lease_ticks ({lease_ticks}) must be in 1..election_tick ({election_tick})"
    )]
    LeaseTooLong {
        lease_ticks: u32,
        election_tick: u32,
    },
}

/// How a leader makes sure it still leads before it answers a read (see `read_index.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadMode {
    /// ReadIndex: every read waits for a round of heartbeats answered by a majority. Safe
    /// whatever the clocks do; costs a round trip per read (reads arriving together share one).
    #[default]
    Safe,
    /// Lease reads: a leader that heard from a majority within the last `lease_ticks` ticks
    /// answers at once, with no message. **Correct only under a clock assumption**: no node's
    /// clock runs so much faster than the leader's that `lease_ticks` of the leader's ticks last
    /// longer than `election_tick - 1` of the follower's. Must be shorter than `election_tick`;
    /// the gap is the margin for clock drift (e.g. `election_tick` 10 and `lease_ticks` 8
    /// tolerate followers' clocks running about 10% fast). Needs `check_quorum`, whose vote
    /// refusals the lease rests on.
    Lease { lease_ticks: u32 },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::new(1, vec![1, 2, 3]).validate(), Ok(()));
    }

    #[test]
    fn validate_names_the_broken_field() {
        let base = Config::new(1, vec![1, 2, 3]);
        let cases = [
            (
                Config {
                    id: 0,
                    ..base.clone()
                },
                ConfigError::ZeroId,
            ),
            (
                Config {
                    id: 4,
                    ..base.clone()
                },
                ConfigError::NotAVoter(4),
            ),
            (
                Config {
                    voters: vec![1, 2, 2],
                    ..base.clone()
                },
                ConfigError::DuplicateVoter(2),
            ),
            (
                Config {
                    heartbeat_tick: 0,
                    ..base.clone()
                },
                ConfigError::ZeroHeartbeatTick,
            ),
            (
                Config {
                    election_tick: 1,
                    ..base.clone()
                },
                ConfigError::ElectionTickTooSmall {
                    election_tick: 1,
                    heartbeat_tick: 1,
                },
            ),
            (
                Config {
                    max_inflight_msgs: 0,
                    ..base.clone()
                },
                ConfigError::ZeroMaxInflightMsgs,
            ),
            (
                Config {
                    read_mode: ReadMode::Lease { lease_ticks: 10 },
                    ..base.clone()
                },
                ConfigError::LeaseTooLong {
                    lease_ticks: 10,
                    election_tick: 10,
                },
            ),
            (
                Config {
                    read_mode: ReadMode::Lease { lease_ticks: 5 },
                    check_quorum: false,
                    ..base.clone()
                },
                ConfigError::LeaseWithoutCheckQuorum,
            ),
        ];
        for (config, expected) in cases {
            assert_eq!(config.validate(), Err(expected));
        }
    }
}
