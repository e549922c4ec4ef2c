//! Retries, the retry budget, outlier ejection and circuit breaking, against backends on port 0
//! that fail on purpose.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use support::*;

#[tokio::test]
async fn idempotent_requests_are_retried_elsewhere_but_a_post_is_not_sent_twice() {
    let (closer, good) = (Closer::start().await, Backend::start("good").await);
    let mut cluster = cluster(&[closer.addr, good.addr]);
    cluster.outlier_detection.consecutive_5xx = 0;
    cluster.outlier_detection.consecutive_connect_failures = 0;
    let proxy = RunningProxy::start(config_with(cluster)).await;
    let mut client = HyperClient::connect(proxy.addr).await;

    for _ in 0..10 {
        let (status, headers, _) = client.get("/").await;
        assert_eq!(status, StatusCode::OK, "{headers:?}");
    }
    assert!(
        closer.accepted() >= 5,
        "round robin sent tries to the closer too"
    );

    let before = closer.accepted();
    let mut failed = 0;
    for _ in 0..10 {
        let (status, headers, _) = client
            .send(request("POST", "/", &[], Bytes::from_static(b"pay 10")))
            .await;
        if status == StatusCode::BAD_GATEWAY {
            let proxy_status = headers["proxy-status"].to_str().unwrap();
            assert!(
                proxy_status.contains("connection_terminated"),
                "{proxy_status}"
            );
            failed += 1;
        } else {
            assert_eq!(status, StatusCode::OK);
        }
    }
    let reached_closer = closer.accepted() - before;
    assert_eq!(
        failed, reached_closer,
        "each POST that reached the closer failed, once"
    );
    assert!(failed > 0);

    // An Idempotency-Key makes a POST safe to repeat, its body kept for the retry.
    for _ in 0..10 {
        let keyed = request(
            "POST",
            "/echo",
            &[("idempotency-key", "k1")],
            Bytes::from_static(b"pay 10"),
        );
        let (status, _, body) = client.send(keyed).await;
        assert_eq!((status, text(&body)), (StatusCode::OK, "pay 10"));
    }
    let metrics = proxy.metrics().await;
    assert!(metric(&metrics, "proxy_retries_total{cluster=\"app\"}").unwrap() >= 10.0);
    proxy.stop().await;
}

#[tokio::test]
async fn a_retryable_status_is_retried_on_another_endpoint() {
    let failing = Backend::failing("down", StatusCode::SERVICE_UNAVAILABLE).await;
    let good = Backend::start("good").await;
    let mut cluster = cluster(&[failing.addr, good.addr]);
    cluster.outlier_detection.consecutive_5xx = 0;
    let proxy = RunningProxy::start(config_with(cluster)).await;
    let counts = spread(proxy.addr, 20).await;
    assert_eq!(counts.get("good"), Some(&20), "{counts:?}");
    assert!(
        failing.hits() >= 10,
        "the failing endpoint was tried: {}",
        failing.hits()
    );
    proxy.stop().await;
}

#[tokio::test]
async fn with_the_budget_spent_a_failure_is_not_retried() {
    let (a, b) = (Closer::start().await, Closer::start().await);
    let mut cluster = cluster(&[a.addr, b.addr]);
    cluster.retry.budget_percent = 0;
    cluster.retry.budget_min_concurrency = 0;
    cluster.outlier_detection.consecutive_5xx = 0;
    cluster.outlier_detection.consecutive_connect_failures = 0;
    let proxy = RunningProxy::start(config_with(cluster)).await;
    let mut client = HyperClient::connect(proxy.addr).await;
    for _ in 0..6 {
        assert_eq!(client.get("/").await.0, StatusCode::BAD_GATEWAY);
    }
    // The http1 client may repeat a request once on a fresh connection when a *pooled* one
    // fails (its own stale-connection rule); these connections are never pooled, so each
    // request is exactly one connection.
    assert_eq!(
        a.accepted() + b.accepted(),
        6,
        "one try per request, no retry"
    );
    let metrics = proxy.metrics().await;
    assert_eq!(
        metric(&metrics, "proxy_retries_over_budget_total{cluster=\"app\"}"),
        Some(6.0)
    );
    proxy.stop().await;
}

#[tokio::test]
async fn consecutive_5xx_eject_an_endpoint_and_traffic_moves_to_the_others() {
    let failing = Backend::failing("broken", StatusCode::INTERNAL_SERVER_ERROR).await;
    let good = Backend::start("good").await;
    let mut cluster = cluster(&[failing.addr, good.addr]);
    cluster.outlier_detection.consecutive_5xx = 3;
    cluster.outlier_detection.max_ejection_percent = 50;
    let proxy = RunningProxy::start(config_with(cluster)).await;
    let mut client = HyperClient::connect(proxy.addr).await;
    let mut errors = 0;
    for _ in 0..40 {
        let (status, _, _) = client.get("/").await;
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            errors += 1;
        }
    }
    // 500 is not in retry_on_status, so the client saw the three that tripped the ejection.
    assert_eq!(errors, 3);
    assert_eq!(failing.hits(), 3);
    let metrics = proxy.metrics().await;
    assert_eq!(
        metric(&metrics, "proxy_outlier_ejections_total{cluster=\"app\"}"),
        Some(1.0)
    );
    proxy.stop().await;
}

#[tokio::test]
async fn circuit_breaker_limits_answer_503_naming_the_limit() {
    let slow = Backend::start("slow").await;
    let mut limited = cluster(&[slow.addr]);
    limited.circuit_breaker.max_requests = 2;
    let proxy = RunningProxy::start(config_with(limited)).await;
    let busy: Vec<_> = (0..2)
        .map(|_| tokio::spawn(get(proxy.addr, "/sleep/800")))
        .collect();
    proxy.metrics_become(["proxy_requests_active"], [2.0]).await;
    let (status, headers, _) = get(proxy.addr, "/").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        headers["proxy-status"],
        "reverse-proxy; error=connection_limit_reached; details=\"app max_requests\""
    );
    for request in busy {
        assert_eq!(request.await.unwrap().0, StatusCode::OK);
    }
    assert_eq!(
        get(proxy.addr, "/").await.0,
        StatusCode::OK,
        "the limit frees up"
    );
    proxy.stop().await;

    let mut one_connection = cluster(&[slow.addr]);
    one_connection.circuit_breaker.max_connections = 1;
    one_connection.circuit_breaker.max_pending = 0;
    let proxy = RunningProxy::start(config_with(one_connection)).await;
    let busy = tokio::spawn(get(proxy.addr, "/sleep/800"));
    proxy.metrics_become(["proxy_requests_active"], [1.0]).await;
    let (status, headers, _) = get(proxy.addr, "/").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let proxy_status = headers["proxy-status"].to_str().unwrap();
    assert!(proxy_status.contains("max_pending"), "{proxy_status}");
    assert_eq!(busy.await.unwrap().0, StatusCode::OK);
    let metrics = proxy.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "proxy_circuit_breaker_rejections_total{cluster=\"app\",limit=\"max_pending\"}"
        ),
        Some(1.0)
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_reload_keeps_a_down_endpoint_out_of_rotation() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let down = closed.local_addr().unwrap();
    drop(closed);
    let good = Backend::start("good").await;
    let mut checked = cluster(&[down, good.addr]);
    checked.health_check.kind = reverse_proxy::config::HealthCheckKind::Tcp;
    checked.health_check.interval_ms = 300;
    checked.health_check.timeout_ms = 100;
    checked.health_check.unhealthy_threshold = 1;
    checked.panic_threshold_percent = 0;
    let config = config_with(checked.clone());
    let proxy = RunningProxy::start(config.clone()).await;
    let series = format!("proxy_endpoint_healthy{{cluster=\"app\",endpoint=\"{down}\"}}");
    proxy.metrics_become([&series], [0.0]).await;

    // Reload with the same cluster and one more route, whose answer tells when it applied.
    let mut reloaded = config;
    reloaded
        .clusters
        .insert("marker".into(), cluster(&[good.addr]));
    reloaded.routes.insert(
        0,
        reverse_proxy::config::RouteConfig {
            host: None,
            path_prefix: "/marker".into(),
            cluster: "marker".into(),
        },
    );
    proxy.reload.send(reloaded).await.unwrap();
    let deadline = tokio::time::Instant::now() + TEST_TIMEOUT;
    while get(proxy.addr, "/marker").await.0 != StatusCode::OK {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reload never applied"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The new cluster's checks have not run yet, but the endpoint stays out.
    for _ in 0..10 {
        let metrics = proxy.metrics().await;
        assert_eq!(metric(&metrics, &series), Some(0.0), "{metrics}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.stop().await;
}

#[tokio::test]
async fn a_health_address_is_probed_instead_of_the_endpoint_and_its_failure_takes_it_out() {
    // Two endpoints that serve fine; the first one's health address (its "admin listener")
    // answers 503, as a server's /readyz does while it drains.
    let (draining, other) = (
        Backend::start("draining").await,
        Backend::start("other").await,
    );
    let readyz = Backend::failing("readyz", StatusCode::SERVICE_UNAVAILABLE).await;
    let mut checked = cluster(&[draining.addr, other.addr]);
    checked.endpoints[0].health_address = Some(readyz.addr);
    checked.health_check.kind = reverse_proxy::config::HealthCheckKind::Http;
    checked.health_check.path = "/readyz".into();
    checked.health_check.interval_ms = 100;
    checked.health_check.timeout_ms = 50;
    checked.health_check.unhealthy_threshold = 1;
    checked.panic_threshold_percent = 0;
    let proxy = RunningProxy::start(config_with(checked)).await;
    let series = |addr| format!("proxy_endpoint_healthy{{cluster=\"app\",endpoint=\"{addr}\"}}");
    proxy.metrics_become([&series(draining.addr)], [0.0]).await;
    assert!(readyz.hits() > 0, "the health address was probed");
    assert_eq!(
        draining.hits(),
        0,
        "the endpoint itself was not probed while its health address was"
    );
    let metrics = proxy.metrics().await;
    assert_eq!(
        metric(&metrics, &series(other.addr)),
        Some(1.0),
        "{metrics}"
    );
    let spread = spread(proxy.addr, 20).await;
    assert_eq!(spread.get("other"), Some(&20), "{spread:?}");
    proxy.stop().await;
}
