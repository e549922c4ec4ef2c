//! The wire types: log entries, the durable hard state, and the messages peers exchange.
//!
//! Every type here derives `serde::Serialize` and `Deserialize`; the transport frames them (the
//! project uses postcard in length-delimited frames with a version field) and nothing in this
//! crate cares how. The message set is the RPCs of the paper (Figure 2: RequestVote and
//! AppendEntries, each with its reply; Figure 13: InstallSnapshot), the pre-vote round and the
//! ReadIndex forwarding of Ongaro's dissertation (sections 9.6 and 6.4), and a heartbeat pair
//! kept apart from AppendEntries for the reason given on [`MessageBody::Heartbeat`].
//!
//! ```text
//!  candidate --PreVote / RequestVote--> voter --PreVoteResponse / RequestVoteResponse--> candidate
//!  leader --AppendEntries--> follower --AppendEntriesResponse--> leader
//!  leader --Heartbeat--> follower --HeartbeatResponse--> leader
//!  leader --InstallSnapshot--> follower --AppendEntriesResponse--> leader
//!  follower --ReadIndex--> leader --ReadIndexResponse--> follower
//!  leader --TimeoutNow--> chosen successor
//! ```

use serde::{Deserialize, Serialize};

/// The identity of a node in the group. 0 is never a valid id ([`crate::Config::validate`]).
pub type NodeId = u64;

/// One slot of the replicated log (paper, section 5.3): a command plus the term in which a leader
/// created it. Indexes start at 1; index 0 is the empty log's "previous entry" with term 0.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    pub term: u64,
    pub index: u64,
    /// The application's command. Empty for the no-op a new leader appends (paper, section 8)
    /// and for configuration entries: applications skip empty entries of kind
    /// [`EntryKind::Command`]. [`crate::Node::propose`] refuses empty commands so the two can
    /// never be confused.
    pub data: Vec<u8>,
    pub kind: EntryKind,
}

/// What an entry carries besides its command bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EntryKind {
    /// A command for the application's state machine (or, with empty data, a leader's no-op).
    #[default]
    Command,
    /// A membership change (see `membership.rs`). Every node switches to `conf_state` as soon as
    /// the entry is in its log, committed or not (dissertation, section 4.1). Boxed: changes are
    /// rare, and inline they would triple the size of every entry.
    ConfChange(Box<ConfChange>),
}

/// A membership change as it travels in the log: the change asked for, and the whole
/// configuration it produces. Carrying the whole configuration means a node never needs the
/// history before the entry to know its membership, which is what lets a new node start with an
/// empty log and learn the group from whatever the leader sends it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConfChange {
    /// The change asked for; `None` for the founding configuration, which a group's first leader
    /// writes into the log as its no-op, so that the log alone tells the whole membership
    /// history.
    pub change: Option<MembershipChange>,
    pub conf_state: ConfState,
}

/// One single-server change (dissertation, section 4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MembershipChange {
    /// Adds a non-voting member that receives the log (dissertation, section 4.2.1).
    AddLearner(NodeId),
    /// Makes a learner a voter. The leader accepts it only once the learner holds the committed
    /// log, so that the new voter does not stall commitment while it catches up.
    PromoteLearner(NodeId),
    /// Removes a voter or a learner. Removing the leader itself is allowed: it steps down once
    /// the change commits (dissertation, section 4.2.2).
    RemoveNode(NodeId),
}

impl MembershipChange {
    /// The node the change is about.
    pub fn node(&self) -> NodeId {
        match *self {
            MembershipChange::AddLearner(id)
            | MembershipChange::PromoteLearner(id)
            | MembershipChange::RemoveNode(id) => id,
        }
    }
}

/// A group's membership: who votes and who only listens. Both lists are sorted and disjoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConfState {
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
}

impl ConfState {
    /// A configuration of `voters` only, sorted.
    pub fn with_voters(mut voters: Vec<NodeId>) -> Self {
        voters.sort_unstable();
        ConfState {
            voters,
            learners: Vec::new(),
        }
    }

    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.binary_search(&id).is_ok()
    }

    pub fn is_learner(&self, id: NodeId) -> bool {
        self.learners.binary_search(&id).is_ok()
    }

    pub fn is_member(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.is_learner(id)
    }

    /// Voters and learners, in id order.
    pub fn members(&self) -> Vec<NodeId> {
        let mut members = [&self.voters[..], &self.learners[..]].concat();
        members.sort_unstable();
        members
    }
}

/// Bytes an entry is charged for against [`crate::Config::max_size_per_msg`]: its command plus
/// the index and term that travel with it.
const ENTRY_HEADER_BYTES: u64 = 16;

/// Bytes a configuration entry is charged for per member it lists.
const CONF_MEMBER_BYTES: u64 = 8;

impl Entry {
    /// The size used for flow control and batching limits.
    pub fn size_bytes(&self) -> u64 {
        let conf = match &self.kind {
            EntryKind::Command => 0,
            EntryKind::ConfChange(change) => {
                let members = change.conf_state.voters.len() + change.conf_state.learners.len();
                CONF_MEMBER_BYTES * (members as u64 + 1)
            }
        };
        self.data.len() as u64 + ENTRY_HEADER_BYTES + conf
    }

    /// The configuration this entry switches to, if it is a configuration entry.
    pub fn conf_change(&self) -> Option<&ConfChange> {
        match &self.kind {
            EntryKind::ConfChange(change) => Some(change),
            EntryKind::Command => None,
        }
    }
}

/// The state a node must persist before it answers anyone (paper, Figure 2, "Persistent state on
/// all servers"). `commit` is not required by the paper, but persisting it lets a restarted node
/// re-apply its committed prefix at once instead of waiting to hear from a leader.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HardState {
    pub term: u64,
    pub vote: Option<NodeId>,
    pub commit: u64,
}

/// A message between two nodes. `term` is the sender's view of the current term, except in the
/// pre-vote round, where a request carries the term the candidate would campaign in and a granted
/// response echoes it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    pub term: u64,
    pub body: MessageBody,
}

/// What a message says. One handler per variant lives in `election.rs`, `follower.rs` or
/// `leader.rs`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MessageBody {
    /// "Would you vote for me?" without disrupting anyone: the receiver changes neither its term
    /// nor its vote (dissertation, section 9.6).
    PreVote(VoteRequest),
    PreVoteResponse {
        granted: bool,
    },
    /// RequestVote RPC (paper, section 5.2 and Figure 2).
    RequestVote(VoteRequest),
    RequestVoteResponse {
        granted: bool,
    },
    /// AppendEntries RPC (paper, section 5.3 and Figure 2).
    AppendEntries(AppendEntries),
    AppendEntriesResponse(AppendResponse),
    /// The leader's periodic "I am alive" (paper, section 5.2), kept apart from AppendEntries for
    /// two reasons: it must go out even when the follower's in-flight window is full (flow control
    /// would otherwise silence the leader and trigger an election), and it carries no
    /// `prev_log_index`, so it may only advance the follower's commit index up to what the leader
    /// already knows the follower holds (`min(match, commit)`).
    Heartbeat {
        commit: u64,
        /// The leader's latest ReadIndex round (see `read_index.rs`); echoed in the response.
        read_round: u64,
    },
    HeartbeatResponse {
        read_round: u64,
    },
    /// A follower forwards a read to its leader (dissertation, section 6.4).
    ReadIndex {
        context: Vec<u8>,
    },
    /// The leader's answer: serve the read once you have applied `index`.
    ReadIndexResponse {
        index: u64,
        context: Vec<u8>,
    },
    /// The leader hands over: "your log is as long as mine; start an election now"
    /// (dissertation, section 3.10).
    TimeoutNow,
    /// InstallSnapshot RPC (paper, section 7 and Figure 13), for a follower that needs entries
    /// the leader has compacted away. Sent whole, not in chunks: a snapshot must fit in one
    /// transport frame. Answered with an `AppendEntriesResponse` accepting up to its index.
    InstallSnapshot(Snapshot),
}

impl MessageBody {
    /// Whether this asks for a vote (of either round): such requests are ignored inside a leader
    /// lease (see `Raft::in_lease`).
    pub fn is_vote_request(&self) -> bool {
        matches!(self, MessageBody::PreVote(_) | MessageBody::RequestVote(_))
    }

    /// Whether this is a vote request of an election the leader itself asked for.
    pub fn is_transfer(&self) -> bool {
        matches!(self, MessageBody::RequestVote(request) if request.leadership_transfer)
    }

    /// Bytes of commands carried, for the simulation's traffic accounting.
    pub fn payload_bytes(&self) -> u64 {
        match self {
            MessageBody::AppendEntries(append) => {
                append.entries.iter().map(|e| e.data.len() as u64).sum()
            }
            _ => 0,
        }
    }
}

/// The state machine as of `index`: what replaces entries `1..=index` after compaction (paper,
/// section 7). `term` is the term of entry `index`, kept for the AppendEntries consistency check
/// of the entry after it; `conf_state` is the membership as of `index` (the latest configuration
/// entry at or before it), which the compacted entries can no longer tell (paper, Figure 12,
/// "last config").
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Snapshot {
    pub index: u64,
    pub term: u64,
    pub conf_state: ConfState,
    /// The application's serialized state machine.
    pub data: Vec<u8>,
}

/// The candidate's claim to be at least as up to date as the voter (paper, section 5.4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VoteRequest {
    pub last_log_index: u64,
    pub last_log_term: u64,
    /// The leader asked this candidate to take over (dissertation, section 3.10): voters grant
    /// the request even while they believe that leader is alive.
    pub leadership_transfer: bool,
}

/// AppendEntries arguments (paper, Figure 2).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AppendEntries {
    pub prev_log_index: u64,
    pub prev_log_term: u64,
    pub entries: Vec<Entry>,
    pub leader_commit: u64,
}

/// AppendEntries reply. On success the follower reports the index up to which its log now
/// matches the leader's (`prev_log_index + entries.len()`), rather than a bare `true`, so that
/// replies that arrive out of order or twice are harmless: the leader only ever moves `match`
/// forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AppendResponse {
    Accepted { match_index: u64 },
    Rejected(Rejection),
}

/// Why a follower refused an AppendEntries: the consistency check failed at `rejected_index`
/// (the request's `prev_log_index`). The hint lets the leader skip a whole conflicting term per
/// round trip instead of one entry (paper, end of section 5.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rejection {
    pub rejected_index: u64,
    /// The term of the follower's entry at `rejected_index`, or `None` if its log is shorter.
    pub conflict_term: Option<u64>,
    /// The first index the follower holds for `conflict_term` (never at or below its commit
    /// index), or its last index + 1 when its log is too short.
    pub conflict_index: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_stays_small_whatever_its_kind() {
        // Entries are copied between the log, storage and messages by the million; the rare
        // configuration payload lives behind a box so it does not widen every one of them.
        assert!(
            std::mem::size_of::<Entry>() <= 48,
            "{}",
            std::mem::size_of::<Entry>()
        );
    }
}
