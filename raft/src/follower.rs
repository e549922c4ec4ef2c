//! The follower: accepting the leader's entries (paper, section 5.3, Figure 2 "AppendEntries
//! RPC, receiver implementation") and heartbeats.
//!
//! Every reply built here goes into the outbox and leaves only after the application has
//! persisted the [`crate::Ready`] that holds the entries and hard state behind it. That ordering is
//! what makes an acknowledgement mean "this survives a crash", and the leader counts on it when it
//! commits.

use crate::error::Result;
use crate::message::{AppendEntries, AppendResponse, MessageBody, NodeId, Rejection, Snapshot};
use crate::raft::{Raft, Role};
use crate::storage::Storage;

impl<S: Storage> Raft<S> {
    /// A leader of our term exists: a candidate of the same term concedes (paper, section 5.2),
    /// and the election timer restarts. Returns false if we are that term's leader ourselves,
    /// which would mean two leaders in one term: impossible, so the message is ignored.
    fn follow(&mut self, leader: NodeId) -> bool {
        if self.role == Role::Leader {
            return false;
        }
        if self.role != Role::Follower {
            self.become_follower(self.term, Some(leader));
        }
        self.leader = Some(leader);
        self.election_elapsed = 0;
        self.lease_guard_on_start = false;
        true
    }

    pub(crate) fn handle_append_entries(
        &mut self,
        from: NodeId,
        append: AppendEntries,
    ) -> Result<()> {
        if !self.follow(from) {
            return Ok(());
        }
        // Everything up to our commit index is already identical to the leader's log; a
        // delayed message reaching back there has nothing to teach and must not truncate.
        if append.prev_log_index < self.log.committed {
            let match_index = self.log.committed;
            self.reply_append(from, AppendResponse::Accepted { match_index });
            return Ok(());
        }
        let appended = self.log.maybe_append(
            append.prev_log_index,
            append.prev_log_term,
            append.leader_commit,
            append.entries,
        )?;
        let response = match appended {
            Some(match_index) => AppendResponse::Accepted { match_index },
            None => AppendResponse::Rejected(self.rejection(append.prev_log_index)?),
        };
        self.reply_append(from, response);
        Ok(())
    }

    fn reply_append(&mut self, to: NodeId, response: AppendResponse) {
        self.send(to, MessageBody::AppendEntriesResponse(response));
    }

    /// The conflict hint (paper, end of section 5.3): the term we hold at `rejected_index` and
    /// the first index of that term, so that the leader can skip the whole term in one round
    /// trip. The hint never reaches below our commit index, which already matches the leader.
    fn rejection(&self, rejected_index: u64) -> Result<Rejection> {
        let last_index = self.log.last_index()?;
        if rejected_index > last_index {
            return Ok(Rejection {
                rejected_index,
                conflict_term: None,
                conflict_index: last_index + 1,
            });
        }
        let floor = self.log.committed + 1;
        Ok(Rejection {
            rejected_index,
            conflict_term: Some(self.log.term(rejected_index)?),
            conflict_index: self.log.first_index_of_term_at(rejected_index, floor)?,
        })
    }

    /// InstallSnapshot (paper, section 7, Figure 13). A snapshot at or below our commit index
    /// teaches nothing. One whose last entry we already hold is a prefix of our log: we keep the
    /// entries after it (step 6). Otherwise it replaces the whole log (step 7), and the
    /// application installs it from the next `Ready`.
    pub(crate) fn handle_install_snapshot(
        &mut self,
        from: NodeId,
        snapshot: Snapshot,
    ) -> Result<()> {
        if !self.follow(from) {
            return Ok(());
        }
        let index = snapshot.index;
        if index <= self.log.committed {
            let match_index = self.log.committed;
            self.reply_append(from, AppendResponse::Accepted { match_index });
            return Ok(());
        }
        if self.log.term_if_present(index)? == Some(snapshot.term) {
            self.log.commit_to(index);
        } else {
            self.log.restore(snapshot);
        }
        self.reply_append(from, AppendResponse::Accepted { match_index: index });
        Ok(())
    }

    /// A heartbeat's commit index is at most what the leader knows we hold, so it is safe to
    /// apply without a consistency check.
    pub(crate) fn handle_heartbeat(
        &mut self,
        from: NodeId,
        commit: u64,
        read_round: u64,
    ) -> Result<()> {
        if !self.follow(from) {
            return Ok(());
        }
        self.log.commit_to(commit.min(self.log.last_index()?));
        self.send(from, MessageBody::HeartbeatResponse { read_round });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::message::{AppendEntries, AppendResponse, Entry, Message, MessageBody, Rejection};
    use crate::raft::{Raft, Role};
    use crate::storage::MemStorage;

    fn follower_with(log: &[(u64, u64)]) -> Raft<MemStorage> {
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
        let mut hard_state = storage.hard_state();
        hard_state.term = 9;
        storage.set_hard_state(hard_state);
        Raft::new(Config::new(2, vec![1, 2, 3]), storage).unwrap()
    }

    fn append(
        raft: &mut Raft<MemStorage>,
        prev: (u64, u64),
        entries: Vec<Entry>,
    ) -> AppendResponse {
        let body = MessageBody::AppendEntries(AppendEntries {
            prev_log_index: prev.0,
            prev_log_term: prev.1,
            entries,
            leader_commit: 0,
        });
        raft.step(Message {
            from: 1,
            to: 2,
            term: 9,
            body,
        })
        .unwrap();
        match raft.outbox.pop().unwrap().body {
            MessageBody::AppendEntriesResponse(response) => response,
            other => panic!("unexpected reply {other:?}"),
        }
    }

    #[test]
    fn a_too_short_log_hints_its_end() {
        let mut raft = follower_with(&[(1, 1), (2, 1)]);
        let response = append(&mut raft, (5, 3), Vec::new());
        let hint = Rejection {
            rejected_index: 5,
            conflict_term: None,
            conflict_index: 3,
        };
        assert_eq!(response, AppendResponse::Rejected(hint));
        assert_eq!(raft.role, Role::Follower);
        assert_eq!(raft.leader, Some(1));
    }

    #[test]
    fn a_conflicting_term_hints_its_first_index() {
        let mut raft = follower_with(&[(1, 1), (2, 2), (3, 2), (4, 2)]);
        let response = append(&mut raft, (4, 3), Vec::new());
        let hint = Rejection {
            rejected_index: 4,
            conflict_term: Some(2),
            conflict_index: 2,
        };
        assert_eq!(response, AppendResponse::Rejected(hint));
    }

    #[test]
    fn a_matching_append_replaces_the_conflicting_suffix() {
        let mut raft = follower_with(&[(1, 1), (2, 2), (3, 2)]);
        let new = vec![Entry {
            index: 2,
            term: 3,
            data: vec![7],
            ..Entry::default()
        }];
        let response = append(&mut raft, (1, 1), new);
        assert_eq!(response, AppendResponse::Accepted { match_index: 2 });
        assert_eq!(raft.log.last_index().unwrap(), 2);
        assert_eq!(raft.log.term(2).unwrap(), 3);
    }
}
