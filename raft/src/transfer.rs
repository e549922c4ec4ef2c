//! Leadership transfer (dissertation, section 3.10): the leader hands over to a chosen node,
//! for maintenance or to move leadership closer to clients, without waiting for an election
//! timeout.
//!
//! ```text
//!   1. the leader stops taking proposals, so that its log stops growing
//!   2. it brings the target's log up to date with its own (ordinary replication)
//!   3. it sends TimeoutNow; the target starts an election at once (no pre-vote), marking its
//!      vote requests as a transfer so that voters grant them despite their leader lease
//!   4. the target, whose log is as up to date as any, wins; its higher term deposes the leader
//! ```
//!
//! If the target has not taken over within an election timeout (it crashed, or is cut off), the
//! leader abandons the transfer and takes proposals again.

use crate::error::{Error, Result};
use crate::message::{MessageBody, NodeId};
use crate::raft::{Campaign, Raft, Role};
use crate::storage::Storage;

/// A transfer in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Transfer {
    pub(crate) to: NodeId,
    elapsed_ticks: u32,
}

impl<S: Storage> Raft<S> {
    pub(crate) fn transfer_leadership(&mut self, to: NodeId) -> Result<()> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader {
                leader: self.leader,
            });
        }
        if !self.voters().contains(&to) {
            return Err(Error::NotAVoter(to));
        }
        if to == self.id {
            return Ok(());
        }
        self.transfer = Some(Transfer {
            to,
            elapsed_ticks: 0,
        });
        // Otherwise replication catches it up, and the acknowledgement that completes its log
        // triggers the hand-over (`Raft::on_append_accepted`).
        if !self.maybe_hand_over(to)? {
            self.send_append(to, false)?;
        }
        Ok(())
    }

    /// Sends TimeoutNow if `peer` is the transfer target and holds our whole log. Returns
    /// whether it did.
    pub(crate) fn maybe_hand_over(&mut self, peer: NodeId) -> Result<bool> {
        let Some(transfer) = self.transfer else {
            return Ok(false);
        };
        if transfer.to != peer || self.progress[&peer].matched < self.log.last_index()? {
            return Ok(false);
        }
        self.send(peer, MessageBody::TimeoutNow);
        // The successor's vote requests bypass the followers' leases (they are marked as a
        // transfer), so this leader's lease no longer holds.
        self.reads.lease_revoked = true;
        Ok(true)
    }

    /// Abandons a transfer that has taken longer than an election timeout.
    pub(crate) fn tick_transfer(&mut self) {
        let Some(transfer) = &mut self.transfer else {
            return;
        };
        transfer.elapsed_ticks += 1;
        if transfer.elapsed_ticks >= self.config.election_tick {
            self.transfer = None;
        }
    }

    /// Our leader hands over to us. Honoured only from the leader we follow.
    pub(crate) fn handle_timeout_now(&mut self, from: NodeId) -> Result<()> {
        if self.role != Role::Follower || self.leader != Some(from) || !self.is_voter() {
            return Ok(());
        }
        self.campaign(Campaign::Transfer)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::message::{Message, MessageBody};
    use crate::raft::{Raft, Role};
    use crate::storage::MemStorage;

    #[test]
    fn timeout_now_starts_a_real_election_that_bypasses_leases() {
        let mut raft = Raft::new(Config::new(2, vec![1, 2, 3]), MemStorage::new()).unwrap();
        let heartbeat = MessageBody::Heartbeat {
            commit: 0,
            read_round: 0,
        };
        raft.step(Message {
            from: 1,
            to: 2,
            term: 1,
            body: heartbeat,
        })
        .unwrap();
        raft.step(Message {
            from: 1,
            to: 2,
            term: 1,
            body: MessageBody::TimeoutNow,
        })
        .unwrap();
        assert_eq!(
            (raft.role, raft.term),
            (Role::Candidate, 2),
            "no pre-vote round"
        );
        let request = raft.outbox.last().unwrap();
        assert!(request.body.is_transfer());

        let mut voter = Raft::new(Config::new(3, vec![1, 2, 3]), MemStorage::new()).unwrap();
        let heartbeat = MessageBody::Heartbeat {
            commit: 0,
            read_round: 0,
        };
        voter
            .step(Message {
                from: 1,
                to: 3,
                term: 1,
                body: heartbeat,
            })
            .unwrap();
        assert!(voter.in_lease());
        voter.step(request.clone()).unwrap();
        let reply = &voter.outbox.last().unwrap().body;
        assert_eq!(reply, &MessageBody::RequestVoteResponse { granted: true });
    }
}
