//! Client-side checks for scenario tests: "is there exactly one leader?", "did this command
//! commit on enough nodes?". They run the simulation while they wait, and fail through
//! [`Simulation::fail`], so every failure names its seed.
//!
//! Waiting is always bounded in ticks; none of these loop forever.

use crate::message::{MembershipChange, NodeId};
use crate::raft::Role;

use super::Simulation;

/// Attempts [`Simulation::check_one_leader`] makes before giving up.
const LEADER_CHECK_ATTEMPTS: u64 = 10;
/// Ticks between two of those attempts.
const LEADER_CHECK_INTERVAL_TICKS: u64 = 5;
/// How long [`Simulation::one`] keeps trying before it fails.
/// Generous: on a lossy network a group that needs every remaining vote (four voters, one down)
/// can take several election rounds.
const ONE_TIMEOUT_TICKS: u64 = 300;
/// How long [`Simulation::one`] waits for one proposal to commit before trying again.
const ONE_ATTEMPT_TICKS: u64 = 20;
/// How long [`Simulation::change_membership`] keeps trying before it fails.
const CHANGE_TIMEOUT_TICKS: u64 = 400;

impl Simulation {
    /// Connected nodes that believe they lead, with their terms.
    pub fn leaders(&self) -> Vec<(NodeId, u64)> {
        self.ids()
            .into_iter()
            .filter(|&id| self.is_connected(id))
            .filter_map(|id| self.status(id).map(|status| (id, status)))
            .filter(|(_, status)| status.role == Role::Leader)
            .map(|(id, status)| (id, status.term))
            .collect()
    }

    /// Waits until the connected nodes have a leader, and returns the leader of the latest term.
    /// Fails if none appears in time. (Two leaders of one term fail the checker before this.)
    pub fn check_one_leader(&mut self) -> NodeId {
        for _ in 0..LEADER_CHECK_ATTEMPTS {
            self.run_ticks(LEADER_CHECK_INTERVAL_TICKS);
            if let Some(&(leader, _)) = self.leaders().iter().max_by_key(|(_, term)| *term) {
                return leader;
            }
        }
        self.fail("expected a leader among the connected nodes, found none")
    }

    /// Fails if any connected node believes it leads.
    pub fn check_no_leader(&self) {
        if let Some((leader, term)) = self.leaders().first() {
            self.fail(&format!(
                "expected no leader, but node {leader} leads term {term}"
            ));
        }
    }

    /// The term all connected nodes agree on; fails if they disagree.
    pub fn check_terms(&self) -> u64 {
        let terms: Vec<u64> = self
            .ids()
            .into_iter()
            .filter(|&id| self.is_connected(id))
            .filter_map(|id| self.status(id))
            .map(|status| status.term)
            .collect();
        if terms.windows(2).any(|pair| pair[0] != pair[1]) {
            self.fail(&format!("connected nodes disagree on the term: {terms:?}"));
        }
        terms.first().copied().unwrap_or(0)
    }

    /// How many running nodes have applied `index`, and the command there. Disagreement is
    /// impossible (the checker would have failed first).
    pub fn n_committed(&self, index: u64) -> (usize, Option<Vec<u8>>) {
        let mut count = 0;
        let mut command = None;
        for id in self.ids() {
            if let Some(entry) = self.applied(id).get((index as usize).wrapping_sub(1)) {
                count += 1;
                command = Some(entry.data.clone());
            }
        }
        (count, command)
    }

    /// Submits `command` until at least `expected` nodes apply it, and returns its index. Tries
    /// each node in turn as leader; with `retry`, proposes again after a failed attempt (the
    /// command may then commit twice, which clients of a real system must tolerate too).
    pub fn one(&mut self, command: &[u8], expected: usize, retry: bool) -> u64 {
        let deadline = self.now_ticks() + ONE_TIMEOUT_TICKS;
        let mut next_candidate = 0;
        while self.now_ticks() < deadline {
            let ids = self.ids();
            let mut proposed = None;
            for _ in 0..ids.len() {
                let id = ids[next_candidate % ids.len()];
                next_candidate += 1;
                if !self.is_connected(id) {
                    continue;
                }
                if let Some(index) = self.propose(id, command.to_vec()) {
                    proposed = Some(index);
                    break;
                }
            }
            let Some(index) = proposed else {
                self.run_ticks(1);
                continue;
            };
            if self.wait_applied(index, command, expected) {
                return index;
            }
            if !retry {
                self.fail(&format!(
                    "command {command:?} at index {index} did not commit on {expected} nodes"
                ));
            }
        }
        self.fail(&format!(
            "command {command:?} not committed on {expected} nodes in time"
        ))
    }

    fn wait_applied(&mut self, index: u64, command: &[u8], expected: usize) -> bool {
        for _ in 0..ONE_ATTEMPT_TICKS {
            self.run_ticks(1);
            let (count, found) = self.n_committed(index);
            if count >= expected && found.as_deref() == Some(command) {
                return true;
            }
            if found.is_some_and(|found| found != command) {
                return false;
            }
        }
        false
    }

    /// Waits up to `ticks` for `expected` nodes to apply `index`; gives up early if some node
    /// moves past `start_term` (the proposal's leader may have been deposed). Returns the command
    /// applied there, if enough nodes did.
    pub fn wait(
        &mut self,
        index: u64,
        expected: usize,
        start_term: u64,
        ticks: u64,
    ) -> Option<Vec<u8>> {
        for _ in 0..ticks {
            let (count, command) = self.n_committed(index);
            if count >= expected {
                return command;
            }
            let later_term = self
                .ids()
                .into_iter()
                .filter_map(|id| self.status(id))
                .any(|s| s.term > start_term);
            if later_term {
                return None;
            }
            self.run_ticks(1);
        }
        None
    }

    /// Submits a membership change to whoever leads until a leader's configuration shows it
    /// with its entry committed, and returns the entry's index. Refusals (a change still
    /// pending, a learner still catching up, no leader) are retried each tick; fails after a
    /// bounded time.
    pub fn change_membership(&mut self, change: MembershipChange) -> u64 {
        let deadline = self.now_ticks() + CHANGE_TIMEOUT_TICKS;
        let mut proposed_at = None;
        while self.now_ticks() < deadline {
            if let Some(index) = proposed_at
                && self.n_committed(index).0 > 0
                && self.change_in_force(change)
            {
                return index;
            }
            let leader = self.leaders().into_iter().max_by_key(|&(_, term)| term);
            let Some(index) = leader.and_then(|(id, _)| self.propose_conf_change(id, change).ok())
            else {
                self.run_ticks(1);
                continue;
            };
            proposed_at = Some(index);
            for _ in 0..ONE_ATTEMPT_TICKS {
                self.run_ticks(1);
                if self.n_committed(index).0 > 0 && self.change_in_force(change) {
                    return index;
                }
            }
        }
        self.fail(&format!("membership change {change:?} not done in time"))
    }

    /// Whether the latest leader's configuration reflects `change`.
    fn change_in_force(&self, change: MembershipChange) -> bool {
        let Some((leader, _)) = self.leaders().into_iter().max_by_key(|&(_, term)| term) else {
            return false;
        };
        let Some(conf) = self.conf_state(leader) else {
            return false;
        };
        match change {
            MembershipChange::AddLearner(id) => conf.is_learner(id),
            MembershipChange::PromoteLearner(id) => conf.is_voter(id),
            MembershipChange::RemoveNode(id) => !conf.is_member(id),
        }
    }
}
