//! Every limit answers with its status and closes the connection, and the header deadline
//! holds against a client that never stops sending.

mod support;

use std::time::{Duration, Instant};

use http1::server::ServerConfig;
use http1::{Error, Request, Response, StatusCode};
use support::{
    bounded, connect, exchange_raw, read_to_close, small_limits_config, start, status_of,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn ok_handler(_req: Request) -> Response {
    Response::text(StatusCode::OK, "ok\n")
}

/// Reads the whole body with the server's own limit and answers with its length, or with the
/// status the body error earns.
async fn collecting_handler(req: Request) -> Response {
    match req.body.collect(u64::MAX).await {
        Ok(collected) => Response::text(StatusCode::OK, format!("{}\n", collected.data.len())),
        Err(Error::Body(e)) => Response::text(e.status(), format!("{e}\n")),
        Err(e) => Response::text(StatusCode::BAD_REQUEST, format!("{e}\n")),
    }
}

#[tokio::test]
async fn long_request_line_is_414() {
    bounded(async {
        let mut config = ServerConfig::default();
        config.limits.max_request_line_bytes = 100;
        let server = start(config, ok_handler).await;
        let raw = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(200));
        assert_eq!(
            status_of(&exchange_raw(server.addr, raw.as_bytes()).await),
            414
        );
    })
    .await;
}

#[tokio::test]
async fn large_header_section_is_431() {
    bounded(async {
        let mut config = ServerConfig::default();
        config.limits.max_header_bytes = 1024;
        config.limits.max_request_line_bytes = 512;
        let server = start(config, ok_handler).await;
        let raw = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "b".repeat(2000)
        );
        assert_eq!(
            status_of(&exchange_raw(server.addr, raw.as_bytes()).await),
            431
        );
    })
    .await;
}

#[tokio::test]
async fn too_many_header_fields_is_431() {
    bounded(async {
        let mut config = ServerConfig::default();
        config.limits.max_headers = 10;
        let server = start(config, ok_handler).await;
        let fields: String = (0..20).map(|i| format!("X-{i}: v\r\n")).collect();
        let raw = format!("GET / HTTP/1.1\r\nHost: x\r\n{fields}\r\n");
        assert_eq!(
            status_of(&exchange_raw(server.addr, raw.as_bytes()).await),
            431
        );
    })
    .await;
}

#[tokio::test]
async fn declared_body_over_the_limit_is_413() {
    bounded(async {
        let mut config = ServerConfig::default();
        config.limits.max_body_bytes = 1000;
        let server = start(config, collecting_handler).await;
        let raw = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n";
        assert_eq!(
            status_of(&exchange_raw(server.addr, raw.as_bytes()).await),
            413
        );
    })
    .await;
}

#[tokio::test]
async fn streamed_body_over_the_limit_is_413_and_closes() {
    bounded(async {
        let mut config = ServerConfig::default();
        config.limits.max_body_bytes = 1000;
        let server = start(config, collecting_handler).await;
        let chunk = format!("190\r\n{}\r\n", "c".repeat(400));
        let raw = format!(
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{}0\r\n\r\n",
            chunk.repeat(3)
        );
        let response = exchange_raw(server.addr, raw.as_bytes()).await;
        assert_eq!(status_of(&response), 413);
        assert!(String::from_utf8_lossy(&response).contains("connection: close"));
    })
    .await;
}

#[tokio::test]
async fn slow_loris_is_cut_off_at_the_header_deadline() {
    bounded(async {
        let config = small_limits_config();
        let deadline = config.limits.header_timeout;
        let server = start(config, ok_handler).await;
        let (mut reader, mut writer) = connect(server.addr).await.into_split();
        let started = Instant::now();
        // One byte every 20 ms, without end: far faster than any idle timeout, far slower than
        // the deadline allows for a whole head.
        let sender = tokio::spawn(async move {
            let head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ";
            for &byte in head.iter().chain(std::iter::repeat(&b'a')) {
                if writer.write_all(&[byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let mut response = Vec::new();
        tokio::time::timeout(support::READ_TIMEOUT, reader.read_to_end(&mut response))
            .await
            .expect("not closed")
            .expect("read failed");
        sender.abort();
        let elapsed = started.elapsed();
        assert_eq!(status_of(&response), 408);
        assert!(elapsed >= deadline, "closed early: {elapsed:?}");
        assert!(elapsed < deadline * 3, "closed late: {elapsed:?}");
    })
    .await;
}

#[tokio::test]
async fn idle_keep_alive_connection_closes_silently() {
    bounded(async {
        let mut config = ServerConfig::default();
        config.limits.idle_timeout = Duration::from_millis(200);
        let server = start(config, ok_handler).await;
        let mut stream = connect(server.addr).await;
        let started = Instant::now();
        let response = read_to_close(&mut stream).await;
        assert!(response.is_empty(), "{response:?}");
        assert!(started.elapsed() >= Duration::from_millis(200));
    })
    .await;
}
