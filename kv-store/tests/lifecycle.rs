//! The server's conventions as a process: SIGTERM drains to exit 0 with everything written kept
//! for the next start, `/metrics` reports the server, and a bad flag or config value is named in
//! a one-line error with exit code 2.

mod common;

use std::time::Duration;

use common::Server;
use harness::{DataDir, Process, ProcessSpec, Termination, cargo_bin, free_addr, http_get_status};
use redis::AsyncCommands;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_to_exit_0_and_the_data_is_there_after_a_restart() {
    let mut server = Server::start("kv-lifecycle", &["--fsync", "no"]);
    let mut con = server.connect(false).await;
    for i in 0..100 {
        let () = con.set(format!("k{i}"), i).await.unwrap();
    }
    let _: i64 = con.rpush("list", &[1, 2, 3]).await.unwrap();
    assert_eq!(
        http_get_status(server.admin, "/readyz", Duration::from_secs(5)).unwrap(),
        200
    );

    let process = &mut server.process;
    let termination =
        tokio::task::block_in_place(|| process.terminate(Duration::from_secs(20))).unwrap();
    let Termination::Exited(status) = termination else {
        panic!(
            "did not exit by itself after SIGTERM: {termination:?}\n{}",
            server.process.log()
        );
    };
    assert!(status.success(), "{status}\n{}", server.process.log());

    server.restart();
    let log = server.process.log();
    assert!(log.contains("recovered"), "{log}");
    let mut con = server.connect(false).await;
    assert_eq!(con.get::<_, i64>("k99").await.unwrap(), 99);
    assert_eq!(
        con.lrange::<_, Vec<i64>>("list", 0, -1).await.unwrap(),
        [1, 2, 3]
    );
    let keys: i64 = redis::cmd("DBSIZE").query_async(&mut con).await.unwrap();
    assert_eq!(keys, 101);
}

/// Starts kv-store with `args` and returns its exit code and output, expecting it to refuse.
fn refused_start(args: &[&str]) -> (Option<i32>, String) {
    let dir = DataDir::new("kv-lifecycle-refused");
    let admin = free_addr();
    let spec = ProcessSpec::new("kv-store", cargo_bin("kv-store"))
        .args(["--data-dir", dir.path().to_str().unwrap()])
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            &admin.to_string(),
        ])
        .args(args.iter().copied());
    let mut process = Process::spawn(spec).unwrap();
    // `wait_ready` reports the exit status of a process that ended before it was ready;
    // `wait_exit` fails instead when the process has already gone by the time it is called.
    match process.wait_ready(admin, Duration::from_secs(30)) {
        Err(harness::Error::ExitedEarly { status, log, .. }) => (status.code(), log),
        other => panic!("a bad setting must stop the server at start-up: {other:?}"),
    }
}

#[test]
fn bad_settings_are_named_and_exit_2() {
    let (code, log) = refused_start(&["--maxclients", "0"]);
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("invalid value for `maxclients`"), "{log}");

    let (code, log) = refused_start(&["--fsync", "sometimes"]);
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("sometimes"), "{log}");

    let dir = DataDir::new("kv-lifecycle-config");
    let config = dir.join("kv.toml");
    std::fs::write(&config, "maxmemory_policy = \"allkeys-random\"\n").unwrap();
    let (code, log) = refused_start(&["--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("maxmemory_policy"), "{log}");
}

#[tokio::test]
async fn metrics_report_commands_and_keys() {
    let server = Server::start("kv-lifecycle-metrics", &[]);
    let mut con = server.connect(false).await;
    let () = con.set("a", 1).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = fetch(server.admin, "/metrics").await;
        if metrics.lines().any(|l| l == "kv_keys 1") {
            assert!(metrics.contains("kv_commands_total"), "{metrics}");
            assert!(metrics.contains("kv_log_last_index"), "{metrics}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "kv_keys never reported 1:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A minimal HTTP/1.1 GET, to read the admin endpoint's body.
async fn fetch(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}
