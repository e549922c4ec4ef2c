//! The consensus state machine of one node: its role, its term, its timers, and the rules every
//! message passes before its handler sees it.
//!
//! Handlers live by concept: `election.rs` (pre-vote, RequestVote, becoming leader),
//! `follower.rs` (accepting AppendEntries and heartbeats), `leader.rs` (proposals, replication,
//! commit, check-quorum). This file holds what they share: role changes, ticking, the term rules
//! of [`Raft::step`], and message dispatch.

use std::collections::BTreeMap;

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use crate::config::{Config, ReadMode};
use crate::error::{Error, Result};
use crate::log::RaftLog;
use crate::message::{ConfState, HardState, Message, MessageBody, NodeId};
use crate::progress::Progress;
use crate::read_index::{ReadQueue, ReadState};
use crate::storage::Storage;
use crate::transfer::Transfer;

/// The role a node plays in its current term (paper, section 5.1, Figure 4), plus the pre-vote
/// round's pre-candidate (dissertation, section 9.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

/// Which round of an election a vote message belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VoteRound {
    Pre,
    Real,
}

/// Why a node starts campaigning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Campaign {
    /// Its election timeout passed, with pre-vote on: ask first whether it could win.
    PreVote,
    /// Its election timeout passed (or a pre-vote was won): a real election.
    Election,
    /// The leader asked it to take over (see `transfer.rs`): a real election whose requests
    /// voters honour even though they heard from the leader a moment ago.
    Transfer,
}

/// Mixed into the seed so that nodes configured with one seed still draw different timeouts
/// (the 64-bit golden ratio, a standard odd constant for spreading consecutive integers).
const SEED_ID_MIX: u64 = 0x9E37_79B9_7F4A_7C15;

pub(crate) struct Raft<S> {
    pub(crate) id: NodeId,
    /// Latest term this node has seen (paper, Figure 2, currentTerm). Persisted.
    pub(crate) term: u64,
    /// Who this node voted for in `term` (paper, Figure 2, votedFor). Persisted.
    pub(crate) vote: Option<NodeId>,
    pub(crate) log: RaftLog<S>,
    pub(crate) role: Role,
    /// The leader of `term`, once known.
    pub(crate) leader: Option<NodeId>,
    pub(crate) config: Config,
    /// Per-member replication state (voters, learners, and the leader itself); meaningful only
    /// while leader.
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    /// The `Membership::version` that `progress` reflects.
    pub(crate) conf_version: u64,
    /// Answers received in the current (pre-)election.
    pub(crate) votes: BTreeMap<NodeId, bool>,
    /// Ticks since the last reset: since hearing from the leader for a follower, since the
    /// campaign began for a candidate, since the last quorum check for a leader.
    pub(crate) election_elapsed: u32,
    heartbeat_elapsed: u32,
    /// Ticks since this node started: the clock lease reads are measured on.
    pub(crate) ticks: u64,
    /// With lease reads, a node that just (re)started behaves for one election timeout as if it
    /// followed a leader: before the crash it may have acknowledged a heartbeat that some leader
    /// now counts in its lease, and it must not help elect a successor while that lease may
    /// last. Cleared once it hears from a leader or an election timeout passes.
    pub(crate) lease_guard_on_start: bool,
    /// This term's election timeout, drawn from `[election_tick, 2 * election_tick)`.
    randomized_election_timeout: u32,
    rng: Xoshiro256PlusPlus,
    /// Messages produced since the last `Ready`.
    pub(crate) outbox: Vec<Message>,
    /// Reads being confirmed, while leader.
    pub(crate) reads: ReadQueue,
    /// Confirmed reads since the last `Ready`.
    pub(crate) read_states: Vec<ReadState>,
    /// While leader: the node leadership is being handed to, and for how many ticks.
    pub(crate) transfer: Option<Transfer>,
}

impl<S: Storage> Raft<S> {
    pub(crate) fn new(config: Config, storage: S) -> Result<Self> {
        config.validate()?;
        let hard_state = storage.initial_state()?;
        let bootstrap = ConfState::with_voters(config.voters.clone());
        let log = RaftLog::new(storage, bootstrap)?;
        let rng =
            Xoshiro256PlusPlus::seed_from_u64(config.seed ^ config.id.wrapping_mul(SEED_ID_MIX));
        let mut raft = Raft {
            id: config.id,
            term: hard_state.term,
            vote: hard_state.vote,
            log,
            role: Role::Follower,
            leader: None,
            progress: BTreeMap::new(),
            conf_version: 0,
            votes: BTreeMap::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            ticks: 0,
            lease_guard_on_start: matches!(config.read_mode, ReadMode::Lease { .. }),
            randomized_election_timeout: config.election_tick,
            rng,
            outbox: Vec::new(),
            reads: ReadQueue::default(),
            read_states: Vec::new(),
            transfer: None,
            config,
        };
        raft.become_follower(hard_state.term, None);
        Ok(raft)
    }

    pub(crate) fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.committed,
        }
    }

    /// The configuration in force: the latest in this node's log (see `membership.rs`).
    pub(crate) fn conf(&self) -> &ConfState {
        self.log.membership.current()
    }

    pub(crate) fn voters(&self) -> &[NodeId] {
        &self.conf().voters
    }

    /// Whether this node may campaign and vote counts for it: it is a voter in its own
    /// configuration (learners and removed nodes never campaign, dissertation, section 4.2.3).
    pub(crate) fn is_voter(&self) -> bool {
        self.conf().is_voter(self.id)
    }

    /// The other voters, in id order (an owned list, so the caller may mutate `self` meanwhile).
    pub(crate) fn peers(&self) -> Vec<NodeId> {
        self.voters()
            .iter()
            .copied()
            .filter(|&id| id != self.id)
            .collect()
    }

    pub(crate) fn send(&mut self, to: NodeId, body: MessageBody) {
        self.send_with_term(to, self.term, body);
    }

    pub(crate) fn send_with_term(&mut self, to: NodeId, term: u64, body: MessageBody) {
        self.outbox.push(Message {
            from: self.id,
            to,
            term,
            body,
        });
    }

    /// Enters `term` with a fresh timeout. A new term clears the vote: votes are per term.
    fn reset(&mut self, term: u64) {
        if self.term != term {
            self.term = term;
            self.vote = None;
        }
        self.leader = None;
        self.votes.clear();
        self.reads = ReadQueue::default();
        self.transfer = None;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        let tick = self.config.election_tick;
        self.randomized_election_timeout = self.rng.random_range(tick..2 * tick);
    }

    pub(crate) fn become_follower(&mut self, term: u64, leader: Option<NodeId>) {
        self.reset(term);
        self.role = Role::Follower;
        self.leader = leader;
    }

    /// Asks for votes for `term + 1` without touching `term` or `vote`, so that losing costs the
    /// rest of the group nothing (dissertation, section 9.6).
    pub(crate) fn become_pre_candidate(&mut self) {
        assert_ne!(self.role, Role::Leader, "a leader does not campaign");
        self.reset(self.term);
        self.role = Role::PreCandidate;
        self.votes.insert(self.id, true);
    }

    /// Starts an election: a new term and a vote for oneself (paper, section 5.2).
    pub(crate) fn become_candidate(&mut self) {
        assert_ne!(self.role, Role::Leader, "a leader does not campaign");
        self.reset(self.term + 1);
        self.role = Role::Candidate;
        self.vote = Some(self.id);
        self.votes.insert(self.id, true);
    }

    /// The caller's clock: one tick of logical time.
    pub(crate) fn tick(&mut self) -> Result<()> {
        self.ticks += 1;
        match self.role {
            Role::Leader => self.tick_leader(),
            _ => self.tick_election(),
        }
    }

    /// A follower or candidate that hears nothing for its election timeout campaigns (paper,
    /// section 5.2).
    fn tick_election(&mut self) -> Result<()> {
        self.election_elapsed = self.election_elapsed.saturating_add(1);
        if self.election_elapsed >= self.config.election_tick {
            self.lease_guard_on_start = false;
        }
        if self.election_elapsed < self.randomized_election_timeout || !self.is_voter() {
            return Ok(());
        }
        self.election_elapsed = 0;
        self.campaign(self.timeout_campaign())
    }

    /// The campaign an election timeout starts.
    pub(crate) fn timeout_campaign(&self) -> Campaign {
        if self.config.pre_vote {
            Campaign::PreVote
        } else {
            Campaign::Election
        }
    }

    fn tick_leader(&mut self) -> Result<()> {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.election_elapsed >= self.config.election_tick {
            self.election_elapsed = 0;
            if self.config.check_quorum && !self.quorum_recently_active() {
                self.become_follower(self.term, None);
                return Ok(());
            }
        }
        self.tick_transfer();
        if self.heartbeat_elapsed >= self.config.heartbeat_tick {
            self.heartbeat_elapsed = 0;
            if matches!(self.config.read_mode, ReadMode::Lease { .. }) {
                // Each heartbeat is its own round, so its answers can renew the lease.
                self.start_heartbeat_round();
            }
            self.broadcast_heartbeat();
        }
        Ok(())
    }

    /// Whether this node heard from a leader less than an election timeout ago. Inside such a
    /// lease a node ignores vote requests for a higher term: a server that was cut off (or is
    /// being removed) must not depose a leader the majority still follows (paper, section 6).
    ///
    /// Lease reads (see `read_index.rs`) rest on this refusal: a node that answered a leader's
    /// heartbeat helps elect nobody else for an election timeout after it.
    pub(crate) fn in_lease(&self) -> bool {
        self.config.check_quorum
            && (self.leader.is_some() || self.lease_guard_on_start)
            && self.election_elapsed < self.config.election_tick
    }

    /// Feeds one message from a peer through the term rules, then to its handler.
    ///
    /// Messages from nodes outside this node's configuration are handled too: a node being added
    /// hears from the leader before it holds the entry that adds it, and a leader may hear from
    /// a node whose addition it has not yet appended or whose removal it has. Handlers that need
    /// per-member state ignore senders they hold none for.
    pub(crate) fn step(&mut self, message: Message) -> Result<()> {
        if message.from == 0 || message.from == self.id {
            return Err(Error::UnknownPeer(message.from));
        }
        if message.term > self.term && !self.step_higher_term(&message) {
            return Ok(());
        }
        if message.term < self.term {
            self.step_lower_term(&message);
            return Ok(());
        }
        self.dispatch(message)
    }

    /// A message from a later term (paper, section 5.1: "If RPC request or response contains term
    /// T > currentTerm: set currentTerm = T, convert to follower"), with the pre-vote exceptions.
    /// Returns whether the message should still be handled.
    fn step_higher_term(&mut self, message: &Message) -> bool {
        if message.body.is_vote_request() && self.in_lease() && !message.body.is_transfer() {
            return false;
        }
        match &message.body {
            // Asking about, or granting, a term nobody has entered yet.
            MessageBody::PreVote(_) | MessageBody::PreVoteResponse { granted: true } => {}
            MessageBody::AppendEntries(_)
            | MessageBody::Heartbeat { .. }
            | MessageBody::InstallSnapshot(_) => {
                self.become_follower(message.term, Some(message.from));
            }
            MessageBody::RequestVote(_) if self.role == Role::Follower => {
                // A follower's timer restarts only on hearing from a leader or granting a vote
                // (paper, Figure 2, Followers), not on merely seeing a later term: otherwise a
                // candidate with a stale log, refused by all, would hold back every up-to-date
                // node's timeout, again and again, and could win the race to the next timeout.
                let elapsed = self.election_elapsed;
                self.become_follower(message.term, None);
                self.election_elapsed = elapsed;
            }
            _ => self.become_follower(message.term, None),
        }
        true
    }

    /// A message from an earlier term. Requests get a refusal carrying our term, which is all a
    /// stale leader or candidate needs to step down (paper, section 5.1); stale replies are
    /// dropped.
    fn step_lower_term(&mut self, message: &Message) {
        let reply = match message.body {
            MessageBody::AppendEntries(_)
            | MessageBody::Heartbeat { .. }
            | MessageBody::InstallSnapshot(_) => MessageBody::HeartbeatResponse { read_round: 0 },
            MessageBody::PreVote(_) => MessageBody::PreVoteResponse { granted: false },
            MessageBody::RequestVote(_) => MessageBody::RequestVoteResponse { granted: false },
            _ => return,
        };
        self.send(message.from, reply);
    }

    /// One handler per message type; each ignores messages its role has no use for.
    fn dispatch(&mut self, message: Message) -> Result<()> {
        let from = message.from;
        match message.body {
            MessageBody::PreVote(request) => {
                self.handle_vote_request(from, message.term, request, VoteRound::Pre)
            }
            MessageBody::RequestVote(request) => {
                self.handle_vote_request(from, message.term, request, VoteRound::Real)
            }
            MessageBody::PreVoteResponse { granted } => {
                self.handle_vote_response(from, granted, VoteRound::Pre)
            }
            MessageBody::RequestVoteResponse { granted } => {
                self.handle_vote_response(from, granted, VoteRound::Real)
            }
            MessageBody::AppendEntries(append) => self.handle_append_entries(from, append),
            MessageBody::Heartbeat { commit, read_round } => {
                self.handle_heartbeat(from, commit, read_round)
            }
            MessageBody::InstallSnapshot(snapshot) => self.handle_install_snapshot(from, snapshot),
            MessageBody::AppendEntriesResponse(response) => {
                self.handle_append_response(from, response)
            }
            MessageBody::HeartbeatResponse { read_round } => {
                self.handle_heartbeat_response(from, read_round)
            }
            MessageBody::ReadIndex { context } => self.handle_read_index(from, context),
            MessageBody::TimeoutNow => self.handle_timeout_now(from),
            MessageBody::ReadIndexResponse { index, context } => {
                self.handle_read_index_response(index, context);
                Ok(())
            }
        }
    }
}
