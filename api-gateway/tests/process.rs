//! The `api-gateway` binary as a process: a bad config is one line naming the field and exit
//! 2; the example config is valid; SIGHUP swaps routes while serving (an invalid file is
//! refused and the old config kept); SIGTERM drains and exits 0.

mod support;

use std::time::Duration;

use harness::{DataDir, Process, ProcessSpec, Termination, cargo_bin, free_addr};
use support::{Upstream, cluster, send};

fn spec(
    config: &std::path::Path,
    listen: std::net::SocketAddr,
    admin: std::net::SocketAddr,
) -> ProcessSpec {
    ProcessSpec::new("api-gateway", cargo_bin("api-gateway")).args([
        "--config",
        config.to_str().unwrap(),
        "--listen",
        &listen.to_string(),
        "--admin-listen",
        &admin.to_string(),
    ])
}

#[test]
fn a_bad_config_value_is_named_and_exits_2() {
    let dir = DataDir::new("gateway-bad-config");
    let path = dir.join("gateway.toml");
    let text = r#"
[[routes]]
name = "r"
path_prefix = "/"
cluster = "missing"
"#;
    std::fs::write(&path, text).unwrap();
    let mut process = Process::spawn(spec(&path, free_addr(), free_addr())).unwrap();
    let status = process
        .wait_exit(Duration::from_secs(60))
        .unwrap()
        .expect("it exits");
    assert_eq!(status.code(), Some(2));
    let log = process.log();
    assert!(log.contains("routes[0].cluster"), "{log}");
    assert!(log.contains("no entry named `missing`"), "{log}");
}

#[test]
fn the_example_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/example.toml");
    let config: api_gateway::config::Config =
        service_kit::config::load(Some(std::path::Path::new(path))).unwrap();
    service_kit::config::Validate::validate(&config).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_routes_while_serving_and_sigterm_drains() {
    let upstream = Upstream::start("api").await;
    let dir = DataDir::new("gateway-reload");
    let path = dir.join("gateway.toml");
    let route = |name: &str, prefix: &str| {
        format!("[[routes]]\nname = \"{name}\"\npath_prefix = \"{prefix}\"\ncluster = \"api\"\n")
    };
    let before = format!("{}\n{}", route("old", "/old"), cluster("api", &upstream));
    std::fs::write(&path, &before).unwrap();
    let (listen, admin) = (free_addr(), free_addr());
    let mut process = Process::spawn(spec(&path, listen, admin)).unwrap();
    process.wait_ready(admin, Duration::from_secs(60)).unwrap();
    let get = |target: &'static str| async move {
        send(listen, http::Method::GET, target, &[], Default::default())
            .await
            .status
    };
    assert_eq!(get("/old/x").await, 200);
    assert_eq!(get("/new/x").await, 404);

    std::fs::write(&path, "[[routes]]\nname = \"broken\"\n").unwrap();
    hangup(&process);
    std::fs::write(
        &path,
        format!("{}\n{}", route("new", "/new"), cluster("api", &upstream)),
    )
    .unwrap();
    // The broken file may or may not have been read before the good one replaced it; either
    // way the gateway keeps serving, and the good file wins after the next SIGHUP.
    hangup(&process);
    let deadline = tokio::time::Instant::now() + support::TEST_TIMEOUT;
    while get("/new/x").await != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "reload not applied:\n{}",
            process.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(get("/old/x").await, 404);

    let (ended, process) = tokio::task::spawn_blocking(move || {
        let ended = process.terminate(Duration::from_secs(20)).unwrap();
        (ended, process)
    })
    .await
    .unwrap();
    let Termination::Exited(status) = ended else {
        panic!("did not exit by itself after SIGTERM: {ended:?}");
    };
    assert!(status.success(), "{status}\n{}", process.log());
    assert!(process.log().contains("reload refused") || process.log().contains("reloaded"));
}

fn hangup(process: &Process) {
    // SAFETY: kill(2) with a pid the harness still holds unreaped (it cannot be reused).
    let sent = unsafe { libc::kill(process.pid() as i32, libc::SIGHUP) };
    assert_eq!(sent, 0);
}
