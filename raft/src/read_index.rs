//! Linearizable reads without writing to the log: ReadIndex (paper, section 8; dissertation,
//! section 6.4).
//!
//! A leader may not answer a read from its own state: it may have been deposed without knowing
//! it, and a newer leader may already have committed writes it lacks. Writing a no-op for every
//! read would settle that, at the price of a disk write per read. ReadIndex settles it with one
//! round of heartbeats instead:
//!
//! ```text
//!   1. the leader has committed an entry of its own term (else wait: until then its commit
//!      index may lag entries an earlier leader committed)
//!   2. read_index := the commit index now
//!   3. a heartbeat round that a majority answers proves it was still the leader at step 2
//!   4. hand out ReadState { read_index }: the application serves the read once it has applied
//!      up to read_index
//! ```
//!
//! A follower forwards the request to its leader and gets the index back (steps 2-3 run on the
//! leader); it then waits until it has applied that far itself, which spreads reads over the
//! group.
//!
//! Heartbeats carry a round number. A read registered in round R is confirmed once a majority
//! has answered a heartbeat of round R or later: heartbeats are sent after the read registered,
//! so each of those answers comes from a node that still followed this leader afterwards.
//!
//! # Lease reads (an option, with a clock assumption)
//!
//! With [`crate::ReadMode::Lease`] (dissertation, section 6.4.1) the leader skips the round
//! while it holds a lease. Every heartbeat is then a round, and the leader notes the tick at
//! which it sent each. When a majority has answered round R, sent at tick T, no other leader
//! can be elected before the followers' clocks have counted an election timeout since they got
//! it: with check-quorum, a follower that heard from its leader less than `election_tick` ago
//! refuses to vote (`Raft::in_lease`), and any new leader needs one of that majority's votes.
//! So until tick `T + lease_ticks` on the leader's clock, with `lease_ticks < election_tick`,
//! its commit index is still the latest, and it answers a read at once.
//!
//! That inference is only as good as the clocks:
//!
//! - **Bounded drift.** `lease_ticks` of the leader's ticks must not outlast `election_tick - 1`
//!   of any follower's (one tick goes to rounding: a follower may tick right after it resets its
//!   timer). Choose the gap between them for the worst drift expected; a paused VM or a stalled
//!   leader process breaks the assumption outright, which is why ReadIndex is the default.
//!   `tests/read_index.rs` runs a leader whose clock is 10% slow (safe with `lease_ticks` 8 of
//!   10) and one three times slow (the checker catches its stale reads).
//! - **Nothing else bypasses the followers' refusal.** Leadership transfer does (its vote
//!   requests are honoured inside the lease), so a leader that sent TimeoutNow stops using its
//!   lease for the rest of the term. A follower that restarts forgets whom it followed, so with
//!   lease reads a starting node refuses votes for its first election timeout
//!   (`Raft::lease_guard_on_start`).

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::config::ReadMode;
use crate::error::{Error, Result};
use crate::message::{MessageBody, NodeId};
use crate::quorum::{committed_index, majority};
use crate::raft::{Raft, Role};
use crate::storage::Storage;

/// A confirmed read: once the state machine has applied `index`, reading it is linearizable.
/// `context` is whatever the caller passed to [`crate::Node::read_index`], to match the two up.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReadState {
    pub index: u64,
    pub context: Vec<u8>,
}

/// A read waiting for its heartbeat round to be confirmed.
#[derive(Clone, Debug)]
struct PendingRead {
    round: u64,
    index: u64,
    requester: NodeId,
    context: Vec<u8>,
}

/// The leader's bookkeeping for reads in flight. Dropped whenever the node changes role or
/// term: reads a leader could not confirm are never answered, and clients retry.
#[derive(Clone, Debug, Default)]
pub(crate) struct ReadQueue {
    /// The latest heartbeat round; heartbeats carry it.
    pub(crate) round: u64,
    /// In round order.
    pending: VecDeque<PendingRead>,
    /// The latest round each peer answered.
    acked_round: BTreeMap<NodeId, u64>,
    /// Requests that arrived before this leader committed an entry of its term (step 1).
    awaiting_commit: Vec<(NodeId, Vec<u8>)>,
    /// With lease reads: `(round, tick sent)` of the heartbeat rounds that could still renew
    /// the lease, oldest first.
    round_sent_at: VecDeque<(u64, u64)>,
    /// With lease reads: the tick at which the lease runs out (0: none held).
    lease_expires_tick: u64,
    /// A leadership transfer was started: no lease for the rest of the term.
    pub(crate) lease_revoked: bool,
}

impl ReadQueue {
    fn len(&self) -> usize {
        self.pending.len() + self.awaiting_commit.len()
    }
}

impl<S: Storage> Raft<S> {
    /// A read request from the application of this node.
    pub(crate) fn read_index(&mut self, context: Vec<u8>) -> Result<()> {
        if self.role == Role::Leader {
            return self.leader_read(self.id, context);
        }
        match self.leader {
            Some(leader) => {
                self.send(leader, MessageBody::ReadIndex { context });
                Ok(())
            }
            None => Err(Error::NotLeader { leader: None }),
        }
    }

    /// A follower forwarded a read. Refusals are silent: the follower's client times out and
    /// retries, as it must anyway when leadership changes under it.
    pub(crate) fn handle_read_index(&mut self, from: NodeId, context: Vec<u8>) -> Result<()> {
        if self.role != Role::Leader {
            return Ok(());
        }
        match self.leader_read(from, context) {
            Err(Error::TooManyPendingReads { .. }) => Ok(()),
            other => other,
        }
    }

    /// The leader's answer to a forwarded read.
    pub(crate) fn handle_read_index_response(&mut self, index: u64, context: Vec<u8>) {
        self.read_states.push(ReadState { index, context });
    }

    fn leader_read(&mut self, requester: NodeId, context: Vec<u8>) -> Result<()> {
        let limit = self.config.max_pending_reads;
        if self.reads.len() >= limit {
            return Err(Error::TooManyPendingReads { limit });
        }
        if self.log.term(self.log.committed)? != self.term {
            self.reads.awaiting_commit.push((requester, context));
            return Ok(());
        }
        let index = self.log.committed;
        if self.voters() == [self.id] || self.holds_lease() {
            self.release_read(requester, index, context);
            return Ok(());
        }
        let round = self.start_heartbeat_round();
        self.reads.pending.push_back(PendingRead {
            round,
            index,
            requester,
            context,
        });
        self.broadcast_heartbeat();
        Ok(())
    }

    /// Starts a new heartbeat round (the caller broadcasts it) and returns its number.
    pub(crate) fn start_heartbeat_round(&mut self) -> u64 {
        self.reads.round += 1;
        let round = self.reads.round;
        if let ReadMode::Lease { lease_ticks } = self.config.read_mode {
            let now = self.ticks;
            let sent_at = &mut self.reads.round_sent_at;
            // A round sent `lease_ticks` ago or earlier can no longer extend the lease.
            while sent_at
                .front()
                .is_some_and(|&(_, tick)| tick + u64::from(lease_ticks) <= now)
            {
                sent_at.pop_front();
            }
            sent_at.push_back((round, now));
        }
        round
    }

    /// Whether this leader may answer a read from its lease, without a heartbeat round.
    fn holds_lease(&self) -> bool {
        matches!(self.config.read_mode, ReadMode::Lease { .. })
            && !self.reads.lease_revoked
            && self.ticks < self.reads.lease_expires_tick
    }

    /// The latest round a majority of voters has answered (the leader answers its own at once)
    /// renews the lease from the tick it was sent.
    fn renew_lease(&mut self) {
        let ReadMode::Lease { lease_ticks } = self.config.read_mode else {
            return;
        };
        let answered: Vec<u64> = self
            .log
            .membership
            .current()
            .voters
            .iter()
            .map(|&id| match id == self.id {
                true => self.reads.round,
                false => self.reads.acked_round.get(&id).copied().unwrap_or(0),
            })
            .collect();
        if answered.is_empty() {
            return;
        }
        // The highest round answered by a majority: the same "majority-th highest" as a commit.
        let quorum_round = committed_index(answered);
        let sent_at = &self.reads.round_sent_at;
        if let Ok(position) = sent_at.binary_search_by_key(&quorum_round, |&(round, _)| round) {
            let expires = sent_at[position].1 + u64::from(lease_ticks);
            self.reads.lease_expires_tick = self.reads.lease_expires_tick.max(expires);
        }
    }

    /// Called when the leader commits: reads that waited for an entry of this term may start.
    pub(crate) fn start_reads_awaiting_commit(&mut self) -> Result<()> {
        for (requester, context) in std::mem::take(&mut self.reads.awaiting_commit) {
            self.leader_read(requester, context)?;
        }
        Ok(())
    }

    /// A heartbeat answer for `round` from `from`: release every read a majority has confirmed.
    pub(crate) fn confirm_reads(&mut self, from: NodeId, round: u64) {
        let acked = self.reads.acked_round.entry(from).or_default();
        *acked = (*acked).max(round);
        self.renew_lease();
        // Only voters count, the leader too only if it is one (it may be leading its own
        // removal, dissertation, section 4.2.2). Reads are in round order, so the confirmed
        // ones are a prefix.
        let conf = self.log.membership.current();
        let needed = majority(conf.voters.len());
        let own = usize::from(conf.is_voter(self.id));
        let acked = &self.reads.acked_round;
        let confirmed = self
            .reads
            .pending
            .iter()
            .take_while(|read| {
                let peers = acked
                    .iter()
                    .filter(|&(&id, &r)| r >= read.round && conf.is_voter(id))
                    .count();
                own + peers >= needed
            })
            .count();
        let released: Vec<PendingRead> = self.reads.pending.drain(..confirmed).collect();
        for read in released {
            self.release_read(read.requester, read.index, read.context);
        }
    }

    fn release_read(&mut self, requester: NodeId, index: u64, context: Vec<u8>) {
        if requester == self.id {
            self.read_states.push(ReadState { index, context });
        } else {
            self.send(requester, MessageBody::ReadIndexResponse { index, context });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::message::{AppendResponse, Message};
    use crate::raft::Campaign;
    use crate::storage::MemStorage;

    /// Node 1 leading {1, 2, 3} in term 1, its no-op not yet committed.
    fn new_leader() -> Raft<MemStorage> {
        let config = Config {
            pre_vote: false,
            ..Config::new(1, vec![1, 2, 3])
        };
        let mut raft = Raft::new(config, MemStorage::new()).unwrap();
        raft.campaign(Campaign::Election).unwrap();
        let vote = MessageBody::RequestVoteResponse { granted: true };
        raft.step(Message {
            from: 2,
            to: 1,
            term: 1,
            body: vote,
        })
        .unwrap();
        raft.outbox.clear();
        raft
    }

    fn step(raft: &mut Raft<MemStorage>, from: NodeId, body: MessageBody) {
        raft.step(Message {
            from,
            to: 1,
            term: 1,
            body,
        })
        .unwrap();
    }

    #[test]
    fn a_read_waits_for_the_first_commit_then_for_a_majority_of_heartbeats() {
        let mut raft = new_leader();
        raft.read_index(b"r".to_vec()).unwrap();
        let heartbeats = |raft: &Raft<MemStorage>| {
            raft.outbox
                .iter()
                .filter(|m| matches!(m.body, MessageBody::Heartbeat { .. }))
                .count()
        };
        assert_eq!(heartbeats(&raft), 0, "no round before the no-op commits");
        let accepted = AppendResponse::Accepted { match_index: 1 };
        step(&mut raft, 2, MessageBody::AppendEntriesResponse(accepted));
        assert_eq!(
            heartbeats(&raft),
            2,
            "the round starts once the no-op commits"
        );
        assert!(raft.read_states.is_empty());
        step(
            &mut raft,
            3,
            MessageBody::HeartbeatResponse { read_round: 0 },
        );
        assert!(
            raft.read_states.is_empty(),
            "an answer to an older round proves nothing"
        );
        step(
            &mut raft,
            3,
            MessageBody::HeartbeatResponse { read_round: 1 },
        );
        assert_eq!(
            raft.read_states,
            vec![ReadState {
                index: 1,
                context: b"r".to_vec()
            }]
        );
    }

    #[test]
    fn a_follower_forwards_a_read_to_its_leader() {
        let config = Config::new(2, vec![1, 2, 3]);
        let mut raft = Raft::new(config, MemStorage::new()).unwrap();
        assert!(matches!(
            raft.read_index(vec![1]),
            Err(Error::NotLeader { leader: None })
        ));
        raft.step(Message {
            from: 1,
            to: 2,
            term: 1,
            body: MessageBody::Heartbeat {
                commit: 0,
                read_round: 0,
            },
        })
        .unwrap();
        raft.read_index(vec![1]).unwrap();
        let forwarded = raft.outbox.last().unwrap();
        assert_eq!(
            (forwarded.to, &forwarded.body),
            (1, &MessageBody::ReadIndex { context: vec![1] })
        );
    }
}
