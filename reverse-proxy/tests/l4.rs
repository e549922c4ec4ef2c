//! L4 mode (the mio event loop) against TCP backends on port 0: a large stream echoed both
//! ways with half-close, balancing per connection, failing over a refused endpoint, and a
//! backend that dies mid-stream.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use reverse_proxy::config::{ClusterConfig, Config};
use reverse_proxy::l4::TcpListenerConfig;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A TCP server on port 0 running `serve` for each connection.
async fn tcp_server<F, Fut>(serve: F) -> (SocketAddr, JoinHandle<()>)
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream));
        }
    });
    (addr, task)
}

/// Echoes until the client half-closes, then half-closes too.
async fn echo(mut stream: TcpStream) {
    let (mut rd, mut wr) = stream.split();
    let _ = tokio::io::copy(&mut rd, &mut wr).await;
    let _ = wr.shutdown().await;
}

async fn start_l4(cluster: ClusterConfig) -> RunningProxy {
    start_l4_with(cluster, |_| {}).await
}

async fn start_l4_with(cluster: ClusterConfig, edit: impl FnOnce(&mut Config)) -> RunningProxy {
    let mut config = config_with(cluster);
    edit(&mut config);
    config.tcp.push(TcpListenerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        cluster: "app".into(),
    });
    RunningProxy::start(config).await
}

#[tokio::test]
async fn a_large_stream_is_echoed_both_ways_and_half_close_passes_through() {
    let (echo_addr, _server) = tcp_server(echo).await;
    let proxy = start_l4(cluster(&[echo_addr])).await;
    let payload: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let stream = TcpStream::connect(proxy.tcp[0]).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let sent = payload.clone();
    let writer = tokio::spawn(async move {
        wr.write_all(&sent).await.unwrap();
        // Half-close: the echo server sees the end of the stream only through the proxy.
        wr.shutdown().await.unwrap();
    });
    let mut echoed = Vec::new();
    tokio::time::timeout(TEST_TIMEOUT, rd.read_to_end(&mut echoed))
        .await
        .expect("the echo ends after the half-close")
        .unwrap();
    writer.await.unwrap();
    assert_eq!(echoed.len(), payload.len());
    assert!(echoed == payload, "the stream came back changed");
    proxy.stop().await;
}

#[tokio::test]
async fn connections_are_balanced_with_the_clusters_algorithm() {
    let mut addrs = Vec::new();
    let mut servers = Vec::new();
    for name in ["a", "b", "c"] {
        let (addr, task) = tcp_server(move |mut stream: TcpStream| async move {
            let _ = stream.write_all(name.as_bytes()).await;
            let _ = stream.shutdown().await;
        })
        .await;
        addrs.push(addr);
        servers.push(task);
    }
    let proxy = start_l4(cluster(&addrs)).await;
    let mut counts = BTreeMap::new();
    for _ in 0..30 {
        let mut stream = TcpStream::connect(proxy.tcp[0]).await.unwrap();
        let mut name = String::new();
        tokio::time::timeout(TEST_TIMEOUT, stream.read_to_string(&mut name))
            .await
            .unwrap()
            .unwrap();
        *counts.entry(name).or_insert(0) += 1;
    }
    assert_eq!(
        counts.values().copied().collect::<Vec<_>>(),
        [10, 10, 10],
        "{counts:?}"
    );
    let metrics = proxy.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "proxy_l4_connections_total{cluster=\"app\",outcome=\"relayed\"}"
        ),
        Some(30.0),
        "{metrics}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_refused_endpoint_is_skipped_for_the_next_one() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let (echo_addr, _server) = tcp_server(echo).await;
    let mut cluster = cluster(&[closed_addr, echo_addr]);
    cluster.outlier_detection.consecutive_connect_failures = 0;
    cluster.outlier_detection.consecutive_5xx = 0;
    let proxy = start_l4(cluster).await;
    for i in 0..10u8 {
        let mut stream = TcpStream::connect(proxy.tcp[0]).await.unwrap();
        stream.write_all(&[i; 100]).await.unwrap();
        let mut back = [0u8; 100];
        tokio::time::timeout(TEST_TIMEOUT, stream.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, [i; 100]);
    }
    proxy.stop().await;
}

#[tokio::test]
async fn a_backend_dying_mid_stream_ends_that_connection_only() {
    // Echoes the first 1,000 bytes, then dies: the connection is reset (SO_LINGER 0).
    let (dying, _server) = tcp_server(|mut stream: TcpStream| async move {
        let mut got = vec![0u8; 1000];
        if stream.read_exact(&mut got).await.is_ok() {
            let _ = stream.write_all(&got).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = stream.set_zero_linger();
        drop(stream);
    })
    .await;
    let proxy = start_l4(cluster(&[dying])).await;
    for _ in 0..3 {
        let mut stream = TcpStream::connect(proxy.tcp[0]).await.unwrap();
        stream.write_all(&[7u8; 1000]).await.unwrap();
        let mut back = [0u8; 1000];
        tokio::time::timeout(TEST_TIMEOUT, stream.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, [7u8; 1000], "relayed while the backend lived");
        // The backend dies; the proxy must end the client's connection, not leave it hanging.
        let mut rest = Vec::new();
        let ended = tokio::time::timeout(TEST_TIMEOUT, stream.read_to_end(&mut rest)).await;
        assert!(ended.is_ok(), "the client connection was not closed");
        assert!(rest.is_empty(), "{} unexpected bytes", rest.len());
    }
    let metrics = proxy.metrics().await;
    assert_eq!(metric(&metrics, "proxy_l4_connections_active"), Some(0.0));
    proxy.stop().await;
}

/// Sends `byte` and expects it back within `wait`.
async fn echoes(stream: &mut TcpStream, byte: u8, wait: Duration) -> bool {
    stream.write_all(&[byte]).await.unwrap();
    let mut back = [0u8; 1];
    matches!(
        tokio::time::timeout(wait, stream.read_exact(&mut back)).await,
        Ok(Ok(_)) if back == [byte]
    )
}

#[tokio::test]
async fn two_loops_hold_max_connections_together_and_resume_when_one_closes() {
    let (echo_addr, _server) = tcp_server(echo).await;
    let proxy = start_l4_with(cluster(&[echo_addr]), |config| {
        config.proxy.workers = 2;
        config.proxy.max_connections = 2;
    })
    .await;
    let mut first = TcpStream::connect(proxy.tcp[0]).await.unwrap();
    let mut second = TcpStream::connect(proxy.tcp[0]).await.unwrap();
    assert!(echoes(&mut first, 1, TEST_TIMEOUT).await);
    assert!(echoes(&mut second, 2, TEST_TIMEOUT).await);
    // The kernel completes the handshake, but no loop accepts a third connection.
    let mut third = TcpStream::connect(proxy.tcp[0]).await.unwrap();
    assert!(
        !echoes(&mut third, 3, Duration::from_millis(300)).await,
        "a third connection was relayed past max_connections = 2"
    );
    // One closes: whichever loop relayed it accepts the waiting client.
    drop(first);
    let mut back = [0u8; 1];
    tokio::time::timeout(TEST_TIMEOUT, third.read_exact(&mut back))
        .await
        .expect("the waiting client is relayed once a place is free")
        .unwrap();
    assert_eq!(back, [3]);
    assert!(echoes(&mut second, 4, TEST_TIMEOUT).await);
    drop((second, third));
    proxy.stop().await;
}
