//! Crashes and restarts from persisted state, after the scenarios of MIT 6.5840's Raft lab,
//! part 3C: persistence, Figure 8 (reliable and unreliable), unreliable agreement, and churn.
//!
//! A crash loses everything a node had not yet persisted (see `raft::sim`); a restarted node
//! starts from its `MemStorage` with an empty state machine.

use raft::sim::{NetworkFaults, SimConfig, Simulation};
use rand::RngExt;

const ELECTION_TIMEOUT_TICKS: u64 = 20;

fn simulation(nodes: usize, seed: u64) -> Simulation {
    Simulation::new(SimConfig::new(nodes, seed))
}

fn command(n: u64) -> Vec<u8> {
    n.to_le_bytes().to_vec()
}

/// `id` plus `k`, wrapping around the group `1..=n`.
fn after(id: u64, k: u64, n: u64) -> u64 {
    (id - 1 + k) % n + 1
}

/// Waits for `index` to be applied on `expected` nodes, whatever happens to terms meanwhile.
fn wait_everywhere(sim: &mut Simulation, index: u64, expected: usize) {
    if sim
        .wait(index, expected, u64::MAX, 5 * ELECTION_TIMEOUT_TICKS)
        .is_none()
    {
        sim.fail(&format!("index {index} not applied on {expected} nodes"));
    }
}

/// Whole-group restarts, a restarted leader, a follower down while the others commit: what was
/// committed stays committed and everyone catches up.
#[test]
fn persist_basic() {
    let mut sim = simulation(3, 20);
    sim.one(&command(11), 3, true);
    for id in sim.ids() {
        sim.restart(id);
    }
    sim.one(&command(12), 3, true);

    let leader = sim.check_one_leader();
    sim.restart(leader);
    sim.one(&command(13), 3, true);

    let leader = sim.check_one_leader();
    sim.crash(leader);
    let index = sim.one(&command(14), 2, true);
    sim.restart(leader);
    wait_everywhere(&mut sim, index, 3);

    let follower = after(sim.check_one_leader(), 1, 3);
    sim.crash(follower);
    sim.one(&command(15), 2, true);
    sim.restart(follower);
    sim.one(&command(16), 3, true);
}

/// Repeatedly crash a majority in waves while restarting the others, so that each commit must
/// have been persisted by the nodes that acknowledged it.
#[test]
fn persist_more() {
    let mut sim = simulation(5, 21);
    let mut n = 0;
    let mut next = || {
        n += 1;
        command(10 + n)
    };
    for _ in 0..5 {
        sim.one(&next(), 5, true);
        let leader = sim.check_one_leader();
        sim.crash(after(leader, 1, 5));
        sim.crash(after(leader, 2, 5));
        sim.one(&next(), 3, true);

        sim.crash(leader);
        sim.crash(after(leader, 3, 5));
        sim.crash(after(leader, 4, 5));
        sim.restart(after(leader, 1, 5));
        sim.restart(after(leader, 2, 5));
        sim.run_ticks(ELECTION_TIMEOUT_TICKS);
        sim.restart(after(leader, 3, 5));
        sim.one(&next(), 3, true);

        sim.restart(after(leader, 4, 5));
        sim.restart(leader);
    }
    sim.one(&command(1000), 5, true);
}

/// A partitioned follower, then the leader and the other follower crash; the partitioned one and
/// the restarted leader must still agree on what was committed.
#[test]
fn persist_partitioned_leader_and_follower_crash() {
    let mut sim = simulation(3, 22);
    sim.one(&command(101), 3, true);
    let leader = sim.check_one_leader();
    sim.disconnect(after(leader, 2, 3));
    sim.one(&command(102), 2, true);
    sim.crash(leader);
    sim.crash(after(leader, 1, 3));
    sim.connect(after(leader, 2, 3));
    sim.restart(leader);
    sim.one(&command(103), 2, true);
    sim.restart(after(leader, 1, 3));
    sim.one(&command(104), 3, true);
}

/// The situation of the paper's Figure 8, provoked over and over: leaders crash soon after
/// proposing, so entries of old terms sit on a majority without being committed, and a later
/// leader may overwrite them. The checker fails the run if a leader ever counted such an entry
/// as committed and it was then lost.
///
/// One entry per AppendEntries: otherwise a new leader's no-op travels in the same message as
/// the old entries before it, and the old entries never reach a majority on their own.
#[test]
fn figure_8() {
    let mut config = SimConfig::new(5, 23);
    config.raft.max_size_per_msg = 0;
    let mut sim = Simulation::new(config);
    let c: u64 = sim.rng().random();
    sim.one(&command(c), 1, true);
    let mut up = 5;
    for iteration in 0..600 {
        let leader = sim
            .ids()
            .into_iter()
            .find(|&id| sim.propose(id, command(iteration)).is_some());
        short_or_long_pause(&mut sim);
        if let Some(leader) = leader {
            sim.crash(leader);
            up -= 1;
        }
        if up < 3 {
            let id = sim.rng().random_range(1..=5);
            if !sim.is_running(id) {
                sim.restart(id);
                up += 1;
            }
        }
    }
    for id in sim.ids() {
        if !sim.is_running(id) {
            sim.restart(id);
        }
    }
    let c: u64 = sim.rng().random();
    sim.one(&command(c), 5, true);
}

/// Mostly a short pause (under a tick), sometimes a long one (up to two election timeouts),
/// in the proportions the lab uses relative to its election timeout.
fn short_or_long_pause(sim: &mut Simulation) {
    let steps = if sim.rng().random_bool(0.1) {
        sim.rng().random_range(0..=400)
    } else {
        sim.rng().random_range(0..=8)
    };
    sim.run_steps(steps);
}

/// Figure 8 again on a network that loses, duplicates and badly reorders messages, with
/// partitions instead of crashes.
#[test]
fn figure_8_unreliable() {
    let mut config = SimConfig::new(5, 24);
    config.raft.max_size_per_msg = 0;
    config.faults = NetworkFaults::unreliable();
    let mut sim = Simulation::new(config);
    let c: u64 = sim.rng().random();
    sim.one(&command(c), 1, true);
    let mut up = 5;
    for iteration in 0..600 {
        if iteration == 120 {
            sim.set_faults(NetworkFaults::unreliable_with_long_reordering());
        }
        let mut leader = None;
        for id in sim.ids() {
            let c: u64 = sim.rng().random();
            if sim.propose(id, command(c)).is_some() && sim.is_connected(id) {
                leader = Some(id);
            }
        }
        short_or_long_pause(&mut sim);
        if let Some(leader) = leader.filter(|_| sim.rng().random_bool(0.5)) {
            sim.disconnect(leader);
            up -= 1;
        }
        if up < 3 {
            let id = sim.rng().random_range(1..=5);
            if !sim.is_connected(id) {
                sim.connect(id);
                up += 1;
            }
        }
    }
    sim.heal_all();
    sim.set_faults(NetworkFaults::reliable());
    let c: u64 = sim.rng().random();
    sim.one(&command(c), 5, true);
}

/// Agreement over an unreliable network: bursts of commands, each eventually committed.
#[test]
fn unreliable_agreement() {
    let mut config = SimConfig::new(5, 25);
    config.faults = NetworkFaults::unreliable();
    let mut sim = Simulation::new(config);
    for iteration in 1..50 {
        if let Some(&(leader, _)) = sim.leaders().first() {
            for j in 0..4 {
                sim.propose(leader, command(100 * iteration + j));
            }
        }
        sim.one(&command(iteration), 1, true);
    }
    sim.set_faults(NetworkFaults::reliable());
    sim.one(&command(100), 5, true);
}

/// Clients keep proposing while nodes crash, restart, drop off and return. A client that saw its
/// command applied (by any node) must find it, at the same index, on every node at the end.
fn churn(seed: u64, faults: NetworkFaults) {
    let mut config = SimConfig::new(5, seed);
    config.faults = faults;
    let mut sim = Simulation::new(config);
    let mut waiting: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut acknowledged: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut next = 0u64;
    for tick in 0..300u64 {
        // Three clients, each sending to the node it believes leads, as redirected clients do.
        for _ in 0..3 {
            next += 1;
            let id = match sim.leaders().first() {
                Some(&(leader, _)) => leader,
                None => sim.rng().random_range(1..=5),
            };
            if let Some(index) = sim.propose(id, command(next)) {
                waiting.push((index, command(next)));
            }
        }
        if tick % 7 == 0 {
            churn_step(&mut sim);
        }
        sim.run_ticks(1);
        let (seen, still_waiting) = waiting.into_iter().partition(|(index, command)| {
            sim.n_committed(*index).1.as_deref() == Some(&command[..])
        });
        waiting = still_waiting;
        acknowledged.extend::<Vec<_>>(seen);
    }
    sim.heal_all();
    for id in sim.ids() {
        if !sim.is_running(id) {
            sim.restart(id);
        }
    }
    sim.set_faults(NetworkFaults::reliable());
    sim.one(b"last", 5, true);
    for (index, command) in &acknowledged {
        let found = sim.n_committed(*index);
        assert_eq!(
            found,
            (5, Some(command.clone())),
            "acknowledged command at {index} lost"
        );
    }
    assert!(
        !acknowledged.is_empty(),
        "no client command was ever acknowledged"
    );
}

fn churn_step(sim: &mut Simulation) {
    let id = sim.rng().random_range(1..=5);
    if sim.rng().random_bool(0.2) {
        sim.disconnect(id);
    }
    let id = sim.rng().random_range(1..=5);
    if sim.rng().random_bool(0.5) {
        sim.connect(id);
    }
    let id = sim.rng().random_range(1..=5);
    if sim.rng().random_bool(0.2) {
        sim.crash(id);
    }
    let id = sim.rng().random_range(1..=5);
    if sim.rng().random_bool(0.5) && !sim.is_running(id) {
        sim.restart(id);
    }
}

#[test]
fn reliable_churn() {
    churn(26, NetworkFaults::reliable());
}

#[test]
fn unreliable_churn() {
    churn(27, NetworkFaults::unreliable());
}
