//! Snapshots and log compaction (paper, section 7), after the scenarios of MIT 6.5840's Raft
//! lab, part 3D. Every node snapshots its state machine every `SNAPSHOT_INTERVAL` applied entries
//! and drops the log the snapshot covers, so a node that falls further behind than that can only
//! catch up through InstallSnapshot.

use raft::Storage;
use raft::sim::{NetworkFaults, SimConfig, Simulation};
use rand::RngExt;

const SNAPSHOT_INTERVAL: u64 = 10;

fn simulation(nodes: usize, seed: u64, faults: NetworkFaults) -> Simulation {
    let mut config = SimConfig::new(nodes, seed);
    config.faults = faults;
    config.snapshot_interval = Some(SNAPSHOT_INTERVAL);
    Simulation::new(config)
}

/// A command no other call returns, drawn from the simulation's seeded generator.
fn fresh(sim: &mut Simulation) -> Vec<u8> {
    let value: u64 = sim.rng().random();
    value.to_le_bytes().to_vec()
}

/// With steady traffic, every node keeps compacting: its log never holds much more than one
/// interval of entries, and its snapshot keeps up.
#[test]
fn logs_stay_short_with_snapshots() {
    let mut sim = simulation(3, 30, NetworkFaults::reliable());
    let mut last = 0;
    for _ in 0..60 {
        let command = fresh(&mut sim);
        last = sim.one(&command, 3, true);
    }
    for id in sim.ids() {
        let storage = sim.storage(id);
        let held = storage.all_entries().len() as u64;
        assert!(
            held <= 2 * SNAPSHOT_INTERVAL,
            "node {id} holds {held} entries"
        );
        let snapshot_index = storage.snapshot().unwrap().index;
        assert!(
            snapshot_index + 2 * SNAPSHOT_INTERVAL >= last,
            "node {id} snapshot at {snapshot_index}"
        );
    }
}

/// How a node is taken away in [`install_snapshots`].
#[derive(Clone, Copy)]
enum Absence {
    Disconnect,
    Crash,
}

/// A node misses more than an interval of entries, which the others compact away; when it returns,
/// only a snapshot can bring it up to date. Usually a follower goes; every third round, the leader.
fn install_snapshots(seed: u64, faults: NetworkFaults, absence: Absence) {
    let mut sim = simulation(3, seed, faults);
    let command = fresh(&mut sim);
    sim.one(&command, 3, true);
    let mut leader = sim.check_one_leader();
    for round in 0..15 {
        let victim = if round % 3 == 1 {
            leader
        } else {
            leader % 3 + 1
        };
        match absence {
            Absence::Disconnect => sim.disconnect(victim),
            Absence::Crash => sim.crash(victim),
        }
        for _ in 0..=SNAPSHOT_INTERVAL {
            let command = fresh(&mut sim);
            sim.one(&command, 2, true);
        }
        match absence {
            Absence::Disconnect => sim.connect(victim),
            Absence::Crash => sim.restart(victim),
        }
        let command = fresh(&mut sim);
        sim.one(&command, 3, true);
        leader = sim.check_one_leader();
    }
    let snapshots = sim.stats().snapshots_delivered;
    assert!(snapshots > 0, "no follower ever needed a snapshot");
}

#[test]
fn install_snapshots_after_disconnect() {
    install_snapshots(31, NetworkFaults::reliable(), Absence::Disconnect);
}

#[test]
fn install_snapshots_after_disconnect_unreliable() {
    install_snapshots(32, NetworkFaults::unreliable(), Absence::Disconnect);
}

#[test]
fn install_snapshots_after_crash() {
    install_snapshots(33, NetworkFaults::reliable(), Absence::Crash);
}

#[test]
fn install_snapshots_after_crash_unreliable() {
    install_snapshots(34, NetworkFaults::unreliable(), Absence::Crash);
}

/// Every node crashes at once, repeatedly: each restarts from its snapshot plus the log after
/// it, and the group carries on where it was.
#[test]
fn all_crash_and_restart_from_snapshots() {
    let mut sim = simulation(3, 35, NetworkFaults::reliable());
    for _ in 0..5 {
        for _ in 0..=SNAPSHOT_INTERVAL {
            let command = fresh(&mut sim);
            sim.one(&command, 3, true);
        }
        let command = fresh(&mut sim);
        let before = sim.one(&command, 3, true);
        for id in sim.ids() {
            sim.restart(id);
        }
        sim.run_ticks(1);
        assert_eq!(
            sim.n_committed(before),
            (3, Some(command)),
            "state lost in the restart"
        );
        let command = fresh(&mut sim);
        let after = sim.one(&command, 3, true);
        assert!(after > before);
    }
}

/// A node restarted twice in a row, with nothing new in between, still comes back with its
/// snapshot (the snapshot is part of what it persisted, not something it rebuilds).
#[test]
fn restart_twice_keeps_the_snapshot() {
    let mut sim = simulation(3, 36, NetworkFaults::reliable());
    for _ in 0..=SNAPSHOT_INTERVAL {
        let command = fresh(&mut sim);
        sim.one(&command, 3, true);
    }
    for _ in 0..2 {
        for id in sim.ids() {
            sim.restart(id);
        }
        for id in sim.ids() {
            assert!(sim.storage(id).snapshot().unwrap().index >= SNAPSHOT_INTERVAL);
        }
    }
    let command = fresh(&mut sim);
    sim.one(&command, 3, true);
}
