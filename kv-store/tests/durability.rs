//! Durability of the write path against a real process: SIGKILL under a write load loses no
//! acknowledged write (`--fsync always`), and a damaged log recovers a prefix of its records or
//! refuses to start with a message naming the file and offset, never silently dropping a record
//! from the middle.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::Server;
use harness::{DataDir, Process, ProcessSpec, cargo_bin, free_addr, seeded_rng};
use rand::RngExt;
use redis::AsyncCommands;

/// Writers running at once during the kill test.
const WRITERS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_sigkill_under_fsync_always() {
    let mut server = Server::start("kv-durable-kill", &["--fsync", "always"]);
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let mut con = server.connect(false).await;
        let stop = Arc::clone(&stop);
        writers.push(tokio::spawn(async move {
            // Each writer sets its own keys in order and bumps its own counter; it records what
            // was acknowledged and what was attempted.
            let (mut acked, mut attempted) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                attempted += 1;
                let key = format!("w{writer}:{attempted}");
                let set = con.set::<_, _, ()>(&key, attempted).await;
                let incr = con.incr::<_, _, u64>(format!("count{writer}"), 1).await;
                if set.is_err() || incr.is_err() {
                    break;
                }
                acked = attempted;
            }
            (acked, attempted)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.process.kill().unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut outcomes = Vec::new();
    for writer in writers {
        outcomes.push(writer.await.unwrap());
    }
    let total: u64 = outcomes.iter().map(|(acked, _)| acked).sum();
    assert!(total > 0, "no write was acknowledged before the kill");

    server.restart();
    let mut con = server.connect(false).await;
    for (writer, (acked, attempted)) in outcomes.iter().enumerate() {
        let keys: Vec<String> = (1..=*acked).map(|i| format!("w{writer}:{i}")).collect();
        for chunk in keys.chunks(500) {
            let values: Vec<Option<u64>> = con.mget(chunk).await.unwrap();
            for (key, value) in chunk.iter().zip(values) {
                let expected: u64 = key.rsplit(':').next().unwrap().parse().unwrap();
                assert_eq!(
                    value,
                    Some(expected),
                    "acknowledged {key} lost after SIGKILL"
                );
            }
        }
        let count: u64 = con.get(format!("count{writer}")).await.unwrap_or(0);
        assert!(
            (*acked..=*attempted).contains(&count),
            "writer {writer}: counter {count}, acknowledged {acked}, attempted {attempted}"
        );
    }
    eprintln!("{total} acknowledged writes survived SIGKILL");
}

/// Records written before the kill in the corruption test.
const RECORDS: u64 = 300;

/// Log segment names are the base index, zero-padded, with `.wal`.
fn segments(dir: &DataDir) -> Vec<(u64, std::path::PathBuf)> {
    let mut found: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .filter_map(|entry| {
            let path = entry.unwrap().path();
            let base = path.file_stem()?.to_str()?.parse().ok()?;
            (path.extension()? == "wal").then_some((base, path))
        })
        .collect();
    found.sort();
    found
}

/// A server whose log rolls every 4 KiB and is never checkpointed, so the test owns it.
fn spec(dir: &DataDir, config: &str) -> (ProcessSpec, std::net::SocketAddr, std::net::SocketAddr) {
    let (addr, admin) = (free_addr(), free_addr());
    let spec = ProcessSpec::new("kv-store", cargo_bin("kv-store"))
        .args([
            "--listen",
            &addr.to_string(),
            "--admin-listen",
            &admin.to_string(),
        ])
        .args([
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--config",
            config,
        ])
        .args(["--fsync", "always"]);
    (spec, addr, admin)
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    TruncateLast,
    FlipInLast,
    FlipInClosed,
}

#[tokio::test]
async fn a_damaged_log_recovers_a_prefix_or_refuses_naming_file_and_offset() {
    let mut rng = seeded_rng();
    for round in 0..6 {
        let damage = [
            Damage::TruncateLast,
            Damage::FlipInLast,
            Damage::FlipInClosed,
        ][round % 3];
        let dir = DataDir::new("kv-durable-corrupt");
        let config = dir.join("kv.toml");
        std::fs::write(
            &config,
            "wal_segment_bytes = 4096\ncheckpoint_interval_ms = 3600000\n",
        )
        .unwrap();
        let (spec, addr, admin) = spec(&dir, config.to_str().unwrap());
        let mut process = Process::spawn(spec).unwrap();
        process.wait_ready(admin, common::READY_TIMEOUT).unwrap();
        let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        for chunk in (0..RECORDS).collect::<Vec<_>>().chunks(10) {
            let mut pipe = redis::pipe();
            for i in chunk {
                pipe.cmd("SET").arg(format!("key:{i}")).arg(i).ignore();
            }
            let () = pipe.query_async(&mut con).await.unwrap();
        }
        drop(con);
        process.kill().unwrap();

        let files = segments(&dir);
        assert!(files.len() >= 3, "expected several segments: {files:?}");
        let (last_base, last_path) = files.last().unwrap().clone();
        let (target, closed) = match damage {
            Damage::FlipInClosed => (files[rng.random_range(0..files.len() - 1)].1.clone(), true),
            _ => (last_path.clone(), false),
        };
        let mut bytes = std::fs::read(&target).unwrap();
        let offset = rng.random_range(0..bytes.len());
        match damage {
            Damage::TruncateLast => bytes.truncate(offset),
            _ => bytes[offset] ^= 1 << rng.random_range(0..8),
        }
        std::fs::write(&target, &bytes).unwrap();
        let what = format!(
            "round {round}: {damage:?} at byte {offset} of {}",
            target.display()
        );

        process.restart().unwrap();
        match process.wait_ready(admin, common::READY_TIMEOUT) {
            Ok(()) => {
                assert!(
                    !closed,
                    "{what}: damage in a closed segment was accepted\n{}",
                    process.log()
                );
                let mut con = client.get_multiplexed_async_connection().await.unwrap();
                let keys: Vec<String> = (0..RECORDS).map(|i| format!("key:{i}")).collect();
                let values: Vec<Option<u64>> = con.mget(&keys).await.unwrap();
                let present = values.iter().take_while(|v| v.is_some()).count();
                assert!(
                    values[present..].iter().all(Option::is_none),
                    "{what}: a record in the middle was lost: {values:?}"
                );
                // Everything in the closed segments (records 1..last_base) must be there.
                assert!(
                    present as u64 >= last_base - 1,
                    "{what}: only {present} records recovered"
                );
                process.kill().unwrap();
            }
            Err(harness::Error::ExitedEarly { status, log, .. }) => {
                assert!(
                    !status.success(),
                    "{what}: exited with success without serving"
                );
                let name = target.file_name().unwrap().to_str().unwrap();
                assert!(
                    log.contains(name),
                    "{what}: the message does not name the file:\n{log}"
                );
                // A damaged record is named by its byte offset; a damaged segment header by
                // what it no longer is (a WAL file, this format version, the next index).
                let says_what = [
                    "byte offset",
                    "is not a WAL file",
                    "format version",
                    "gap between segments",
                ];
                assert!(
                    says_what.iter().any(|s| log.contains(s)),
                    "{what}: the message does not say where or what:\n{log}"
                );
            }
            Err(err) => panic!("{what}: neither served nor refused: {err}"),
        }
    }
}

#[tokio::test]
async fn checkpoints_delete_covered_segments_and_a_crash_after_them_loses_nothing() {
    let dir = DataDir::new("kv-durable-checkpoint");
    let config = dir.join("kv.toml");
    std::fs::write(
        &config,
        "wal_segment_bytes = 4096\ncheckpoint_log_bytes = 4096\ncheckpoint_interval_ms = 100\n",
    )
    .unwrap();
    let config = config.to_str().unwrap().to_owned();
    let mut server = Server::start_in(dir, &["--config", &config]);
    let mut con = server.connect(false).await;
    for chunk in (0..2000).collect::<Vec<u32>>().chunks(50) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.cmd("SET").arg(format!("key:{i}")).arg(i).ignore();
        }
        let () = pipe.query_async(&mut con).await.unwrap();
    }
    // About 100 KB of log went by; checkpoints must have deleted nearly all of it.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while segments(&server.dir).len() > 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "segments kept: {:?}",
            segments(&server.dir)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deleted: i64 = redis::cmd("DEL")
        .arg("key:0")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    server.process.kill().unwrap();
    server.restart();
    let mut con = server.connect(false).await;
    let keys: Vec<String> = (0..2000).map(|i| format!("key:{i}")).collect();
    let values: Vec<Option<u32>> = con.mget(&keys).await.unwrap();
    assert_eq!(
        values[0], None,
        "the DEL after the last checkpoint was lost"
    );
    for (i, value) in values.iter().enumerate().skip(1) {
        assert_eq!(*value, Some(i as u32), "key:{i} lost");
    }
}
