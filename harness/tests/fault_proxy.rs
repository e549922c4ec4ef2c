//! Every toxic of the fault proxy, observed by a client talking through it to an echo server.
//!
//! Timings are asserted one-sided and with generous margins (a toxic guarantees *at least* a
//! delay; the machine may add more), so these tests hold on a loaded machine.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use harness::{Direction, FaultProxy, Toxic};

/// How long any single read in these tests may block before the test fails.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts an echo server on an in-process listener; it lives until the test process exits.
fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut reader = stream.try_clone().unwrap();
                let _ = std::io::copy(&mut reader, &mut stream);
            });
        }
    });
    addr
}

fn connect(proxy: &FaultProxy) -> TcpStream {
    let stream = TcpStream::connect(proxy.listen_addr()).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// Sends `message` and reads the echo back; returns how long that took.
fn round_trip(stream: &mut TcpStream, message: &[u8]) -> Duration {
    let started = Instant::now();
    stream.write_all(message).unwrap();
    let mut echo = vec![0u8; message.len()];
    stream.read_exact(&mut echo).unwrap();
    assert_eq!(echo, message);
    started.elapsed()
}

/// Reads until end of file or error; returns the bytes and the error, if any.
fn read_to_end(stream: &mut TcpStream) -> (Vec<u8>, Option<std::io::Error>) {
    let mut data = Vec::new();
    match stream.read_to_end(&mut data) {
        Ok(_) => (data, None),
        Err(e) => (data, Some(e)),
    }
}

#[test]
fn latency_in_each_direction_adds_up() {
    let proxy = FaultProxy::start(echo_server());
    let up = Toxic::Latency {
        latency_ms: 100,
        jitter_ms: 0,
    };
    let down = Toxic::Latency {
        latency_ms: 150,
        jitter_ms: 50,
    };
    proxy.add_toxic(Direction::Upstream, up).unwrap();
    proxy.add_toxic(Direction::Downstream, down).unwrap();
    let mut client = connect(&proxy);
    let elapsed = round_trip(&mut client, b"ping");
    assert!(
        elapsed >= Duration::from_millis(200),
        "round trip took {elapsed:?}"
    );
}

#[test]
fn toxics_added_to_an_open_connection_take_effect_and_can_be_removed() {
    let proxy = FaultProxy::start(echo_server());
    let mut client = connect(&proxy);
    round_trip(&mut client, b"before");
    let latency = Toxic::Latency {
        latency_ms: 300,
        jitter_ms: 0,
    };
    let id = proxy.add_toxic(Direction::Downstream, latency).unwrap();
    assert_eq!(proxy.toxics().len(), 1);
    let slowed = round_trip(&mut client, b"during");
    assert!(
        slowed >= Duration::from_millis(300),
        "round trip took {slowed:?}"
    );
    assert!(proxy.remove_toxic(id));
    assert!(proxy.toxics().is_empty());
    let limit = Toxic::LimitData { bytes: 3 };
    proxy.add_toxic(Direction::Downstream, limit).unwrap();
    client.write_all(b"after").unwrap();
    let (data, _) = read_to_end(&mut client);
    assert_eq!(data, b"aft");
}

#[test]
fn bandwidth_limits_throughput() {
    let proxy = FaultProxy::start(echo_server());
    let rate = Toxic::Bandwidth { rate_kb_per_s: 32 };
    proxy.add_toxic(Direction::Downstream, rate).unwrap();
    let mut client = connect(&proxy);
    let payload = vec![7u8; 32 * 1024];
    let elapsed = round_trip(&mut client, &payload);
    // One second at the nominal rate; half of that is proof enough, a loopback echo takes
    // milliseconds.
    assert!(
        elapsed >= Duration::from_millis(500),
        "32 KiB took {elapsed:?}"
    );
    let stats = proxy.stats();
    assert_eq!(stats.bytes_upstream, payload.len() as u64);
    assert_eq!(stats.bytes_downstream, payload.len() as u64);
}

#[test]
fn slicer_delivers_the_data_intact_in_many_small_reads() {
    let proxy = FaultProxy::start_seeded(echo_server(), 7);
    let slicer = Toxic::Slicer {
        average_size: 100,
        size_variation: 50,
        delay_us: 2_000,
    };
    proxy.add_toxic(Direction::Downstream, slicer).unwrap();
    let mut client = connect(&proxy);
    let payload: Vec<u8> = (0..4000u32).map(|i| i as u8).collect();
    client.write_all(&payload).unwrap();
    let mut received = Vec::new();
    let mut reads = 0;
    let mut buf = [0u8; 64 * 1024];
    while received.len() < payload.len() {
        let n = client.read(&mut buf).unwrap();
        assert!(n > 0, "closed after {} bytes", received.len());
        received.extend_from_slice(&buf[..n]);
        reads += 1;
    }
    assert_eq!(received, payload);
    // About 40 slices 2 ms apart; a slow reader may see several at once, but never one read.
    assert!(reads >= 5, "only {reads} reads");
}

#[test]
fn limit_data_closes_after_exactly_that_many_bytes() {
    let proxy = FaultProxy::start(echo_server());
    proxy
        .add_toxic(Direction::Downstream, Toxic::LimitData { bytes: 10 })
        .unwrap();
    let mut client = connect(&proxy);
    client.write_all(b"0123456789abcdefghij").unwrap();
    let (data, error) = read_to_end(&mut client);
    assert_eq!(data, b"0123456789");
    assert!(error.is_none(), "expected a clean close, got {error:?}");
}

#[test]
fn reset_peer_makes_the_client_see_a_connection_reset() {
    let proxy = FaultProxy::start(echo_server());
    proxy
        .add_toxic(Direction::Downstream, Toxic::ResetPeer { timeout_ms: 100 })
        .unwrap();
    let mut client = connect(&proxy);
    round_trip(&mut client, b"still fine");
    let (_, error) = read_to_end(&mut client);
    let kind = error.map(|e| e.kind());
    assert_eq!(kind, Some(ErrorKind::ConnectionReset));
}

#[test]
fn timeout_holds_data_until_removed() {
    let proxy = FaultProxy::start(echo_server());
    let blackhole = Toxic::Timeout { timeout_ms: 0 };
    let id = proxy.add_toxic(Direction::Downstream, blackhole).unwrap();
    let mut client = connect(&proxy);
    client.write_all(b"held").unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 4];
    let error = client
        .read(&mut buf)
        .expect_err("no data may pass a blackhole");
    assert!(
        matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{error}"
    );
    proxy.remove_toxic(id);
    client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"held");
}

#[test]
fn timeout_with_a_deadline_closes_the_connection() {
    let proxy = FaultProxy::start(echo_server());
    let blackhole = Toxic::Timeout { timeout_ms: 200 };
    proxy.add_toxic(Direction::Upstream, blackhole).unwrap();
    let mut client = connect(&proxy);
    client.write_all(b"lost").unwrap();
    let started = Instant::now();
    let (data, error) = read_to_end(&mut client);
    assert!(data.is_empty(), "data passed a blackhole: {data:?}");
    assert!(error.is_none(), "expected a close, got {error:?}");
    assert!(started.elapsed() >= Duration::from_millis(100));
}

#[test]
fn disabling_partitions_and_enabling_heals() {
    let proxy = FaultProxy::start(echo_server());
    let mut open = connect(&proxy);
    round_trip(&mut open, b"up");

    proxy.set_enabled(false).unwrap();
    assert!(!proxy.is_enabled());
    let (data, _) = read_to_end(&mut open);
    assert!(data.is_empty(), "an open connection must be cut");
    let refused = TcpStream::connect(proxy.listen_addr()).expect_err("partitioned");
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);

    proxy.set_enabled(true).unwrap();
    let mut healed = connect(&proxy);
    round_trip(&mut healed, b"up again");
    assert_eq!(proxy.stats().connections_accepted, 2);
}

#[test]
fn stopping_accepting_refuses_new_clients_and_keeps_open_connections() {
    let proxy = FaultProxy::start(echo_server());
    let mut open = connect(&proxy);
    round_trip(&mut open, b"before");

    proxy.stop_accepting().unwrap();
    assert!(!proxy.is_enabled());
    let refused = TcpStream::connect(proxy.listen_addr()).expect_err("not accepting");
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
    round_trip(&mut open, b"the open connection carries on");

    // A partition then cuts it, and enabling listens again.
    proxy.set_enabled(false).unwrap();
    let (data, _) = read_to_end(&mut open);
    assert!(data.is_empty(), "a partition cuts the open connection");
    proxy.set_enabled(true).unwrap();
    round_trip(&mut connect(&proxy), b"after");
}

#[test]
fn reset_removes_every_toxic_and_heals() {
    let proxy = FaultProxy::start(echo_server());
    let latency = Toxic::Latency {
        latency_ms: 1000,
        jitter_ms: 0,
    };
    proxy.add_toxic(Direction::Downstream, latency).unwrap();
    proxy
        .add_toxic(Direction::Upstream, Toxic::Timeout { timeout_ms: 0 })
        .unwrap();
    proxy.set_enabled(false).unwrap();
    proxy.reset().unwrap();
    assert!(proxy.toxics().is_empty());
    assert!(proxy.is_enabled());
    let mut client = connect(&proxy);
    let elapsed = round_trip(&mut client, b"clean");
    assert!(
        elapsed < Duration::from_millis(1000),
        "round trip took {elapsed:?}"
    );
}

#[tokio::test]
async fn the_proxy_works_from_inside_a_tokio_test() {
    let proxy = FaultProxy::start(echo_server());
    proxy
        .add_toxic(Direction::Downstream, Toxic::LimitData { bytes: 2 })
        .unwrap();
    let mut client = tokio::net::TcpStream::connect(proxy.listen_addr())
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    client.write_all(b"abc").await.unwrap();
    let mut data = Vec::new();
    let read = tokio::time::timeout(IO_TIMEOUT, client.read_to_end(&mut data)).await;
    read.expect("bounded").unwrap();
    assert_eq!(data, b"ab");
    proxy.set_enabled(false).unwrap();
    proxy.set_enabled(true).unwrap();
}
