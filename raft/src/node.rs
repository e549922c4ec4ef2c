//! The driver API: how an application runs a Raft node.
//!
//! The node never does I/O and never reads a clock. The application owns the loop:
//!
//! ```text
//!   loop {
//!       node.tick()              every tick interval (e.g. 100 ms)
//!       node.step(message)       for every message that arrives from a peer
//!       node.propose(command)    for every client write (on the leader; propose_batch for many)
//!       node.propose_conf_change(change)   to add a learner, promote it, or remove a node
//!       node.read_index(context) for every client read that must be linearizable
//!       if node.has_ready() {
//!           let ready = node.ready();
//!           1. persist ready.snapshot, then ready.entries and ready.hard_state     (fsync)
//!           2. send ready.messages
//!           3. install ready.snapshot into the state machine, then apply
//!              ready.committed_entries, in order; serve each of ready.read_states once
//!              the state machine has applied its index
//!           node.advance();
//!       }
//!
//!   and, from time to time, take a snapshot of the state machine at an applied index and
//!   compact the log up to it (create_snapshot with node.conf_state_at(index), then compact;
//!   MemStorage and WalStorage both have these).
//!   }
//! ```
//!
//! # Why persist before sending
//!
//! Every message in a `Ready` may promise something that only the persisted state backs:
//!
//! - A vote (`RequestVoteResponse { granted: true }`) promises not to vote for anyone else in
//!   that term. Sent before `vote` is on disk, a crash and restart could let this node vote again
//!   in the same term, and two candidates could each win a majority: two leaders in one term
//!   (paper, section 5.2, and Figure 2: "updated on stable storage before responding to RPCs").
//! - An acknowledgement (`AppendEntriesResponse::Accepted`) lets the leader count this node toward
//!   the majority that commits an entry. Sent before the entry is on disk, a crash could make a
//!   committed entry vanish from the majority, and a new leader without it could overwrite it:
//!   a committed entry lost (paper, section 5.4).
//! - A leader's AppendEntries are the first step toward a commit it counts its own copy in. The
//!   same rule makes that copy durable before any follower can acknowledge it.
//!
//! So the messages of a `Ready` go out only after its entries and hard state are durable.
//! Committed entries are applied after persisting too: on a single-node group an entry can be
//! committed in the same `Ready` that first carries it.

use crate::config::Config;
use crate::error::Result;
use crate::message::{ConfState, Entry, HardState, MembershipChange, Message, NodeId, Snapshot};
use crate::raft::{Raft, Role};
use crate::read_index::ReadState;
use crate::storage::Storage;

/// What the application must do next; see the module docs for the order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// A snapshot from the leader that replaces the whole log and the state machine. Persist it
    /// before the entries (which follow on from it); install it before applying them.
    pub snapshot: Option<Snapshot>,
    /// The durable state, if it changed since the last `Ready`. Persist before sending.
    pub hard_state: Option<HardState>,
    /// Entries to append to stable storage, replacing any stored entry at the same or a later
    /// index. Persist before sending.
    pub entries: Vec<Entry>,
    /// Messages to deliver to peers, after persisting. Delivery may fail, be late, reordered or
    /// duplicated: the algorithm tolerates all of that.
    pub messages: Vec<Message>,
    /// Newly committed entries, to apply to the state machine in index order. Entries of kind
    /// [`crate::EntryKind::Command`] with empty `data` are leader no-ops and carry no command;
    /// [`crate::EntryKind::ConfChange`] entries tell the application who joined or left (Raft
    /// already acts on them: a configuration is in force from the moment it is appended).
    pub committed_entries: Vec<Entry>,
    /// Confirmed reads: serve each once the state machine has applied its `index`.
    pub read_states: Vec<ReadState>,
}

/// A snapshot of a node's volatile state, for tests, metrics and admin endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    pub id: NodeId,
    pub role: Role,
    pub term: u64,
    pub vote: Option<NodeId>,
    pub leader: Option<NodeId>,
    pub commit: u64,
    pub applied: u64,
    pub last_index: u64,
}

/// Marks what the outstanding `Ready` handed out, so that `advance` knows what is now done.
#[derive(Clone, Copy, Debug)]
struct Handed {
    snapshot_index: Option<u64>,
    last_entry: Option<(u64, u64)>,
    applied: u64,
    hard_state: HardState,
}

/// One member of a Raft group.
pub struct Node<S> {
    raft: Raft<S>,
    /// Highest index handed to the application to apply.
    applied: u64,
    /// The hard state the application persisted last.
    persisted_hard_state: HardState,
    handed: Option<Handed>,
}

impl<S: Storage> Node<S> {
    /// Creates a node, or restarts one: whatever `storage` holds (hard state, snapshot, entries)
    /// is where it resumes, membership included. The application restores its state machine
    /// from `storage.snapshot()` (if its index is not 0) before it applies anything; committed
    /// entries are then handed out again from the entry after the snapshot.
    pub fn new(config: Config, storage: S) -> Result<Self> {
        let raft = Raft::new(config, storage)?;
        let persisted_hard_state = raft.hard_state();
        let applied = raft.log.first_index()? - 1;
        Ok(Node {
            raft,
            applied,
            persisted_hard_state,
            handed: None,
        })
    }

    /// Advances logical time by one tick: election timeouts, heartbeats, check-quorum.
    pub fn tick(&mut self) -> Result<()> {
        self.raft.tick()
    }

    /// Handles a message from a peer.
    pub fn step(&mut self, message: Message) -> Result<()> {
        self.raft.step(message)
    }

    /// Starts an election now, without waiting for the timeout (useful for tests and for
    /// bootstrapping a group of one).
    pub fn campaign(&mut self) -> Result<()> {
        if self.raft.role == Role::Leader {
            return Ok(());
        }
        self.raft.campaign(self.raft.timeout_campaign())
    }

    /// Appends a command to the log, if this node is the leader, and returns its index. The
    /// command is committed when it shows up in [`Ready::committed_entries`]; it may never be,
    /// if leadership changes first, so clients retry, and a command may then appear twice.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<u64> {
        self.raft.propose(data)
    }

    /// Appends several commands at once and returns the index of the last; they travel in the
    /// same AppendEntries. All or nothing (see [`Node::propose`] for the conditions).
    pub fn propose_batch(&mut self, commands: Vec<Vec<u8>>) -> Result<u64> {
        self.raft.propose_batch(commands)
    }

    /// Proposes a membership change (see `membership.rs`), if this node is the leader, and
    /// returns the index of its configuration entry. The new configuration is in force on this
    /// node at once; the change is done when the entry commits, and only then is the next change
    /// accepted. Refusals are [`crate::Error::ConfChange`].
    pub fn propose_conf_change(&mut self, change: MembershipChange) -> Result<u64> {
        self.raft.propose_conf_change(change)
    }

    /// The configuration in force on this node: the latest in its log, committed or not.
    pub fn conf_state(&self) -> &ConfState {
        self.raft.conf()
    }

    /// The configuration in force at `index`, for the snapshot the application takes at an
    /// applied index (a snapshot records its membership, paper, Figure 12). `None` for an index
    /// older than the storage's first index.
    pub fn conf_state_at(&self, index: u64) -> Option<&ConfState> {
        self.raft.log.membership.at(index)
    }

    /// Asks for a linearizable read (see `read_index.rs`): a [`ReadState`] carrying `context`
    /// comes back in a later [`Ready`] once this node's leader has confirmed it still leads. A
    /// follower forwards the request; a node that knows no leader refuses it. A request can
    /// also vanish, if leadership changes first: callers retry after a timeout.
    pub fn read_index(&mut self, context: Vec<u8>) -> Result<()> {
        self.raft.read_index(context)
    }

    /// Hands leadership to `to` (see `transfer.rs`): once `to` holds the whole log, it starts an
    /// election it will win. Meanwhile proposals are refused. If `to` has not taken over within an
    /// election timeout, this node carries on as leader.
    pub fn transfer_leadership(&mut self, to: NodeId) -> Result<()> {
        self.raft.transfer_leadership(to)
    }

    /// Whether a call to [`Node::ready`] would return anything.
    pub fn has_ready(&self) -> bool {
        self.handed.is_none()
            && (!self.raft.outbox.is_empty()
                || self.raft.log.pending_snapshot().is_some()
                || !self.raft.log.unstable_entries().is_empty()
                || !self.raft.read_states.is_empty()
                || self.raft.hard_state() != self.persisted_hard_state
                || self.raft.log.committed > self.applied)
    }

    /// Collects the work for the application. Call [`Node::advance`] once it is done, before the
    /// next `ready`.
    ///
    /// # Panics
    ///
    /// If the previous `Ready` was not yet advanced.
    pub fn ready(&mut self) -> Result<Ready> {
        assert!(
            self.handed.is_none(),
            "ready() called again before advance()"
        );
        let hard_state = self.raft.hard_state();
        let snapshot = self.raft.log.pending_snapshot().cloned();
        let snapshot_index = snapshot.as_ref().map(|snapshot| snapshot.index);
        let applied = self.applied.max(snapshot_index.unwrap_or(0));
        let entries = self.raft.log.unstable_entries().to_vec();
        let committed_entries = self.next_committed_entries(applied)?;
        self.handed = Some(Handed {
            snapshot_index,
            last_entry: entries.last().map(|entry| (entry.index, entry.term)),
            applied: committed_entries
                .last()
                .map_or(applied, |entry| entry.index),
            hard_state,
        });
        Ok(Ready {
            snapshot,
            hard_state: (hard_state != self.persisted_hard_state).then_some(hard_state),
            entries,
            messages: std::mem::take(&mut self.raft.outbox),
            committed_entries,
            read_states: std::mem::take(&mut self.raft.read_states),
        })
    }

    /// Committed entries after `applied` (which counts a snapshot about to be installed).
    fn next_committed_entries(&self, applied: u64) -> Result<Vec<Entry>> {
        let committed = self.raft.log.committed;
        if committed <= applied {
            return Ok(Vec::new());
        }
        let limit = self.raft.config.max_apply_bytes_per_ready;
        self.raft.log.entries(applied + 1, committed + 1, limit)
    }

    /// Tells the node that the last `Ready` was handled: its entries and hard state are in
    /// storage, its messages sent, its committed entries applied.
    pub fn advance(&mut self) {
        let handed = self.handed.take().expect("advance() without a ready()");
        if let Some(index) = handed.snapshot_index {
            self.raft.log.snapshot_persisted(index);
        }
        if let Some((index, term)) = handed.last_entry {
            self.raft.log.stable_to(index, term);
        }
        self.applied = handed.applied;
        self.persisted_hard_state = handed.hard_state;
        if let Ok(first_index) = self.raft.log.storage().first_index() {
            self.raft.log.membership.forget_before(first_index - 1);
        }
    }

    pub fn status(&self) -> Status {
        Status {
            id: self.raft.id,
            role: self.raft.role,
            term: self.raft.term,
            vote: self.raft.vote,
            leader: self.raft.leader,
            commit: self.raft.log.committed,
            applied: self.applied,
            last_index: self.raft.log.last_index().unwrap_or(0),
        }
    }

    /// The term of the entry at `index` in this node's log (persisted or not), if it holds one
    /// or if `index` is the last entry its snapshot covers. `None` past the end or compacted.
    pub fn log_term(&self, index: u64) -> Option<u64> {
        self.raft.log.term_if_present(index).ok().flatten()
    }

    /// The first index still in the log; everything before is covered by a snapshot.
    pub fn first_log_index(&self) -> u64 {
        self.raft.log.first_index().unwrap_or(1)
    }

    pub fn storage(&self) -> &S {
        self.raft.log.storage()
    }

    /// The application writes a `Ready`'s entries and hard state through this.
    pub fn storage_mut(&mut self) -> &mut S {
        self.raft.log.storage_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;

    fn handle_ready(node: &mut Node<MemStorage>) -> Ready {
        let ready = node.ready().unwrap();
        node.storage_mut().append(&ready.entries).unwrap();
        if let Some(hard_state) = ready.hard_state {
            node.storage_mut().set_hard_state(hard_state);
        }
        node.advance();
        ready
    }

    #[test]
    fn a_group_of_one_commits_a_proposal_in_one_ready() {
        let mut node = Node::new(Config::new(1, vec![1]), MemStorage::new()).unwrap();
        node.campaign().unwrap();
        assert_eq!(node.status().role, Role::Leader);
        let index = node.propose(b"set x 1".to_vec()).unwrap();
        let ready = handle_ready(&mut node);
        assert_eq!(ready.entries.len(), 2, "the no-op and the command");
        let applied: Vec<_> = ready
            .committed_entries
            .iter()
            .map(|e| e.data.clone())
            .collect();
        assert_eq!(applied, vec![Vec::new(), b"set x 1".to_vec()]);
        assert_eq!(node.status().applied, index);
        assert!(!node.has_ready());
        assert_eq!(node.storage().hard_state().commit, index);
    }

    #[test]
    fn a_restarted_node_resumes_from_what_was_persisted() {
        let mut node = Node::new(Config::new(1, vec![1]), MemStorage::new()).unwrap();
        node.campaign().unwrap();
        node.propose(b"a".to_vec()).unwrap();
        handle_ready(&mut node);
        node.propose(b"lost".to_vec()).unwrap();
        let disk = node.storage().clone();
        let restarted = Node::new(Config::new(1, vec![1]), disk).unwrap();
        let status = restarted.status();
        assert_eq!((status.term, status.commit, status.last_index), (1, 2, 2));
        assert_eq!(status.role, Role::Follower);
    }

    #[test]
    fn a_node_initialized_from_a_snapshot_takes_its_membership_and_index() {
        // A joining node (empty `voters`) whose storage holds only a snapshot, as after
        // installing one and restarting: membership and log position come from the snapshot.
        let mut storage = MemStorage::new();
        let snapshot = Snapshot {
            index: 12,
            term: 3,
            conf_state: ConfState::with_voters(vec![1, 2, 4]),
            data: b"state".to_vec(),
        };
        storage.apply_snapshot(snapshot).unwrap();
        let node = Node::new(Config::new(4, Vec::new()), storage).unwrap();
        assert_eq!(node.conf_state().voters, vec![1, 2, 4]);
        let status = node.status();
        assert_eq!(
            (status.commit, status.applied, status.last_index),
            (12, 12, 12)
        );
        assert_eq!(node.log_term(12), Some(3));
        assert!(!node.has_ready(), "nothing to re-apply below the snapshot");
    }

    #[test]
    fn a_follower_refuses_proposals_and_names_the_leader() {
        let mut node = Node::new(Config::new(2, vec![1, 2, 3]), MemStorage::new()).unwrap();
        let error = node.propose(b"x".to_vec()).unwrap_err();
        assert!(matches!(error, crate::Error::NotLeader { leader: None }));
    }
}
