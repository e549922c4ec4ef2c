//! Exchanges over raw TCP: pipelining, when a waiting handler is polled, 100-continue,
//! responses without bodies, trailers, upgrades, HTTP/1.0, panics, and graceful shutdown.

mod support;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http1::server::ServerConfig;
use http1::{
    Body, HeaderMap, HeaderValue, Method, OnUpgrade, Request, Response, StatusCode, header,
};
use support::{
    bounded, connect, exchange_raw, header_value, read_response, read_to_close, start, status_of,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

/// Answers by path; each path shows one behaviour.
async fn router(mut req: Request) -> Response {
    if req.head.method == Method::CONNECT {
        return tunnel_to_echo(&mut req);
    }
    match req.head.path() {
        "/id" => {
            let id = req.head.headers.get("x-id").cloned();
            let id = id.unwrap_or(HeaderValue::from_static("none"));
            Response::text(StatusCode::OK, id.to_str().unwrap().to_owned())
        }
        "/ten" => Response::text(StatusCode::OK, "0123456789"),
        "/no-content" => Response::new(StatusCode::NO_CONTENT, Body::empty()),
        "/not-modified" => Response::new(StatusCode::NOT_MODIFIED, Body::empty())
            .with_header(header::CONTENT_LENGTH, HeaderValue::from_static("42")),
        "/trailers" => streamed(true),
        "/stream" => streamed(false),
        "/collect" => match req.body.collect(1 << 20).await {
            Ok(c) => Response::text(StatusCode::OK, format!("{}", c.data.len())),
            Err(e) => Response::text(StatusCode::BAD_REQUEST, e.to_string()),
        },
        "/ignore-body" => Response::text(StatusCode::OK, "ignored"),
        "/echo" => Response::new(StatusCode::OK, req.body),
        "/early-hints" => Response::new(StatusCode::from_u16(103).unwrap(), Body::empty()),
        "/panic" => panic!("handler bug"),
        "/upgrade" => upgrade_to_echo(&mut req),
        _ => Response::text(StatusCode::NOT_FOUND, "not found"),
    }
}

/// A body of unknown length ("hello" then " world"), with a trailer if asked.
fn streamed(with_trailers: bool) -> Response {
    let (mut tx, body) = Body::channel(1, None);
    tokio::spawn(async move {
        tx.send_data(Bytes::from_static(b"hello")).await.unwrap();
        tx.send_data(Bytes::from_static(b" world")).await.unwrap();
        if with_trailers {
            let mut trailers = HeaderMap::new();
            trailers.insert("x-checksum", HeaderValue::from_static("abc"));
            tx.send_trailers(trailers).await.unwrap();
        } else {
            tx.finish();
        }
    });
    Response::new(StatusCode::OK, body)
}

/// Switches to a protocol that echoes every byte back.
fn upgrade_to_echo(req: &mut Request) -> Response {
    let Some(on_upgrade) = req.take_upgrade() else {
        return Response::text(StatusCode::BAD_REQUEST, "no upgrade asked");
    };
    echo(on_upgrade);
    Response::new(StatusCode::SWITCHING_PROTOCOLS, Body::empty())
        .with_header(header::CONNECTION, HeaderValue::from_static("upgrade"))
        .with_header(header::UPGRADE, HeaderValue::from_static("echo"))
}

/// Opens a CONNECT tunnel to an echo. The handler's Content-Length must not reach the client.
fn tunnel_to_echo(req: &mut Request) -> Response {
    let Some(on_upgrade) = req.take_upgrade() else {
        return Response::text(StatusCode::BAD_REQUEST, "no tunnel");
    };
    echo(on_upgrade);
    Response::new(StatusCode::OK, Body::empty())
        .with_header(header::CONTENT_LENGTH, HeaderValue::from_static("0"))
}

/// Echoes every byte of the stream the connection becomes.
fn echo(on_upgrade: OnUpgrade) {
    tokio::spawn(async move {
        let mut upgraded = on_upgrade.await.unwrap();
        upgraded.io.write_all(&upgraded.read_buf).await.unwrap();
        let mut buf = [0u8; 1024];
        loop {
            match upgraded.io.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => upgraded.io.write_all(&buf[..n]).await.unwrap(),
            }
        }
    });
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    bounded(async {
        let server = start(ServerConfig::default(), router).await;
        let mut stream = connect(server.addr).await;
        let batch: String = (0..20)
            .map(|i| format!("GET /id HTTP/1.1\r\nHost: x\r\nX-Id: {i}\r\n\r\n"))
            .collect();
        stream.write_all(batch.as_bytes()).await.unwrap();
        for i in 0..20 {
            let response = read_response(&mut stream).await;
            assert_eq!(status_of(response.as_bytes()), 200);
            assert!(response.ends_with(&format!("\r\n\r\n{i}")), "{response}");
        }
    })
    .await;
}

/// A handler that waits is polled again when it is woken, not at once: a poll for nothing
/// runs through its whole future (a proxy's is kilobytes), and a `yield_now` in it would
/// not yield.
#[tokio::test]
async fn a_waiting_handler_is_polled_again_only_when_woken() {
    bounded(async {
        let polls = Arc::new(AtomicUsize::new(0));
        let counted = polls.clone();
        let handler = move |_request: Request| {
            let polls = counted.clone();
            async move {
                let mut sleep = std::pin::pin!(tokio::time::sleep(Duration::from_millis(20)));
                std::future::poll_fn(|cx| {
                    polls.fetch_add(1, Ordering::Relaxed);
                    sleep.as_mut().poll(cx)
                })
                .await;
                Response::text(StatusCode::OK, "slept")
            }
        };
        let server = start(ServerConfig::default(), handler).await;
        let raw = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let response = String::from_utf8(exchange_raw(server.addr, raw).await).unwrap();
        assert!(response.ends_with("\r\n\r\nslept"), "{response}");
        // One poll that starts the timer, one when it fires.
        assert_eq!(polls.load(Ordering::Relaxed), 2);
    })
    .await;
}

#[tokio::test]
async fn continue_is_sent_when_the_handler_reads_the_body() {
    bounded(async {
        let server = start(ServerConfig::default(), router).await;
        let mut stream = connect(server.addr).await;
        let head = "POST /collect HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut interim = [0u8; 25];
        stream.read_exact(&mut interim).await.unwrap();
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
        stream.write_all(b"hello").await.unwrap();
        let response = read_response(&mut stream).await;
        assert_eq!(status_of(response.as_bytes()), 200);
        assert!(response.ends_with("\r\n\r\n5"), "{response}");
    })
    .await;
}

#[tokio::test]
async fn continue_is_not_sent_when_the_handler_answers_first() {
    bounded(async {
        let server = start(ServerConfig::default(), router).await;
        let head = "POST /ignore-body HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
        let response = exchange_raw(server.addr, head.as_bytes()).await;
        let text = String::from_utf8(response).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert_eq!(header_value(&text, "connection"), Some("close"));
    })
    .await;
}

#[tokio::test]
async fn continue_waits_behind_earlier_pipelined_responses() {
    bounded(async {
        let server = start(ServerConfig::default(), router).await;
        let mut stream = connect(server.addr).await;
        let raw = "GET /id HTTP/1.1\r\nHost: x\r\nX-Id: first\r\n\r\n\
                   POST /collect HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
        stream.write_all(raw.as_bytes()).await.unwrap();
        let first = read_response(&mut stream).await;
        assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{first}");
        assert!(first.ends_with("\r\n\r\nfirst"), "{first}");
        let interim = read_response(&mut stream).await;
        assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n");
        stream.write_all(b"hello").await.unwrap();
        let response = read_response(&mut stream).await;
        assert!(response.ends_with("\r\n\r\n5"), "{response}");
    })
    .await;
}

#[tokio::test]
async fn body_streamed_into_the_response_is_read_without_a_continue() {
    bounded(async {
        let server = start(ServerConfig::default(), router).await;
        let mut stream = connect(server.addr).await;
        let head =
            "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
        stream.write_all(head.as_bytes()).await.unwrap();
        // The final response comes first: its head is out before the body is sent, and no
        // `100 Continue` may follow it.
        let mut response = Vec::new();
        let mut byte = [0u8; 1];
        while !response.ends_with(b"\r\n\r\n") {
            assert_eq!(stream.read(&mut byte).await.unwrap(), 1);
            response.push(byte[0]);
        }
        let head = String::from_utf8(response).unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert_eq!(header_value(&head, "content-length"), Some("5"));
        assert_eq!(header_value(&head, "connection"), Some("close"));
        stream.write_all(b"hello").await.unwrap();
        assert_eq!(read_to_close(&mut stream).await, b"hello");
    })
    .await;
}

#[tokio::test]
async fn interim_status_from_the_handler_becomes_a_500() {
    bounded(async {
        let server = start(ServerConfig::default(), router).await;
        let raw =
            "GET /early-hints HTTP/1.1\r\nHost: x\r\n\r\nGET /ten HTTP/1.1\r\nHost: x\r\n\r\n";
        let response = exchange_raw(server.addr, raw.as_bytes()).await;
        let text = String::from_utf8(response).unwrap();
        assert_eq!(status_of(text.as_bytes()), 500, "{text}");
        assert_eq!(header_value(&text, "connection"), Some("close"));
        assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{text}");
    })
    .await;
}

#[tokio::test]
async fn unread_body_is_discarded_and_the_connection_kept() {
    bounded(async {
        let server = start(ServerConfig::default(), router).await;
        let mut stream = connect(server.addr).await;
        let raw = "POST /ignore-body HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789\
                   GET /id HTTP/1.1\r\nHost: x\r\nX-Id: after\r\n\r\n";
        stream.write_all(raw.as_bytes()).await.unwrap();
        assert!(read_response(&mut stream).await.ends_with("ignored"));
        assert!(read_response(&mut stream).await.ends_with("after"));
    })
    .await;
}

#[tokio::test]
async fn head_response_has_content_length_but_no_body() {
    bounded(async {
        let server = start(ServerConfig::default(), router).await;
        let mut stream = connect(server.addr).await;
        let raw = "HEAD /ten HTTP/1.1\r\nHost: x\r\n\r\nGET /id HTTP/1.1\r\nHost: x\r\nX-Id: next\r\n\r\n";
        stream.write_all(raw.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(stream.read_u8().await.unwrap());
        }
        let head = String::from_utf8(head).unwrap();
        assert_eq!(header_value(&head, "content-length"), Some("10"));
        // The next bytes are the next response, not a body.
        let next = read_response(&mut stream).await;
        assert!(next.starts_with("HTTP/1.1 200 OK"), "{next}");
        assert!(next.ends_with("next"), "{next}");
    })
    .await;
}

#[tokio::test]
async fn no_content_and_not_modified_have_no_body() {
    bounded(async {
        let server = start(ServerConfig::default(), router).await;
        let raw = "GET /no-content HTTP/1.1\r\nHost: x\r\n\r\n\
                   GET /not-modified HTTP/1.1\r\nHost: x\r\n\r\n\
                   GET /id HTTP/1.1\r\nHost: x\r\nX-Id: last\r\nConnection: close\r\n\r\n";
        let text = String::from_utf8(exchange_raw(server.addr, raw.as_bytes()).await).unwrap();
        let responses: Vec<&str> = text.split("HTTP/1.1 ").skip(1).collect();
        assert_eq!(responses.len(), 3, "{text}");
        assert!(responses[0].starts_with("204"));
        assert!(!responses[0].to_ascii_lowercase().contains("content-length"));
        assert!(
            responses[0].ends_with("\r\n\r\n"),
            "204 with a body: {text}"
        );
        assert!(responses[1].starts_with("304"));
        assert!(responses[1].contains("content-length: 42"));
        assert!(
            responses[1].ends_with("\r\n\r\n"),
            "304 with a body: {text}"
        );
        assert!(responses[2].ends_with("last"));
    })
    .await;
}

#[tokio::test]
async fn chunked_response_carries_trailers() {
    bounded(async {
        let server = start(ServerConfig::default(), router).await;
        let raw = "GET /trailers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let text = String::from_utf8(exchange_raw(server.addr, raw.as_bytes()).await).unwrap();
        assert_eq!(header_value(&text, "transfer-encoding"), Some("chunked"));
        let body = text.split_once("\r\n\r\n").unwrap().1;
        assert_eq!(
            body,
            "5\r\nhello\r\n6\r\n world\r\n0\r\nx-checksum: abc\r\n\r\n"
        );
    })
    .await;
}

#[tokio::test]
async fn http10_client_gets_a_close_delimited_body() {
    bounded(async {
        let server = start(ServerConfig::default(), router).await;
        let raw = "GET /stream HTTP/1.0\r\n\r\n";
        let text = String::from_utf8(exchange_raw(server.addr, raw.as_bytes()).await).unwrap();
        assert!(header_value(&text, "transfer-encoding").is_none(), "{text}");
        assert!(header_value(&text, "content-length").is_none(), "{text}");
        assert!(text.ends_with("\r\n\r\nhello world"), "{text}");
    })
    .await;
}

#[tokio::test]
async fn http10_keep_alive_is_honoured_for_known_lengths() {
    bounded(async {
        let server = start(ServerConfig::default(), router).await;
        let mut stream = connect(server.addr).await;
        let raw = "GET /ten HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
        stream.write_all(raw.as_bytes()).await.unwrap();
        let response = read_response(&mut stream).await;
        assert_eq!(header_value(&response, "connection"), Some("keep-alive"));
        stream.write_all(raw.as_bytes()).await.unwrap();
        assert!(read_response(&mut stream).await.ends_with("0123456789"));
    })
    .await;
}

#[tokio::test]
async fn upgrade_hands_over_the_stream_with_buffered_bytes() {
    bounded(async {
        let server = start(ServerConfig::default(), router).await;
        let mut stream = connect(server.addr).await;
        // "early" arrives in the same write as the head: it must reach the new protocol.
        let raw =
            "GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\nearly";
        stream.write_all(raw.as_bytes()).await.unwrap();
        let response = read_response(&mut stream).await;
        assert_eq!(status_of(response.as_bytes()), 101);
        assert_eq!(header_value(&response, "upgrade"), Some("echo"));
        let mut echoed = [0u8; 5];
        stream.read_exact(&mut echoed).await.unwrap();
        assert_eq!(&echoed, b"early");
        stream.write_all(b"ping").await.unwrap();
        let mut echoed = [0u8; 4];
        stream.read_exact(&mut echoed).await.unwrap();
        assert_eq!(&echoed, b"ping");
    })
    .await;
}

#[tokio::test]
async fn connect_2xx_opens_a_tunnel_without_framing_fields() {
    bounded(async {
        let server = start(ServerConfig::default(), router).await;
        let mut stream = connect(server.addr).await;
        let raw = "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
        stream.write_all(raw.as_bytes()).await.unwrap();
        let response = read_response(&mut stream).await;
        assert_eq!(status_of(response.as_bytes()), 200, "{response}");
        assert_eq!(
            header_value(&response, "content-length"),
            None,
            "{response}"
        );
        assert_eq!(header_value(&response, "transfer-encoding"), None);
        // What follows is the tunnel, not HTTP: a request line is echoed, not answered.
        stream.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut echoed = [0u8; 18];
        stream.read_exact(&mut echoed).await.unwrap();
        assert_eq!(&echoed, b"GET / HTTP/1.1\r\n\r\n");
    })
    .await;
}

#[tokio::test]
async fn upgrade_is_ignored_in_http10() {
    bounded(async {
        let server = start(ServerConfig::default(), router).await;
        let raw = "GET /upgrade HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n";
        let response = exchange_raw(server.addr, raw.as_bytes()).await;
        assert_eq!(status_of(&response), 400);
    })
    .await;
}

#[tokio::test]
async fn handler_panic_is_a_500_and_the_server_survives() {
    bounded(async {
        let server = start(ServerConfig::default(), router).await;
        let raw = "GET /panic HTTP/1.1\r\nHost: x\r\n\r\n";
        let text = String::from_utf8(exchange_raw(server.addr, raw.as_bytes()).await).unwrap();
        assert_eq!(status_of(text.as_bytes()), 500);
        assert_eq!(header_value(&text, "connection"), Some("close"));
        let raw = "GET /id HTTP/1.1\r\nHost: x\r\nX-Id: alive\r\nConnection: close\r\n\r\n";
        let text = String::from_utf8(exchange_raw(server.addr, raw.as_bytes()).await).unwrap();
        assert!(text.ends_with("alive"), "{text}");
    })
    .await;
}

#[tokio::test]
async fn a_handler_that_panics_before_making_its_future_is_a_500_too() {
    bounded(async {
        let handler = |req: Request| {
            assert_ne!(
                req.head.path(),
                "/panic",
                "refused before any future exists"
            );
            std::future::ready(Response::text(StatusCode::OK, "fine"))
        };
        let server = start(ServerConfig::default(), handler).await;
        let raw = "GET /panic HTTP/1.1\r\nHost: x\r\n\r\n";
        let text = String::from_utf8(exchange_raw(server.addr, raw.as_bytes()).await).unwrap();
        assert_eq!(status_of(text.as_bytes()), 500);
        let raw = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let text = String::from_utf8(exchange_raw(server.addr, raw.as_bytes()).await).unwrap();
        assert!(text.ends_with("fine"), "{text}");
    })
    .await;
}

#[tokio::test]
async fn every_response_has_a_date_and_no_server_field() {
    bounded(async {
        let server = start(ServerConfig::default(), router).await;
        let raw = "GET /ten HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let text = String::from_utf8(exchange_raw(server.addr, raw.as_bytes()).await).unwrap();
        assert!(header_value(&text, "date").is_some_and(|d| d.ends_with(" GMT")));
        assert!(header_value(&text, "server").is_none());
    })
    .await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests_and_refuses_new_ones() {
    bounded(async {
        let started = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let handler = {
            let (started, release) = (started.clone(), release.clone());
            move |_req: Request| {
                let (started, release) = (started.clone(), release.clone());
                async move {
                    started.notify_one();
                    release.notified().await;
                    Response::text(StatusCode::OK, "slow but done")
                }
            }
        };
        let server = start(ServerConfig::default(), handler).await;
        let addr = server.addr;
        let mut idle = connect(addr).await;
        let mut busy = connect(addr).await;
        busy.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        started.notified().await;

        let serving = server.shut_down();
        // The idle connection closes at once, without a response.
        assert!(read_to_close(&mut idle).await.is_empty());
        // New connections are refused once the listener is closed.
        loop {
            match tokio::net::TcpStream::connect(addr).await {
                Err(_) => break,
                Ok(_) => tokio::task::yield_now().await,
            }
        }
        // The request in flight completes, with `Connection: close`.
        release.notify_one();
        let text = String::from_utf8(read_to_close(&mut busy).await).unwrap();
        assert!(text.ends_with("slow but done"), "{text}");
        assert_eq!(header_value(&text, "connection"), Some("close"));
        drop((busy, idle));
        tokio::time::timeout(Duration::from_secs(5), serving)
            .await
            .expect("serve did not return")
            .unwrap();
    })
    .await;
}
