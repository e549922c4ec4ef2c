//! Phase 1 and the phases around it, end to end: versions by path and by header, exact paths
//! with parameters and rewrites, 404 and 405, dot segments, a canary split within its
//! statistical bounds, header transforms, CORS, body limits, the route timeout.

mod support;

use http::Method;
use support::{Gateway, Upstream, cluster, send};

#[tokio::test]
async fn versions_route_by_prefix_and_by_accept_version_and_prefixes_are_rewritten() {
    let v1 = Upstream::start("v1").await;
    let v2 = Upstream::start("v2").await;
    let config = format!(
        r#"
[[routes]]
name = "v2-by-header"
path_prefix = "/links"
headers = {{ "accept-version" = "2" }}
cluster = "v2"

[[routes]]
name = "v1"
path_prefix = "/v1"
rewrite = "/api"
cluster = "v1"

[[routes]]
name = "v2"
path_prefix = "/v2/"
rewrite = "/"
cluster = "v2"

{}
{}
"#,
        cluster("v1", &v1),
        cluster("v2", &v2)
    );
    let gateway = Gateway::start(&config).await;

    let reply = gateway.get("/v1/links/abc?x=1", &[]).await;
    assert_eq!((reply.status, reply.upstream()), (200, Some("v1")));
    assert_eq!(reply.json()["target"], "/api/links/abc?x=1");

    let reply = gateway.get("/v2/links/abc", &[]).await;
    assert_eq!((reply.status, reply.upstream()), (200, Some("v2")));
    assert_eq!(reply.json()["target"], "/links/abc");

    let reply = gateway.get("/links/abc", &[("accept-version", "2")]).await;
    assert_eq!(
        reply.upstream(),
        Some("v2"),
        "Accept-Version: 2 picks the v2 service"
    );
    let reply = gateway.get("/links/abc", &[("accept-version", "1")]).await;
    assert_eq!(
        reply.status, 404,
        "no route takes Accept-Version 1 on /links"
    );

    let reply = gateway.get("/v1beta/x", &[]).await;
    assert_eq!(reply.status, 404, "prefixes match whole segments");
    assert_eq!(reply.json()["error"], "no_route");
    assert!(reply.header("x-request-id").is_some());
    gateway.stop().await;
}

#[tokio::test]
async fn exact_paths_capture_parameters_and_a_wrong_method_is_405_with_allow() {
    let links = Upstream::start("links").await;
    let config = format!(
        r#"
[[routes]]
name = "get-link"
path = "/v1/links/{{code}}"
methods = ["GET", "HEAD"]
rewrite = "/api/v1/links/{{code}}/meta"
cluster = "links"

[[routes]]
name = "delete-link"
path = "/v1/links/{{code}}"
methods = ["DELETE"]
cluster = "links"

{}
"#,
        cluster("links", &links)
    );
    let gateway = Gateway::start(&config).await;
    let reply = gateway.get("/v1/links/Ab3", &[]).await;
    assert_eq!(reply.json()["target"], "/api/v1/links/Ab3/meta");

    let reply = send(
        gateway.addr,
        Method::PUT,
        "/v1/links/Ab3",
        &[],
        Default::default(),
    )
    .await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET, HEAD, DELETE"));
    assert_eq!(reply.json()["error"], "method_not_allowed");

    let reply = gateway.get("/v1/links/Ab3/extra", &[]).await;
    assert_eq!(reply.status, 404);
    let reply = gateway.get("/v1/links/../admin", &[]).await;
    assert_eq!(
        reply.status, 400,
        "dot segments are refused: {:?}",
        reply.body
    );
    let reply = gateway.get("/v1/links/%2e%2E/admin", &[]).await;
    assert_eq!(reply.status, 400, "encoded dot segments too");
    assert_eq!(
        links.hits(),
        1,
        "only the one routed request reached the upstream"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn a_canary_split_sends_its_share_within_statistical_bounds() {
    let stable = Upstream::start("stable").await;
    let canary = Upstream::start("canary").await;
    let config = format!(
        r#"
[gateway]
access_log = false

[[routes]]
name = "split"
path_prefix = "/"
upstreams = [{{ cluster = "stable", weight = 80 }}, {{ cluster = "canary", weight = 20 }}]

{}
{}
"#,
        cluster("stable", &stable),
        cluster("canary", &canary)
    );
    let gateway = Gateway::start(&config).await;
    let n = 2000;
    let mut to_canary = 0;
    for i in 0..n {
        let reply = gateway.get(&format!("/r/{i}"), &[]).await;
        assert_eq!(reply.status, 200);
        if reply.upstream() == Some("canary") {
            to_canary += 1;
        }
    }
    // Binomial(2000, 0.2): mean 400, sigma ~17.9; 5 sigma either way (a false alarm about
    // once in 1.7 million runs).
    assert!(
        (310..=490).contains(&to_canary),
        "canary got {to_canary} of {n}"
    );
    assert_eq!(stable.hits() + canary.hits(), n);
    gateway.stop().await;
}

#[tokio::test]
async fn header_transforms_cors_and_body_limits_apply_per_route() {
    let api = Upstream::start("api").await;
    let config = format!(
        r#"
[cors.web]
allow_origins = ["https://app.example.com"]

[[routes]]
name = "writes"
path = "/writes"
methods = ["POST"]
max_body_bytes = 33554432
cluster = "api"

[[routes]]
name = "api"
path_prefix = "/x"
cors = "web"
max_body_bytes = 16
request_headers = {{ set = {{ "x-env" = "test" }}, remove = ["x-debug"] }}
response_headers = {{ remove = ["x-upstream"], add = {{ "x-served-by" = "gateway" }} }}
cluster = "api"

{}
"#,
        cluster("api", &api)
    );
    let gateway = Gateway::start(&config).await;
    let origin = ("origin", "https://app.example.com");
    let reply = gateway.get("/x", &[("x-debug", "1"), origin]).await;
    assert_eq!(reply.seen("x-env").as_deref(), Some("test"));
    assert_eq!(reply.seen("x-debug"), None);
    assert_eq!(reply.upstream(), None, "removed on the way back");
    assert_eq!(reply.header("x-served-by"), Some("gateway"));
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert!(
        reply
            .header("access-control-expose-headers")
            .unwrap()
            .contains("x-request-id")
    );

    let preflight = [origin, ("access-control-request-method", "POST")];
    let reply = send(
        gateway.addr,
        Method::OPTIONS,
        "/x",
        &preflight,
        Default::default(),
    )
    .await;
    assert_eq!(reply.status, 204);
    assert!(
        reply
            .header("access-control-allow-methods")
            .unwrap()
            .contains("POST")
    );
    let hits = api.hits();
    let evil = [
        ("origin", "https://evil.example"),
        ("access-control-request-method", "POST"),
    ];
    let reply = send(
        gateway.addr,
        Method::OPTIONS,
        "/x",
        &evil,
        Default::default(),
    )
    .await;
    assert_eq!(reply.status, 403);
    assert_eq!(api.hits(), hits, "preflights never reach the upstream");
    // A route without CORS answers no preflight: the OPTIONS request is routed as itself,
    // and a POST-only route refuses it rather than forwarding it.
    let reply = send(
        gateway.addr,
        Method::OPTIONS,
        "/writes",
        &preflight,
        Default::default(),
    )
    .await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("POST"));
    assert_eq!(api.hits(), hits);

    let reply = gateway
        .post("/x", &[], "a body well over sixteen bytes")
        .await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json()["error"], "body_too_large");
    let reply = gateway.post("/x", &[], "small").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["body"], "small");
    // A route may allow more than the HTTP decoder's default of 16 MiB.
    let big = "x".repeat(17 << 20);
    let reply = gateway.post("/writes", &[], &big).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["body_bytes"], 17 << 20);
    gateway.stop().await;
}

#[tokio::test]
async fn a_slow_upstream_is_cut_off_at_the_route_timeout() {
    let slow = Upstream::start("slow").await;
    let config = format!(
        r#"
[[routes]]
name = "slow"
path_prefix = "/"
timeout_ms = 100
cluster = "slow"

{}
"#,
        cluster("slow", &slow)
    );
    let gateway = Gateway::start(&config).await;
    let reply = gateway.get("/sleep/2000", &[]).await;
    assert_eq!(reply.status, 504);
    assert_eq!(reply.json()["error"], "timeout");
    let reply = gateway.get("/sleep/10", &[]).await;
    assert_eq!(reply.status, 200);
    let metrics = gateway.metrics().await;
    assert!(
        metrics.contains(r#"gateway_rejections_total{reason="timeout",route="slow"} 1"#),
        "{metrics}"
    );
    gateway.stop().await;
}
