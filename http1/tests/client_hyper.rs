//! Our client against a server nobody here wrote: hyper 1.x.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use http1::{Body, Client, ClientConfig, Method, Request, StatusCode, header};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1 as hyper_http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Every test finishes well within this, or fails.
const TEST_DEADLINE: Duration = Duration::from_secs(10);

/// A hyper response body of several frames and no known length, which hyper sends chunked.
struct Pieces(VecDeque<Bytes>);

impl hyper::body::Body for Pieces {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// Describes the request hyper received, or streams a chunked body for `/stream`.
async fn handle(req: hyper::Request<Incoming>) -> Result<hyper::Response<Pieces>, Infallible> {
    if req.uri().path() == "/stream" {
        let pieces = [&b"one "[..], b"two ", b"three"].map(Bytes::from_static);
        return Ok(hyper::Response::new(Pieces(pieces.into())));
    }
    let method = req.method().clone();
    let host = header_text(req.headers(), "host");
    let length = header_text(req.headers(), "content-length");
    let coding = header_text(req.headers(), "transfer-encoding");
    let collected = req.into_body().collect().await.expect("request body");
    let trailer = collected
        .trailers()
        .and_then(|t| t.get("x-sum"))
        .map(|v| v.to_str().unwrap_or("").to_owned())
        .unwrap_or_default();
    let body = collected.to_bytes();
    let text = format!(
        "{method} host={host} cl={length} te={coding} trailer={trailer} body={}",
        String::from_utf8_lossy(&body)
    );
    let mut response = hyper::Response::new(Pieces(VecDeque::from([Bytes::from(text)])));
    let len = response.body().0[0].len();
    response
        .headers_mut()
        .insert("content-length", len.to_string().parse().unwrap());
    Ok(response)
}

fn header_text(headers: &hyper::HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .map(|v| v.to_str().unwrap_or("?").to_owned())
        .unwrap_or_else(|| "-".into())
}

/// Starts a hyper server; returns its address and a count of accepted connections.
async fn hyper_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let _ = hyper_http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(handle))
                    .await;
            });
        }
    });
    (addr, accepted)
}

fn client() -> Client {
    Client::new(ClientConfig::default()).unwrap()
}

async fn text_of(client: &Client, addr: SocketAddr, req: Request) -> (StatusCode, String) {
    let response = client.send(addr, req).await.unwrap();
    let status = response.status();
    let body = response.body.collect(1 << 20).await.unwrap();
    (status, String::from_utf8(body.data.to_vec()).unwrap())
}

async fn within_deadline<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_DEADLINE, f)
        .await
        .expect("test took too long")
}

#[tokio::test]
async fn get_carries_a_host_from_the_address_and_no_framing() {
    within_deadline(async {
        let (addr, _) = hyper_server().await;
        let (status, text) = text_of(&client(), addr, Request::new(Method::GET, "/", "")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(text, format!("GET host={addr} cl=- te=- trailer= body="));
    })
    .await;
}

#[tokio::test]
async fn post_with_a_known_length_uses_content_length() {
    within_deadline(async {
        let (addr, _) = hyper_server().await;
        let req = Request::new(Method::POST, "/", "hello hyper");
        let (_, text) = text_of(&client(), addr, req).await;
        assert!(
            text.ends_with("cl=11 te=- trailer= body=hello hyper"),
            "{text}"
        );
    })
    .await;
}

#[tokio::test]
async fn post_with_a_streamed_body_is_chunked_with_trailers() {
    within_deadline(async {
        let (addr, _) = hyper_server().await;
        let (mut tx, body) = Body::channel(1, None);
        let producer = tokio::spawn(async move {
            for piece in ["stream", "ed ", "body"] {
                tx.send_data(Bytes::from_static(piece.as_bytes()))
                    .await
                    .unwrap();
            }
            let mut trailers = http1::HeaderMap::new();
            trailers.insert("x-sum", "42".parse().unwrap());
            tx.send_trailers(trailers).await.unwrap();
        });
        let req = Request::new(Method::POST, "/", body);
        let (_, text) = text_of(&client(), addr, req).await;
        producer.await.unwrap();
        assert!(
            text.ends_with("cl=- te=chunked trailer=42 body=streamed body"),
            "{text}"
        );
    })
    .await;
}

#[tokio::test]
async fn sequential_requests_reuse_one_connection() {
    within_deadline(async {
        let (addr, accepted) = hyper_server().await;
        let client = client();
        for i in 0..5 {
            let req = Request::new(Method::POST, "/", format!("request {i}"));
            let (_, text) = text_of(&client, addr, req).await;
            assert!(text.ends_with(&format!("body=request {i}")), "{text}");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        let stats = client.stats();
        assert_eq!(stats.connections_opened, 1);
        assert_eq!(stats.connections_reused, 4);
        assert_eq!(stats.idle_connections, 1);
    })
    .await;
}

#[tokio::test]
async fn chunked_response_streams_frame_by_frame() {
    within_deadline(async {
        let (addr, accepted) = hyper_server().await;
        let client = client();
        let response = client
            .send(addr, Request::new(Method::GET, "/stream", ""))
            .await
            .unwrap();
        assert_eq!(response.head.headers[header::TRANSFER_ENCODING], "chunked");
        assert_eq!(response.body.exact_len(), None);
        let body = response.body.collect(1024).await.unwrap();
        assert_eq!(&body.data[..], b"one two three");
        // Read to its end, the connection went back to the pool and serves the next request.
        let (_, text) = text_of(&client, addr, Request::new(Method::GET, "/", "")).await;
        assert!(text.starts_with("GET"));
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    })
    .await;
}

#[tokio::test]
async fn head_response_has_no_body_and_keeps_the_connection() {
    within_deadline(async {
        let (addr, accepted) = hyper_server().await;
        let client = client();
        let response = client
            .send(addr, Request::new(Method::HEAD, "/", ""))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.head.headers.contains_key(header::CONTENT_LENGTH));
        assert!(response.body.is_empty());
        let (_, text) = text_of(&client, addr, Request::new(Method::GET, "/", "")).await;
        assert!(text.starts_with("GET"));
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    })
    .await;
}
