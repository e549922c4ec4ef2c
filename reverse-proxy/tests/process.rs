//! The `reverse-proxy` binary as an operator runs it: the quick start without a file, the
//! admin endpoint, SIGTERM draining to exit 0, and a bad config value named in a one-line
//! error with exit code 2.

mod support;

use std::time::Duration;

use harness::{DataDir, Process, ProcessSpec, Termination, cargo_bin, free_addr};
use http::StatusCode;
use support::*;

const READY_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_start_balances_over_the_upstream_flags_and_drains_on_sigterm() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let (listen, admin) = (free_addr(), free_addr());
    let spec = ProcessSpec::new("proxy", cargo_bin("reverse-proxy"))
        .args(["--listen", &listen.to_string()])
        .args(["--admin-listen", &admin.to_string()])
        .args(["--upstream", &a.addr.to_string()])
        .args(["--upstream", &b.addr.to_string()])
        .args(["--lb", "weighted_round_robin"])
        // A second worker thread: started with the flag, stopped by the drain.
        .args(["--workers", "2"])
        .args(["--shutdown-timeout-ms", "5000"]);
    let mut process = tokio::task::spawn_blocking(move || {
        let mut process = Process::spawn(spec).unwrap();
        process.wait_ready(admin, READY_TIMEOUT).unwrap();
        process
    })
    .await
    .unwrap();

    let counts = spread(listen, 10).await;
    assert_eq!(counts.get("a"), Some(&5), "{counts:?}");
    assert_eq!(counts.get("b"), Some(&5), "{counts:?}");
    let (status, _, metrics) = get(admin, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let metrics = text(&metrics);
    assert_eq!(
        metric(
            metrics,
            "proxy_requests_total{class=\"2xx\",cluster=\"default\"}"
        ),
        Some(10.0),
        "{metrics}"
    );

    let (termination, process) = tokio::task::spawn_blocking(move || {
        let termination = process.terminate(Duration::from_secs(10)).unwrap();
        (termination, process)
    })
    .await
    .unwrap();
    let Termination::Exited(status) = termination else {
        panic!("did not exit by itself after SIGTERM: {termination:?}");
    };
    assert!(status.success(), "{status}\n{}", process.log());
    assert!(
        process.log().contains("reverse_proxy::access"),
        "the access log is on by default"
    );
}

/// Starts the proxy with `args` and returns its exit code and output; it must exit by itself
/// within a minute (it is killed otherwise, and the test fails).
///
/// Not `harness::Process::wait_exit`: a process that exits before that call (clap's usage
/// errors take a millisecond) makes it fail with `NotRunning` instead of returning the status.
fn start_expecting_exit(args: &[&str]) -> (Option<i32>, String) {
    let mut child = std::process::Command::new(cargo_bin("reverse-proxy"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("a bad config must stop the proxy at start-up");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child.wait_with_output().unwrap();
    let mut log = String::from_utf8_lossy(&output.stdout).into_owned();
    log.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.code(), log)
}

#[test]
fn a_bad_config_value_is_named_and_exits_2() {
    let dir = DataDir::new("proxy-config");
    let path = dir.join("proxy.toml");
    std::fs::write(
        &path,
        "[[routes]]\ncluster = \"api\"\n\
         [clusters.api]\nendpoints = [{ address = \"127.0.0.1:9001\" }]\n\
         [clusters.api.retry]\nbudget_percent = 150\n",
    )
    .unwrap();
    let (code, log) = start_expecting_exit(&["--config", path.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains(
            "invalid value for `clusters.api.retry.budget_percent`: 150 is outside 0..=100"
        ),
        "{log}"
    );
}

#[test]
fn no_upstream_and_no_config_is_a_usage_error() {
    let (code, log) = start_expecting_exit(&["--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("`routes`"), "{log}");
    assert!(
        log.contains("--upstream"),
        "the error says how to fix it: {log}"
    );
}

#[test]
fn an_unknown_algorithm_is_refused_by_name() {
    let (code, log) = start_expecting_exit(&["--upstream", "127.0.0.1:1", "--lb", "fastest"]);
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("--lb"), "{log}");
}
