//! `WalStorage`: Raft's entries, hard state and snapshots on the write-ahead log, durable across
//! restarts and crashes. The wal crate's own tests cut its files at every byte; these check what
//! Raft sees after such a cut, and run nodes on the storage.

use std::path::{Path, PathBuf};

use raft::{
    ConfState, Config, Entry, EntryKind, HardState, MembershipChange, Message, Node, Ready,
    Snapshot, Storage, WalStorage,
};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use wal::WalOptions;

fn open(dir: &Path) -> WalStorage {
    WalStorage::open(dir, WalOptions::default()).expect("open")
}

fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    range
        .map(|index| Entry {
            term,
            index,
            data: format!("command {index}").into_bytes(),
            kind: EntryKind::Command,
        })
        .collect()
}

fn terms(storage: &WalStorage) -> Vec<u64> {
    let first = storage.first_index().unwrap();
    let last = storage.last_index().unwrap();
    (first..=last).map(|i| storage.term(i).unwrap()).collect()
}

/// The newest segment file of the WAL inside a storage directory.
fn active_segment(dir: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "wal"))
        .collect();
    segments.sort();
    segments.pop().expect("a segment")
}

#[test]
fn entries_hard_state_and_snapshot_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let conf = ConfState::with_voters(vec![1, 2, 3]);
    {
        let mut storage = open(dir.path());
        storage.append(&entries(1..=6, 1)).unwrap();
        storage.append(&entries(7..=9, 2)).unwrap();
        let hard_state = HardState {
            term: 2,
            vote: Some(3),
            commit: 8,
        };
        storage.set_hard_state(hard_state).unwrap();
        storage.sync().unwrap();
        storage
            .create_snapshot(5, conf.clone(), b"state at 5".to_vec())
            .unwrap();
        storage.compact(4).unwrap();
    }
    let storage = open(dir.path());
    let hard_state = storage.initial_state().unwrap();
    assert_eq!((hard_state.term, hard_state.vote), (2, Some(3)));
    assert!(hard_state.commit >= 5, "commit below the snapshot");
    let snapshot = storage.snapshot().unwrap();
    assert_eq!(
        (
            snapshot.index,
            snapshot.term,
            &snapshot.conf_state,
            &snapshot.data[..]
        ),
        (5, 1, &conf, &b"state at 5"[..])
    );
    // After a restart the log starts right after the snapshot.
    assert_eq!(storage.first_index().unwrap(), 6);
    assert_eq!(storage.last_index().unwrap(), 9);
    assert_eq!(storage.term(5).unwrap(), 1);
    assert_eq!(terms(&storage), vec![1, 2, 2, 2]);
    assert_eq!(
        storage.entries(6, 10, u64::MAX).unwrap(),
        [entries(6..=6, 1), entries(7..=9, 2)].concat()
    );
    assert_eq!(storage.entries(6, 10, 0).unwrap().len(), 1, "byte limit");
}

#[test]
fn a_conflicting_suffix_is_replaced_durably() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut storage = open(dir.path());
        storage.append(&entries(1..=5, 1)).unwrap();
        storage.sync().unwrap();
        storage.append(&entries(3..=3, 2)).unwrap();
        storage.sync().unwrap();
    }
    let storage = open(dir.path());
    assert_eq!(terms(&storage), vec![1, 1, 2]);
}

/// Entries appended but not synced may be lost in a crash, wholly or in part: the file is cut
/// anywhere past the last sync (as a crash before the page cache was written back can leave
/// it). Reopened, the storage holds every synced entry, then a whole-entry prefix of the rest,
/// each decoding to what was written; the saved vote is intact; appending carries on.
#[test]
fn unsynced_entries_cut_by_a_crash_leave_a_consistent_log() {
    // One cut per seed; `RAFT_SIM_SEED=N` replays one.
    for seed in raft::sim::seeds_from_env(20) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let dir = tempfile::tempdir().unwrap();
        let synced_len;
        let full_len;
        {
            let mut storage = open(dir.path());
            storage.append(&entries(1..=5, 1)).unwrap();
            let hard_state = HardState {
                term: 1,
                vote: Some(1),
                commit: 0,
            };
            storage.set_hard_state(hard_state).unwrap();
            storage.sync().unwrap();
            synced_len = std::fs::metadata(active_segment(dir.path())).unwrap().len();
            storage.append(&entries(6..=10, 1)).unwrap();
            full_len = std::fs::metadata(active_segment(dir.path())).unwrap().len();
        }
        let cut = rng.random_range(synced_len..=full_len);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(active_segment(dir.path()))
            .unwrap();
        file.set_len(cut).unwrap();
        drop(file);

        let mut storage = open(dir.path());
        let last = storage.last_index().unwrap();
        assert!(
            (5..=10).contains(&last),
            "seed {seed}: cut at {cut} left {last}"
        );
        assert_eq!(
            storage.entries(1, last + 1, u64::MAX).unwrap(),
            entries(1..=last, 1),
            "seed {seed}"
        );
        assert_eq!(storage.initial_state().unwrap().vote, Some(1));
        storage.append(&entries(last + 1..=last + 1, 2)).unwrap();
        storage.sync().unwrap();
    }
}

/// A leader's snapshot replaces the log; a restart after it keeps the snapshot and what was
/// appended after it.
#[test]
fn an_installed_snapshot_replaces_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = Snapshot {
        index: 20,
        term: 3,
        conf_state: ConfState::with_voters(vec![1, 2]),
        data: b"leader's state".to_vec(),
    };
    {
        let mut storage = open(dir.path());
        storage.append(&entries(1..=10, 1)).unwrap();
        storage.apply_snapshot(snapshot.clone()).unwrap();
        assert_eq!(storage.first_index().unwrap(), 21);
        storage.append(&entries(21..=22, 3)).unwrap();
        storage.sync().unwrap();
    }
    let storage = open(dir.path());
    assert_eq!(storage.snapshot().unwrap(), snapshot);
    assert_eq!(storage.first_index().unwrap(), 21);
    assert_eq!(storage.term(20).unwrap(), 3);
    assert_eq!(terms(&storage), vec![3, 3]);
}

/// A crash after the snapshot file was replaced but before the old log was discarded: at open,
/// the old log does not follow on from the snapshot, so it goes.
#[test]
fn a_crash_between_snapshot_and_log_reset_is_repaired_at_open() {
    let crashed = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    {
        let mut storage = open(crashed.path());
        storage.append(&entries(1..=10, 1)).unwrap();
        storage.sync().unwrap();
        let mut donor = open(other.path());
        let snapshot = Snapshot {
            index: 8,
            term: 4,
            ..Snapshot::default()
        };
        donor.apply_snapshot(snapshot).unwrap();
    }
    std::fs::copy(
        other.path().join("snapshot"),
        crashed.path().join("snapshot"),
    )
    .unwrap();
    let storage = open(crashed.path());
    assert_eq!(
        (
            storage.first_index().unwrap(),
            storage.last_index().unwrap()
        ),
        (9, 8)
    );
    assert_eq!(storage.term(8).unwrap(), 4);
}

/// Persists, sends nothing (a group of one), applies: returns the commands applied.
fn handle(node: &mut Node<WalStorage>) -> Vec<Vec<u8>> {
    let ready: Ready = node.ready().unwrap();
    node.storage_mut().persist(&ready).unwrap();
    let applied = ready
        .committed_entries
        .iter()
        .filter(|entry| !entry.data.is_empty())
        .map(|entry| entry.data.clone())
        .collect();
    node.advance();
    applied
}

/// A group of one on WAL storage commits commands and a membership change, and after a restart
/// replays what it committed, in the same term, with the same membership.
#[test]
fn a_node_on_wal_storage_restarts_where_it_left_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut applied = Vec::new();
    let term;
    {
        let mut node = Node::new(Config::new(1, vec![1]), open(dir.path())).unwrap();
        node.campaign().unwrap();
        handle(&mut node);
        for n in 0..5u8 {
            node.propose(vec![n]).unwrap();
            applied.extend(handle(&mut node));
        }
        node.propose_conf_change(MembershipChange::AddLearner(2))
            .unwrap();
        handle(&mut node);
        term = node.status().term;
    }
    let mut node = Node::new(Config::new(1, vec![1]), open(dir.path())).unwrap();
    assert_eq!(node.status().term, term);
    assert!(node.conf_state().is_learner(2));
    let mut replayed = Vec::new();
    while node.has_ready() {
        replayed.extend(handle(&mut node));
    }
    // Replayed up to the durable commit index, which may lag (it is saved lazily); the
    // commands themselves are all in the log.
    assert!(applied.starts_with(&replayed));
    let last = node.storage().last_index().unwrap();
    let log = node.storage().entries(1, last + 1, u64::MAX).unwrap();
    let commands: Vec<Vec<u8>> = log
        .iter()
        .filter(|entry| !entry.data.is_empty())
        .map(|entry| entry.data.clone())
        .collect();
    assert_eq!(commands, applied);
    // Leading again, it commits its whole log: every command comes back, in order, once.
    node.campaign().unwrap();
    node.propose(b"after".to_vec()).unwrap();
    while node.has_ready() {
        replayed.extend(handle(&mut node));
    }
    applied.push(b"after".to_vec());
    assert_eq!(replayed, applied);
}

fn start_node(dirs: &[tempfile::TempDir], id: u64) -> Node<WalStorage> {
    let storage = open(dirs[id as usize - 1].path());
    Node::new(Config::new(id, vec![1, 2, 3]), storage).unwrap()
}

/// Lockstep rounds: every node with work persists its `Ready` (one fsync), sends, advances; then
/// every message is delivered. The leader (node 1) ticks once per round, so heartbeats flow.
fn settle(nodes: &mut [Node<WalStorage>]) {
    for _ in 0..20 {
        nodes[0].tick().unwrap();
        let mut mail: Vec<Message> = Vec::new();
        for node in nodes.iter_mut() {
            if node.has_ready() {
                let ready = node.ready().unwrap();
                node.storage_mut().persist(&ready).unwrap();
                mail.extend(ready.messages);
                node.advance();
            }
        }
        for message in mail {
            nodes[message.to as usize - 1].step(message).unwrap();
        }
    }
}

/// Three nodes on WAL storage, driven in lockstep (every message delivered at once): a follower
/// restarted from its directory rejoins and holds every committed entry.
#[test]
fn a_group_of_three_on_wal_storage_survives_a_follower_restart() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes: Vec<Node<WalStorage>> = (1..=3).map(|id| start_node(&dirs, id)).collect();
    nodes[0].campaign().unwrap();
    settle(&mut nodes);
    for n in 0..10u8 {
        nodes[0].propose(vec![n + 1]).unwrap();
    }
    settle(&mut nodes);
    let committed = nodes[0].status().commit;
    drop(nodes.remove(2));
    nodes.push(start_node(&dirs, 3));
    assert!(nodes[2].storage().last_index().unwrap() >= committed);
    nodes[0].propose(b"after".to_vec()).unwrap();
    settle(&mut nodes);
    assert_eq!(nodes[2].status().commit, nodes[0].status().commit);
    assert!(nodes[2].status().commit > committed);
}

/// A follower writes the entries of a `Ready` but crashes before the fsync (so it never
/// acknowledged them); the crash leaves its segment cut anywhere past the last sync. Restarted,
/// it rejoins, and its log ends up identical to the leader's.
#[test]
fn a_follower_that_crashes_before_syncing_rejoins_and_catches_up() {
    for seed in raft::sim::seeds_from_env(5) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut nodes: Vec<Node<WalStorage>> = (1..=3).map(|id| start_node(&dirs, id)).collect();
        nodes[0].campaign().unwrap();
        settle(&mut nodes);
        for n in 0..5u8 {
            nodes[0].propose(vec![n + 1]).unwrap();
        }
        settle(&mut nodes);
        let synced_len = std::fs::metadata(active_segment(dirs[2].path()))
            .unwrap()
            .len();

        nodes[0]
            .propose_batch((6..=10u8).map(|n| vec![n]).collect())
            .unwrap();
        let ready = nodes[0].ready().unwrap();
        nodes[0].storage_mut().persist(&ready).unwrap();
        nodes[0].advance();
        for message in ready.messages {
            nodes[message.to as usize - 1].step(message).unwrap();
        }
        let doomed = nodes[2].ready().unwrap();
        assert!(!doomed.entries.is_empty(), "seed {seed}: nothing to lose");
        nodes[2].storage_mut().append(&doomed.entries).unwrap();
        drop(nodes.remove(2));
        let segment = active_segment(dirs[2].path());
        let written_len = std::fs::metadata(&segment).unwrap().len();
        let cut = rng.random_range(synced_len..=written_len);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&segment)
            .unwrap();
        file.set_len(cut).unwrap();
        drop(file);

        nodes.push(start_node(&dirs, 3));
        nodes[0].propose(b"after".to_vec()).unwrap();
        settle(&mut nodes);
        let leader_last = nodes[0].storage().last_index().unwrap();
        assert_eq!(
            nodes[2].status().commit,
            nodes[0].status().commit,
            "seed {seed}"
        );
        assert_eq!(
            nodes[2]
                .storage()
                .entries(1, leader_last + 1, u64::MAX)
                .unwrap(),
            nodes[0]
                .storage()
                .entries(1, leader_last + 1, u64::MAX)
                .unwrap(),
            "seed {seed}: cut at {cut} of {written_len}"
        );
    }
}

/// Compares everything the `Storage` trait answers.
fn assert_same(model: &raft::MemStorage, real: &WalStorage, context: &str) {
    let (first, last) = (model.first_index().unwrap(), model.last_index().unwrap());
    assert_eq!(
        (real.first_index().unwrap(), real.last_index().unwrap()),
        (first, last),
        "{context}: first and last index"
    );
    for index in first - 1..=last {
        assert_eq!(
            real.term(index).unwrap(),
            model.term(index).unwrap(),
            "{context}: term at {index}"
        );
    }
    assert_eq!(
        real.entries(first, last + 1, u64::MAX).unwrap(),
        model.entries(first, last + 1, u64::MAX).unwrap(),
        "{context}: entries"
    );
    assert_eq!(
        real.snapshot().unwrap(),
        model.snapshot().unwrap(),
        "{context}: snapshot"
    );
    let (real_state, model_state) = (
        real.initial_state().unwrap(),
        model.initial_state().unwrap(),
    );
    assert_eq!(
        (real_state.term, real_state.vote),
        (model_state.term, model_state.vote),
        "{context}: term and vote"
    );
}

/// `WalStorage` behaves as `MemStorage` (the model) under random appends (conflicting ones
/// included), hard states, snapshots, compactions, installed snapshots and restarts; after a
/// restart the model is compacted to its snapshot, as `WalStorage` documents. One seed per run;
/// `RAFT_SIM_SEED=N` replays one.
#[test]
fn wal_storage_matches_the_in_memory_model() {
    for seed in raft::sim::seeds_from_env(10) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let dir = tempfile::tempdir().unwrap();
        let mut real = open(dir.path());
        let mut model = raft::MemStorage::new();
        for step in 0..100 {
            let context = format!("seed {seed} step {step}");
            let first = model.first_index().unwrap();
            let last = model.last_index().unwrap();
            let snapshot_index = model.snapshot().unwrap().index;
            let term = rng.random_range(1..=6);
            match rng.random_range(0..100) {
                0..55 => {
                    // Never at or below the snapshot: it covers committed entries, which Raft
                    // never overwrites.
                    let from = rng.random_range(first.max(snapshot_index + 1)..=last + 1);
                    let count = rng.random_range(1..=6);
                    let batch: Vec<Entry> = entries(from..=from + count - 1, term);
                    model.append(&batch).unwrap();
                    real.append(&batch).unwrap();
                }
                55..65 => {
                    let hard_state = HardState {
                        term,
                        vote: rng.random_bool(0.5).then_some(rng.random_range(1..=3)),
                        commit: 0,
                    };
                    model.set_hard_state(hard_state);
                    real.set_hard_state(hard_state).unwrap();
                }
                65..75 if last > snapshot_index => {
                    let index = rng.random_range(snapshot_index + 1..=last);
                    let conf = ConfState::with_voters(vec![1, rng.random_range(2..=9)]);
                    let data = index.to_le_bytes().to_vec();
                    model
                        .create_snapshot(index, conf.clone(), data.clone())
                        .unwrap();
                    real.create_snapshot(index, conf, data).unwrap();
                }
                75..85 if snapshot_index >= first => {
                    let index = rng.random_range(first..=snapshot_index);
                    model.compact(index).unwrap();
                    real.compact(index).unwrap();
                }
                85..90 => {
                    let snapshot = Snapshot {
                        index: snapshot_index + rng.random_range(1..=12),
                        term,
                        conf_state: ConfState::with_voters(vec![1, 2, 3]),
                        data: vec![7; rng.random_range(0..64)],
                    };
                    model.apply_snapshot(snapshot.clone()).unwrap();
                    real.apply_snapshot(snapshot).unwrap();
                }
                _ => {
                    real.sync().unwrap();
                    drop(real);
                    real = open(dir.path());
                    if snapshot_index > 0 {
                        model.compact(snapshot_index).unwrap();
                    }
                }
            }
            assert_same(&model, &real, &context);
        }
    }
}
