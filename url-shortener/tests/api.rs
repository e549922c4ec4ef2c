//! The API contract, checked against the real binary over real sockets with hyper's client:
//! statuses, JSON bodies, error messages, redirect caching headers, API keys, clicks, metrics.

mod common;

use std::time::Duration;

use common::{Server, create, eventually, get, list_codes, metric, post, send};
use harness::{DataDir, cargo_bin};

#[tokio::test]
async fn a_link_is_created_followed_read_changed_and_deleted() {
    let server = Server::start("shortener-lifecycle", &["--public-url", "https://sho.rt/"]);
    let addr = server.listen;

    let created = create(addr, r#"{"url": "https://example.com/a?b=c"}"#).await;
    let code = created["code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 7, "{created}");
    assert!(code.bytes().all(|b| b.is_ascii_alphanumeric()), "{created}");
    assert_eq!(created["short_url"], format!("https://sho.rt/{code}"));
    assert_eq!(created["url"], "https://example.com/a?b=c");
    assert_eq!(created["expires_at"], serde_json::Value::Null);
    assert_eq!(created["redirect"], 302);

    let followed = get(addr, &format!("/{code}")).await;
    assert_eq!(followed.status, 302, "{followed:?}");
    assert_eq!(
        followed.header("location"),
        Some("https://example.com/a?b=c")
    );
    assert_eq!(followed.header("cache-control"), Some("no-store"));

    let patched = send(
        addr,
        "PATCH",
        &format!("/api/v1/links/{code}"),
        &[],
        Some(r#"{"url": "https://example.org/new", "redirect": 301}"#),
    )
    .await;
    assert_eq!(patched.status, 200, "{patched:?}");
    assert_eq!(patched.json()["url"], "https://example.org/new");
    let followed = get(addr, &format!("/{code}")).await;
    assert_eq!(
        followed.status, 301,
        "the cached 302 was invalidated: {followed:?}"
    );
    assert_eq!(followed.header("location"), Some("https://example.org/new"));
    assert_eq!(
        followed.header("cache-control"),
        Some("private, max-age=3600")
    );

    let read = get(addr, &format!("/api/v1/links/{code}")).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json()["redirect"], 301);

    let deleted = send(addr, "DELETE", &format!("/api/v1/links/{code}"), &[], None).await;
    assert_eq!(deleted.status, 204, "{deleted:?}");
    let message = get(addr, &format!("/{code}")).await.error(404, "not_found");
    assert!(message.contains(&code), "{message}");
    get(addr, &format!("/api/v1/links/{code}"))
        .await
        .error(404, "not_found");
    send(addr, "DELETE", &format!("/api/v1/links/{code}"), &[], None)
        .await
        .error(404, "not_found");
}

/// Regression: an unknown or deleted code must never be answered with a redirect a browser
/// may keep, or a link created later under that code would stay broken for that browser.
#[tokio::test]
async fn an_unknown_code_is_never_a_cacheable_permanent_redirect() {
    let server = Server::start("shortener-no-cached-404", &[]);
    let addr = server.listen;

    // Unknown, twice: the second answer comes from the negative cache.
    for _ in 0..2 {
        let reply = get(addr, "/nosuch1").await;
        reply.error(404, "not_found");
        assert_eq!(reply.header("location"), None);
    }
    // A 301 link, followed (cached in-process), then deleted: the next answer is a 404.
    create(
        addr,
        r#"{"url": "https://example.com/", "alias": "perm-link", "redirect": 301}"#,
    )
    .await;
    assert_eq!(get(addr, "/perm-link").await.status, 301);
    send(addr, "DELETE", "/api/v1/links/perm-link", &[], None).await;
    let reply = get(addr, "/perm-link").await;
    reply.error(404, "not_found");
    assert_eq!(reply.header("location"), None);
    // A code probed while unknown works as soon as it is created (the negative entry is dropped).
    get(addr, "/later-link").await.error(404, "not_found");
    create(
        addr,
        r#"{"url": "https://example.com/later", "alias": "later-link"}"#,
    )
    .await;
    assert_eq!(get(addr, "/later-link").await.status, 302);
    // HEAD, and codes no link could have, are answered alike.
    let head = send(addr, "HEAD", "/nosuch2", &[], None).await;
    assert_eq!(
        (head.status, head.header("cache-control")),
        (404, Some("no-store"))
    );
    get(addr, "/not.a.code").await.error(404, "not_found");
}

#[tokio::test]
async fn bad_requests_get_a_json_error_that_says_what_to_change() {
    let server = Server::start("shortener-errors", &[]);
    let addr = server.listen;
    let links = "/api/v1/links";
    let cases: &[(&str, u16, &str, &str)] = &[
        (
            r#"{"url": "javascript:alert(1)"}"#,
            400,
            "invalid_url",
            "`javascript:` URLs are refused",
        ),
        (
            r#"{"url": "data:text/html,hi"}"#,
            400,
            "invalid_url",
            "`data:` URLs are refused",
        ),
        (
            r#"{"url": "ftp://example.com/"}"#,
            400,
            "invalid_url",
            "must start with http:// or https://",
        ),
        (
            r#"{"url": "https:///x"}"#,
            400,
            "invalid_url",
            "has no host",
        ),
        (
            r#"{"url": "https://example.com", "alias": "a b"}"#,
            400,
            "invalid_alias",
            "`-` and `_`",
        ),
        (
            r#"{"url": "https://example.com", "alias": "admin"}"#,
            400,
            "invalid_alias",
            "reserved",
        ),
        (
            r#"{"url": "https://example.com", "alias": "ab"}"#,
            400,
            "invalid_alias",
            "3 to 64 characters",
        ),
        (
            r#"{"url": "https://example.com", "ttl_seconds": 5, "expires_at": "2099-01-01T00:00:00Z"}"#,
            400,
            "conflicting_expiry",
            "not both",
        ),
        (
            r#"{"url": "https://example.com", "expires_at": "next week"}"#,
            400,
            "invalid_expires_at",
            "RFC 3339",
        ),
        (
            r#"{"url": "https://example.com", "expires_at": "2001-01-01T00:00:00Z"}"#,
            400,
            "invalid_expires_at",
            "not in the future",
        ),
        (
            r#"{"url": "https://example.com", "redirect": 307}"#,
            400,
            "invalid_redirect",
            "301 or 302",
        ),
        (
            r#"{"url": "https://example.com", "colour": "red"}"#,
            400,
            "invalid_json",
            "unknown field `colour`",
        ),
        (
            r#"{"alias": "nourl"}"#,
            400,
            "invalid_json",
            "missing field `url`",
        ),
        (r#"{"url": "#, 400, "invalid_json", "line 1"),
    ];
    for (body, status, error, needle) in cases {
        let message = post(addr, links, body).await.error(*status, error);
        assert!(message.contains(needle), "{body}: {message}");
    }
    let long = format!(r#"{{"url": "https://example.com/{}"}}"#, "a".repeat(20_000));
    let message = post(addr, links, &long).await.error(413, "body_too_large");
    assert!(message.contains("16384"), "{message}");
    let message = send(
        addr,
        "POST",
        links,
        &[("content-type", "text/plain")],
        Some("x"),
    )
    .await
    .error(415, "unsupported_media_type");
    assert!(message.contains("application/json"), "{message}");
    let reply = send(addr, "PUT", links, &[], None).await;
    reply.error(405, "method_not_allowed");
    assert_eq!(reply.header("allow"), Some("GET, HEAD, POST"));
    let message = get(addr, "/api/v1/nothing").await.error(404, "not_found");
    assert!(message.contains("/api/v1/openapi.json"), "{message}");
    get(addr, "/api/v1/links?limit=5000")
        .await
        .error(400, "invalid_limit");
    let message = send(addr, "PATCH", "/api/v1/links/abcdefg", &[], Some("{}"))
        .await
        .error(400, "empty_update");
    assert!(message.contains("at least one of"), "{message}");

    // The server kept serving through all of that.
    create(addr, r#"{"url": "https://example.com/still-here"}"#).await;
}

#[tokio::test]
async fn concurrent_creations_of_one_alias_have_exactly_one_winner() {
    let server = Server::start("shortener-alias-race", &[]);
    let addr = server.listen;
    let mut rng = harness::seeded_rng();
    for round in 0..5 {
        use rand::RngExt;
        let contenders = rng.random_range(2..=24);
        let alias = format!("race-{round}-{}", rng.random::<u32>());
        let attempts = (0..contenders).map(|i| {
            let body = format!(r#"{{"url": "https://example.com/{i}", "alias": "{alias}"}}"#);
            tokio::spawn(async move { (i, post(addr, "/api/v1/links", &body).await) })
        });
        let mut winners = Vec::new();
        for attempt in attempts.collect::<Vec<_>>() {
            let (i, reply) = attempt.await.unwrap();
            match reply.status {
                201 => winners.push(i),
                _ => assert!(reply.error(409, "alias_taken").contains(&alias)),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}, {contenders} contenders: {winners:?}"
        );
        let target = format!("https://example.com/{}", winners[0]);
        let followed = get(addr, &format!("/{alias}")).await;
        assert_eq!(
            followed.header("location"),
            Some(target.as_str()),
            "the winner's link is stored"
        );
    }
}

#[tokio::test]
async fn links_are_listed_page_by_page_with_a_cursor() {
    let server = Server::start("shortener-list", &[]);
    let addr = server.listen;
    let mut created = Vec::new();
    for i in 0..7 {
        let body = if i % 2 == 0 {
            format!(r#"{{"url": "https://example.com/{i}", "alias": "listed-{i}"}}"#)
        } else {
            format!(r#"{{"url": "https://example.com/{i}"}}"#)
        };
        created.push(
            create(addr, &body).await["code"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let seen = list_codes(addr, 3).await;
    let mut expected = created;
    expected.sort();
    assert_eq!(seen, expected, "every link once, in code order");
}

#[tokio::test]
async fn clicks_are_counted_off_the_redirect_path_and_flushed_at_shutdown() {
    let mut server = Server::start("shortener-clicks", &[]);
    let (addr, admin) = (server.listen, server.admin);
    create(
        addr,
        r#"{"url": "https://example.com/", "alias": "clicked"}"#,
    )
    .await;
    assert_eq!(send(addr, "HEAD", "/clicked", &[], None).await.status, 302);
    for _ in 0..25 {
        assert_eq!(get(addr, "/clicked").await.status, 302);
    }
    eventually(Duration::from_secs(10), "25 clicks counted", || async {
        get(addr, "/api/v1/links/clicked").await.json()["clicks"] == 25
    })
    .await;
    assert_eq!(metric(admin, "url_shortener_clicks_dropped_total").await, 0);
    // 26 lookups: the first missed, the rest were cache hits.
    assert_eq!(metric(admin, "url_shortener_cache_misses_total").await, 1);
    assert_eq!(
        metric(admin, "url_shortener_cache_hits_total{kind=\"link\"}").await,
        25
    );

    // Three more clicks, then SIGTERM at once: the drain flushes them, and nothing else
    // (HEAD was not a click) was pending.
    for _ in 0..3 {
        get(addr, "/clicked").await;
    }
    let termination = server.process.terminate(Duration::from_secs(10)).unwrap();
    assert!(
        matches!(termination, harness::Termination::Exited(s) if s.success()),
        "{termination:?}"
    );
    server.process.restart().unwrap();
    server
        .process
        .wait_ready(admin, common::READY_TIMEOUT)
        .unwrap();
    assert_eq!(
        get(addr, "/api/v1/links/clicked").await.json()["clicks"],
        28
    );
}

#[tokio::test]
async fn writes_need_a_configured_key_and_redirects_do_not() {
    let data = DataDir::new("shortener-keys");
    let digest = sha256_hex("s3cret-key");
    let config = data.join("shortener.toml");
    std::fs::write(&config, format!("api_key_sha256 = [\"{digest}\"]\n")).unwrap();
    let server = Server::start_in(data, &["--config", config.to_str().unwrap()]);
    let addr = server.listen;
    let body = r#"{"url": "https://example.com/", "alias": "keyed"}"#;

    let message = post(addr, "/api/v1/links", body)
        .await
        .error(401, "unauthorized");
    assert!(message.contains("X-Api-Key"), "{message}");
    send(
        addr,
        "POST",
        "/api/v1/links",
        &[("x-api-key", "wrong")],
        Some(body),
    )
    .await
    .error(401, "unauthorized");
    let reply = send(
        addr,
        "POST",
        "/api/v1/links",
        &[("x-api-key", "s3cret-key")],
        Some(body),
    )
    .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    assert_eq!(get(addr, "/keyed").await.status, 302);
    send(addr, "DELETE", "/api/v1/links/keyed", &[], None)
        .await
        .error(401, "unauthorized");
    let auth = [("authorization", "Bearer s3cret-key")];
    assert_eq!(
        send(addr, "DELETE", "/api/v1/links/keyed", &auth, None)
            .await
            .status,
        204
    );
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn a_bad_config_value_is_named_and_exits_2() {
    let data = DataDir::new("shortener-bad-config");
    let path = data.join("shortener.toml");
    std::fs::write(&path, "api_key_sha256 = [\"s3cret-key\"]\n").unwrap();
    // std's Command rather than harness::Process: `Process::wait_exit` reports `NotRunning`
    // instead of the exit status when the process has already exited, which a bad config
    // makes likely.
    let mut child = std::process::Command::new(cargo_bin("url-shortener"))
        .args(["--config", path.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("url-shortener did not refuse a bad config within 30 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child.wait_with_output().unwrap();
    let status = output.status;
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("invalid value for `api_key_sha256`"), "{log}");
    assert!(log.contains("sha256sum"), "{log}");
}

#[tokio::test]
async fn the_openapi_document_is_served() {
    let server = Server::start("shortener-openapi", &[]);
    let reply = get(server.listen, "/api/v1/openapi.json").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let document = reply.json();
    assert_eq!(document["openapi"], "3.0.3");
    assert!(document["paths"]["/api/v1/links/{code}"]["patch"].is_object());
}

/// Regression: sled's `flush_async` left concurrent waiters unwoken and hung the server under
/// concurrent creates; every acknowledged create now shares a group-committed flush.
#[tokio::test]
async fn concurrent_creations_with_generated_codes_all_succeed_with_distinct_codes() {
    use rand::RngExt;
    let server = Server::start("shortener-create-load", &["--workers", "1"]);
    let addr = server.listen;
    let mut rng = harness::seeded_rng();
    let count = rng.random_range(40..=120);
    let creations: Vec<_> = (0..count)
        .map(|i| {
            let body = format!(r#"{{"url": "https://example.com/load/{i}"}}"#);
            tokio::spawn(async move { (i, create(addr, &body).await) })
        })
        .collect();
    let mut codes = std::collections::HashMap::new();
    for creation in creations {
        let (i, link) = creation.await.unwrap();
        let code = link["code"].as_str().unwrap().to_owned();
        assert!(
            codes.insert(code.clone(), i).is_none(),
            "{code} handed out twice"
        );
    }
    for (code, i) in codes {
        let target = format!("https://example.com/load/{i}");
        assert_eq!(
            get(addr, &format!("/{code}")).await.header("location"),
            Some(target.as_str())
        );
    }
}
