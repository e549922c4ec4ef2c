//! The conventions every server shares, checked on the smallest one as a real process: flags and
//! a config file, `/readyz` and `/metrics` on the admin listener, SIGTERM draining to exit 0, and
//! a bad config value named in a one-line error with exit code 2.

use std::net::SocketAddr;
use std::time::Duration;

use harness::{DataDir, Process, ProcessSpec, Termination, cargo_bin, free_addr};
use http1::client::{Client, ClientConfig};
use http1::{Method, Request, StatusCode};

const READY_TIMEOUT: Duration = Duration::from_secs(30);

async fn get(client: &Client, addr: SocketAddr, target: &str) -> (StatusCode, String) {
    let request = Request::new(Method::GET, target, http1::Body::empty());
    let response = client.send(addr, request).await.unwrap();
    let status = response.status();
    let body = response.body.collect(1 << 20).await.unwrap().data;
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn serves_counts_and_drains_to_exit_0_on_sigterm() {
    let (listen, admin) = (free_addr(), free_addr());
    let spec = ProcessSpec::new("http-hello", cargo_bin("http-hello"))
        .args(["--listen", &listen.to_string()])
        .args(["--admin-listen", &admin.to_string()])
        .args(["--shutdown-timeout-ms", "5000"]);
    let mut process = Process::spawn(spec).unwrap();
    process.wait_ready(admin, READY_TIMEOUT).unwrap();

    let client = Client::new(ClientConfig::default()).unwrap();
    let (status, body) = get(&client, listen, "/anything").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "hello, world\n"));
    let (status, metrics) = get(&client, admin, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        metrics.lines().any(|l| l == "http_hello_requests_total 1"),
        "{metrics}"
    );
    // The client keeps both connections idle in its pool: idle keep-alive connections must
    // not hold the shutdown up.
    assert_eq!(client.stats().idle_connections, 2);

    let termination = tokio::task::spawn_blocking(move || {
        let termination = process.terminate(Duration::from_secs(10)).unwrap();
        (termination, process)
    });
    let (termination, _process) = termination.await.unwrap();
    let Termination::Exited(status) = termination else {
        panic!("did not exit by itself after SIGTERM: {termination:?}");
    };
    assert!(status.success(), "{status}");
}

/// Starts http-hello with `config` as its file and returns its exit code and output.
fn start_with_config(config: &str) -> (Option<i32>, String) {
    let dir = DataDir::new("http-hello-config");
    let path = dir.join("hello.toml");
    std::fs::write(&path, config).unwrap();
    let spec = ProcessSpec::new("http-hello", cargo_bin("http-hello"))
        .args(["--config", path.to_str().unwrap()]);
    let mut process = Process::spawn(spec).unwrap();
    let status = process
        .wait_exit(Duration::from_secs(30))
        .unwrap()
        .expect("a bad config must stop the server at start-up");
    (status.code(), process.log())
}

#[test]
fn a_bad_config_value_is_named_and_exits_2() {
    let (code, log) = start_with_config("workers = 0\n");
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("invalid value for `workers`: must be between 1 and 256"),
        "{log}"
    );
}

#[test]
fn a_misspelt_key_is_named_and_exits_2() {
    let (code, log) = start_with_config("[server]\nlisten = \"127.0.0.1:0\"\nlistne = 1\n");
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("listne"), "{log}");
}
