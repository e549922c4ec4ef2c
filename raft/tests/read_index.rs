//! Linearizable reads with ReadIndex (paper, section 8; dissertation, section 6.4). The
//! simulation's checker verifies every confirmed read against the writes committed before it
//! was asked for; these scenarios make sure reads are confirmed when they should be, and only
//! then.

use raft::sim::{SimConfig, Simulation};

const ELECTION_TIMEOUT_TICKS: u64 = 20;

fn command(n: u64) -> Vec<u8> {
    n.to_le_bytes().to_vec()
}

/// Runs until node `id` has confirmed `count` reads, or fails.
fn wait_for_reads(sim: &mut Simulation, id: u64, count: usize) {
    for _ in 0..ELECTION_TIMEOUT_TICKS {
        if sim.read_states(id).len() >= count {
            return;
        }
        sim.run_ticks(1);
    }
    sim.fail(&format!(
        "node {id} confirmed {} of {count} reads",
        sim.read_states(id).len()
    ));
}

/// A read on the leader and one through a follower both come back at an index that covers the
/// last write, and once applied there, the write is visible.
#[test]
fn reads_on_the_leader_and_through_a_follower_see_earlier_writes() {
    let mut sim = Simulation::new(SimConfig::new(3, 40));
    let mut last = 0;
    for n in 1..=5 {
        last = sim.one(&command(n), 3, true);
    }
    let leader = sim.check_one_leader();
    let follower = leader % 3 + 1;
    assert!(sim.read_index(leader, b"on the leader".to_vec()));
    assert!(sim.read_index(follower, b"through a follower".to_vec()));
    wait_for_reads(&mut sim, leader, 1);
    wait_for_reads(&mut sim, follower, 1);
    for id in [leader, follower] {
        let read = &sim.read_states(id)[0];
        assert!(
            read.index >= last,
            "node {id} read at {} before write {last}",
            read.index
        );
        let applied = sim.applied(id);
        assert!(applied.len() as u64 >= read.index);
        assert_eq!(applied[last as usize - 1].data, command(5));
    }
}

/// A leader cut off from the majority cannot confirm a read (it could be serving stale data
/// while a new leader takes writes); the new leader on the majority side can.
#[test]
fn a_partitioned_leader_confirms_no_reads() {
    let mut sim = Simulation::new(SimConfig::new(5, 41));
    sim.one(&command(1), 5, true);
    let old = sim.check_one_leader();
    sim.disconnect(old);
    assert!(sim.read_index(old, b"stale?".to_vec()));
    sim.run_ticks(3 * ELECTION_TIMEOUT_TICKS);
    assert!(
        sim.read_states(old).is_empty(),
        "an isolated leader confirmed a read"
    );

    let new = sim.check_one_leader();
    let index = sim.one(&command(2), 4, true);
    assert!(sim.read_index(new, b"fresh".to_vec()));
    wait_for_reads(&mut sim, new, 1);
    assert!(sim.read_states(new)[0].index >= index);
}

/// A node that knows no leader refuses reads outright rather than holding them.
#[test]
fn a_node_without_a_leader_refuses_reads() {
    let mut sim = Simulation::new(SimConfig::new(3, 42));
    assert!(
        !sim.read_index(1, b"too early".to_vec()),
        "no leader is known at start"
    );
}
