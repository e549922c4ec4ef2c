//! maxmemory with a hand-driven clock: `noeviction` refuses writes with Redis's `-OOM`,
//! `allkeys-lru` evicts and keeps recently used keys rather than old ones, and every eviction
//! is a logged `DEL`.

mod common;

use common::node::{open, run};
use kv_store::memory::{self, CountingAllocator};
use kv_store::resp::Frame;
use kv_store::server::Session;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const START_MS: u64 = 1_700_000_000_000;
/// Large enough that the allocator noise of buffers (the log writer's, the runtime's) is a few
/// values' worth, not hundreds.
const VALUE_BYTES: usize = 64 * 1024;

fn count_present(node: &kv_store::node::Node, s: &mut Session, keys: &[String]) -> usize {
    let mut args = vec!["EXISTS"];
    args.extend(keys.iter().map(String::as_str));
    match run(node, s, &args).0 {
        Frame::Integer(n) => n as usize,
        other => panic!("EXISTS answered {other:?}"),
    }
}

#[tokio::test]
async fn allkeys_lru_evicts_old_keys_and_noeviction_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let (node, clock) = open(dir.path(), START_MS);
    let mut s = Session::internal();
    let value = "x".repeat(VALUE_BYTES);
    // The access record is kept while an LRU or LFU policy is set.
    let reply = run(
        &node,
        &mut s,
        &["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"],
    )
    .0;
    assert_eq!(reply, Frame::OK);
    let old: Vec<String> = (0..300).map(|i| format!("old:{i}")).collect();
    for key in &old {
        assert_eq!(run(&node, &mut s, &["SET", key, &value]).0, Frame::OK);
    }
    // Ten seconds later the first half of the old keys is read again.
    clock.advance(10_000);
    let (hot, cold) = old.split_at(150);
    for key in hot {
        run(&node, &mut s, &["GET", key]);
    }
    clock.advance(10_000);
    // Now the limit: about 20 more values. 150 new values must evict about 130 keys. (Measured
    // once the log has written what it holds: its queue is not data.)
    let log = node.shared().log();
    log.wait_acked(log.last_submitted()).await.unwrap();
    let limit = (memory::allocated_bytes().unwrap() + 20 * VALUE_BYTES).to_string();
    let reply = run(&node, &mut s, &["CONFIG", "SET", "maxmemory", &limit]).0;
    assert_eq!(reply, Frame::OK);
    // Each write waits for the log, so that the log writer's buffers stay one value large and
    // the memory measured is the data's.
    let mut evicted = Vec::new();
    for i in 0..150 {
        let (reply, records) = run(&node, &mut s, &["SET", &format!("new:{i}"), &value]);
        assert_eq!(reply, Frame::OK, "allkeys-lru never refuses a write");
        log.wait_acked(log.last_submitted()).await.unwrap();
        let deleted = records
            .iter()
            .filter_map(|r| r.strip_prefix("*2\r\n$3\r\nDEL\r\n"));
        evicted.extend(deleted.map(|r| r.split("\r\n").nth(1).unwrap().to_owned()));
    }
    assert!(
        evicted.len() >= 50,
        "only {} evictions for about 130 values over the limit",
        evicted.len()
    );
    assert_eq!(
        run(&node, &mut s, &["DBSIZE"]).0,
        Frame::Integer(450 - evicted.len() as i64)
    );
    // While half the old keys are cold, a sample of five nearly always holds one, and it is the
    // least recently used: the first evictions are cold keys.
    let first_cold = evicted[..50].iter().filter(|k| cold.contains(k)).count();
    assert!(
        first_cold >= 40,
        "only {first_cold} of the first 50 evictions were cold: {evicted:?}"
    );
    let hot_left = count_present(&node, &mut s, hot);
    let cold_left = count_present(&node, &mut s, cold);
    assert!(
        hot_left > cold_left,
        "{hot_left} hot and {cold_left} cold keys left"
    );

    // Under noeviction, a limit well below the data refuses every write that may grow memory.
    let reply = run(
        &node,
        &mut s,
        &[
            "CONFIG",
            "SET",
            "maxmemory-policy",
            "noeviction",
            "maxmemory",
            "1mb",
        ],
    )
    .0;
    assert_eq!(reply, Frame::OK);
    let (reply, records) = run(&node, &mut s, &["SET", "one-more", &value]);
    assert_eq!(
        reply,
        Frame::error("OOM command not allowed when used memory > 'maxmemory'.")
    );
    assert!(records.is_empty());
    // Reads and deletions still work at the limit.
    assert_eq!(
        run(&node, &mut s, &["EXISTS", "new:149"]).0,
        Frame::Integer(1)
    );
    assert_eq!(run(&node, &mut s, &["DEL", "new:149"]).0, Frame::Integer(1));
    node.close().await.unwrap();
}
