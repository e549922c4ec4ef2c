//! Membership changes (dissertation, chapter 4; see `raft::membership`): learners that catch up
//! and are promoted, removals (the leader's own included), one change at a time, all on the
//! simulation with its safety checker running after every event.
//!
//! Groups here have five node slots; unless a test says otherwise, nodes 1 to 3 found the group
//! and nodes 4 and 5 start with an empty configuration, waiting to be added.

use raft::sim::{NetworkFaults, SimConfig, Simulation};
use raft::{ConfChangeError, Error, MembershipChange, Role};
use rand::RngExt;

const ELECTION_TIMEOUT_TICKS: u64 = 20;

use MembershipChange::{AddLearner, PromoteLearner, RemoveNode};

fn config(seed: u64) -> SimConfig {
    let mut config = SimConfig::new(5, seed);
    config.raft.voters = vec![1, 2, 3];
    config
}

/// A command no other call returns, drawn from the simulation's seeded generator.
fn fresh(sim: &mut Simulation) -> Vec<u8> {
    let value: u64 = sim.rng().random();
    value.to_le_bytes().to_vec()
}

fn commit_some(sim: &mut Simulation, count: usize, expected: usize) -> u64 {
    let mut last = 0;
    for _ in 0..count {
        let command = fresh(sim);
        last = sim.one(&command, expected, true);
    }
    last
}

/// A new node joins as a learner with an empty log, receives the whole log without voting,
/// and once promoted counts toward the majority.
#[test]
fn a_learner_catches_up_and_is_promoted() {
    let mut sim = Simulation::new(config(60));
    let before = commit_some(&mut sim, 20, 3);
    assert!(sim.applied(4).is_empty(), "node 4 applied before joining");

    sim.change_membership(AddLearner(4));
    let after = commit_some(&mut sim, 5, 4);
    assert_eq!(
        sim.applied(4).len() as u64,
        after,
        "the learner holds the whole log"
    );
    assert!(before < after);
    assert_eq!(sim.status(4).unwrap().role, Role::Follower);
    assert!(sim.conf_state(4).unwrap().is_learner(4));

    sim.change_membership(PromoteLearner(4));
    for id in 1..=4 {
        assert_eq!(sim.conf_state(id).unwrap().voters, vec![1, 2, 3, 4]);
    }
    // Four voters need three: with one founder gone, nothing commits without node 4.
    let leader = sim.check_one_leader();
    let away = [1, 2, 3].into_iter().find(|&id| id != leader).unwrap();
    sim.disconnect(away);
    commit_some(&mut sim, 3, 3);
    assert!(sim.applied(4).len() > sim.applied(away).len());
}

/// Learners are not counted: with two of three voters cut off, two learners acknowledging
/// every entry do not make a majority.
#[test]
fn learners_do_not_count_toward_the_majority() {
    let mut sim = Simulation::new(config(61));
    commit_some(&mut sim, 3, 3);
    sim.change_membership(AddLearner(4));
    sim.change_membership(AddLearner(5));
    commit_some(&mut sim, 3, 5);
    let leader = sim.check_one_leader();
    for id in [1, 2, 3] {
        if id != leader {
            sim.disconnect(id);
        }
    }
    let index = sim
        .propose(leader, b"no majority".to_vec())
        .expect("still leads");
    sim.run_ticks(2 * ELECTION_TIMEOUT_TICKS);
    assert_eq!(
        sim.n_committed(index).0,
        0,
        "committed by a leader and two learners"
    );
    for id in [4, 5] {
        let status = sim.status(id).unwrap();
        assert_ne!(status.role, Role::Leader, "learner {id} took over");
        assert_ne!(status.role, Role::Candidate, "learner {id} campaigned");
    }
}

/// The leader's log is compacted long before the learner joins, so it can only catch up
/// through InstallSnapshot, and the snapshot carries the membership with it.
#[test]
fn a_learner_catches_up_through_a_snapshot() {
    let mut config = config(62);
    config.snapshot_interval = Some(10);
    let mut sim = Simulation::new(config);
    commit_some(&mut sim, 40, 3);
    let snapshots = sim.stats().snapshots_delivered;
    sim.change_membership(AddLearner(4));
    let last = commit_some(&mut sim, 3, 4);
    assert!(
        sim.stats().snapshots_delivered > snapshots,
        "the learner was not sent a snapshot"
    );
    assert_eq!(sim.applied(4).len() as u64, last);
    sim.change_membership(PromoteLearner(4));
    // Restarted from its own snapshot and log, it still knows it is a voter.
    sim.restart(4);
    assert!(sim.conf_state(4).unwrap().is_voter(4));
    commit_some(&mut sim, 3, 4);
}

/// The leader removes itself: it keeps leading until the removal commits, then hands over at
/// once (TimeoutNow), and never leads again; the other two carry on.
#[test]
fn removing_the_leader() {
    let mut sim = Simulation::new(config(63));
    commit_some(&mut sim, 5, 3);
    let old = sim.check_one_leader();
    let started = sim.now_ticks();
    sim.change_membership(RemoveNode(old));
    let new = sim.check_one_leader();
    assert_ne!(new, old);
    assert!(
        sim.now_ticks() - started < ELECTION_TIMEOUT_TICKS,
        "the hand-over waited for an election timeout"
    );
    commit_some(&mut sim, 5, 2);
    sim.run_ticks(2 * ELECTION_TIMEOUT_TICKS);
    let status = sim.status(old).unwrap();
    assert_ne!(status.role, Role::Leader);
    assert!(!sim.conf_state(old).unwrap().is_voter(old));
    assert_eq!(
        sim.check_one_leader(),
        new,
        "the removed node disrupted the group"
    );
}

/// A removed follower that never hears of its removal (cut off before the entry reached it)
/// campaigns when it returns; with pre-vote and check-quorum the group ignores it.
#[test]
fn a_removed_node_that_missed_its_removal_does_not_disrupt() {
    let mut sim = Simulation::new(config(64));
    commit_some(&mut sim, 3, 3);
    let leader = sim.check_one_leader();
    let removed = leader % 3 + 1;
    sim.disconnect(removed);
    sim.change_membership(RemoveNode(removed));
    let term = sim.status(leader).unwrap().term;
    sim.run_ticks(3 * ELECTION_TIMEOUT_TICKS);
    sim.connect(removed);
    sim.run_ticks(3 * ELECTION_TIMEOUT_TICKS);
    assert_eq!(sim.check_one_leader(), leader);
    assert_eq!(
        sim.status(leader).unwrap().term,
        term,
        "an election happened"
    );
    commit_some(&mut sim, 3, 2);
}

/// One change at a time (dissertation, section 4.1): while a change cannot commit, a second
/// one is refused; promotion waits for the learner to hold the committed log.
#[test]
fn one_change_at_a_time_and_no_promotion_before_catching_up() {
    let mut sim = Simulation::new(config(65));
    commit_some(&mut sim, 3, 3);
    let leader = sim.check_one_leader();
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|&id| id != leader).collect();
    for &id in &others {
        sim.disconnect(id);
    }
    let index = sim
        .propose_conf_change(leader, AddLearner(4))
        .expect("the leader takes the first change");
    // The first change is in force on the leader already (rule 1), but not committed.
    assert!(sim.conf_state(leader).unwrap().is_learner(4));
    let refused = sim.propose_conf_change(leader, AddLearner(5));
    assert!(
        matches!(refused, Err(Error::ConfChange(ConfChangeError::Pending { index: i })) if i == index),
        "a second change while the first is uncommitted: {refused:?}"
    );
    for &id in &others {
        sim.connect(id);
    }
    sim.run_ticks(ELECTION_TIMEOUT_TICKS);
    assert!(sim.n_committed(index).0 > 0);

    // Node 4 is down: it cannot catch up, so it cannot be promoted.
    sim.crash(4);
    commit_some(&mut sim, 3, 3);
    let leader = sim.check_one_leader();
    let refused = sim.propose_conf_change(leader, PromoteLearner(4));
    assert!(
        matches!(
            refused,
            Err(Error::ConfChange(ConfChangeError::LearnerBehind {
                id: 4,
                ..
            }))
        ),
        "promoted a learner that is down: {refused:?}"
    );
    sim.restart(4);
    sim.change_membership(PromoteLearner(4));
}

/// Grow from three voters to five and shrink back to three others, one server at a time,
/// while the network loses, duplicates and reorders messages and nodes crash and restart; the
/// checker watches every event.
#[test]
fn reconfiguration_under_faults() {
    for seed in raft::sim::seeds_from_env(8) {
        let mut config = config(seed);
        config.faults = NetworkFaults::unreliable();
        config.snapshot_interval = Some(15);
        let mut sim = Simulation::new(config);
        let plan = [
            AddLearner(4),
            PromoteLearner(4),
            AddLearner(5),
            PromoteLearner(5),
            RemoveNode(1),
            RemoveNode(2),
        ];
        for change in plan {
            // A random node is down or cut off while the change is made (unless it is the node
            // being promoted, which must catch up first).
            let victim = sim.rng().random_range(1..=5);
            let crashed = sim.rng().random_bool(0.5);
            let spared = matches!(change, PromoteLearner(id) if id == victim);
            if !spared && crashed {
                sim.crash(victim);
            } else if !spared {
                sim.disconnect(victim);
            }
            commit_some(&mut sim, 2, 1);
            sim.change_membership(change);
            commit_some(&mut sim, 2, 1);
            if !spared && crashed {
                sim.restart(victim);
            } else if !spared {
                sim.connect(victim);
            }
            commit_some(&mut sim, 2, 3);
        }
        let leader = sim.check_one_leader();
        let conf = sim.conf_state(leader).unwrap();
        assert_eq!(conf.voters, vec![3, 4, 5], "seed {}", sim.seed());
        for id in [1, 2] {
            sim.crash(id);
        }
        commit_some(&mut sim, 3, 3);
        sim.run_ticks(ELECTION_TIMEOUT_TICKS);
        sim.check_all_hold_committed();
    }
}

/// Removing the leader on a lossy, duplicating network with a follower crashed meanwhile, twice
/// over: five founders become three, each removed leader stops leading, and the rest commit.
#[test]
fn removing_the_leader_under_faults() {
    for seed in raft::sim::seeds_from_env(6) {
        let mut config = SimConfig::new(5, seed);
        config.faults = NetworkFaults::unreliable();
        let mut sim = Simulation::new(config);
        commit_some(&mut sim, 3, 5);
        let mut removed = Vec::new();
        for _ in 0..2 {
            let leader = sim.check_one_leader();
            let crashed = sim
                .ids()
                .into_iter()
                .find(|&id| id != leader && !removed.contains(&id))
                .unwrap();
            sim.crash(crashed);
            sim.change_membership(RemoveNode(leader));
            removed.push(leader);
            sim.restart(crashed);
            let members = 5 - removed.len();
            commit_some(&mut sim, 2, members);
            for &gone in &removed {
                let status = sim.status(gone).unwrap();
                assert_ne!(
                    status.role,
                    Role::Leader,
                    "seed {seed}: removed node {gone} leads"
                );
            }
        }
        let leader = sim.check_one_leader();
        assert_eq!(
            sim.conf_state(leader).unwrap().voters.len(),
            3,
            "seed {seed}"
        );
        sim.check_all_hold_committed();
    }
}
