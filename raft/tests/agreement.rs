//! Log replication and commitment, after the scenarios of MIT 6.5840's Raft lab, part 3B.
//!
//! One difference from the lab: each new leader appends a no-op (paper, section 8), so commands
//! do not start at index 1 and a new leader shifts later indexes by one.

use raft::sim::{NetworkFaults, SimConfig, Simulation};
use rand::RngExt;

const ELECTION_TIMEOUT_TICKS: u64 = 20;

fn simulation(nodes: usize, seed: u64) -> Simulation {
    Simulation::new(SimConfig::new(nodes, seed))
}

fn in_order_simulation(nodes: usize, seed: u64) -> Simulation {
    let mut config = SimConfig::new(nodes, seed);
    config.faults = NetworkFaults::in_order();
    Simulation::new(config)
}

fn command(n: u64) -> Vec<u8> {
    n.to_le_bytes().to_vec()
}

/// Nothing commits before it is proposed; each command then commits on every node, at the next
/// index.
#[test]
fn basic_agreement() {
    let mut sim = simulation(3, 10);
    sim.check_one_leader();
    let mut last = 0;
    for n in 1..=3 {
        let (count, _) = sim.n_committed(last + 2);
        assert_eq!(count, 0, "committed before it was proposed");
        let index = sim.one(&command(100 + n), 3, false);
        assert!(index > last, "index {index} after {last}");
        if last > 0 {
            assert_eq!(index, last + 1);
        }
        last = index;
    }
}

/// Each command's bytes travel to each follower once: no resending of whole logs, no duplicate
/// sends. (On an in-order network: see [`NetworkFaults::in_order`] for why.)
#[test]
fn bytes_sent_are_bounded_by_the_commands() {
    let mut sim = in_order_simulation(3, 11);
    sim.one(&command(99), 3, false);
    let before = sim.stats().payload_bytes_sent;
    let mut sent = 0;
    for _ in 0..10 {
        let mut payload = vec![0u8; 5000];
        sim.rng().fill(&mut payload[..]);
        sent += payload.len() as u64;
        sim.one(&payload, 3, false);
    }
    let traffic = sim.stats().payload_bytes_sent - before;
    let followers = 2;
    assert!(
        traffic <= sent * followers,
        "{traffic} bytes sent for {sent} bytes of commands"
    );
}

/// A group that loses a follower keeps committing; one that loses both followers cannot.
#[test]
fn follower_failure() {
    let mut sim = simulation(3, 12);
    sim.one(&command(101), 3, false);
    let leader = sim.check_one_leader();
    sim.disconnect(leader % 3 + 1);
    sim.one(&command(102), 2, false);
    sim.run_ticks(ELECTION_TIMEOUT_TICKS);
    sim.one(&command(103), 2, false);

    let leader = sim.check_one_leader();
    for id in sim.ids() {
        if id != leader {
            sim.disconnect(id);
        }
    }
    let index = sim
        .propose(leader, command(104))
        .expect("still believes it leads");
    sim.run_ticks(2 * ELECTION_TIMEOUT_TICKS);
    assert_eq!(sim.n_committed(index).0, 0, "committed without a majority");
}

/// Losing the leader elects another that keeps committing; losing that one too stops progress.
#[test]
fn leader_failure() {
    let mut sim = simulation(3, 13);
    sim.one(&command(101), 3, false);
    let first = sim.check_one_leader();
    sim.disconnect(first);
    sim.one(&command(102), 2, false);
    sim.run_ticks(ELECTION_TIMEOUT_TICKS);
    sim.one(&command(103), 2, false);

    let second = sim.check_one_leader();
    sim.disconnect(second);
    let before = sim.committed_len();
    for id in sim.ids() {
        sim.propose(id, command(104));
    }
    sim.run_ticks(2 * ELECTION_TIMEOUT_TICKS);
    assert_eq!(
        sim.committed_len(),
        before,
        "committed with one node of three"
    );
}

/// A follower that was away catches up once it is back.
#[test]
fn fail_agree() {
    let mut sim = simulation(3, 14);
    sim.one(&command(101), 3, false);
    let leader = sim.check_one_leader();
    let away = leader % 3 + 1;
    sim.disconnect(away);
    for n in 102..=105 {
        sim.one(&command(n), 2, false);
    }
    sim.run_ticks(ELECTION_TIMEOUT_TICKS);
    sim.connect(away);
    sim.one(&command(106), 3, true);
    sim.run_ticks(ELECTION_TIMEOUT_TICKS);
    sim.one(&command(107), 3, true);
}

/// With three of five followers gone nothing commits; when they return, the uncommitted command
/// may be kept or discarded, but the group agrees again.
#[test]
fn fail_no_agree() {
    let mut sim = simulation(5, 15);
    sim.one(&command(10), 5, false);
    let leader = sim.check_one_leader();
    let gone: Vec<u64> = (1..=3).map(|k| (leader + k - 1) % 5 + 1).collect();
    for &id in &gone {
        sim.disconnect(id);
    }
    let index = sim
        .propose(leader, command(20))
        .expect("still believes it leads");
    sim.run_ticks(2 * ELECTION_TIMEOUT_TICKS);
    assert_eq!(sim.n_committed(index).0, 0, "committed with two of five");
    for &id in &gone {
        sim.connect(id);
    }
    sim.check_one_leader();
    sim.one(&command(1000), 5, true);
}

/// Commands proposed together, in one tick, all commit, each at its own index.
#[test]
fn concurrent_starts() {
    let mut sim = simulation(3, 16);
    sim.one(&command(1), 3, false);
    let leader = sim.check_one_leader();
    let term = sim.status(leader).unwrap().term;
    let indexes: Vec<u64> = (0..5)
        .map(|n| sim.propose(leader, command(100 + n)).expect("leader"))
        .collect();
    for (n, &index) in indexes.iter().enumerate() {
        match sim.wait(index, 3, term, ELECTION_TIMEOUT_TICKS) {
            Some(found) => assert_eq!(found, command(100 + n as u64)),
            None => panic!("seed 16: index {index} did not commit in term {term}"),
        }
    }
}

/// A deposed leader that collected uncommitted commands rejoins, and its stale entries are
/// replaced by the new leader's.
#[test]
fn rejoin_of_a_partitioned_leader() {
    let mut sim = simulation(3, 17);
    sim.one(&command(101), 3, true);
    let first = sim.check_one_leader();
    sim.disconnect(first);
    for n in 102..=104 {
        sim.propose(first, command(n));
    }
    sim.one(&command(103), 2, true);

    let second = sim.check_one_leader();
    sim.disconnect(second);
    sim.connect(first);
    sim.one(&command(104), 2, true);
    sim.connect(second);
    sim.one(&command(105), 3, true);
}

/// The leader must back a follower up over many conflicting entries in few round trips: 50
/// uncommitted entries of a deposed leader are rolled back in one step per term, not per entry
/// (paper, end of section 5.3). On an in-order network, so that every rejection counted is a
/// real conflict.
#[test]
fn backup_over_many_conflicting_entries() {
    let mut sim = in_order_simulation(5, 18);
    let mut next = 0u64;
    let mut fresh = |sim: &mut Simulation| {
        next += 1;
        let salt: u32 = sim.rng().random();
        [next.to_le_bytes(), u64::from(salt).to_le_bytes()].concat()
    };
    let c = fresh(&mut sim);
    sim.one(&c, 5, true);
    let first = sim.check_one_leader();
    let peer = |k: u64| (first + k - 1) % 5 + 1;

    // The old leader and one follower collect 50 commands that can never commit.
    for k in 2..=4 {
        sim.disconnect(peer(k));
    }
    for _ in 0..50 {
        let c = fresh(&mut sim);
        sim.propose(first, c);
    }
    sim.run_ticks(ELECTION_TIMEOUT_TICKS / 2);
    sim.disconnect(first);
    sim.disconnect(peer(1));

    // The other three commit 50 commands.
    for k in 2..=4 {
        sim.connect(peer(k));
    }
    for _ in 0..50 {
        let c = fresh(&mut sim);
        sim.one(&c, 3, true);
    }

    // Their leader loses one follower and collects 50 more that cannot commit.
    let second = sim.check_one_leader();
    let other = (2..=4).map(peer).find(|&id| id != second).unwrap();
    sim.disconnect(other);
    for _ in 0..50 {
        let c = fresh(&mut sim);
        sim.propose(second, c);
    }
    sim.run_ticks(ELECTION_TIMEOUT_TICKS / 2);

    // The first two come back with `other`: they must adopt `other`'s log.
    for id in sim.ids() {
        sim.disconnect(id);
    }
    sim.connect(first);
    sim.connect(peer(1));
    sim.connect(other);
    let rejections_before = sim.stats().append_rejections_delivered;
    for _ in 0..50 {
        let c = fresh(&mut sim);
        sim.one(&c, 3, true);
    }
    let rejections = sim.stats().append_rejections_delivered - rejections_before;
    assert!(
        rejections <= 10,
        "{rejections} rejections to back up over 50 conflicting entries"
    );

    for id in sim.ids() {
        sim.connect(id);
    }
    let c = fresh(&mut sim);
    sim.one(&c, 5, true);
}

/// Message counts stay proportional to the work: an election, ten commands, and an idle second
/// cost a bounded number of messages (every request and every reply counts).
#[test]
fn message_counts_are_bounded() {
    let mut sim = in_order_simulation(3, 19);
    let leader = sim.check_one_leader();
    let election = sim.stats().messages_sent;
    assert!(election <= 60, "{election} messages to elect a leader");

    let term = sim.status(leader).unwrap().term;
    let before = sim.stats().messages_sent;
    let start = sim.now_ticks();
    let indexes: Vec<u64> = (0..10)
        .map(|n| sim.propose(leader, command(n + 1)).expect("leader"))
        .collect();
    for &index in &indexes {
        assert!(
            sim.wait(index, 3, term, ELECTION_TIMEOUT_TICKS).is_some(),
            "index {index}"
        );
    }
    // Per command and follower, one AppendEntries and its reply; per tick and follower, one
    // heartbeat and its reply; a few spare for a heartbeat reply that finds entries in flight.
    let agreement = sim.stats().messages_sent - before;
    let ticks = sim.now_ticks() - start + 1;
    let bound = 10 * 2 * 2 + ticks * 2 * 2 + 4;
    assert!(
        agreement <= bound,
        "{agreement} messages for 10 commands in {ticks} ticks"
    );

    let before = sim.stats().messages_sent;
    sim.run_ticks(10);
    let idle = sim.stats().messages_sent - before;
    assert!(idle <= 3 * 20 * 2, "{idle} messages in 10 idle ticks");
}
