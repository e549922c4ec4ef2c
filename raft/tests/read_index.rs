//! Linearizable reads with ReadIndex (paper, section 8; dissertation, section 6.4). The
//! simulation's checker verifies every confirmed read against the writes committed before it
//! was asked for; these scenarios make sure reads are confirmed when they should be, and only
//! then.

use std::panic::{AssertUnwindSafe, catch_unwind};

use raft::ReadMode;
use raft::sim::{STEPS_PER_TICK, SimConfig, Simulation};

const ELECTION_TIMEOUT_TICKS: u64 = 20;
/// Lease length for the lease-read tests: two ticks short of the minimum election timeout.
const LEASE_TICKS: u32 = 8;

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

fn lease_simulation(nodes: usize, seed: u64) -> Simulation {
    let mut config = SimConfig::new(nodes, seed);
    config.raft.read_mode = ReadMode::Lease {
        lease_ticks: LEASE_TICKS,
    };
    Simulation::new(config)
}

/// Lease reads (dissertation, section 6.4.1): a leader whose lease is fresh answers a read
/// without asking anyone. Cut off right after a heartbeat round, it still confirms a read, which
/// a ReadIndex leader in the same position never does (see the test above).
#[test]
fn a_lease_read_needs_no_round_trip() {
    let mut sim = lease_simulation(3, 43);
    let last = sim.one(&command(1), 3, true);
    sim.run_ticks(2);
    let leader = sim.check_one_leader();
    sim.disconnect(leader);
    assert!(sim.read_index(leader, b"from the lease".to_vec()));
    sim.run_steps(raft::sim::DEFAULT_MAX_PERSIST_DELAY_STEPS + 1);
    let reads = sim.read_states(leader);
    assert_eq!(reads.len(), 1, "the lease read was not answered at once");
    assert!(reads[0].index >= last);
}

/// The lease runs out before anyone else can lead: an isolated leader asked for a read at every
/// step answers from its lease for a while, then stops, and only after its last answer does
/// the majority elect a successor. Meanwhile the successor's writes are checked against every
/// read the old leader confirmed (the checker's linearizability rule).
#[test]
fn a_lease_expires_before_a_successor_is_elected() {
    for seed in raft::sim::seeds_from_env(20) {
        let mut sim = lease_simulation(5, seed);
        sim.one(&command(1), 5, true);
        sim.run_ticks(2);
        let old = sim.check_one_leader();
        sim.disconnect(old);
        let mut last_answer_tick = None;
        let mut successor_tick = None;
        for step in 0..3 * ELECTION_TIMEOUT_TICKS * raft::sim::STEPS_PER_TICK {
            let context = format!("read {step}").into_bytes();
            let answered = sim.read_states(old).len();
            sim.read_index(old, context);
            sim.run_steps(1);
            if sim.read_states(old).len() > answered {
                last_answer_tick = Some(sim.now_ticks());
            }
            if successor_tick.is_none() && sim.leaders().iter().any(|&(id, _)| id != old) {
                successor_tick = Some(sim.now_ticks());
                let successor = sim.check_one_leader();
                sim.propose(successor, command(2));
            }
        }
        let last_answer = last_answer_tick.expect("the lease answered no read");
        let successor = successor_tick.expect("no successor was elected");
        assert!(
            last_answer < successor,
            "seed {seed}: lease read at tick {last_answer}, successor at tick {successor}"
        );
        sim.one(&command(3), 4, true);
    }
}

/// A follower that restarts forgets which leader it followed, and so whose lease it is keeping.
/// Here a leader's lease rests on two followers' answers; the leader is then cut off, both
/// followers restart, and a third node campaigns at once. If the restarted pair voted for it,
/// a new leader would commit while the old one still answers reads from its lease: stale reads,
/// which the checker would report. With lease reads on, a starting node refuses votes for its
/// first election timeout, so the old lease runs out first.
#[test]
fn followers_that_restart_do_not_elect_a_successor_inside_the_lease() {
    for seed in raft::sim::seeds_from_env(10) {
        let mut sim = lease_simulation(5, seed);
        sim.one(&command(1), 5, true);
        let old = sim.check_one_leader();
        let [a, b, c, d] = [1, 2, 3, 4].map(|k| (old + k - 1) % 5 + 1);
        // c and d lose the leader for good; old keeps its majority (and lease) through a and b.
        sim.cut(old, c);
        sim.cut(old, d);
        sim.run_ticks(ELECTION_TIMEOUT_TICKS + 5);
        assert_eq!(sim.check_one_leader(), old, "seed {seed}");
        sim.disconnect(old);
        sim.restart(a);
        sim.restart(b);
        sim.campaign(c);
        let mut lease_reads = 0;
        let mut successor_at = None;
        for step in 0..2 * ELECTION_TIMEOUT_TICKS * raft::sim::STEPS_PER_TICK {
            let answered = sim.read_states(old).len();
            sim.read_index(old, format!("read {step}").into_bytes());
            sim.run_steps(1);
            lease_reads += sim.read_states(old).len() - answered;
            if successor_at.is_none()
                && let Some(&(id, _)) = sim.leaders().iter().find(|&&(id, _)| id != old)
            {
                successor_at = Some(sim.now_ticks());
                sim.propose(id, command(2));
            }
        }
        assert!(
            lease_reads > 0,
            "seed {seed}: the cut-off leader answered no read from its lease"
        );
        assert!(successor_at.is_some(), "seed {seed}: no successor");
    }
}

/// The cut-off-leader scenario of `a_lease_expires_before_a_successor_is_elected`, with the old
/// leader's clock ticking every `leader_period` steps (the others tick every
/// `STEPS_PER_TICK`, 10): reads at the old leader every step, writes at its successor once there
/// is one. Returns the checker's complaint, if it had one.
fn cut_off_leader_with_clock(seed: u64, leader_period: u64) -> Option<String> {
    let run = || {
        let mut sim = lease_simulation(5, seed);
        sim.one(&command(1), 5, true);
        let old = sim.check_one_leader();
        sim.set_clock_period(old, leader_period);
        sim.run_ticks(3);
        sim.disconnect(old);
        let mut successor = None;
        for step in 0..4 * ELECTION_TIMEOUT_TICKS * STEPS_PER_TICK {
            sim.read_index(old, format!("read {step}").into_bytes());
            sim.run_steps(1);
            if successor.is_none() {
                successor = sim
                    .leaders()
                    .into_iter()
                    .map(|(id, _)| id)
                    .find(|&id| id != old);
            }
            if let Some(id) = successor {
                sim.propose(id, command(1000 + step));
            }
        }
    };
    let payload = catch_unwind(AssertUnwindSafe(run)).err()?;
    Some(
        payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default(),
    )
}

/// The clock assumption, inside its margin: a leader whose clock runs 10% slow holds a lease of
/// 8 of its ticks (88 steps), still shorter than the 9 ticks (90 steps) a follower waits at the
/// least before it votes again. Every read stays linearizable.
#[test]
fn a_lease_is_safe_while_clock_drift_stays_inside_its_margin() {
    for seed in raft::sim::seeds_from_env(10) {
        if let Some(complaint) = cut_off_leader_with_clock(seed, 11) {
            panic!("seed {seed}: {complaint}");
        }
    }
}

/// The clock assumption broken: a leader whose clock runs three times slow believes in its
/// lease long after the others have elected a successor and moved on, and answers stale reads.
/// The checker catches it (which is why ReadIndex, needing no clock, is the default).
#[test]
fn a_lease_on_a_clock_slower_than_its_margin_serves_stale_reads() {
    let complaints: Vec<String> = raft::sim::seeds_from_env(10)
        .into_iter()
        .filter_map(|seed| cut_off_leader_with_clock(seed, 3 * STEPS_PER_TICK))
        .collect();
    assert!(
        !complaints.is_empty(),
        "no stale read although the lease outlived its margin"
    );
    for complaint in &complaints {
        assert!(complaint.contains("linearizability"), "{complaint}");
    }
}
