//! SIGHUP reload of the real binary under load: the new config takes over, a request that
//! started before the reload finishes on the old one, an invalid config is refused while the
//! proxy keeps serving, and no request fails through it all.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use harness::{DataDir, Process, ProcessSpec, cargo_bin, free_addr};
use http::StatusCode;
use support::*;

const READY_TIMEOUT: Duration = Duration::from_secs(60);

fn config_text(listen: &str, admin: &str, endpoint: &str, weight: u32) -> String {
    format!(
        "[server]\nlisten = \"{listen}\"\nadmin_listen = \"{admin}\"\n\
         [proxy]\naccess_log = false\n\
         [[routes]]\ncluster = \"app\"\n\
         [clusters.app]\nendpoints = [{{ address = \"{endpoint}\", weight = {weight} }}]\n"
    )
}

fn sighup(process: &Process) {
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is our unreaped child.
    let sent = unsafe { libc::kill(process.pid() as libc::pid_t, libc::SIGHUP) };
    assert_eq!(sent, 0, "SIGHUP not delivered");
}

/// Polls through the proxy until `backend` answers; returns how long it took.
async fn wait_for_backend(proxy: std::net::SocketAddr, backend: &str) -> Duration {
    let started = Instant::now();
    loop {
        let (status, headers, _) = get(proxy, "/").await;
        if status == StatusCode::OK && headers["x-backend"] == backend {
            return started.elapsed();
        }
        assert!(started.elapsed() < TEST_TIMEOUT, "{backend} never answered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_the_config_under_load_without_failing_a_request() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let (listen, admin) = (free_addr(), free_addr());
    let (listen_s, admin_s) = (listen.to_string(), admin.to_string());
    let dir = DataDir::new("proxy-reload");
    let path = dir.join("proxy.toml");
    std::fs::write(
        &path,
        config_text(&listen_s, &admin_s, &a.addr.to_string(), 1),
    )
    .unwrap();
    let spec = ProcessSpec::new("proxy", cargo_bin("reverse-proxy"))
        .args(["--config", path.to_str().unwrap()]);
    let process = tokio::task::spawn_blocking(move || {
        let mut process = Process::spawn(spec).unwrap();
        process.wait_ready(admin, READY_TIMEOUT).unwrap();
        process
    })
    .await
    .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut client = HyperClient::connect(listen).await;
                let (mut ok, mut failed) = (0u64, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let (status, headers, _) = client.get("/").await;
                    match status {
                        StatusCode::OK => ok += 1,
                        _ => failed.push(format!("{status} {headers:?}")),
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // A slow request that starts on the old config...
    let slow = tokio::spawn(get(listen, "/sleep/700"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    // ... and the reload that moves everything to b.
    std::fs::write(
        &path,
        config_text(&listen_s, &admin_s, &b.addr.to_string(), 1),
    )
    .unwrap();
    sighup(&process);
    wait_for_backend(listen, "b").await;
    let (status, headers, _) = slow.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers["x-backend"], "a",
        "the in-flight request finished on the old config"
    );

    // An invalid config is refused; b keeps serving.
    std::fs::write(
        &path,
        config_text(&listen_s, &admin_s, &a.addr.to_string(), 0),
    )
    .unwrap();
    sighup(&process);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get(listen, "/").await.1["x-backend"], "b");

    // Reloads in quick succession, alternating.
    for round in 0..6 {
        let endpoint = if round % 2 == 0 { a.addr } else { b.addr };
        std::fs::write(
            &path,
            config_text(&listen_s, &admin_s, &endpoint.to_string(), 1),
        )
        .unwrap();
        sighup(&process);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);

    let mut total = 0;
    for task in load {
        let (ok, failed) = task.await.unwrap();
        assert!(failed.is_empty(), "requests failed: {failed:?}");
        total += ok;
    }
    assert!(total > 100, "the load ran: {total} requests");
    let log = process.log();
    assert!(
        log.contains("reload refused") && log.contains("clusters.app.endpoints[0].weight"),
        "the invalid config was refused, naming the field:\n{log}"
    );
    assert!(a.hits() > 0 && b.hits() > 0);
}
