//! `cluster up` run as a user runs it, and every chaos command given from a "second terminal"
//! (the `cluster` binary run again), each checked against what the cluster then does.
//!
//! The cluster is the default topology with every port chosen free (`127.0.0.1:0` in the
//! file), so the test learns the addresses from `cluster status --json`, as a script would.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cluster::load::create_request;
use cluster::{ClusterStatus, State};
use harness::{DataDir, Process, ProcessSpec, cargo_bin, free_addr};

/// Longest the cluster may take to come up (debug builds, a loaded machine).
const UP_TIMEOUT: Duration = Duration::from_secs(120);

/// Longest any single wait in this test.
const WAIT: Duration = Duration::from_secs(30);

struct Launcher {
    process: Process,
    config: PathBuf,
}

impl Launcher {
    fn start(dir: &DataDir) -> Launcher {
        let config = dir.join("cluster.toml");
        let any = "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n";
        let text = format!(
            "[cluster]\ncontrol_listen = \"{}\"\ndata_dir = \"data\"\n\
             [kv-store]\n{any}[message-broker]\n{any}\
             [url-shortener]\n{any}restart = \"on-failure\"\n\
             [api-gateway]\n{any}[reverse-proxy]\n{any}",
            free_addr()
        );
        std::fs::write(&config, text).unwrap();
        let spec = ProcessSpec::new("cluster", cargo_bin("cluster")).args([
            "--config",
            config.to_str().unwrap(),
            "up",
            "--no-color",
        ]);
        let mut process = Process::spawn(spec).unwrap();
        let deadline = Instant::now() + UP_TIMEOUT;
        while !process.log().contains("The cluster is up") {
            assert!(
                process.is_running(),
                "cluster up exited:\n{}",
                process.log()
            );
            assert!(Instant::now() < deadline, "not up:\n{}", process.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        Launcher { process, config }
    }

    /// Runs `cluster --config FILE ARGS...`; its exit success and output (stdout, stderr).
    fn run(&self, args: &[&str]) -> (bool, String) {
        let output = Command::new(cargo_bin("cluster"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    }

    /// Runs a command that must succeed; its output.
    fn ok(&self, args: &[&str]) -> String {
        let (success, text) = self.run(args);
        assert!(success, "cluster {args:?} failed: {text}");
        text
    }

    fn status(&self) -> ClusterStatus {
        serde_json::from_str(&self.ok(&["status", "--json"])).unwrap()
    }

    fn member(&self, name: &str) -> cluster::MemberStatus {
        let status = self.status();
        status
            .members
            .into_iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no {name} in the status"))
    }

    /// Polls the status until `check` holds for member `name`.
    fn wait_for(&self, name: &str, what: &str, check: impl Fn(&cluster::MemberStatus) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            let member = self.member(name);
            if check(&member) {
                return;
            }
            assert!(Instant::now() < deadline, "{name} never {what}: {member:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// One HTTP/1.1 exchange on a fresh connection, answered within `WAIT`; (status, body).
async fn send(addr: SocketAddr, request: http1::Request) -> (u16, String) {
    let client = http1::Client::new(http1::ClientConfig {
        response_header_timeout: WAIT,
        max_idle_per_endpoint: 0,
        ..http1::ClientConfig::default()
    })
    .unwrap();
    let response = client.send(addr, request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.body.collect(1 << 20).await.unwrap().data;
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn get(addr: SocketAddr, target: &str) -> u16 {
    let request = http1::Request::new(http1::Method::GET, target, http1::Body::empty());
    send(addr, request).await.0
}

/// A link creation through the gateway, as `cluster load` sends it.
async fn create(entry: SocketAddr, key: &str) -> (u16, String) {
    let body = r#"{"url": "https://example.org/"}"#.to_owned();
    send(entry, create_request(body, "demo-key", Some(key))).await
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn up_then_every_chaos_command_from_a_second_terminal_then_ctrl_c_drains_in_order() {
    let dir = DataDir::new("cluster-cli");
    let mut launcher = Launcher::start(&dir);
    let status = launcher.status();
    let names: Vec<_> = status.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "kv-store",
            "message-broker",
            "url-shortener-1",
            "url-shortener-2",
            "api-gateway-1",
            "reverse-proxy"
        ]
    );
    for member in &status.members {
        assert_eq!(
            (member.state, member.ready),
            (State::Running, Some(true)),
            "{member:?}"
        );
    }
    assert!(status.links.iter().all(|l| l.up && !l.partitioned));
    let entry = launcher.member("reverse-proxy").listen;
    // The demo link the banner tells people to curl.
    assert_eq!(get(entry, "/hello").await, 302);

    // kill: SIGKILL, and the link to it refuses; the redirects go on through the other one.
    assert!(launcher.ok(&["kill", "url-shortener-1"]).contains("killed"));
    let killed = launcher.member("url-shortener-1");
    assert_eq!(
        killed.state,
        State::Killed,
        "a deliberate kill is not restarted"
    );
    assert_eq!(
        killed.last_exit.as_deref(),
        Some("killed by signal 9 (SIGKILL)")
    );
    assert!(!pid_alive(killed.pid));
    for _ in 0..20 {
        assert_eq!(get(entry, "/hello").await, 302);
    }
    let (success, text) = launcher.run(&["pause", "url-shortener-1"]);
    assert!(
        !success && text.contains("url-shortener-1 is killed"),
        "{text}"
    );

    // restart: back, ready, counted.
    launcher.ok(&["restart", "url-shortener-1"]);
    let restarted = launcher.member("url-shortener-1");
    assert_eq!(
        (restarted.state, restarted.ready, restarted.restarts),
        (State::Running, Some(true), 1)
    );
    assert_ne!(restarted.pid, killed.pid);

    // A process that dies by itself is restarted (restart = "on-failure" in the file).
    let first = launcher.member("url-shortener-2");
    let killed_outside = Command::new("kill")
        .args(["-9", &first.pid.to_string()])
        .status()
        .unwrap();
    assert!(killed_outside.success());
    launcher.wait_for("url-shortener-2", "restarted after dying", |m| {
        m.state == State::Running && m.restarts == 1 && m.pid != first.pid
    });
    assert!(
        launcher.process.log().contains(
            "url-shortener-2 killed by signal 9 (SIGKILL) unexpectedly; restarting in 1 s"
        )
    );

    // pause and resume: SIGSTOP holds it, SIGCONT lets it go.
    launcher.ok(&["pause", "url-shortener-2"]);
    let paused = launcher.member("url-shortener-2");
    assert_eq!((paused.state, paused.ready), (State::Paused, Some(false)));
    let proc_state = std::fs::read_to_string(format!("/proc/{}/stat", paused.pid)).unwrap();
    assert!(
        proc_state.contains(") T "),
        "stopped in the kernel's eyes: {proc_state}"
    );
    launcher.ok(&["resume", "url-shortener-2"]);
    launcher.wait_for("url-shortener-2", "ready after resume", |m| {
        m.state == State::Running && m.ready == Some(true)
    });

    // restart of a running process: SIGTERM, drain, start, ready.
    let said = launcher.ok(&["restart", "url-shortener-2"]);
    assert!(
        said.contains("restarted (SIGTERM, drained, exited with status 0) and ready"),
        "{said}"
    );
    assert_eq!(launcher.member("url-shortener-2").restarts, 2);

    // partition: the gateway loses the kv-store, where its idempotency keys live.
    assert_eq!(create(entry, "before-partition").await.0, 201);
    let said = launcher.ok(&["partition", "api-gateway", "kv-store"]);
    assert!(said.contains("1 link(s) cut"), "{said}");
    let (status, body) = create(entry, "during-partition").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("idempotency keys cannot be checked"),
        "{body}"
    );
    let cut = launcher
        .status()
        .links
        .into_iter()
        .find(|l| l.client == "api-gateway-1" && l.server == "kv-store")
        .unwrap();
    assert!(cut.partitioned && !cut.up);
    launcher.ok(&["heal"]);
    assert_eq!(create(entry, "after-heal").await.0, 201);

    // latency: every exchange between the proxy and the url-shorteners takes 300 ms longer.
    launcher.ok(&["latency", "reverse-proxy", "url-shortener", "300ms"]);
    let started = Instant::now();
    assert_eq!(get(entry, "/hello").await, 302);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    launcher.ok(&["heal", "reverse-proxy", "url-shortener"]);
    let started = Instant::now();
    assert_eq!(get(entry, "/hello").await, 302);
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );

    // Mistakes are named, and change nothing.
    for (args, expected) in [
        (
            &["kill", "postgres"][..],
            "no process is called \"postgres\"",
        ),
        (
            &["partition", "kv-store", "message-broker"][..],
            "do not talk to each other",
        ),
        (
            &["latency", "kv-store", "api-gateway", "soon"][..],
            "is not a duration",
        ),
    ] {
        let (success, text) = launcher.run(args);
        assert!(!success && text.contains(expected), "{args:?}: {text}");
    }

    // load: a short run through the proxy, every request answered.
    let text = launcher.ok(&["load", "--rate", "50", "--duration", "2s", "--seed", "7"]);
    assert!(text.contains("seed 7"), "{text}");
    assert!(
        text.contains("all        sent      100  ok      100  failed      0"),
        "{text}"
    );

    // Ctrl-C (here SIGTERM, handled alike): the entry point first, the stores last, all gone.
    let pids: Vec<u32> = launcher.status().members.iter().map(|m| m.pid).collect();
    let ended = launcher.process.terminate(Duration::from_secs(60)).unwrap();
    assert!(
        matches!(ended, harness::Termination::Exited(status) if status.success()),
        "{ended:?}"
    );
    let log = launcher.process.log();
    let order: Vec<usize> = [
        "reverse-proxy stopped",
        "api-gateway-1 stopped",
        "url-shortener-1 stopped",
        "kv-store stopped",
    ]
    .iter()
    .map(|line| {
        log.find(line)
            .unwrap_or_else(|| panic!("no {line:?} in:\n{log}"))
    })
    .collect();
    assert!(order.is_sorted(), "stopped out of order: {order:?}\n{log}");
    assert!(
        log.contains("kv-store stopped (SIGTERM, drained, exited with status 0)"),
        "{log}"
    );
    for pid in pids {
        assert!(!pid_alive(pid), "pid {pid} outlived the launcher");
    }
}

#[test]
fn a_second_launcher_and_a_command_without_a_cluster_say_what_is_wrong() {
    let dir = DataDir::new("cluster-cli-errors");
    let config = dir.join("cluster.toml");
    let control = free_addr();
    std::fs::write(
        &config,
        format!("[cluster]\ncontrol_listen = \"{control}\"\n"),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let output = Command::new(cargo_bin("cluster"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, text) = run(&["status"]);
    assert_eq!(code, Some(1));
    assert!(
        text.contains(&format!("no cluster is running at {control}")),
        "{text}"
    );

    // The control address is taken (as by a running launcher): `up` stops before starting anything.
    let _taken = std::net::TcpListener::bind(control).unwrap();
    let (code, text) = run(&["up"]);
    assert_eq!(code, Some(1));
    assert!(text.contains("is a cluster already running?"), "{text}");

    std::fs::write(&config, "[kv-store]\ncount = 3\n").unwrap();
    let (code, text) = run(&["status"]);
    assert_eq!(code, Some(1));
    assert!(text.contains("kv-store.count: must be 1"), "{text}");
}
