//! Accept loops of one `AcceptGroup`, each on its own single-threaded runtime and thread, as
//! the proxy's workers run: a new connection goes to the loop that serves the fewest.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use http1::server::{AcceptGroup, Member, ServerConfig, serve_shared};
use http1::{Request, Response, StatusCode};
use tokio::sync::watch;

/// Names the loop (its thread) that served the request.
async fn whoami(_: Request) -> Response {
    let name = std::thread::current().name().unwrap_or("?").to_owned();
    Response::text(StatusCode::OK, name)
}

/// One accept loop per member, each on a thread `loop-<i>` with a current-thread runtime,
/// all on one listening socket.
fn start(members: Vec<Member>) -> (SocketAddr, watch::Sender<bool>, Vec<JoinHandle<()>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = watch::channel(false);
    let threads = members
        .into_iter()
        .enumerate()
        .map(|(i, member)| {
            let listener = listener.try_clone().unwrap();
            let mut stopped = stopped.clone();
            std::thread::Builder::new()
                .name(format!("loop-{i}"))
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    runtime.block_on(async move {
                        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                        let config = ServerConfig {
                            drain_timeout: Duration::from_secs(2),
                            ..ServerConfig::default()
                        };
                        let shutdown = async move {
                            let _ = stopped.wait_for(|&s| s).await;
                        };
                        serve_shared(listener, config, Arc::new(whoami), member, shutdown)
                            .await
                            .unwrap();
                    });
                })
                .unwrap()
        })
        .collect();
    (addr, stop, threads)
}

/// Opens a keep-alive connection and sends one request.
fn connect_and_send(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    stream
}

/// Opens a keep-alive connection and makes one request; returns it with the loop that
/// answered.
fn connect_and_ask(addr: SocketAddr) -> (TcpStream, String) {
    let stream = connect_and_send(addr);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut length = 0;
    loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "closed before the head's end"
        );
        if line == "\r\n" {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    (stream, String::from_utf8(body).unwrap())
}

fn wait_for_counts(group: &AcceptGroup, expected: &[usize]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while group.open() != expected {
        assert!(
            Instant::now() < deadline,
            "counts {:?}, expected {expected:?}",
            group.open()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn stop(stop: watch::Sender<bool>, threads: Vec<JoinHandle<()>>) {
    stop.send(true).unwrap();
    for thread in threads {
        thread.join().unwrap();
    }
}

#[test]
fn new_connections_go_to_the_loop_serving_the_fewest() {
    let members = AcceptGroup::members(64, 2);
    let group = members[0].group();
    let (addr, stopper, threads) = start(members);

    // Opened one after the other: each finds the counts left by the one before.
    let mut open: Vec<(TcpStream, String)> = (0..8).map(|_| connect_and_ask(addr)).collect();
    let on_first = open.iter().filter(|(_, by)| by == "loop-0").count();
    assert_eq!(
        on_first,
        4,
        "served by: {:?}",
        open.iter().map(|(_, by)| by).collect::<Vec<_>>()
    );
    assert_eq!(group.open(), [4, 4]);

    // The first loop's clients leave; the next four clients all go to it.
    open.retain(|(_, by)| by != "loop-0");
    wait_for_counts(&group, &[0, 4]);
    let next: Vec<(TcpStream, String)> = (0..4).map(|_| connect_and_ask(addr)).collect();
    for (_, by) in &next {
        assert_eq!(by, "loop-0");
    }
    assert_eq!(group.open(), [4, 4]);

    drop((open, next));
    wait_for_counts(&group, &[0, 0]);
    stop(stopper, threads);
}

/// A loop that never looks at its inbox still gets its share; when it stops, what waited
/// there is closed and uncounted, and no connection goes to it any more.
#[test]
fn connections_waiting_for_a_loop_that_stops_are_closed_and_it_gets_no_more() {
    let mut members = AcceptGroup::members(64, 2);
    let group = members[0].group();
    let idle = members.pop().unwrap();
    let (addr, stopper, threads) = start(members);

    let (_first, by) = connect_and_ask(addr);
    assert_eq!(by, "loop-0");
    // The second is the idle loop's turn: it waits in its inbox, unanswered.
    let mut waiting = connect_and_send(addr);
    wait_for_counts(&group, &[1, 1]);

    drop(idle);
    wait_for_counts(&group, &[1, 0]);
    let mut rest = Vec::new();
    match waiting.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "answered: {rest:?}"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    let later: Vec<(TcpStream, String)> = (0..2).map(|_| connect_and_ask(addr)).collect();
    for (_, by) in &later {
        assert_eq!(by, "loop-0");
    }
    assert_eq!(group.open(), [3, 0]);
    stop(stopper, threads);
}
