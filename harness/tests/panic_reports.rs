//! What a failing test leaves behind: its seed, its data directory, its servers' output.
//!
//! A panic cannot be observed from inside the test that panics, so this binary runs one of its
//! own tests (`child_panics_holding_guards`) as a child process and reads the child's stderr.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use harness::{DataDir, Process, ProcessSpec, cargo_bin, free_addr, seeded_rng};

/// Set only in the child process; without it the child test returns at once.
const CHILD_ENV: &str = "HARNESS_PANIC_REPORTS_CHILD";

/// The body of the child process run by `a_failing_test_reports_its_seed_data_and_output`; on
/// its own (without `CHILD_ENV`) it has nothing to do.
#[test]
fn child_panics_holding_guards() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let _rng = seeded_rng();
    let dir = DataDir::new("kept");
    std::fs::write(dir.join("evidence"), b"state at the failure").unwrap();
    let admin: SocketAddr = free_addr();
    let spec = ProcessSpec::new("hello-panic", cargo_bin("http-hello"))
        .arg("--admin-listen")
        .arg(admin.to_string());
    let mut server = Process::spawn(spec).unwrap();
    server.wait_ready(admin, Duration::from_secs(30)).unwrap();
    panic!("deliberate failure");
}

#[test]
fn a_failing_test_reports_its_seed_data_and_output() {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["child_panics_holding_guards", "--exact", "--nocapture"])
        .env(CHILD_ENV, "1")
        .env("TEST_SEED", "12345")
        .output()
        .unwrap();
    assert!(!output.status.success(), "the child test must fail");
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert!(
        stderr.contains("seed = 12345 (replay with TEST_SEED=12345)"),
        "stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("--- output of `hello-panic` ---\n[hello-panic] (harness: spawned pid"),
        "stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("[hello-panic] (harness: pid "),
        "the dump follows the kill, stderr:\n{stderr}"
    );
    let kept = stderr
        .lines()
        .find_map(|line| line.strip_prefix("data dir kept for inspection: "))
        .unwrap_or_else(|| panic!("no kept data dir in stderr:\n{stderr}"));
    let evidence = std::fs::read(Path::new(kept).join("evidence")).unwrap();
    assert_eq!(evidence, b"state at the failure");
    std::fs::remove_dir_all(kept).unwrap();
}
