//! Property: whatever the chunk sizes and however the bytes are cut into writes, a chunked
//! response body arrives through the client intact.

use std::time::Duration;

use http1::{Client, ClientConfig, Method, Request};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Every case finishes well within this, or fails.
const CASE_DEADLINE: Duration = Duration::from_secs(10);

/// The chunked wire form of `body`, cut into chunks of the given sizes (cycled).
fn chunked(body: &[u8], chunk_sizes: &[usize]) -> Vec<u8> {
    let mut wire = Vec::new();
    let mut rest = body;
    for &size in chunk_sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        wire.extend_from_slice(chunk);
        wire.extend_from_slice(b"\r\n");
        rest = tail;
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    wire
}

/// Serves one request with `wire` after a chunked head, in writes of the given sizes.
async fn serve_in_pieces(listener: TcpListener, wire: Vec<u8>, write_sizes: Vec<usize>) {
    let (mut stream, _) = listener.accept().await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(stream.read_u8().await.unwrap());
    }
    let mut response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    response.extend_from_slice(&wire);
    let mut rest = &response[..];
    for &size in write_sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (piece, tail) = rest.split_at(size.min(rest.len()));
        stream.write_all(piece).await.unwrap();
        stream.flush().await.unwrap();
        // Let the client run between writes, so pieces arrive as separate reads.
        tokio::task::yield_now().await;
        rest = tail;
    }
}

fn round_trip(body: Vec<u8>, chunk_sizes: Vec<usize>, write_sizes: Vec<usize>) -> Vec<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        tokio::time::timeout(CASE_DEADLINE, async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let wire = chunked(&body, &chunk_sizes);
            let server = tokio::spawn(serve_in_pieces(listener, wire, write_sizes));
            let client = Client::new(ClientConfig::default()).unwrap();
            let response = client
                .send(addr, Request::new(Method::GET, "/", ""))
                .await
                .unwrap();
            let collected = response.body.collect(u64::MAX).await.unwrap();
            server.await.unwrap();
            assert_eq!(client.stats().idle_connections, 1);
            collected.data.to_vec()
        })
        .await
        .expect("case took too long")
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn chunked_body_arrives_intact(
        body in proptest::collection::vec(any::<u8>(), 0..40_000),
        chunk_sizes in proptest::collection::vec(1usize..5_000, 1..8),
        write_sizes in proptest::collection::vec(1usize..3_000, 1..8),
    ) {
        let received = round_trip(body.clone(), chunk_sizes, write_sizes);
        prop_assert_eq!(received, body);
    }
}
