//! Replayable seeds, data directories removed after a passing test, ports never handed out twice.
//!
//! What happens when a test panics is checked in `panic_reports.rs`.

use std::collections::HashSet;
use std::thread;

use harness::{DataDir, TestRng, free_addr};
use rand::RngExt;

#[test]
fn one_seed_gives_one_sequence() {
    let draw = |mut rng: TestRng| -> Vec<u64> { (0..8).map(|_| rng.random()).collect() };
    assert_eq!(draw(TestRng::from_seed(42)), draw(TestRng::from_seed(42)));
    assert_ne!(draw(TestRng::from_seed(42)), draw(TestRng::from_seed(43)));
    assert_eq!(TestRng::from_seed(42).seed(), 42);
}

#[test]
fn a_data_dir_is_removed_when_the_test_passes() {
    let dir = DataDir::new("removed");
    std::fs::write(dir.join("file"), b"x").unwrap();
    let path = dir.path().to_owned();
    assert!(path.exists());
    drop(dir);
    assert!(!path.exists());
}

#[test]
fn free_addr_never_repeats_across_threads() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 100;
    let handles: Vec<_> = (0..THREADS)
        .map(|_| thread::spawn(|| (0..PER_THREAD).map(|_| free_addr()).collect::<Vec<_>>()))
        .collect();
    let mut seen = HashSet::new();
    for handle in handles {
        for addr in handle.join().unwrap() {
            assert!(addr.ip().is_loopback());
            assert!(seen.insert(addr), "{addr} handed out twice");
        }
    }
    assert_eq!(seen.len(), THREADS * PER_THREAD);
}
