//! Append throughput of the WAL against the disk's raw fsync rate, in one run.
//!
//! ```text
//! cargo bench -p wal --bench append
//! WAL_BENCH_SECS=10 WAL_BENCH_DIR=/mnt/nvme cargo bench -p wal --bench append
//! ```
//!
//! Rows:
//! - **raw fsync**: one thread writes 100 bytes and calls `fdatasync`, in a loop. The ceiling for
//!   any design that fsyncs each record on its own.
//! - **Always, N appenders**: N concurrent tasks each append a 100-byte record and wait for its
//!   acknowledgment, in a loop, through [`wal::GroupCommit`]. With one appender the rate is the
//!   fsync rate; with more, group commit lets each fsync carry many records.
//! - **EverySec / No**: acknowledgment after the write; the disk is not waited on.
//!
//! `fsyncs/s` counts fsyncs of segment data (group commits, rolls); `latency` is the time from
//! calling `append` to its acknowledgment, per record.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use wal::{GroupCommit, GroupCommitOptions, SyncPolicy, Wal, WalOptions};

const PAYLOAD_BYTES: usize = 100;
const DEFAULT_SECS_PER_ROW: f64 = 2.5;

struct Row {
    case: String,
    records: u64,
    fsyncs: u64,
    elapsed: Duration,
    /// Per-record latencies, sorted; empty for the raw fsync row.
    latencies: Vec<Duration>,
}

fn main() {
    let secs = std::env::var("WAL_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SECS_PER_ROW);
    let window = Duration::from_secs_f64(secs);
    let parent = std::env::var_os("WAL_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");

    println!(
        "wal append: {PAYLOAD_BYTES}-byte payloads, {secs} s per row, in {}",
        parent.display()
    );
    print_header();
    print_row(&raw_fsync(&parent, window));
    let cases = [
        (SyncPolicy::Always, 1),
        (SyncPolicy::Always, 8),
        (SyncPolicy::Always, 64),
        (SyncPolicy::EverySec, 64),
        (SyncPolicy::No, 1),
        (SyncPolicy::No, 64),
    ];
    for (policy, appenders) in cases {
        let row = runtime.block_on(group_commit(&parent, policy, appenders, window));
        print_row(&row);
    }
}

/// Writes 100 bytes and fdatasyncs, in a loop, on a fresh file.
fn raw_fsync(parent: &std::path::Path, window: Duration) -> Row {
    let dir = tempfile::tempdir_in(parent).expect("temp dir");
    let path = dir.path().join("raw");
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("open");
    let payload = [0xA5u8; PAYLOAD_BYTES];
    let started = Instant::now();
    let mut count = 0;
    while started.elapsed() < window {
        file.write_all(&payload).expect("write");
        file.sync_data().expect("fdatasync");
        count += 1;
    }
    Row {
        case: "raw fsync (write + fdatasync)".to_string(),
        records: count,
        fsyncs: count,
        elapsed: started.elapsed(),
        latencies: Vec::new(),
    }
}

/// `appenders` tasks append in a loop for `window` through group commit under `policy`.
async fn group_commit(
    parent: &std::path::Path,
    policy: SyncPolicy,
    appenders: usize,
    window: Duration,
) -> Row {
    let dir = tempfile::tempdir_in(parent).expect("temp dir");
    let wal = Wal::open(dir.path(), WalOptions::default()).expect("open wal");
    let options = GroupCommitOptions {
        sync_policy: policy,
        ..GroupCommitOptions::default()
    };
    let group = GroupCommit::start(wal, options).expect("start group commit");
    let handle = group.handle();
    let started = Instant::now();
    let deadline = started + window;
    let mut tasks = Vec::new();
    for _ in 0..appenders {
        let handle = handle.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let sent = Instant::now();
                handle
                    .append(vec![0x5A; PAYLOAD_BYTES])
                    .await
                    .expect("append");
                latencies.push(sent.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("appender task"));
    }
    let elapsed = started.elapsed();
    let stats = handle.stats().expect("stats");
    group.shutdown().await.expect("shutdown");
    latencies.sort_unstable();
    Row {
        case: format!(
            "{policy:?}, {appenders} appender{}",
            if appenders == 1 { "" } else { "s" }
        ),
        records: stats.records_appended,
        fsyncs: stats.data_syncs,
        elapsed,
        latencies,
    }
}

fn print_header() {
    println!(
        "{:<32} {:>12} {:>10} {:>13} {:>12} {:>12}",
        "case", "records/s", "fsyncs/s", "records/fsync", "p50 latency", "p99 latency"
    );
}

fn print_row(row: &Row) {
    let secs = row.elapsed.as_secs_f64();
    let per_fsync = if row.fsyncs == 0 {
        "-".to_string()
    } else {
        format!("{:.1}", row.records as f64 / row.fsyncs as f64)
    };
    println!(
        "{:<32} {:>12.0} {:>10.0} {:>13} {:>12} {:>12}",
        row.case,
        row.records as f64 / secs,
        row.fsyncs as f64 / secs,
        per_fsync,
        percentile(&row.latencies, 0.50),
        percentile(&row.latencies, 0.99),
    );
}

fn percentile(sorted: &[Duration], quantile: f64) -> String {
    if sorted.is_empty() {
        return "-".to_string();
    }
    let at = ((sorted.len() - 1) as f64 * quantile).round() as usize;
    format!("{:.1} µs", sorted[at].as_secs_f64() * 1e6)
}
