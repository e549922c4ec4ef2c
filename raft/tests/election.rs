//! Leader election, after the scenarios of MIT 6.5840's Raft lab, part 3A, plus the disruption
//! tests for pre-vote and check-quorum. Time is in ticks (think 100 ms); the default election
//! timeout is 10 to 20 ticks.

use raft::sim::{SimConfig, Simulation};

const ELECTION_TIMEOUT_TICKS: u64 = 20;

fn simulation(nodes: usize, seed: u64) -> Simulation {
    Simulation::new(SimConfig::new(nodes, seed))
}

/// A leader emerges, every node agrees on its term, and with no failures the term stays put.
#[test]
fn initial_election() {
    let mut sim = simulation(3, 1);
    sim.check_one_leader();
    sim.run_ticks(5);
    let term = sim.check_terms();
    assert!(term >= 1, "term is {term} after an election");
    sim.run_ticks(2 * ELECTION_TIMEOUT_TICKS);
    assert_eq!(sim.check_terms(), term, "the term changed with no failures");
    sim.check_one_leader();
}

/// Losing the leader brings a new one; the old one rejoining does not unseat it; without a
/// majority nobody leads; with it back, someone does.
#[test]
fn re_election() {
    let mut sim = simulation(3, 2);
    let first = sim.check_one_leader();
    sim.disconnect(first);
    let second = sim.check_one_leader();
    assert_ne!(first, second);

    sim.connect(first);
    let leader = sim.check_one_leader();

    let a = leader % 3 + 1;
    let b = a % 3 + 1;
    sim.disconnect(leader);
    sim.disconnect(a);
    sim.run_ticks(2 * ELECTION_TIMEOUT_TICKS);
    sim.check_no_leader();

    sim.connect(a);
    sim.check_one_leader();
    sim.connect(leader);
    sim.check_one_leader();
    assert!(sim.is_connected(b));
}

/// Seven nodes, three of them cut off at random, ten times over: a leader is always found.
#[test]
fn many_elections() {
    let mut sim = simulation(7, 3);
    sim.check_one_leader();
    for _ in 0..10 {
        let ids = sim.ids();
        let mut cut = Vec::new();
        while cut.len() < 3 {
            let id = ids[rand::RngExt::random_range(sim.rng(), 0..ids.len())];
            if !cut.contains(&id) {
                cut.push(id);
            }
        }
        for &id in &cut {
            sim.disconnect(id);
        }
        sim.check_one_leader();
        for &id in &cut {
            sim.connect(id);
        }
    }
    sim.check_one_leader();
}

/// Runs a follower through a flapping partition: cut off long enough to time out several times,
/// then back, over and over. Returns the (leader, term) seen at the start and after each return.
fn flap_a_follower(config: SimConfig) -> Vec<(u64, u64)> {
    let mut sim = Simulation::new(config);
    let leader = sim.check_one_leader();
    sim.run_ticks(5);
    let follower = leader % 5 + 1;
    let term_of = |sim: &Simulation, leader| sim.status(leader).expect("running").term;
    let mut seen = vec![(leader, term_of(&sim, leader))];
    for round in 0..8 {
        sim.disconnect(follower);
        sim.run_ticks(2 * ELECTION_TIMEOUT_TICKS + 7 * round);
        sim.connect(follower);
        sim.run_ticks(ELECTION_TIMEOUT_TICKS);
        let leader = sim.check_one_leader();
        seen.push((leader, term_of(&sim, leader)));
    }
    seen
}

/// With pre-vote and check-quorum (the defaults), a node that keeps dropping off and coming back
/// never deposes the stable leader: while cut off it cannot win a pre-vote, so its term does not
/// grow, and on its return the others, who hear from their leader, ignore it.
#[test]
fn a_flapping_follower_does_not_disrupt_a_stable_leader() {
    let seen = flap_a_follower(SimConfig::new(5, 4));
    assert!(
        seen.windows(2).all(|pair| pair[0] == pair[1]),
        "leadership changed: {seen:?}"
    );
}

/// The contrast: without pre-vote, the same node returns with an inflated term every time and
/// forces an election.
#[test]
fn without_pre_vote_a_flapping_follower_forces_elections() {
    let mut config = SimConfig::new(5, 4);
    config.raft.pre_vote = false;
    let seen = flap_a_follower(config);
    let terms: Vec<u64> = seen.iter().map(|&(_, term)| term).collect();
    assert!(
        terms.windows(2).any(|pair| pair[1] > pair[0]),
        "the term never moved: {seen:?}"
    );
}

/// Check-quorum: a leader cut off from the majority steps down within an election timeout or
/// two, instead of believing it leads forever.
#[test]
fn an_isolated_leader_steps_down() {
    let mut sim = simulation(3, 5);
    let leader = sim.check_one_leader();
    sim.disconnect(leader);
    sim.run_ticks(2 * ELECTION_TIMEOUT_TICKS);
    let status = sim.status(leader).unwrap();
    assert_ne!(status.role, raft::Role::Leader);
}

/// Splits the five nodes into the leader plus one follower, and the other three, `rounds` times,
/// healing in between. Returns, per round, whether the old leader still believed it led when
/// the partition had lasted two election timeouts.
fn flap_the_leader(config: SimConfig, rounds: u64) -> Vec<bool> {
    let mut sim = Simulation::new(config);
    let mut stale_leaders = Vec::new();
    let mut next_command = 0u64;
    for round in 0..rounds {
        let leader = sim.check_one_leader();
        let buddy = leader % 5 + 1;
        let majority: Vec<u64> = sim
            .ids()
            .into_iter()
            .filter(|&id| id != leader && id != buddy)
            .collect();
        for &id in &majority {
            sim.cut(leader, id);
            sim.cut(buddy, id);
        }
        sim.run_ticks(2 * ELECTION_TIMEOUT_TICKS + 3 * round);
        let role = sim.status(leader).expect("running").role;
        stale_leaders.push(role == raft::Role::Leader);
        // The majority side elects its own leader and commits.
        next_command += 1;
        sim.one(&next_command.to_le_bytes(), 3, true);
        sim.heal_all();
        next_command += 1;
        sim.one(&next_command.to_le_bytes(), 5, true);
    }
    stale_leaders
}

/// Check-quorum under a flapping partition: every time the leader is cut off with a minority, it
/// steps down within two election timeouts instead of leading a side that can commit nothing,
/// and every heal brings back one leader that all five follow.
#[test]
fn check_quorum_deposes_a_leader_cut_off_by_a_flapping_partition() {
    let stale = flap_the_leader(SimConfig::new(5, 6), 6);
    assert!(
        stale.iter().all(|&s| !s),
        "a cut-off leader kept leading: {stale:?}"
    );
}

/// The contrast: without check-quorum the cut-off leader goes on believing it leads (and would
/// accept writes it can never commit) until it hears of the new term.
#[test]
fn without_check_quorum_a_cut_off_leader_keeps_leading() {
    let mut config = SimConfig::new(5, 6);
    config.raft.check_quorum = false;
    let stale = flap_the_leader(config, 6);
    assert!(
        stale.iter().all(|&s| s),
        "a cut-off leader stepped down: {stale:?}"
    );
}
