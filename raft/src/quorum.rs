//! Majorities: who has won an election, and which index a majority holds.
//!
//! Any two majorities of the same voter set share at least one member. That single fact carries
//! both safety arguments of Raft: two candidates cannot both win a term (each voter votes once,
//! paper section 5.2), and a committed entry is on at least one voter of every future majority,
//! so the election restriction puts it in every future leader's log (paper, section 5.4).
//! Membership changes keep that fact true across configurations by changing one server at a
//! time (see `membership.rs`): any majority of the old voter set and any majority of the new one
//! still share a member, so one voter set and one majority rule are all this module needs. (Joint
//! consensus, paper section 6, would instead need "a majority of each of two sets" here.)

use std::collections::BTreeMap;

use crate::message::NodeId;

/// The smallest number of voters that is more than half of `voters`.
pub(crate) fn majority(voters: usize) -> usize {
    voters / 2 + 1
}

/// The highest index held by a majority, given every voter's match index: sorted from highest to
/// lowest, the majority-th value is held by that many voters or more.
pub(crate) fn committed_index(mut match_indexes: Vec<u64>) -> u64 {
    match_indexes.sort_unstable_by(|a, b| b.cmp(a));
    match_indexes[majority(match_indexes.len()) - 1]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VoteResult {
    /// Neither a majority of grants nor of refusals yet.
    Pending,
    Won,
    Lost,
}

/// Tallies the answers received so far from `voters`.
pub(crate) fn tally(voters: &[NodeId], votes: &BTreeMap<NodeId, bool>) -> VoteResult {
    let needed = majority(voters.len());
    let granted = voters
        .iter()
        .filter(|id| votes.get(id) == Some(&true))
        .count();
    let refused = voters
        .iter()
        .filter(|id| votes.get(id) == Some(&false))
        .count();
    if granted >= needed {
        VoteResult::Won
    } else if refused >= needed {
        VoteResult::Lost
    } else {
        VoteResult::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_index_is_the_majority_th_highest() {
        assert_eq!(committed_index(vec![5]), 5);
        assert_eq!(committed_index(vec![5, 3, 9]), 5);
        assert_eq!(committed_index(vec![1, 2, 3, 4]), 2);
        assert_eq!(committed_index(vec![7, 7, 1, 1, 2]), 2);
    }

    #[test]
    fn a_tally_is_decided_by_a_majority_either_way() {
        let voters = [1, 2, 3];
        let mut votes = BTreeMap::from([(1, true)]);
        assert_eq!(tally(&voters, &votes), VoteResult::Pending);
        votes.insert(2, false);
        votes.insert(3, false);
        assert_eq!(tally(&voters, &votes), VoteResult::Lost);
        votes.insert(3, true);
        assert_eq!(tally(&voters, &votes), VoteResult::Won);
    }
}
