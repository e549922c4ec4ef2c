//! The leader: taking proposals, replicating them (paper, section 5.3), deciding when they are
//! committed (section 5.4.2), and stepping down when it loses touch with the majority
//! (check-quorum).
//!
//! Replication is driven by [`crate::progress::Progress`]: after an accepted AppendEntries the
//! leader keeps sending while the follower's window has room; after a rejection it jumps back
//! using the follower's conflict hint. Heartbeats go out every `heartbeat_tick` regardless of the
//! window, and their replies restart a stalled follower.

use crate::error::{Error, Result, StorageError};
use crate::message::{
    AppendEntries, AppendResponse, ConfChange, Entry, EntryKind, MessageBody, NodeId, Rejection,
};
use crate::progress::{Progress, ProgressState};
use crate::quorum::{committed_index, majority};
use crate::raft::{Raft, Role};
use crate::storage::Storage;

impl<S: Storage> Raft<S> {
    /// Takes office: every follower starts in probe at our last index + 1 (paper, Figure 2:
    /// "nextIndex initialized to leader last log index + 1"), then the no-op of this term goes out.
    pub(crate) fn become_leader(&mut self) -> Result<()> {
        assert_eq!(
            self.role,
            Role::Candidate,
            "only a candidate becomes leader"
        );
        self.role = Role::Leader;
        self.leader = Some(self.id);
        let next = self.log.last_index()? + 1;
        self.progress.clear();
        self.conf_version = self.log.membership.version;
        self.add_missing_progress(next);
        let own = self.progress.get_mut(&self.id).expect("added above");
        own.on_accepted(next - 1);
        own.become_replicate();
        // Entries of earlier terms cannot be committed by counting replicas (section 5.4.2), so
        // without an entry of its own term a leader could not commit, nor learn what is
        // committed, until a client wrote (paper, section 8).
        let no_op = if self.log.membership.current_index() == 0 {
            // The group's first leader: the founding configuration, known so far only from
            // `Config::voters`, goes into the log (see `membership.rs`).
            EntryKind::ConfChange(Box::new(ConfChange {
                change: None,
                conf_state: self.conf().clone(),
            }))
        } else {
            EntryKind::Command
        };
        self.append_and_broadcast(vec![(Vec::new(), no_op)])?;
        Ok(())
    }

    /// A `Progress` for every member (and the leader itself, whose `matched` is its own log),
    /// starting at `next` (paper, Figure 2: nextIndex starts after the leader's last entry).
    fn add_missing_progress(&mut self, next: u64) {
        let window = self.config.max_inflight_msgs;
        let mut members = self.conf().members();
        members.push(self.id);
        for id in members {
            self.progress
                .entry(id)
                .or_insert_with(|| Progress::new(next, window));
        }
    }

    /// After the leader's configuration changed (it appended a configuration entry): track the
    /// new members, forget the removed ones, and abandon a transfer to a node no longer a voter.
    pub(crate) fn sync_progress_with_conf(&mut self) -> Result<()> {
        if self.role != Role::Leader || self.conf_version == self.log.membership.version {
            return Ok(());
        }
        self.conf_version = self.log.membership.version;
        let (own_id, conf) = (self.id, self.conf().clone());
        self.progress
            .retain(|&id, _| id == own_id || conf.is_member(id));
        self.add_missing_progress(self.log.last_index()? + 1);
        if self
            .transfer
            .is_some_and(|transfer| !conf.is_voter(transfer.to))
        {
            self.transfer = None;
        }
        Ok(())
    }

    /// Everyone the leader replicates to: voters and learners but itself, in id order.
    pub(crate) fn replication_targets(&self) -> Vec<NodeId> {
        self.progress
            .keys()
            .copied()
            .filter(|&id| id != self.id)
            .collect()
    }

    /// Appends client commands to the leader's log and starts replicating them. Returns the index
    /// of the last one.
    pub(crate) fn propose(&mut self, data: Vec<u8>) -> Result<u64> {
        self.check_can_propose()?;
        if data.is_empty() {
            return Err(Error::EmptyProposal);
        }
        self.check_uncommitted_limit(1)?;
        self.append_and_broadcast(vec![(data, EntryKind::Command)])
    }

    /// Appends many commands at once: one log append and one round of AppendEntries for the
    /// lot, where [`Raft::propose`] in a loop would send a message per command (until flow
    /// control holds them back). All or nothing: refused as a whole if any command is empty or
    /// the batch would exceed `max_uncommitted_entries`. Returns the index of the last one.
    pub(crate) fn propose_batch(&mut self, commands: Vec<Vec<u8>>) -> Result<u64> {
        self.check_can_propose()?;
        if commands.iter().any(Vec::is_empty) {
            return Err(Error::EmptyProposal);
        }
        self.check_uncommitted_limit(commands.len() as u64)?;
        let entries = commands
            .into_iter()
            .map(|data| (data, EntryKind::Command))
            .collect();
        self.append_and_broadcast(entries)
    }

    /// Leader and not handing over: the conditions every proposal shares.
    pub(crate) fn check_can_propose(&self) -> Result<()> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader {
                leader: self.leader,
            });
        }
        if let Some(transfer) = &self.transfer {
            return Err(Error::TransferringLeadership { to: transfer.to });
        }
        Ok(())
    }

    pub(crate) fn check_uncommitted_limit(&self, adding: u64) -> Result<()> {
        let limit = self.config.max_uncommitted_entries;
        let uncommitted = self.log.last_index()? - self.log.committed;
        if uncommitted + adding > limit {
            return Err(Error::TooManyUncommitted { limit });
        }
        Ok(())
    }

    pub(crate) fn append_and_broadcast(
        &mut self,
        payloads: Vec<(Vec<u8>, EntryKind)>,
    ) -> Result<u64> {
        let mut index = self.log.last_index()?;
        let entries: Vec<Entry> = payloads
            .into_iter()
            .map(|(data, kind)| {
                index += 1;
                Entry {
                    term: self.term,
                    index,
                    data,
                    kind,
                }
            })
            .collect();
        self.log.append(entries)?;
        self.sync_progress_with_conf()?;
        // The leader counts its own copy now, though it is not yet on disk: no message that could
        // let a follower acknowledge these entries leaves before the same Ready persists them.
        let own = self
            .progress
            .get_mut(&self.id)
            .expect("a leader tracks itself");
        own.on_accepted(index);
        self.maybe_commit()?;
        if self.role == Role::Leader {
            self.broadcast_append()?;
        }
        Ok(index)
    }

    /// Commits the highest index a majority holds, but only if it is from the current term
    /// (paper, section 5.4.2 and Figure 8): an entry of an earlier term on a majority can still
    /// be overwritten by a leader that never saw it. Earlier entries commit with it, by the Log
    /// Matching property.
    ///
    /// Only the voters of the configuration in force count (dissertation, section 4.1), the
    /// leader included only if it is one of them (section 4.2.2). Committing may complete the
    /// leader's own removal, in which case it steps down.
    pub(crate) fn maybe_commit(&mut self) -> Result<bool> {
        let matched: Vec<u64> = self
            .voters()
            .iter()
            .map(|id| self.progress.get(id).map_or(0, |progress| progress.matched))
            .collect();
        if matched.is_empty() {
            return Ok(false);
        }
        let index = committed_index(matched);
        if index <= self.log.committed || self.log.term(index)? != self.term {
            return Ok(false);
        }
        self.log.commit_to(index);
        self.start_reads_awaiting_commit()?;
        self.step_down_if_removed()?;
        Ok(true)
    }

    pub(crate) fn broadcast_append(&mut self) -> Result<()> {
        for peer in self.replication_targets() {
            self.send_append(peer, true)?;
        }
        Ok(())
    }

    /// Sends `to` the entries from its `next` index, within the byte limit, unless flow control
    /// pauses it. An AppendEntries without entries still carries the commit index, so it is sent
    /// only when `send_if_empty`. Returns whether a message went out.
    pub(crate) fn send_append(&mut self, to: NodeId, send_if_empty: bool) -> Result<bool> {
        let progress = &self.progress[&to];
        if progress.is_paused() {
            return Ok(false);
        }
        let next = progress.next;
        let last_index = self.log.last_index()?;
        let read = self.log.term(next - 1).and_then(|prev_log_term| {
            let entries = self
                .log
                .entries(next, last_index + 1, self.config.max_size_per_msg)?;
            Ok((prev_log_term, entries))
        });
        let (prev_log_term, entries) = match read {
            Ok(read) => read,
            Err(Error::Storage(StorageError::Compacted { .. })) => return self.send_snapshot(to),
            Err(error) => return Err(error),
        };
        if entries.is_empty() && !send_if_empty {
            return Ok(false);
        }
        let progress = self.progress.get_mut(&to).expect("checked above");
        progress.on_sent(entries.last().map(|entry| entry.index));
        let append = AppendEntries {
            prev_log_index: next - 1,
            prev_log_term,
            entries,
            leader_commit: self.log.committed,
        };
        self.send(to, MessageBody::AppendEntries(append));
        Ok(true)
    }

    /// The follower needs entries we no longer hold: send the snapshot that replaced them (paper,
    /// section 7), and nothing else until it answers.
    fn send_snapshot(&mut self, to: NodeId) -> Result<bool> {
        let snapshot = self.log.snapshot()?;
        let progress = self.progress.get_mut(&to).expect("a replication target");
        progress.become_snapshot(snapshot.index);
        self.send(to, MessageBody::InstallSnapshot(snapshot));
        Ok(true)
    }

    /// A heartbeat tells each follower to commit only what it is known to hold (see
    /// [`MessageBody::Heartbeat`]).
    pub(crate) fn broadcast_heartbeat(&mut self) {
        for peer in self.replication_targets() {
            let commit = self.progress[&peer].matched.min(self.log.committed);
            let read_round = self.reads.round;
            self.send(peer, MessageBody::Heartbeat { commit, read_round });
        }
    }

    pub(crate) fn handle_append_response(
        &mut self,
        from: NodeId,
        response: AppendResponse,
    ) -> Result<()> {
        if self.role != Role::Leader {
            return Ok(());
        }
        let Some(progress) = self.progress.get_mut(&from) else {
            return Ok(());
        };
        progress.recent_active = true;
        match response {
            AppendResponse::Accepted { match_index } => self.on_append_accepted(from, match_index),
            AppendResponse::Rejected(rejection) => self.on_append_rejected(from, rejection),
        }
    }

    fn on_append_accepted(&mut self, from: NodeId, match_index: u64) -> Result<()> {
        let progress = self.progress.get_mut(&from).expect("checked by the caller");
        if !progress.on_accepted(match_index) {
            return Ok(());
        }
        let caught_up = match progress.state {
            ProgressState::Probe => true,
            ProgressState::Snapshot => progress.matched >= progress.pending_snapshot,
            ProgressState::Replicate => false,
        };
        if caught_up {
            progress.become_replicate();
        }
        // Followers learn a new commit index from the next AppendEntries or heartbeat (paper,
        // section 5.3), within a heartbeat interval. Telling them at once, as etcd does, would
        // cost a message and its reply per follower per commit: double the traffic per command.
        self.maybe_commit()?;
        if self.role != Role::Leader {
            return Ok(());
        }
        while self.send_append(from, false)? {}
        self.maybe_hand_over(from)?;
        Ok(())
    }

    fn on_append_rejected(&mut self, from: NodeId, rejection: Rejection) -> Result<()> {
        let hinted_next = self.next_after_rejection(&rejection)?;
        let progress = self.progress.get_mut(&from).expect("checked by the caller");
        if progress.on_rejected(rejection.rejected_index, hinted_next) {
            self.send_append(from, true)?;
        }
        Ok(())
    }

    /// Where to probe next (paper, end of section 5.3): if we hold entries of the follower's
    /// conflicting term, the logs may agree up to our last entry of that term; if we hold none,
    /// the follower's whole run of that term is wrong and we skip it.
    fn next_after_rejection(&self, rejection: &Rejection) -> Result<u64> {
        let Some(term) = rejection.conflict_term else {
            return Ok(rejection.conflict_index);
        };
        match self
            .log
            .last_index_of_term(term, rejection.rejected_index)?
        {
            Some(last_of_term) => Ok(last_of_term + 1),
            None => Ok(rejection.conflict_index),
        }
    }

    pub(crate) fn handle_heartbeat_response(
        &mut self,
        from: NodeId,
        read_round: u64,
    ) -> Result<()> {
        if self.role != Role::Leader {
            return Ok(());
        }
        let Some(progress) = self.progress.get_mut(&from) else {
            return Ok(());
        };
        progress.on_heartbeat_response();
        self.confirm_reads(from, read_round);
        let progress = &self.progress[&from];
        if progress.matched < self.log.last_index()? {
            self.send_append(from, true)?;
        }
        Ok(())
    }

    /// Check-quorum: did a majority (the leader included) answer during the last election
    /// timeout? A leader cut off from the majority steps down instead of serving stale reads and
    /// accepting writes that can never commit. Clears the marks for the next round.
    pub(crate) fn quorum_recently_active(&mut self) -> bool {
        let own_id = self.id;
        let conf = self.log.membership.current();
        let mut active = 0;
        for (&id, progress) in &mut self.progress {
            if conf.is_voter(id) && (id == own_id || progress.recent_active) {
                active += 1;
            }
            progress.recent_active = false;
        }
        active >= majority(conf.voters.len())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::error::Error;
    use crate::message::{AppendResponse, Entry, HardState, Message, MessageBody, Rejection};
    use crate::raft::{Campaign, Raft, Role};
    use crate::storage::MemStorage;

    /// Node 1 as leader of {1, 2, 3}, elected over the given persisted log of `(index, term)`.
    fn leader_over(log: &[(u64, u64)]) -> Raft<MemStorage> {
        let mut storage = MemStorage::new();
        let entries: Vec<Entry> = log
            .iter()
            .map(|&(index, term)| Entry {
                index,
                term,
                data: vec![1],
                ..Entry::default()
            })
            .collect();
        storage.append(&entries).unwrap();
        let term = log.last().map_or(0, |&(_, term)| term);
        storage.set_hard_state(HardState {
            term,
            vote: None,
            commit: 0,
        });
        let config = Config {
            pre_vote: false,
            ..Config::new(1, vec![1, 2, 3])
        };
        let mut raft = Raft::new(config, storage).unwrap();
        raft.campaign(Campaign::Election).unwrap();
        let vote = MessageBody::RequestVoteResponse { granted: true };
        raft.step(Message {
            from: 2,
            to: 1,
            term: term + 1,
            body: vote,
        })
        .unwrap();
        assert_eq!(raft.role, Role::Leader);
        raft.outbox.clear();
        raft
    }

    fn reply(raft: &mut Raft<MemStorage>, from: u64, response: AppendResponse) {
        let body = MessageBody::AppendEntriesResponse(response);
        raft.step(Message {
            from,
            to: 1,
            term: raft.term,
            body,
        })
        .unwrap();
    }

    #[test]
    fn an_entry_commits_once_a_majority_holds_it() {
        let mut raft = leader_over(&[]);
        raft.propose(b"x".to_vec()).unwrap();
        assert_eq!(raft.log.committed, 0);
        reply(&mut raft, 2, AppendResponse::Accepted { match_index: 2 });
        assert_eq!(raft.log.committed, 2);
    }

    #[test]
    fn entries_of_an_earlier_term_do_not_commit_by_counting_replicas() {
        // Figure 8: index 1 (term 1) is on a majority once node 2 acknowledges it, yet only the
        // leader's own no-op (index 2, term 2) reaching a majority commits it.
        let mut raft = leader_over(&[(1, 1)]);
        reply(&mut raft, 2, AppendResponse::Accepted { match_index: 1 });
        assert_eq!(raft.log.committed, 0);
        reply(&mut raft, 2, AppendResponse::Accepted { match_index: 2 });
        assert_eq!(raft.log.committed, 2);
    }

    #[test]
    fn a_conflict_hint_skips_whole_terms() {
        let raft = leader_over(&[(1, 1), (2, 1), (3, 1), (4, 3), (5, 3)]);
        let hint = |conflict_term, conflict_index| Rejection {
            rejected_index: 5,
            conflict_term,
            conflict_index,
        };
        // We hold no term 2: the follower's whole run of term 2 goes.
        assert_eq!(raft.next_after_rejection(&hint(Some(2), 3)).unwrap(), 3);
        // We hold term 1 up to index 3: the logs may agree that far.
        assert_eq!(raft.next_after_rejection(&hint(Some(1), 1)).unwrap(), 4);
        // The follower's log ends at 1.
        assert_eq!(raft.next_after_rejection(&hint(None, 2)).unwrap(), 2);
    }

    #[test]
    fn a_leader_refuses_proposals_beyond_the_uncommitted_limit() {
        let mut raft = leader_over(&[]);
        raft.config.max_uncommitted_entries = 3;
        raft.propose(vec![1]).unwrap();
        raft.propose(vec![2]).unwrap();
        let refused = raft.propose(vec![3]).unwrap_err();
        assert!(
            matches!(refused, Error::TooManyUncommitted { limit: 3 }),
            "the no-op counts"
        );
    }

    #[test]
    fn a_batch_travels_in_one_message_per_follower_and_is_refused_whole() {
        let mut raft = leader_over(&[]);
        raft.config.max_uncommitted_entries = 3;
        // Both followers acknowledge the no-op, so they are replicating and nothing is pending.
        for follower in [2, 3] {
            reply(
                &mut raft,
                follower,
                AppendResponse::Accepted { match_index: 1 },
            );
        }
        raft.outbox.clear();
        let last = raft.propose_batch(vec![vec![1], vec![2], vec![3]]).unwrap();
        assert_eq!(last, 4, "after the no-op at 1");
        let carried: Vec<usize> = raft
            .outbox
            .iter()
            .map(|message| match &message.body {
                MessageBody::AppendEntries(append) => append.entries.len(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(carried, vec![3, 3], "one AppendEntries per follower");
        let empty = raft.propose_batch(vec![vec![4], Vec::new()]).unwrap_err();
        assert!(matches!(empty, Error::EmptyProposal));
        let too_many = raft.propose_batch(vec![vec![5]]).unwrap_err();
        assert!(matches!(too_many, Error::TooManyUncommitted { limit: 3 }));
        assert_eq!(
            raft.log.last_index().unwrap(),
            4,
            "refused batches leave no trace"
        );
    }

    #[test]
    fn check_quorum_deposes_a_leader_that_hears_from_nobody() {
        let mut raft = leader_over(&[]);
        for _ in 0..2 * raft.config.election_tick {
            raft.tick().unwrap();
        }
        assert_eq!(raft.role, Role::Follower);
        assert_eq!(raft.term, 1, "stepping down does not change the term");
    }
}
