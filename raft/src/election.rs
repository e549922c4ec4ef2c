//! Leader election (paper, section 5.2) with the election restriction (section 5.4.1) and the
//! pre-vote round (dissertation, section 9.6).
//!
//! ```text
//!   Follower --timeout--> PreCandidate --majority of pre-votes--> Candidate --majority--> Leader
//!      ^                     |  (term unchanged)                    (term + 1,      |
//!      |                     | majority refuses                      votes for      |
//!      +---------------------+-------- higher term / a leader's message -----------+
//! ```
//!
//! With `pre_vote` off, a timeout goes straight to Candidate.

use crate::error::Result;
use crate::message::{MessageBody, NodeId, VoteRequest};
use crate::quorum::{VoteResult, tally};
use crate::raft::{Campaign, Raft, Role, VoteRound};
use crate::storage::Storage;

impl<S: Storage> Raft<S> {
    /// Starts a round of an election and asks every other voter. A node that is not a voter in
    /// its own configuration (a learner, or a removed node) does not campaign.
    pub(crate) fn campaign(&mut self, campaign: Campaign) -> Result<()> {
        if !self.is_voter() {
            return Ok(());
        }
        let (round, term) = match campaign {
            Campaign::PreVote => {
                self.become_pre_candidate();
                (VoteRound::Pre, self.term + 1)
            }
            Campaign::Election | Campaign::Transfer => {
                self.become_candidate();
                (VoteRound::Real, self.term)
            }
        };
        // A group of one has already won.
        if tally(self.voters(), &self.votes) == VoteResult::Won {
            return self.on_election_won(round);
        }
        let request = VoteRequest {
            last_log_index: self.log.last_index()?,
            last_log_term: self.log.last_term()?,
            leadership_transfer: campaign == Campaign::Transfer,
        };
        for peer in self.peers() {
            let body = match round {
                VoteRound::Pre => MessageBody::PreVote(request),
                VoteRound::Real => MessageBody::RequestVote(request),
            };
            self.send_with_term(peer, term, body);
        }
        Ok(())
    }

    fn on_election_won(&mut self, round: VoteRound) -> Result<()> {
        match round {
            VoteRound::Pre => self.campaign(Campaign::Election),
            VoteRound::Real => self.become_leader(),
        }
    }

    /// Grants a vote at most once per term, and only to a candidate whose log is at least as up
    /// to date as ours (paper, section 5.4.1): a committed entry is on a majority, so a candidate
    /// lacking it cannot gather a majority, and every leader holds every committed entry.
    pub(crate) fn handle_vote_request(
        &mut self,
        from: NodeId,
        term: u64,
        request: VoteRequest,
        round: VoteRound,
    ) -> Result<()> {
        let free_to_vote = self.vote == Some(from)
            || (self.vote.is_none() && self.leader.is_none())
            || (round == VoteRound::Pre && term > self.term);
        let up_to_date = self
            .log
            .is_up_to_date(request.last_log_index, request.last_log_term)?;
        let granted = free_to_vote && up_to_date;
        match round {
            // A granted pre-vote echoes the term asked about, a refusal teaches ours.
            VoteRound::Pre => {
                let reply_term = if granted { term } else { self.term };
                self.send_with_term(from, reply_term, MessageBody::PreVoteResponse { granted });
            }
            VoteRound::Real => {
                if granted {
                    self.vote = Some(from);
                    // Granting a vote counts as hearing from a would-be leader (paper, Figure 2,
                    // Followers), so we do not start a rival election straight away.
                    self.election_elapsed = 0;
                }
                self.send(from, MessageBody::RequestVoteResponse { granted });
            }
        }
        Ok(())
    }

    pub(crate) fn handle_vote_response(
        &mut self,
        from: NodeId,
        granted: bool,
        round: VoteRound,
    ) -> Result<()> {
        let expected_role = match round {
            VoteRound::Pre => Role::PreCandidate,
            VoteRound::Real => Role::Candidate,
        };
        if self.role != expected_role {
            return Ok(());
        }
        self.votes.insert(from, granted);
        match tally(self.voters(), &self.votes) {
            VoteResult::Won => self.on_election_won(round),
            VoteResult::Lost => {
                self.become_follower(self.term, None);
                Ok(())
            }
            VoteResult::Pending => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::message::{Message, MessageBody, VoteRequest};
    use crate::raft::{Raft, Role};
    use crate::storage::MemStorage;

    fn node(id: u64, pre_vote: bool) -> Raft<MemStorage> {
        let config = Config {
            pre_vote,
            ..Config::new(id, vec![1, 2, 3])
        };
        Raft::new(config, MemStorage::new()).unwrap()
    }

    fn elapse_election_timeout(raft: &mut Raft<MemStorage>) {
        for _ in 0..2 * raft.config.election_tick {
            raft.tick().unwrap();
        }
    }

    #[test]
    fn a_timed_out_follower_pre_votes_without_changing_its_term() {
        let mut raft = node(1, true);
        elapse_election_timeout(&mut raft);
        assert_eq!(raft.role, Role::PreCandidate);
        assert_eq!(raft.term, 0);
        let requests: Vec<_> = raft.outbox.iter().map(|m| (m.to, m.term)).collect();
        assert_eq!(requests, vec![(2, 1), (3, 1)]);
    }

    #[test]
    fn one_granted_vote_of_three_wins_and_the_leader_appends_a_no_op() {
        let mut raft = node(1, false);
        elapse_election_timeout(&mut raft);
        assert_eq!((raft.role, raft.term), (Role::Candidate, 1));
        let reply = Message {
            from: 2,
            to: 1,
            term: 1,
            body: MessageBody::RequestVoteResponse { granted: true },
        };
        raft.step(reply).unwrap();
        assert_eq!(raft.role, Role::Leader);
        assert_eq!(raft.log.last_index().unwrap(), 1);
        assert_eq!(raft.log.term(1).unwrap(), 1);
    }

    #[test]
    fn a_vote_is_granted_once_per_term() {
        let mut raft = node(1, false);
        let ask = |from| Message {
            from,
            to: 1,
            term: 1,
            body: MessageBody::RequestVote(VoteRequest {
                last_log_index: 0,
                last_log_term: 0,
                leadership_transfer: false,
            }),
        };
        raft.step(ask(2)).unwrap();
        raft.step(ask(3)).unwrap();
        raft.step(ask(2)).unwrap();
        let grants: Vec<_> = raft
            .outbox
            .iter()
            .map(|m| {
                (
                    m.to,
                    m.body == MessageBody::RequestVoteResponse { granted: true },
                )
            })
            .collect();
        assert_eq!(grants, vec![(2, true), (3, false), (2, true)]);
    }
}
