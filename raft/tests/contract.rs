//! Why the persistence contract exists (see `raft::node`): an application that sends a `Ready`'s
//! messages before persisting its entries and hard state lets a crash take back a vote or an
//! acknowledgement that other nodes already acted on, and the simulation's checker catches the
//! resulting safety violation within a few hundred seeds. The same runs with the contract kept
//! pass.

use std::panic::{AssertUnwindSafe, catch_unwind};

use raft::sim::{SimConfig, Simulation};
use rand::RngExt;

/// Seeds tried before concluding that breaking the contract went unpunished.
const SEEDS: u64 = 400;
const TICKS: u64 = 300;

/// A 3-node run where nodes crash and restart often, so that some crash lands between a send and
/// the persist behind it.
fn crash_heavy_run(seed: u64, send_before_persist: bool) {
    let mut config = SimConfig::new(3, seed);
    config.send_before_persist = send_before_persist;
    config.max_persist_delay_steps = 6;
    let mut sim = Simulation::new(config);
    for tick in 0..TICKS {
        sim.run_ticks(1);
        if let Some(&(leader, _)) = sim.leaders().first() {
            sim.propose(leader, tick.to_le_bytes().to_vec());
        }
        let id = sim.rng().random_range(1..=3);
        if sim.rng().random_bool(0.15) {
            sim.crash(id);
        } else if !sim.is_running(id) {
            sim.restart(id);
        }
    }
}

/// The failure message of the first seed whose run panics, if any.
fn first_failure(send_before_persist: bool) -> Option<String> {
    (0..SEEDS).find_map(|seed| {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            crash_heavy_run(seed, send_before_persist)
        }));
        let payload = outcome.err()?;
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        Some(message)
    })
}

#[test]
fn sending_before_persisting_breaks_safety() {
    // The expected panics of the broken runs are captured by the test harness, like any output.
    let failure = first_failure(true).expect("no run failed although the contract was broken");
    let safety = [
        "election safety",
        "leader completeness",
        "committed",
        "state machine safety",
    ];
    assert!(
        safety.iter().any(|property| failure.contains(property)),
        "failed, but not on a safety property: {failure}"
    );
}

#[test]
fn the_same_runs_with_the_contract_kept_are_safe() {
    for seed in 0..SEEDS / 4 {
        crash_heavy_run(seed, false);
    }
}
