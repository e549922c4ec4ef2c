//! Leadership transfer (dissertation, section 3.10): the leader hands over to a chosen node.

use raft::sim::{SimConfig, Simulation};

const ELECTION_TIMEOUT_TICKS: u64 = 20;

fn command(n: u64) -> Vec<u8> {
    n.to_le_bytes().to_vec()
}

/// Runs until `id` leads, or fails after an election timeout.
fn wait_until_leader(sim: &mut Simulation, id: u64) {
    for _ in 0..ELECTION_TIMEOUT_TICKS {
        if sim.leaders().iter().any(|&(leader, _)| leader == id) {
            return;
        }
        sim.run_ticks(1);
    }
    sim.fail(&format!("node {id} did not take over"));
}

/// The chosen follower takes over at once, in the next term, and the group keeps committing.
#[test]
fn a_follower_takes_over_when_asked() {
    let mut sim = Simulation::new(SimConfig::new(3, 50));
    sim.one(&command(1), 3, true);
    let old = sim.check_one_leader();
    let term = sim.status(old).unwrap().term;
    let successor = old % 3 + 1;
    assert!(sim.transfer_leadership(old, successor));
    wait_until_leader(&mut sim, successor);
    assert_eq!(sim.status(successor).unwrap().term, term + 1);
    sim.one(&command(2), 3, true);
}

/// A successor that missed entries is caught up first, then takes over.
#[test]
fn a_lagging_successor_is_caught_up_first() {
    let mut sim = Simulation::new(SimConfig::new(3, 51));
    sim.one(&command(1), 3, true);
    let old = sim.check_one_leader();
    let successor = old % 3 + 1;
    sim.disconnect(successor);
    for n in 2..=21 {
        sim.one(&command(n), 2, true);
    }
    sim.connect(successor);
    assert!(sim.transfer_leadership(old, successor));
    wait_until_leader(&mut sim, successor);
    let index = sim.one(&command(22), 3, true);
    assert_eq!(sim.n_committed(index).0, 3);
}

/// While the hand-over runs the leader refuses writes; if the successor never takes over, the
/// leader gives up after an election timeout and takes writes again.
#[test]
fn a_transfer_to_a_dead_node_is_abandoned() {
    let mut sim = Simulation::new(SimConfig::new(3, 52));
    sim.one(&command(1), 3, true);
    let leader = sim.check_one_leader();
    let successor = leader % 3 + 1;
    sim.crash(successor);
    assert!(sim.transfer_leadership(leader, successor));
    assert_eq!(
        sim.propose(leader, command(2)),
        None,
        "writes refused during the transfer"
    );
    sim.run_ticks(ELECTION_TIMEOUT_TICKS);
    assert_eq!(sim.leaders().first().map(|&(id, _)| id), Some(leader));
    assert!(
        sim.propose(leader, command(3)).is_some(),
        "writes accepted again"
    );
}
