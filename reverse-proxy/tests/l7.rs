//! The L7 request path against real backends on port 0, through hyper's client: routing,
//! balancing over sockets, header rewriting, streaming, upgrades, and the proxy's own answers
//! when an upstream fails.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use reverse_proxy::balance::Algorithm;
use reverse_proxy::config::RouteConfig;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test]
async fn round_robin_spreads_requests_evenly_over_real_backends() {
    let backends = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let proxy = RunningProxy::start(config_with(cluster(&addrs))).await;

    let counts = spread(proxy.addr, 30).await;
    assert_eq!(
        counts.values().copied().collect::<Vec<_>>(),
        [10, 10, 10],
        "{counts:?}"
    );

    let metrics = proxy.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "proxy_requests_total{class=\"2xx\",cluster=\"app\"}"
        ),
        Some(30.0),
        "{metrics}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn two_workers_serve_concurrent_connections_and_drain() {
    let backends = [Backend::start("a").await, Backend::start("b").await];
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let mut config = config_with(cluster(&addrs));
    config.proxy.workers = 2;
    let proxy = RunningProxy::start(config).await;

    let clients: Vec<_> = (0..8)
        .map(|_| tokio::spawn(spread(proxy.addr, 25)))
        .collect();
    let mut counts = BTreeMap::new();
    for client in clients {
        for (backend, n) in client.await.unwrap() {
            *counts.entry(backend).or_insert(0) += n;
        }
    }
    assert_eq!(counts.values().sum::<usize>(), 200, "{counts:?}");
    assert_eq!(counts.len(), 2, "{counts:?}");
    let metrics = proxy.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "proxy_requests_total{class=\"2xx\",cluster=\"app\"}"
        ),
        Some(200.0),
        "{metrics}"
    );
    proxy.stop().await;
}

/// Keep-alive clients are shared evenly between two workers, whichever worker's `accept`
/// takes them, and `/metrics` shows each worker's count.
#[tokio::test]
async fn two_workers_get_the_same_number_of_connections_and_report_them() {
    let backend = Backend::start("a").await;
    let mut config = config_with(cluster(&[backend.addr]));
    config.proxy.workers = 2;
    let proxy = RunningProxy::start(config).await;
    let workers = [
        "proxy_connections_active{listener=\"http\",worker=\"0\"}",
        "proxy_connections_active{listener=\"http\",worker=\"1\"}",
    ];

    let mut clients = Vec::new();
    for _ in 0..6 {
        let mut client = HyperClient::connect(proxy.addr).await;
        assert_eq!(client.get("/").await.0, StatusCode::OK);
        clients.push(client);
    }
    proxy.metrics_become(workers, [3.0, 3.0]).await;
    drop(clients);
    proxy.metrics_become(workers, [0.0, 0.0]).await;
    proxy.stop().await;
}

#[tokio::test]
async fn every_algorithm_serves_through_the_proxy_and_reaches_every_backend() {
    let backends = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    for algorithm in Algorithm::ALL {
        let mut cluster = cluster(&addrs);
        cluster.lb = algorithm;
        let proxy = RunningProxy::start(config_with(cluster)).await;
        // Each request comes on a fresh connection from 127.0.0.1: the hashing balancers
        // (keyed by client IP) send all of them to one backend, the others spread them.
        let counts = spread(proxy.addr, 60).await;
        let total: usize = counts.values().sum();
        assert_eq!(total, 60);
        match algorithm {
            Algorithm::RingHash | Algorithm::Maglev => {
                assert_eq!(
                    counts.len(),
                    1,
                    "{algorithm:?}: one client IP, one backend: {counts:?}"
                )
            }
            _ => assert_eq!(counts.len(), 3, "{algorithm:?}: {counts:?}"),
        }
        proxy.stop().await;
    }
}

#[tokio::test]
async fn weights_shape_the_spread_over_real_backends() {
    // Exact for the deterministic algorithm; the random ones are checked with a seed in
    // their unit tests (the proxy seeds its balancers from the clock).
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let mut cluster = cluster(&[a.addr, b.addr]);
    cluster.lb = Algorithm::WeightedRoundRobin;
    cluster.endpoints[0].weight = 3;
    let proxy = RunningProxy::start(config_with(cluster)).await;
    let counts = spread(proxy.addr, 400).await;
    assert_eq!((counts["a"], counts["b"]), (300, 100), "{counts:?}");
    proxy.stop().await;
}

#[tokio::test]
async fn hashing_on_a_header_keeps_each_user_on_one_backend() {
    let backends = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let mut cluster = cluster(&addrs);
    cluster.lb = Algorithm::Maglev;
    cluster.hash_key = reverse_proxy::balance::HashKey::Header {
        name: "x-user".into(),
    };
    let proxy = RunningProxy::start(config_with(cluster)).await;
    let mut client = HyperClient::connect(proxy.addr).await;
    let mut seen = std::collections::BTreeSet::new();
    for user in 0..30 {
        let user = user.to_string();
        let mut first = None;
        for _ in 0..3 {
            let (_, headers, _) = client
                .send(request("GET", "/", &[("x-user", &user)], Bytes::new()))
                .await;
            let backend = headers["x-backend"].clone();
            assert_eq!(
                *first.get_or_insert(backend.clone()),
                backend,
                "user {user} moved"
            );
        }
        seen.insert(first.unwrap());
    }
    assert_eq!(seen.len(), 3, "30 users spread over the 3 backends");
    proxy.stop().await;
}

#[tokio::test]
async fn forwarding_fields_are_added_and_hop_by_hop_fields_removed_both_ways() {
    let backend = Backend::start("a").await;
    let proxy = RunningProxy::start(config_with(cluster(&[backend.addr]))).await;
    let mut client = HyperClient::connect(proxy.addr).await;
    let (status, headers, body) = client
        .send(request(
            "GET",
            "/headers",
            &[
                ("connection", "x-secret"),
                ("x-secret", "for the proxy only"),
                ("keep-alive", "timeout=9"),
                ("proxy-connection", "keep-alive"),
                ("te", "trailers"),
                ("x-forwarded-for", "203.0.113.9"),
                ("x-end-to-end", "kept"),
            ],
            Bytes::new(),
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    let seen = text(&body).to_owned();
    let field = |name: &str| {
        seen.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .map(str::to_owned)
    };
    for hop in [
        "x-secret",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
    ] {
        assert_eq!(field(hop), None, "{hop} reached the upstream:\n{seen}");
    }
    assert_eq!(field("x-end-to-end").as_deref(), Some("kept"));
    assert_eq!(
        field("x-forwarded-for").as_deref(),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(field("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(field("x-forwarded-host").as_deref(), Some("proxy.test"));
    assert_eq!(
        field("forwarded").as_deref(),
        Some("for=127.0.0.1;proto=http;host=proxy.test")
    );
    assert_eq!(field("via").as_deref(), Some("1.1 reverse-proxy"));
    let upstream_id = field("x-request-id").expect("a request id was generated");
    assert_eq!(upstream_id.len(), 32);

    // The response: the upstream's hop-by-hop fields are gone, Via and the id are added.
    assert!(!headers.contains_key("x-hop"), "{headers:?}");
    assert!(!headers.contains_key("keep-alive"), "{headers:?}");
    assert_eq!(headers["via"], "1.1 reverse-proxy");
    assert_eq!(headers["x-request-id"], upstream_id.as_str());
    proxy.stop().await;
}

#[tokio::test]
async fn head_keeps_the_length_of_the_body_it_does_not_carry() {
    let backend = Backend::start("backend-a").await;
    let proxy = RunningProxy::start(config_with(cluster(&[backend.addr]))).await;
    let mut client = HyperClient::connect(proxy.addr).await;
    let (status, headers, body) = client.send(request("HEAD", "/", &[], Bytes::new())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers["content-length"],
        "backend-a".len().to_string().as_str()
    );
    assert!(body.is_empty());
    // The connection is still in step: the next request is answered normally.
    let (status, _, body) = client.get("/").await;
    assert_eq!((status, text(&body)), (StatusCode::OK, "backend-a"));
    proxy.stop().await;
}

#[tokio::test]
async fn a_request_id_from_the_client_is_kept_end_to_end() {
    let backend = Backend::start("a").await;
    let proxy = RunningProxy::start(config_with(cluster(&[backend.addr]))).await;
    let mut client = HyperClient::connect(proxy.addr).await;
    let (_, headers, body) = client
        .send(request(
            "GET",
            "/headers",
            &[("x-request-id", "req-42")],
            Bytes::new(),
        ))
        .await;
    assert!(
        text(&body).contains("x-request-id: req-42\n"),
        "{}",
        text(&body)
    );
    assert_eq!(headers["x-request-id"], "req-42");
    proxy.stop().await;
}

#[tokio::test]
async fn turned_off_forwarding_fields_and_request_ids_pass_as_received() {
    let backend = Backend::start("a").await;
    let mut config = config_with(cluster(&[backend.addr]));
    config.proxy.forwarded_headers = false;
    config.proxy.request_id = false;
    let proxy = RunningProxy::start(config).await;
    let mut client = HyperClient::connect(proxy.addr).await;
    let received = [
        ("x-forwarded-for", "203.0.113.9"),
        ("x-request-id", "req-7"),
    ];
    let (status, headers, body) = client
        .send(request("GET", "/headers", &received, Bytes::new()))
        .await;
    assert_eq!(status, StatusCode::OK);
    let seen = text(&body);
    for line in ["x-forwarded-for: 203.0.113.9\n", "x-request-id: req-7\n"] {
        assert!(seen.contains(line), "{line:?} not passed on:\n{seen}");
    }
    for added in ["x-forwarded-proto", "x-forwarded-host", "forwarded:"] {
        assert!(!seen.contains(added), "{added} was added:\n{seen}");
    }
    assert!(seen.contains("via: 1.1 reverse-proxy\n"), "{seen}");
    assert!(!headers.contains_key("x-request-id"), "{headers:?}");

    // Without an id from the client, none is made up.
    let (_, headers, body) = client.get("/headers").await;
    assert!(!text(&body).contains("x-request-id"), "{}", text(&body));
    assert!(!headers.contains_key("x-request-id"), "{headers:?}");
    proxy.stop().await;
}

#[tokio::test]
async fn routes_choose_clusters_by_host_and_path_and_unrouted_requests_get_404() {
    let (api, web) = (Backend::start("api").await, Backend::start("web").await);
    let mut config = config_with(cluster(&[web.addr]));
    config.routes = vec![
        RouteConfig {
            host: Some("api.test".into()),
            path_prefix: "/v1/".into(),
            cluster: "api".into(),
        },
        RouteConfig {
            host: Some("www.test".into()),
            path_prefix: "/".into(),
            cluster: "app".into(),
        },
    ];
    config.clusters.insert("api".into(), cluster(&[api.addr]));
    let proxy = RunningProxy::start(config).await;
    let mut client = HyperClient::connect(proxy.addr).await;
    let via_host = |host: &'static str, path: &'static str| {
        hyper::Request::builder()
            .uri(path)
            .header("host", host)
            .body(http_body_util::Full::new(Bytes::new()))
            .unwrap()
    };
    let (_, headers, _) = client.send(via_host("api.test", "/v1/users")).await;
    assert_eq!(headers["x-backend"], "api");
    let (_, headers, _) = client.send(via_host("WWW.test:8080", "/v1/users")).await;
    assert_eq!(headers["x-backend"], "web");
    let (status, headers, _) = client.send(via_host("api.test", "/v2/users")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        headers["proxy-status"],
        "reverse-proxy; error=destination_not_found"
    );
    let metrics = proxy.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "proxy_requests_total{class=\"4xx\",cluster=\"none\"}"
        ),
        Some(1.0)
    );
    proxy.stop().await;
}

#[tokio::test]
async fn bodies_stream_through_in_both_directions() {
    let backend = Backend::start("a").await;
    let proxy = RunningProxy::start(config_with(cluster(&[backend.addr]))).await;
    let payload: Bytes = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut client = HyperClient::connect(proxy.addr).await;
    let (status, _, body) = client
        .send(request("POST", "/echo", &[], payload.clone()))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.len(), payload.len());
    assert!(body == payload, "the echoed body differs");
    proxy.stop().await;
}

#[tokio::test]
async fn a_slow_client_slows_the_upstream_down_instead_of_filling_memory() {
    let backend = Backend::start("a").await;
    let proxy = RunningProxy::start(config_with(cluster(&[backend.addr]))).await;
    const MIB: u64 = 256;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(format!("GET /stream/{MIB} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    // The client reads nothing for a while: the upstream may only get as far as the socket
    // buffers of two hops and the proxy's bounded buffers allow.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let early = backend.streamed();
    eprintln!(
        "produced for a client that read nothing: {} KiB",
        early / 1024
    );
    assert!(early > 0, "the response started");
    assert!(
        early < 64 * 1024 * 1024,
        "{} MiB produced for a client that read nothing",
        early / (1024 * 1024)
    );
    // Then it reads everything, and gets all of it.
    let mut total = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    let expected_body = MIB * 1024 * 1024;
    let mut head_len = None;
    while head_len.is_none_or(|h| total < h + expected_body) {
        let n = tokio::time::timeout(TEST_TIMEOUT, stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed after {total} bytes");
        if head_len.is_none() {
            let text = String::from_utf8_lossy(&buf[..n]);
            head_len = text.find("\r\n\r\n").map(|i| i as u64 + 4);
            assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        }
        total += n as u64;
    }
    assert_eq!(backend.streamed(), expected_body);
    proxy.stop().await;
}

#[tokio::test]
async fn a_refused_connection_is_502_and_a_silent_upstream_is_504() {
    // A port with nobody listening: bind, note the address, close.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let proxy = RunningProxy::start(config_with(cluster(&[closed_addr]))).await;
    let (status, headers, _) = get(proxy.addr, "/").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    let proxy_status = headers["proxy-status"].to_str().unwrap();
    assert!(
        proxy_status.contains("error=connection_refused"),
        "{proxy_status}"
    );
    proxy.stop().await;

    // A listener that accepts and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let mut slow = cluster(&[silent_addr]);
    slow.timeouts.request_ms = 300;
    slow.retry.max_retries = 0;
    let proxy = RunningProxy::start(config_with(slow)).await;
    let started = Instant::now();
    let (status, headers, _) = get(proxy.addr, "/").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() < Duration::from_secs(5));
    let proxy_status = headers["proxy-status"].to_str().unwrap();
    assert!(
        proxy_status.contains("error=http_response_timeout"),
        "{proxy_status}"
    );
    proxy.stop().await;
    held.abort();
}

#[tokio::test]
async fn an_upstream_that_breaks_http_gets_502_not_its_bytes() {
    // The upstream answers with both Content-Length and Transfer-Encoding: a smuggling
    // vector the proxy must not relay.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let upstream = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let _ = stream
                .write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                )
                .await;
        }
    });
    let proxy = RunningProxy::start(config_with(cluster(&[addr]))).await;
    let (status, headers, _) = get(proxy.addr, "/").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    let proxy_status = headers["proxy-status"].to_str().unwrap();
    assert!(
        proxy_status.contains("error=http_protocol_error"),
        "{proxy_status}"
    );
    proxy.stop().await;
    upstream.abort();
}

#[tokio::test]
async fn smuggling_vectors_are_refused_before_reaching_the_upstream() {
    let backend = Backend::start("a").await;
    let proxy = RunningProxy::start(config_with(cluster(&[backend.addr]))).await;
    let vectors: [&[u8]; 5] = [
        // CL.TE: both framings.
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
        // Two different lengths.
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nContent-Length: 5\r\n\r\nhello!",
        // chunked not last.
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        // Bare LF line ending.
        b"GET / HTTP/1.1\nHost: x\n\n",
        // Obsolete line folding hiding a second Transfer-Encoding.
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n x: y\r\nContent-Length: 3\r\n\r\nabc",
    ];
    for vector in vectors {
        let answer = raw_exchange(proxy.addr, vector).await;
        assert!(
            answer.starts_with("HTTP/1.1 400") || answer.starts_with("HTTP/1.1 501"),
            "{:?} got {answer:?}",
            String::from_utf8_lossy(vector)
        );
    }
    assert_eq!(
        backend.hits(),
        0,
        "no smuggled request reached the upstream"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn slow_loris_connections_do_not_stop_normal_traffic() {
    let backend = Backend::start("a").await;
    let proxy = RunningProxy::start(config_with(cluster(&[backend.addr]))).await;
    // 200 clients that send a request head one byte at a time and never finish it.
    let mut loris = Vec::new();
    for _ in 0..200 {
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: ")
            .await
            .unwrap();
        loris.push(stream);
    }
    let trickle = tokio::spawn(async move {
        for _ in 0..20 {
            for stream in &mut loris {
                let _ = stream.write_all(b"a").await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        loris
    });
    let mut client = HyperClient::connect(proxy.addr).await;
    for _ in 0..50 {
        let started = Instant::now();
        let (status, _, _) = client.get("/").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
    drop(trickle.await.unwrap());
    proxy.stop().await;
}

#[tokio::test]
async fn a_websocket_upgrade_becomes_a_tunnel_both_ways() {
    let backend = Backend::start("a").await;
    let proxy = RunningProxy::start(config_with(cluster(&[backend.addr]))).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tokio::time::timeout(TEST_TIMEOUT, stream.read_exact(&mut byte))
            .await
            .unwrap()
            .unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    assert!(head.contains("connection: upgrade"), "{head}");

    // A masked WebSocket text frame "hello"; the backend echoes bytes, so it comes back.
    let frame = [
        0x81,
        0x85,
        1,
        2,
        3,
        4,
        b'h' ^ 1,
        b'e' ^ 2,
        b'l' ^ 3,
        b'l' ^ 4,
        b'o' ^ 1,
    ];
    for _ in 0..3 {
        stream.write_all(&frame).await.unwrap();
        let mut echoed = [0u8; 11];
        tokio::time::timeout(TEST_TIMEOUT, stream.read_exact(&mut echoed))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(echoed, frame);
    }
    // The tunnel is counted apart from the HTTP connections, and leaves the count when closed.
    proxy.metrics_become(["proxy_tunnels_active"], [1.0]).await;
    drop(stream);
    proxy.metrics_become(["proxy_tunnels_active"], [0.0]).await;
    proxy.stop().await;
}
