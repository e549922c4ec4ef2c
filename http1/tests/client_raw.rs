//! The client against hand-scripted servers: every byte on the wire is chosen by the test, so
//! the cases a real server rarely produces (trailers, close-delimited bodies, malformed heads,
//! closed keep-alive connections, upgrades, 100-continue) can be played exactly.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http1::{Client, ClientConfig, Error, Frame, Method, Request, StatusCode, header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Every test finishes well within this, or fails.
const TEST_DEADLINE: Duration = Duration::from_secs(10);
/// A short timeout for tests that wait for one to fire.
const SHORT: Duration = Duration::from_millis(200);

/// Runs `script` on every accepted connection (with its index, from 0). Returns the address
/// and the number of connections accepted so far.
async fn raw_server<F, Fut>(script: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(usize, TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let index = counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(script(index, stream));
        }
    });
    (addr, accepted)
}

/// Reads one request: its head as text and its Content-Length body. `None` at end-of-file.
async fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let head = read_head(stream).await?;
    let len = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_owned)
        })
        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
    let mut body = vec![0; len];
    stream.read_exact(&mut body).await.ok()?;
    Some((head, body))
}

async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8(head).unwrap())
}

/// Answers every request on the connection with `response`, until the client closes.
async fn answer_all(mut stream: TcpStream, response: &'static [u8]) {
    while read_request(&mut stream).await.is_some() {
        if stream.write_all(response).await.is_err() {
            return;
        }
    }
}

const OK_HELLO: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

fn client() -> Client {
    Client::new(ClientConfig::default()).unwrap()
}

fn client_with(edit: impl FnOnce(&mut ClientConfig)) -> Client {
    let mut config = ClientConfig::default();
    edit(&mut config);
    Client::new(config).unwrap()
}

fn get(target: &str) -> Request {
    Request::new(Method::GET, target, "")
}

async fn body_text(client: &Client, addr: SocketAddr, req: Request) -> String {
    let response = client.send(addr, req).await.unwrap();
    let body = response.body.collect(1 << 20).await.unwrap();
    String::from_utf8(body.data.to_vec()).unwrap()
}

async fn within_deadline<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_DEADLINE, f)
        .await
        .expect("test took too long")
}

#[tokio::test]
async fn chunked_response_with_trailers_after_an_interim_103() {
    within_deadline(async {
        let (addr, _) = raw_server(|_, s| {
            answer_all(
                s,
                b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n\
                  HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n\
                  5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc\r\n\r\n",
            )
        })
        .await;
        let client = client();
        let response = client.send(addr, get("/")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.body.collect(1024).await.unwrap();
        assert_eq!(&body.data[..], b"hello world");
        assert_eq!(body.trailers.unwrap()["x-checksum"], "abc");
        assert_eq!(client.stats().idle_connections, 1);
    })
    .await;
}

#[tokio::test]
async fn close_delimited_response_reads_to_eof_and_is_not_pooled() {
    within_deadline(async {
        let (addr, _) = raw_server(|_, mut s| async move {
            read_request(&mut s).await;
            s.write_all(b"HTTP/1.1 200 OK\r\n\r\nall of it, until close")
                .await
                .unwrap();
        })
        .await;
        let client = client();
        assert_eq!(
            body_text(&client, addr, get("/")).await,
            "all of it, until close"
        );
        assert_eq!(client.stats().idle_connections, 0);
    })
    .await;
}

#[tokio::test]
async fn connection_close_response_is_not_pooled() {
    within_deadline(async {
        let (addr, accepted) = raw_server(|_, s| {
            answer_all(
                s,
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
            )
        })
        .await;
        let client = client();
        for _ in 0..2 {
            assert_eq!(body_text(&client, addr, get("/")).await, "ok");
            assert_eq!(client.stats().idle_connections, 0);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    })
    .await;
}

#[tokio::test]
async fn response_body_dropped_half_read_closes_the_connection() {
    within_deadline(async {
        let (addr, accepted) = raw_server(|_, mut s| async move {
            while read_request(&mut s).await.is_some() {
                let head = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n";
                s.write_all(head).await.unwrap();
                if s.write_all(&[b'x'; 1000]).await.is_err() {
                    return;
                }
            }
        })
        .await;
        let client = client();
        let mut response = client.send(addr, get("/")).await.unwrap();
        assert_eq!(response.body.exact_len(), Some(100_000));
        let first = response.body.frame().await.unwrap().unwrap();
        assert!(matches!(first, Frame::Data(d) if !d.is_empty()));
        drop(response);
        assert_eq!(client.stats().idle_connections, 0);
        let response = client.send(addr, get("/")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(client.stats().connections_reused, 0);
    })
    .await;
}

#[tokio::test]
async fn server_closing_idle_connections_is_noticed_before_reuse() {
    within_deadline(async {
        // One response per connection, then the server closes its keep-alive connection.
        let (addr, accepted) = raw_server(|_, mut s| async move {
            read_request(&mut s).await;
            s.write_all(OK_HELLO).await.unwrap();
        })
        .await;
        let client = client();
        assert_eq!(body_text(&client, addr, get("/")).await, "hello");
        // Whether the FIN has arrived by now or not, the second request succeeds: the stale
        // check discards the connection, or the retry rule sends the GET again.
        assert_eq!(body_text(&client, addr, get("/")).await, "hello");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        let stats = client.stats();
        assert_eq!(stats.stale_discarded + stats.retries, 1, "{stats:?}");
    })
    .await;
}

/// The race the stale check cannot see: the server takes the request, then closes without a
/// word. An idempotent request is retried once on a fresh connection.
#[tokio::test]
async fn idempotent_request_is_retried_after_a_silent_close() {
    within_deadline(async {
        let (addr, accepted) = raw_server(silent_after_first).await;
        let client = client();
        assert_eq!(body_text(&client, addr, get("/")).await, "hello");
        assert_eq!(body_text(&client, addr, get("/")).await, "hello");
        assert_eq!(client.stats().retries, 1);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    })
    .await;
}

#[tokio::test]
async fn post_that_reached_the_server_is_not_retried() {
    within_deadline(async {
        let (addr, accepted) = raw_server(silent_after_first).await;
        let client = client();
        assert_eq!(body_text(&client, addr, get("/")).await, "hello");
        let post = Request::new(Method::POST, "/", "charge the card");
        let err = client.send(addr, post).await.unwrap_err();
        assert!(matches!(err, Error::Closed | Error::Io(_)), "{err:?}");
        assert_eq!(client.stats().retries, 0);
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    })
    .await;
}

/// Connection 0 answers one request, reads the next and closes; later connections answer all.
async fn silent_after_first(index: usize, mut s: TcpStream) {
    if index > 0 {
        return answer_all(s, OK_HELLO).await;
    }
    read_request(&mut s).await;
    s.write_all(OK_HELLO).await.unwrap();
    read_request(&mut s).await;
}

#[tokio::test]
async fn malformed_responses_are_upstream_protocol_errors() {
    let big_field = format!("X-Big: {}\r\n", "a".repeat(40 * 1024));
    let cases: Vec<(&str, String)> = vec![
        ("garbage status line", "HTTX/1.1 200 OK\r\n\r\n".into()),
        ("status not a number", "HTTP/1.1 2x0 OK\r\n\r\n".into()),
        (
            "TE with CL",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n".into(),
        ),
        (
            "differing CLs",
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd".into(),
        ),
        (
            "oversized head",
            format!("HTTP/1.1 200 OK\r\n{big_field}\r\n"),
        ),
        ("bare LF", "HTTP/1.1 200 OK\nContent-Length: 0\n\n".into()),
        (
            "closed inside the head",
            "HTTP/1.1 200 OK\r\nContent-Le".into(),
        ),
    ];
    within_deadline(async {
        for (name, raw) in cases {
            let raw = Bytes::from(raw);
            let (addr, _) = raw_server(move |_, mut s| {
                let raw = raw.clone();
                async move {
                    read_request(&mut s).await;
                    let _ = s.write_all(&raw).await;
                }
            })
            .await;
            let err = client().send(addr, get("/")).await.unwrap_err();
            assert!(err.is_upstream_protocol_error(), "{name}: {err:?}");
        }
    })
    .await;
}

#[tokio::test]
async fn connect_times_out_on_a_listener_whose_backlog_is_full() {
    within_deadline(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(0).unwrap();
        let addr = listener.local_addr().unwrap();
        // Never accepted: fill the accept queue until a connect stalls (the kernel then drops
        // every SYN).
        let mut held = Vec::new();
        for _ in 0..64 {
            match tokio::time::timeout(SHORT, TcpStream::connect(addr)).await {
                Ok(stream) => held.push(stream.unwrap()),
                Err(_) => break,
            }
        }
        let client = client_with(|c| c.connect_timeout = SHORT);
        let err = client.send(addr, get("/")).await.unwrap_err();
        assert!(matches!(err, Error::Timeout("connect")), "{err:?}");
        drop(listener);
    })
    .await;
}

#[tokio::test]
async fn refused_connection_is_a_connect_error() {
    within_deadline(async {
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let err = client().send(addr, get("/")).await.unwrap_err();
        assert!(matches!(err, Error::Connect(_)), "{err:?}");
    })
    .await;
}

/// A target is written to the wire as it is: one with CRLF in it would smuggle a second
/// request to the upstream. It is refused before any connection is opened (the address has no
/// listener, so trying would give a connect error instead).
#[tokio::test]
async fn a_target_that_would_split_the_request_is_refused_before_connecting() {
    within_deadline(async {
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let evil = "/x HTTP/1.1\r\nHost: a\r\n\r\nDELETE /admin/all";
        let err = client().send(addr, get(evil)).await.unwrap_err();
        assert!(matches!(err, Error::InvalidRequest(_)), "{err:?}");
    })
    .await;
}

#[tokio::test]
async fn silent_server_trips_the_response_header_timeout() {
    within_deadline(async {
        let (addr, _) = raw_server(|_, mut s| async move {
            read_request(&mut s).await;
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n").await;
            tokio::time::sleep(TEST_DEADLINE).await;
        })
        .await;
        let client = client_with(|c| c.response_header_timeout = SHORT);
        let err = client.send(addr, get("/")).await.unwrap_err();
        assert!(matches!(err, Error::Timeout("response header")), "{err:?}");
    })
    .await;
}

#[tokio::test]
async fn at_most_max_idle_per_endpoint_connections_are_kept() {
    within_deadline(async {
        let barrier = Arc::new(tokio::sync::Barrier::new(4));
        let (addr, accepted) = raw_server(move |_, mut s| {
            let barrier = barrier.clone();
            async move {
                read_request(&mut s).await;
                // Hold every answer until four connections are open at once.
                barrier.wait().await;
                s.write_all(OK_HELLO).await.unwrap();
                answer_all(s, OK_HELLO).await;
            }
        })
        .await;
        let client = client_with(|c| c.max_idle_per_endpoint = 2);
        let requests: Vec<_> = (0..4)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move { body_text(&client, addr, get("/")).await })
            })
            .collect();
        for request in requests {
            assert_eq!(request.await.unwrap(), "hello");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 4);
        assert_eq!(client.stats().idle_connections, 2);
    })
    .await;
}

#[tokio::test]
async fn a_pooled_connection_is_reused_only_by_the_runtime_that_opened_it() {
    within_deadline(async {
        let (addr, accepted) = raw_server(|_, s| answer_all(s, OK_HELLO)).await;
        let client = client();
        // A second single-threaded runtime on its own thread, as a proxy worker runs.
        let other = {
            let client = client.clone();
            move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(body_text(&client, addr, get("/")))
            }
        };
        assert_eq!(body_text(&client, addr, get("/")).await, "hello");
        assert_eq!(client.stats().idle_connections, 1);
        let answered = tokio::task::spawn_blocking(other.clone()).await.unwrap();
        assert_eq!(answered, "hello");
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            2,
            "the other runtime opened its own connection"
        );
        assert_eq!(client.stats().connections_reused, 0);
        // Each runtime now finds its own: no third connection.
        assert_eq!(body_text(&client, addr, get("/")).await, "hello");
        assert_eq!(client.stats().connections_reused, 1);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    })
    .await;
}

#[tokio::test]
async fn switching_protocols_hands_over_the_raw_connection() {
    within_deadline(async {
        let (addr, _) = raw_server(|_, mut s| async move {
            let head = read_head(&mut s).await.unwrap();
            assert!(head.to_ascii_lowercase().contains("upgrade: echo"));
            s.write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\nEARLY",
            )
            .await
            .unwrap();
            let mut buf = [0u8; 64];
            while let Ok(n @ 1..) = s.read(&mut buf).await {
                s.write_all(&buf[..n]).await.unwrap();
            }
        })
        .await;
        let req = get("/chat")
            .with_header(header::CONNECTION, "upgrade".parse().unwrap())
            .with_header(header::UPGRADE, "echo".parse().unwrap());
        let mut response = client().send(addr, req).await.unwrap();
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        let mut upgraded = response.take_upgrade().unwrap().await.unwrap();
        assert_eq!(upgraded.read_buf, Bytes::from_static(b"EARLY"));
        upgraded.io.write_all(b"ping").await.unwrap();
        let mut echoed = [0u8; 4];
        upgraded.io.read_exact(&mut echoed).await.unwrap();
        assert_eq!(&echoed, b"ping");
    })
    .await;
}

fn expect_continue_post(body: &'static str) -> Request {
    Request::new(Method::PUT, "/upload", body)
        .with_header(header::EXPECT, "100-continue".parse().unwrap())
}

#[tokio::test]
async fn expect_continue_sends_the_body_after_the_100() {
    within_deadline(async {
        let (addr, _) = raw_server(|_, mut s| async move {
            let head = read_head(&mut s).await.unwrap();
            // No body may arrive before the 100.
            let mut probe = [0u8; 1];
            let early = tokio::time::timeout(SHORT, s.read(&mut probe)).await;
            assert!(early.is_err(), "body sent before 100 Continue");
            s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.unwrap();
            assert!(head.contains("content-length: 6"), "{head}");
            let mut body = [0u8; 6];
            s.read_exact(&mut body).await.unwrap();
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n{}",
                String::from_utf8_lossy(&body)
            );
            s.write_all(answer.as_bytes()).await.unwrap();
        })
        .await;
        let client = client_with(|c| c.expect_continue_timeout = TEST_DEADLINE);
        assert_eq!(
            body_text(&client, addr, expect_continue_post("upload")).await,
            "upload"
        );
    })
    .await;
}

#[tokio::test]
async fn expect_continue_answered_with_a_final_status_sends_no_body() {
    // A head that came in as HTTP/1.0 (through a proxy) goes out as HTTP/1.1 and waits too.
    for version in [http::Version::HTTP_11, http::Version::HTTP_10] {
        expect_continue_answered_with_a_final_status(version).await;
    }
}

async fn expect_continue_answered_with_a_final_status(version: http::Version) {
    within_deadline(async {
        let (saw_tx, saw_rx) = tokio::sync::oneshot::channel::<Vec<u8>>();
        let saw_tx = Arc::new(std::sync::Mutex::new(Some(saw_tx)));
        let (addr, _) = raw_server(move |_, mut s| {
            let saw_tx = saw_tx.clone();
            async move {
                read_head(&mut s).await.unwrap();
                s.write_all(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n")
                    .await
                    .unwrap();
                // The client must close without sending the body.
                let mut rest = Vec::new();
                let _ = tokio::time::timeout(TEST_DEADLINE, s.read_to_end(&mut rest)).await;
                let _ = saw_tx.lock().unwrap().take().unwrap().send(rest);
            }
        })
        .await;
        let client = client();
        let mut request = expect_continue_post("never sent");
        request.head.version = version;
        let response = client.send(addr, request).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "{version:?}"
        );
        assert_eq!(saw_rx.await.unwrap(), b"");
        assert_eq!(client.stats().idle_connections, 0);
    })
    .await;
}

#[tokio::test]
async fn expect_continue_without_an_answer_sends_the_body_after_the_timeout() {
    within_deadline(async {
        let (addr, _) = raw_server(|_, mut s| async move {
            let (_, body) = read_request(&mut s).await.unwrap();
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}",
                body.len(),
                String::from_utf8_lossy(&body)
            );
            s.write_all(answer.as_bytes()).await.unwrap();
        })
        .await;
        let client = client_with(|c| c.expect_continue_timeout = SHORT);
        let text = body_text(&client, addr, expect_continue_post("eventually")).await;
        assert_eq!(text, "eventually");
    })
    .await;
}

#[tokio::test]
async fn send_on_works_over_any_stream() {
    within_deadline(async {
        let (ours, mut theirs) = tokio::io::duplex(4096);
        let server = tokio::spawn(async move {
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                head.push(theirs.read_u8().await.unwrap());
            }
            theirs.write_all(OK_HELLO).await.unwrap();
            String::from_utf8(head).unwrap()
        });
        let req = get("/over-duplex").with_header(header::HOST, "example".parse().unwrap());
        let response = client().send_on(ours, req).await.unwrap();
        let body = response.body.collect(1024).await.unwrap();
        assert_eq!(&body.data[..], b"hello");
        let head = server.await.unwrap();
        assert!(
            head.starts_with("GET /over-duplex HTTP/1.1\r\nhost: example\r\n"),
            "{head}"
        );
    })
    .await;
}

#[tokio::test]
async fn early_final_response_ends_the_upload() {
    within_deadline(async {
        let (addr, _) = raw_server(|_, mut s| async move {
            read_head(&mut s).await.unwrap();
            let refusal = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 4\r\n\r\nnope";
            s.write_all(refusal).await.unwrap();
            // Keep the connection open, reading (and discarding) whatever the client sends.
            let mut sink = Vec::new();
            let _ = tokio::time::timeout(TEST_DEADLINE, s.read_to_end(&mut sink)).await;
        })
        .await;
        // The producer sends one piece and then never finishes: only the early answer can
        // end this exchange.
        let (mut tx, body) = http1::Body::channel(1, None);
        tx.send_data(Bytes::from_static(b"first piece"))
            .await
            .unwrap();
        let client = client();
        let response = client
            .send(addr, Request::new(Method::POST, "/", body))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let body = response.body.collect(1024).await.unwrap();
        assert_eq!(&body.data[..], b"nope");
        assert_eq!(
            client.stats().idle_connections,
            0,
            "a truncated request is never pooled"
        );
        drop(tx);
    })
    .await;
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    within_deadline(async {
        let (addr, accepted) = raw_server(|_, s| answer_all(s, OK_HELLO)).await;
        let client = client_with(|c| c.idle_timeout = SHORT);
        assert_eq!(body_text(&client, addr, get("/")).await, "hello");
        assert_eq!(client.stats().idle_connections, 1);
        // The reaper removes it without any further request.
        while client.stats().idle_connections > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(body_text(&client, addr, get("/")).await, "hello");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    })
    .await;
}
