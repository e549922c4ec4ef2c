//! Membership changes: adding and removing servers while the group keeps running (paper, section
//! 6; dissertation, chapter 4).
//!
//! # Single-server changes, not joint consensus
//!
//! The paper's section 6 changes any number of servers at once through a joint configuration
//! C_old,new in which every decision needs a majority of C_old *and* a majority of C_new. The
//! dissertation (section 4.1) offers a simpler rule that needs no intermediate state: **change
//! one server at a time**. Adding or removing a single voter cannot split the group, because any
//! majority of the old voter set and any majority of the new one share a server:
//!
//! ```text
//!   old {1,2,3}  majority 2      new {1,2,3,4}  majority 3      2 + 3 > 4: they overlap
//!   old {1,2,3,4} majority 3     new {1,2,3}    majority 2      3 + 2 > 4: they overlap
//! ```
//!
//! So two leaders of one term, one elected under each configuration, are impossible. We chose
//! this over joint consensus because it keeps one quorum rule everywhere (`quorum.rs` counts one
//! voter set), because the cases it cannot express (replacing a majority in one step) are done
//! as a sequence of single changes anyway in practice, and because it is what the dissertation
//! itself recommends. Its one subtlety is covered by rule 3 below.
//!
//! # The rules, and where they live
//!
//! 1. **A configuration takes effect as soon as its entry is in a server's log**, committed or
//!    not (dissertation, section 4.1). [`Membership`] follows the log: it records every
//!    configuration entry appended, forgets those a conflicting suffix truncates (the server
//!    falls back to the previous configuration in its log), and starts over from a snapshot's
//!    `conf_state`. Every vote tally, commit and quorum check reads the configuration from here.
//! 2. **One change at a time**: a leader refuses a new change while the previous configuration
//!    entry is uncommitted ([`ConfChangeError::Pending`]). Each step is then a single-server
//!    change from a configuration that every future leader has in its log.
//! 3. **A leader changes the configuration only after committing an entry of its own term**
//!    ([`ConfChangeError::LeaderNotReady`]). Without this, a leader elected under an old
//!    configuration could append a change while a concurrent, uncommitted change from a deposed
//!    leader is still live in other logs, and the two single-server steps together may not
//!    overlap (the bug Ongaro reported on the raft-dev list in 2015; the fix is this rule). The
//!    no-op every new leader appends (paper, section 8) makes it cheap.
//! 4. **New servers join as learners** (dissertation, section 4.2.1): a learner receives the log
//!    and snapshots like any follower but does not vote and is not counted in any majority, so a
//!    server with an empty log cannot stall commitment while it catches up. The leader promotes
//!    it only once it holds the committed log ([`ConfChangeError::LearnerBehind`]).
//! 5. **Removing the leader** (dissertation, section 4.2.2): once its removal is in its log, the
//!    leader no longer counts itself in majorities but keeps replicating; when the entry commits,
//!    it steps down, handing leadership to an up-to-date voter with TimeoutNow when there is one.
//! 6. **Removed servers must not disrupt** (dissertation, section 4.2.3): a server that is not a
//!    voter in its own configuration never campaigns, and one that never learned of its removal
//!    is ignored by voters who hear from a leader (the lease of check-quorum, see `raft.rs`).
//!
//! # Configurations in the log
//!
//! A configuration entry ([`crate::EntryKind::ConfChange`]) carries the whole new configuration,
//! not only the change, so a server needs nothing before it to know its membership: a node that
//! joins with an empty log learns the group from the first configuration entry or snapshot the
//! leader sends it. A snapshot records the configuration as of its last index (paper, Figure 12).
//! The first configuration of a group, before any entry, is [`crate::Config::voters`]; the
//! group's first leader writes it into the log as its no-op (`Raft::become_leader`), so a node
//! that joins later and replays the log from index 1 knows the membership at every index.

use thiserror::Error;

use crate::error::Result;
use crate::message::{
    ConfChange, ConfState, Entry, EntryKind, MembershipChange, MessageBody, NodeId,
};
use crate::raft::{Raft, Role};
use crate::storage::Storage;

/// Why a leader refused a membership change.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConfChangeError {
    /// The configuration entry at `index` is not committed yet; one change at a time (rule 2).
    #[error("the configuration change at index {index} is not committed yet")]
    Pending { index: u64 },
    /// This leader has not yet committed an entry of its own term (rule 3); retry shortly.
    #[error("the leader has not committed an entry of its term yet")]
    LeaderNotReady,
    #[error("node {0} is already a member")]
    AlreadyMember(NodeId),
    #[error("node {0} is not a learner")]
    NotALearner(NodeId),
    #[error("node {0} is not a member")]
    NotAMember(NodeId),
    /// A group needs at least one voter.
    #[error("node {0} is the last voter")]
    LastVoter(NodeId),
    /// The learner does not hold the committed log yet (rule 4); retry once it has caught up.
    #[error("learner {id} holds up to {matched}, the commit index is {committed}")]
    LearnerBehind {
        id: NodeId,
        matched: u64,
        committed: u64,
    },
}

impl<S: Storage> Raft<S> {
    /// The leader's side of a change: check rules 2 to 4, then append the configuration entry,
    /// which takes effect at once (rule 1). Returns the entry's index.
    pub(crate) fn propose_conf_change(&mut self, change: MembershipChange) -> Result<u64> {
        self.check_can_propose()?;
        let committed = self.log.committed;
        if self.log.term(committed)? != self.term {
            return Err(ConfChangeError::LeaderNotReady.into());
        }
        let pending = self.log.membership.current_index();
        if pending > committed {
            return Err(ConfChangeError::Pending { index: pending }.into());
        }
        let conf_state = apply_change(self.conf(), change)?;
        if let MembershipChange::PromoteLearner(id) = change {
            let matched = self
                .progress
                .get(&id)
                .map_or(0, |progress| progress.matched);
            if matched < committed {
                return Err(ConfChangeError::LearnerBehind {
                    id,
                    matched,
                    committed,
                }
                .into());
            }
        }
        self.check_uncommitted_limit(1)?;
        let kind = EntryKind::ConfChange(Box::new(ConfChange {
            change: Some(change),
            conf_state,
        }));
        self.append_and_broadcast(vec![(Vec::new(), kind)])
    }

    /// Rule 5: a leader whose removal has committed steps down, after asking an up-to-date voter
    /// to take over at once (as in a leadership transfer) so the group need not wait out an
    /// election timeout.
    pub(crate) fn step_down_if_removed(&mut self) -> Result<()> {
        if self.role != Role::Leader
            || self.is_voter()
            || self.log.membership.current_index() > self.log.committed
        {
            return Ok(());
        }
        let last_index = self.log.last_index()?;
        let successor = self.voters().iter().copied().find(|id| {
            self.progress
                .get(id)
                .is_some_and(|progress| progress.matched == last_index)
        });
        if let Some(successor) = successor {
            self.send(successor, MessageBody::TimeoutNow);
        }
        self.become_follower(self.term, None);
        Ok(())
    }
}

/// The configuration that `change` makes of `conf`, if the change is valid there.
pub(crate) fn apply_change(
    conf: &ConfState,
    change: MembershipChange,
) -> std::result::Result<ConfState, ConfChangeError> {
    let mut next = conf.clone();
    match change {
        MembershipChange::AddLearner(id) => {
            if conf.is_member(id) {
                return Err(ConfChangeError::AlreadyMember(id));
            }
            insert_sorted(&mut next.learners, id);
        }
        MembershipChange::PromoteLearner(id) => {
            if !conf.is_learner(id) {
                return Err(ConfChangeError::NotALearner(id));
            }
            next.learners.retain(|&learner| learner != id);
            insert_sorted(&mut next.voters, id);
        }
        MembershipChange::RemoveNode(id) => {
            if !conf.is_member(id) {
                return Err(ConfChangeError::NotAMember(id));
            }
            if conf.voters == [id] {
                return Err(ConfChangeError::LastVoter(id));
            }
            next.voters.retain(|&voter| voter != id);
            next.learners.retain(|&learner| learner != id);
        }
    }
    Ok(next)
}

fn insert_sorted(ids: &mut Vec<NodeId>, id: NodeId) {
    if let Err(position) = ids.binary_search(&id) {
        ids.insert(position, id);
    }
}

/// The configurations along one server's log: the one in force before the log's configuration
/// entries (from a snapshot, or the group's first configuration), then one per configuration
/// entry, in index order. The last is the one in force (rule 1).
#[derive(Clone, Debug)]
pub(crate) struct Membership {
    /// `(index, configuration)`, index-ordered and never empty. The first element is the base
    /// (the index of the snapshot it came from, or 0); the others are configuration entries.
    configs: Vec<(u64, ConfState)>,
    /// Bumped whenever the configuration in force may have changed, so the leader knows when to
    /// update its per-member replication state.
    pub(crate) version: u64,
}

impl Membership {
    pub(crate) fn new(index: u64, base: ConfState) -> Self {
        Membership {
            configs: vec![(index, base)],
            version: 0,
        }
    }

    /// The configuration in force.
    pub(crate) fn current(&self) -> &ConfState {
        &self.configs.last().expect("never empty").1
    }

    /// The index of the entry that set the configuration in force (or of its snapshot).
    pub(crate) fn current_index(&self) -> u64 {
        self.configs.last().expect("never empty").0
    }

    /// The configuration in force at `index`, if this server still knows it (it forgets the
    /// ones older than its storage's first index; see [`Membership::forget_before`]).
    pub(crate) fn at(&self, index: u64) -> Option<&ConfState> {
        let position = self.configs.partition_point(|(at, _)| *at <= index);
        position
            .checked_sub(1)
            .map(|position| &self.configs[position].1)
    }

    /// Entries from `entries[0].index` on replace the log's tail: configurations at or after it
    /// go, then the new entries' configurations come in.
    pub(crate) fn on_append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        let keep = self
            .configs
            .partition_point(|(at, _)| *at < first.index)
            .max(1);
        if keep < self.configs.len() {
            self.configs.truncate(keep);
            self.version += 1;
        }
        for entry in entries {
            if let Some(change) = entry.conf_change() {
                self.configs.push((entry.index, change.conf_state.clone()));
                self.version += 1;
            }
        }
    }

    /// A snapshot replaced the whole log.
    pub(crate) fn restore(&mut self, index: u64, conf_state: ConfState) {
        self.configs = vec![(index, conf_state)];
        self.version += 1;
    }

    /// Forgets configurations superseded at or before `index` (storage no longer holds entries
    /// below it), keeping the one in force there. Bounds the history by the configuration
    /// entries in the uncompacted log.
    pub(crate) fn forget_before(&mut self, index: u64) {
        let in_force = self.configs.partition_point(|(at, _)| *at <= index);
        if in_force > 1 {
            self.configs.drain(..in_force - 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MembershipChange::AddLearner;

    fn conf(voters: &[NodeId], learners: &[NodeId]) -> ConfState {
        ConfState {
            voters: voters.to_vec(),
            learners: learners.to_vec(),
        }
    }

    fn conf_entry(index: u64, conf_state: ConfState) -> Entry {
        Entry {
            term: 1,
            index,
            data: Vec::new(),
            kind: EntryKind::ConfChange(Box::new(ConfChange {
                change: Some(MembershipChange::AddLearner(9)),
                conf_state,
            })),
        }
    }

    /// Node 1 leading {1, 2, 3} in term 1, its no-op not yet committed.
    fn new_leader() -> Raft<crate::MemStorage> {
        let config = crate::Config {
            pre_vote: false,
            ..crate::Config::new(1, vec![1, 2, 3])
        };
        let mut raft = Raft::new(config, crate::MemStorage::new()).unwrap();
        raft.campaign(crate::raft::Campaign::Election).unwrap();
        let vote = MessageBody::RequestVoteResponse { granted: true };
        raft.step(crate::Message {
            from: 2,
            to: 1,
            term: 1,
            body: vote,
        })
        .unwrap();
        raft
    }

    fn refusal(raft: &mut Raft<crate::MemStorage>, change: MembershipChange) -> ConfChangeError {
        match raft.propose_conf_change(change) {
            Err(crate::Error::ConfChange(error)) => error,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_leader_changes_membership_after_its_first_commit_and_one_change_at_a_time() {
        let mut raft = new_leader();
        assert_eq!(
            refusal(&mut raft, AddLearner(4)),
            ConfChangeError::LeaderNotReady
        );
        let accepted = crate::AppendResponse::Accepted { match_index: 1 };
        raft.step(crate::Message {
            from: 2,
            to: 1,
            term: 1,
            body: MessageBody::AppendEntriesResponse(accepted),
        })
        .unwrap();
        assert_eq!(raft.propose_conf_change(AddLearner(4)).unwrap(), 2);
        assert!(raft.conf().is_learner(4), "in force once appended");
        assert!(
            raft.progress.contains_key(&4),
            "the leader replicates to it"
        );
        assert_eq!(
            refusal(&mut raft, AddLearner(5)),
            ConfChangeError::Pending { index: 2 }
        );
    }

    #[test]
    fn the_first_leader_writes_the_founding_configuration_for_later_joiners() {
        let leader = new_leader();
        let first = leader.log.entries(1, 2, u64::MAX).unwrap().remove(0);
        let founding = ConfState::with_voters(vec![1, 2, 3]);
        assert_eq!(
            first.conf_change().map(|c| (&c.change, &c.conf_state)),
            Some((&None, &founding))
        );
        // A node joining with an empty configuration learns it from that entry.
        let mut joiner =
            Raft::new(crate::Config::new(4, Vec::new()), crate::MemStorage::new()).unwrap();
        let append = crate::AppendEntries {
            prev_log_index: 0,
            prev_log_term: 0,
            entries: vec![first],
            leader_commit: 0,
        };
        joiner
            .step(crate::Message {
                from: 1,
                to: 4,
                term: 1,
                body: MessageBody::AppendEntries(append),
            })
            .unwrap();
        assert_eq!(joiner.log.membership.at(1), Some(&founding));
        assert!(!joiner.is_voter());
    }

    #[test]
    fn changes_move_one_server_and_refuse_nonsense() {
        let start = conf(&[1, 2, 3], &[]);
        let added = apply_change(&start, MembershipChange::AddLearner(4)).unwrap();
        assert_eq!(added, conf(&[1, 2, 3], &[4]));
        let promoted = apply_change(&added, MembershipChange::PromoteLearner(4)).unwrap();
        assert_eq!(promoted, conf(&[1, 2, 3, 4], &[]));
        let removed = apply_change(&promoted, MembershipChange::RemoveNode(1)).unwrap();
        assert_eq!(removed, conf(&[2, 3, 4], &[]));
        let refusals = [
            (
                MembershipChange::AddLearner(2),
                ConfChangeError::AlreadyMember(2),
            ),
            (
                MembershipChange::PromoteLearner(2),
                ConfChangeError::NotALearner(2),
            ),
            (
                MembershipChange::RemoveNode(7),
                ConfChangeError::NotAMember(7),
            ),
        ];
        for (change, expected) in refusals {
            assert_eq!(apply_change(&start, change), Err(expected));
        }
        assert_eq!(
            apply_change(&conf(&[5], &[6]), MembershipChange::RemoveNode(5)),
            Err(ConfChangeError::LastVoter(5))
        );
    }

    #[test]
    fn the_configuration_follows_appends_and_truncations() {
        let mut membership = Membership::new(0, conf(&[1, 2, 3], &[]));
        membership.on_append(&[conf_entry(4, conf(&[1, 2, 3], &[4]))]);
        membership.on_append(&[conf_entry(6, conf(&[1, 2, 3, 4], &[]))]);
        assert_eq!(membership.current(), &conf(&[1, 2, 3, 4], &[]));
        assert_eq!(membership.at(5), Some(&conf(&[1, 2, 3], &[4])));
        // A new leader overwrites index 6 on: the promotion is gone, the learner stays.
        membership.on_append(&[Entry {
            term: 2,
            index: 6,
            ..Entry::default()
        }]);
        assert_eq!(membership.current(), &conf(&[1, 2, 3], &[4]));
        assert_eq!(membership.current_index(), 4);
        // Overwriting from index 2 drops the learner too, back to the base.
        membership.on_append(&[Entry {
            term: 3,
            index: 2,
            ..Entry::default()
        }]);
        assert_eq!(membership.current(), &conf(&[1, 2, 3], &[]));
    }

    #[test]
    fn forgetting_keeps_the_configuration_in_force() {
        let mut membership = Membership::new(0, conf(&[1], &[]));
        membership.on_append(&[conf_entry(3, conf(&[1], &[2]))]);
        membership.on_append(&[conf_entry(5, conf(&[1, 2], &[]))]);
        membership.forget_before(4);
        assert_eq!(membership.at(4), Some(&conf(&[1], &[2])));
        assert_eq!(membership.at(2), None);
        assert_eq!(membership.current(), &conf(&[1, 2], &[]));
        membership.restore(10, conf(&[2], &[]));
        assert_eq!(membership.current_index(), 10);
        assert_eq!(membership.at(9), None);
    }
}
