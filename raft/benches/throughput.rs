//! Raft throughput: committed entries per second for a three-node group with no I/O (the cost of
//! the algorithm itself), then the same group on the write-ahead log, next to the disk's raw
//! fsync rate, in one run.
//!
//! ```text
//! cargo bench -p raft --bench throughput
//! RAFT_BENCH_RUNS=7 RAFT_BENCH_DIR=/mnt/nvme cargo bench -p raft --bench throughput
//! RAFT_BENCH_FILTER="in memory" cargo bench -p raft --bench throughput   # rows whose name matches
//! ```
//!
//! Each row is the median of `RAFT_BENCH_RUNS` runs (default 5), with the slowest and fastest.
//!
//! - **in memory, batch B**: three `Node<MemStorage>` in one thread, messages handed over
//!   directly (no serialization, no network), the leader given B 16-byte commands per
//!   `propose_batch` and kept at most a few batches ahead of its commit index. Counted: entries
//!   the leader hands out as committed, per second of wall time for all three nodes. Batch 1 is
//!   `propose` one command at a time.
//! - **raw fdatasync**: write 100 bytes and `fdatasync`, in a loop: the disk's ceiling for a
//!   design that syncs each entry on its own (the wal crate's `append` bench has the same row).
//! - **WalStorage, B per sync**: one storage, `append` B entries then `sync`, as a node persists
//!   one `Ready`. Raft's group commit is this: every entry that arrived while the last fsync ran
//!   goes into the next `Ready`, and one fsync covers them all.
//! - **on WalStorage, batch B**: the three-node group, each node on its own `WalStorage`, every
//!   `Ready` persisted with one fsync before its messages leave (the persistence contract). The
//!   three nodes' fsyncs run one after another in one thread, as the lockstep loop has it; on
//!   three machines they overlap. Since the leader keeps `BATCHES_AHEAD` batches in flight, even
//!   at batch 1 a `Ready` often carries several entries: Raft's own group commit.
//!
//! For the wal crate's own group commit (many async appenders sharing fsyncs through its writer
//! thread), see `cargo bench -p wal --bench append`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use raft::{Config, MemStorage, Message, Node, Ready, Storage, WalStorage};
use wal::WalOptions;

const COMMAND_BYTES: usize = 16;
/// Batches the leader may have proposed beyond its commit index.
const BATCHES_AHEAD: u64 = 4;
/// The in-memory nodes snapshot and compact once this many entries are applied past their last
/// snapshot, so that memory stays flat over millions of entries.
const COMPACT_EVERY: u64 = 100_000;
const RAW_FSYNC_WINDOW: Duration = Duration::from_secs(2);

struct Row {
    case: String,
    /// Per run: (entries, seconds).
    runs: Vec<(u64, f64)>,
    unit: &'static str,
}

fn main() {
    let runs = env_number("RAFT_BENCH_RUNS", 5) as usize;
    let parent = std::env::var_os("RAFT_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    println!(
        "raft throughput: 3-node groups, {COMMAND_BYTES}-byte commands, median of {runs} runs; disk rows in {}",
        parent.display()
    );
    println!(
        "{:<38} {:>20} {:>20} {:>20}",
        "case", "median", "min", "max"
    );
    for (batch, entries) in [(1, 200_000), (64, 2_000_000), (1024, 4_000_000)] {
        let row = repeat(
            runs,
            &format!("in memory, batch {batch}"),
            "entries/s",
            || in_memory_group(batch, entries),
        );
        print_row(&row);
    }
    print_row(&repeat(
        runs,
        "raw fdatasync (write 100 B + sync)",
        "syncs/s",
        || raw_fsync(&parent),
    ));
    for (per_sync, entries) in [(1, 500), (64, 20_000), (1024, 200_000)] {
        let case = format!("WalStorage, {per_sync} per sync");
        print_row(&repeat(runs, &case, "entries/s", || {
            wal_appends(&parent, per_sync, entries)
        }));
    }
    for (batch, entries) in [(1, 300), (1024, 100_000)] {
        let case = format!("on WalStorage, batch {batch}");
        print_row(&repeat(runs, &case, "entries/s", || {
            wal_group(&parent, batch, entries)
        }));
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn repeat(runs: usize, case: &str, unit: &'static str, mut run: impl FnMut() -> (u64, f64)) -> Row {
    let skipped = std::env::var("RAFT_BENCH_FILTER").is_ok_and(|filter| !case.contains(&filter));
    Row {
        case: case.to_string(),
        runs: if skipped {
            Vec::new()
        } else {
            (0..runs).map(|_| run()).collect()
        },
        unit,
    }
}

fn print_row(row: &Row) {
    if row.runs.is_empty() {
        return;
    }
    let mut rates: Vec<f64> = row
        .runs
        .iter()
        .map(|&(count, secs)| count as f64 / secs)
        .collect();
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    let format = |rate: f64| format!("{rate:.0} {}", row.unit);
    println!(
        "{:<38} {:>20} {:>20} {:>20}",
        row.case,
        format(median),
        format(rates[0]),
        format(rates[rates.len() - 1])
    );
}

/// Persists a `Ready` to a node's storage; returns nothing, panics on failure (a bench).
trait Persist: Storage + Sized {
    fn persist_ready(node: &mut Node<Self>, ready: &Ready);
    fn maybe_compact(_node: &mut Node<Self>) {}
}

impl Persist for MemStorage {
    fn persist_ready(node: &mut Node<Self>, ready: &Ready) {
        let storage = node.storage_mut();
        storage.append(&ready.entries).expect("append");
        if let Some(hard_state) = ready.hard_state {
            storage.set_hard_state(hard_state);
        }
    }

    fn maybe_compact(node: &mut Node<Self>) {
        let applied = node.status().applied;
        let snapshot_index = node.storage().snapshot().expect("snapshot").index;
        if applied < snapshot_index + COMPACT_EVERY {
            return;
        }
        let conf = node.conf_state_at(applied).cloned().unwrap_or_default();
        let storage = node.storage_mut();
        storage
            .create_snapshot(applied, conf, Vec::new())
            .expect("snapshot");
        storage.compact(applied).expect("compact");
    }
}

impl Persist for WalStorage {
    fn persist_ready(node: &mut Node<Self>, ready: &Ready) {
        node.storage_mut().persist(ready).expect("persist");
    }
}

/// Three nodes in lockstep: each round, every node with work persists and sends its `Ready`,
/// then every message is delivered. Returns the entries the leader saw committed.
struct Group<S> {
    nodes: Vec<Node<S>>,
    mail: Vec<Message>,
}

impl<S: Persist> Group<S> {
    fn new(storages: Vec<S>) -> Self {
        let voters: Vec<u64> = (1..=storages.len() as u64).collect();
        let nodes = storages
            .into_iter()
            .zip(1..)
            .map(|(storage, id)| {
                let config = Config {
                    max_uncommitted_entries: 1 << 20,
                    ..Config::new(id, voters.clone())
                };
                Node::new(config, storage).expect("node")
            })
            .collect();
        let mut group = Group {
            nodes,
            mail: Vec::new(),
        };
        group.nodes[0].campaign().expect("campaign");
        while group.nodes[0].status().role != raft::Role::Leader {
            group.round();
        }
        group.round();
        group
    }

    /// One round; returns how many entries the leader (node 1) newly saw committed.
    fn round(&mut self) -> u64 {
        let mut committed = 0;
        for (slot, node) in self.nodes.iter_mut().enumerate() {
            if !node.has_ready() {
                continue;
            }
            let mut ready = node.ready().expect("ready");
            S::persist_ready(node, &ready);
            self.mail.append(&mut ready.messages);
            if slot == 0 {
                committed += ready.committed_entries.len() as u64;
            }
            node.advance();
            S::maybe_compact(node);
        }
        for message in self.mail.drain(..) {
            self.nodes[message.to as usize - 1]
                .step(message)
                .expect("step");
        }
        committed
    }

    /// Proposes `total` commands in batches of `batch` and runs until all are committed.
    /// Returns (entries committed, seconds).
    fn run(&mut self, batch: usize, total: u64) -> (u64, f64) {
        let started = Instant::now();
        let (mut proposed, mut committed) = (0, 0);
        while committed < total {
            while proposed < total && proposed - committed < BATCHES_AHEAD * batch as u64 {
                let commands = vec![vec![0x5A; COMMAND_BYTES]; batch];
                let leader = &mut self.nodes[0];
                if batch == 1 {
                    leader.propose(commands.into_iter().next().expect("one"))
                } else {
                    leader.propose_batch(commands)
                }
                .expect("propose");
                proposed += batch as u64;
            }
            committed += self.round();
        }
        (committed, started.elapsed().as_secs_f64())
    }
}

fn in_memory_group(batch: usize, total: u64) -> (u64, f64) {
    let mut group = Group::new(vec![MemStorage::new(); 3]);
    group.run(batch, total)
}

fn wal_group(parent: &Path, batch: usize, total: u64) -> (u64, f64) {
    let dirs: Vec<_> = (0..3)
        .map(|_| tempfile::tempdir_in(parent).expect("temp dir"))
        .collect();
    let storages = dirs
        .iter()
        .map(|dir| WalStorage::open(dir.path(), WalOptions::default()).expect("open"))
        .collect();
    let mut group = Group::new(storages);
    group.run(batch, total)
}

fn wal_appends(parent: &Path, per_sync: usize, total: u64) -> (u64, f64) {
    let dir = tempfile::tempdir_in(parent).expect("temp dir");
    let mut storage = WalStorage::open(dir.path(), WalOptions::default()).expect("open");
    let started = Instant::now();
    let mut next = 1;
    while next <= total {
        let entries: Vec<raft::Entry> = (next..next + per_sync as u64)
            .map(|index| raft::Entry {
                term: 1,
                index,
                data: vec![0x5A; COMMAND_BYTES],
                ..raft::Entry::default()
            })
            .collect();
        storage.append(&entries).expect("append");
        storage.sync().expect("sync");
        next += per_sync as u64;
    }
    (next - 1, started.elapsed().as_secs_f64())
}

/// Writes 100 bytes and fdatasyncs, in a loop, on a fresh file.
fn raw_fsync(parent: &Path) -> (u64, f64) {
    let dir = tempfile::tempdir_in(parent).expect("temp dir");
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("raw"))
        .expect("open");
    let payload = [0xA5u8; 100];
    let started = Instant::now();
    let mut count = 0;
    while started.elapsed() < RAW_FSYNC_WINDOW {
        file.write_all(&payload).expect("write");
        file.sync_data().expect("fdatasync");
        count += 1;
    }
    (count, started.elapsed().as_secs_f64())
}
