//! Our server against a client nobody here wrote: hyper's HTTP/1.1 client connection.

mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Channel, Empty, Full};
use http1::server::ServerConfig;
use http1::{Body, HeaderMap, HeaderValue, Request, Response, StatusCode};
use hyper::client::conn::http1::{SendRequest, handshake};
use hyper_util::rt::TokioIo;
use support::{bounded, connect, start};

/// `/echo` streams the request body back (Content-Length when the request had one);
/// `/trailers` answers a chunked body with a trailer; anything else says hello.
async fn handler(req: Request) -> Response {
    match req.head.path() {
        "/echo" => Response::new(StatusCode::OK, req.body),
        "/trailers" => {
            let (mut tx, body) = Body::channel(2, None);
            tokio::spawn(async move {
                tx.send_data(Bytes::from_static(b"with ")).await.unwrap();
                tx.send_data(Bytes::from_static(b"trailers")).await.unwrap();
                let mut trailers = HeaderMap::new();
                trailers.insert("x-checksum", HeaderValue::from_static("abc"));
                tx.send_trailers(trailers).await.unwrap();
            });
            Response::new(StatusCode::OK, body)
        }
        _ => Response::text(StatusCode::OK, format!("hello {}", req.head.target)),
    }
}

async fn client<B>(addr: std::net::SocketAddr) -> SendRequest<B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let io = TokioIo::new(connect(addr).await);
    let (sender, connection) = handshake(io).await.unwrap();
    tokio::spawn(connection);
    sender
}

fn request<B>(method: &str, path: &str, body: B) -> http::Request<B> {
    http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "test")
        .body(body)
        .unwrap()
}

#[tokio::test]
async fn get() {
    bounded(async {
        let server = start(ServerConfig::default(), handler).await;
        let mut sender = client(server.addr).await;
        let response = sender
            .send_request(request("GET", "/a?b=1", Empty::<Bytes>::new()))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers().contains_key("date"));
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"hello /a?b=1");
    })
    .await;
}

#[tokio::test]
async fn post_with_content_length() {
    bounded(async {
        let server = start(ServerConfig::default(), handler).await;
        let mut sender = client(server.addr).await;
        let payload = Bytes::from(vec![b'x'; 100_000]);
        let response = sender
            .send_request(request("POST", "/echo", Full::new(payload.clone())))
            .await
            .unwrap();
        assert_eq!(response.headers()["content-length"], "100000");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, payload);
    })
    .await;
}

#[tokio::test]
async fn post_with_a_chunked_streaming_body() {
    bounded(async {
        let server = start(ServerConfig::default(), handler).await;
        let mut sender = client(server.addr).await;
        let (mut tx, body) = Channel::<Bytes, std::convert::Infallible>::new(1);
        let producer = tokio::spawn(async move {
            for i in 0..50 {
                let piece = format!("piece {i};");
                tx.send_data(Bytes::from(piece)).await.unwrap();
            }
        });
        let response = sender
            .send_request(request("POST", "/echo", body))
            .await
            .unwrap();
        assert_eq!(response.headers()["transfer-encoding"], "chunked");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        producer.await.unwrap();
        let expected: String = (0..50).map(|i| format!("piece {i};")).collect();
        assert_eq!(body, expected.as_bytes());
    })
    .await;
}

#[tokio::test]
async fn keep_alive_reuses_one_connection() {
    bounded(async {
        let server = start(ServerConfig::default(), handler).await;
        let mut sender = client(server.addr).await;
        for i in 0..10 {
            sender.ready().await.unwrap();
            let path = format!("/{i}");
            let response = sender
                .send_request(request("GET", &path, Empty::<Bytes>::new()))
                .await
                .unwrap();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, format!("hello /{i}").as_bytes());
        }
        assert!(!sender.is_closed());
    })
    .await;
}

#[tokio::test]
async fn chunked_response_with_trailers() {
    bounded(async {
        let server = start(ServerConfig::default(), handler).await;
        let mut sender = client(server.addr).await;
        let response = sender
            .send_request(request("GET", "/trailers", Empty::<Bytes>::new()))
            .await
            .unwrap();
        let collected = response.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().expect("no trailers");
        assert_eq!(trailers["x-checksum"], "abc");
        assert_eq!(&collected.to_bytes()[..], b"with trailers");
    })
    .await;
}
