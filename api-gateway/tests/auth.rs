//! Phase 2 end to end, through real sockets: every way a credential is refused (missing, wrong
//! key, wrong signature, expired, not yet valid, wrong issuer or audience, `alg: none`, an
//! unknown `kid` before and after the key set rotates), scopes, claims forwarded as headers
//! (and a client's own copy of them removed), credentials stripped before the upstream.

mod support;

#[path = "fixtures/jwt_mint.rs"]
mod jwt_mint;

use std::sync::Arc;
use std::time::Duration;

use api_gateway::clock::ManualClock;
use serde_json::json;
use support::{Gateway, Upstream, cluster};

/// The manual clock's Unix time, in seconds.
const NOW: u64 = 1_800_000_000;

fn config(upstream: &Upstream) -> String {
    format!(
        r#"
[gateway]
access_log = false

[auth]
api_key = {{ header = "x-api-key", query_param = "api_key" }}
api_keys = [
  # sha256("alice-demo-key")
  {{ id = "alice-1", sha256 = "0572c17ed012b3efdf9df98db1718f225887132739b8da945d81ac5a7d1fea45", consumer = "alice" }},
]

[auth.jwt]
jwks_file = "{{dir}}/jwks.json"
issuers = ["https://issuer.test"]
audiences = ["links-api"]
leeway_s = 30
algorithms = ["RS256", "ES256", "HS256"]
forward_claims = {{ sub = "x-user-id" }}
min_refetch_interval_ms = 1

[consumers.alice]

[[routes]]
name = "keys"
path_prefix = "/keys"
auth = ["api_key"]
cluster = "api"

[[routes]]
name = "tokens"
path_prefix = "/tokens"
auth = ["jwt"]
cluster = "api"

[[routes]]
name = "admin"
path_prefix = "/admin"
auth = ["jwt", "api_key"]
scopes = ["links:admin"]
cluster = "api"

[[routes]]
name = "public"
path_prefix = "/public"
cluster = "api"

{}
"#,
        cluster("api", upstream)
    )
}

async fn start(upstream: &Upstream, keys: &[&jwt_mint::SigningKey]) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jwks.json"), jwt_mint::jwks(keys)).unwrap();
    let clock = ManualClock::starting_at(Duration::from_secs(NOW));
    Gateway::start_with(&config(upstream), clock as Arc<_>, dir).await
}

fn claims(extra: serde_json::Value) -> serde_json::Value {
    let mut claims = json!({
        "iss": "https://issuer.test",
        "aud": "links-api",
        "sub": "user-42",
        "iat": NOW - 10,
        "exp": NOW + 300,
    });
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    claims
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn api_keys_from_a_header_or_the_query_name_the_consumer_and_are_stripped() {
    let upstream = Upstream::start("api").await;
    let gateway = start(&upstream, &[&jwt_mint::es256("ec-1")]).await;
    let reply = gateway
        .get("/keys/x", &[("x-api-key", "alice-demo-key")])
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.seen("x-api-key"),
        None,
        "the key never reaches the upstream"
    );
    assert_eq!(reply.seen("x-consumer").as_deref(), Some("alice"));

    let reply = gateway
        .get("/keys/x?api_key=alice-demo-key&page=2", &[])
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["target"], "/keys/x?page=2");

    let reply = gateway.get("/keys/x", &[("x-api-key", "wrong")]).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.json()["error"], "unauthenticated");
    assert!(reply.header("www-authenticate").is_some());

    let reply = gateway.get("/keys/x", &[]).await;
    assert_eq!(reply.status, 401);
    assert!(reply.header("www-authenticate").is_some());

    let reply = gateway.get("/public/x", &[("x-consumer", "alice")]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.seen("x-consumer"),
        None,
        "a client cannot name its own consumer"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn valid_tokens_of_each_algorithm_pass_and_forward_their_claims() {
    let upstream = Upstream::start("api").await;
    let rsa = jwt_mint::rs256("rsa-1");
    let ec = jwt_mint::es256("ec-1");
    let hmac = jwt_mint::hs256("hmac-1", b"a shared secret of thirty-two bytes!");
    let gateway = start(&upstream, &[&rsa, &ec, &hmac]).await;
    for key in [&rsa, &ec, &hmac] {
        let token = key.mint(&claims(json!({})));
        let spoof = ("x-user-id", "admin");
        let reply = gateway
            .get("/tokens/x", &[("authorization", &bearer(&token)), spoof])
            .await;
        assert_eq!(reply.status, 200, "{} token: {:?}", key.alg(), reply.body);
        assert_eq!(
            reply.seen("x-user-id").as_deref(),
            Some("user-42"),
            "the claim, not the client's copy"
        );
    }
    gateway.stop().await;
}

#[tokio::test]
async fn every_bad_token_is_refused_with_a_bearer_challenge() {
    let upstream = Upstream::start("api").await;
    let ec = jwt_mint::es256("ec-1");
    let other = jwt_mint::es256("ec-1");
    let gateway = start(&upstream, &[&ec]).await;
    let cases = [
        ("wrong signature", other.mint(&claims(json!({})))),
        (
            "expired past the leeway",
            ec.mint(&claims(json!({ "exp": NOW - 31 }))),
        ),
        (
            "not yet valid",
            ec.mint(&claims(json!({ "nbf": NOW + 31 }))),
        ),
        (
            "wrong issuer",
            ec.mint(&claims(json!({ "iss": "https://evil.test" }))),
        ),
        (
            "wrong audience",
            ec.mint(&claims(json!({ "aud": "other-api" }))),
        ),
        (
            "alg none",
            jwt_mint::unsigned(
                &json!({ "alg": "none", "kid": "ec-1" }),
                &claims(json!({})),
                b"",
            ),
        ),
        ("garbage", "a.b.c".to_owned()),
    ];
    for (case, token) in cases {
        let reply = gateway
            .get("/tokens/x", &[("authorization", &bearer(&token))])
            .await;
        assert_eq!(reply.status, 401, "{case}");
        let challenge = reply.header("www-authenticate").unwrap_or_default();
        assert!(challenge.starts_with("Bearer"), "{case}: {challenge}");
        assert!(challenge.contains("invalid_token"), "{case}: {challenge}");
    }
    let within_leeway = ec.mint(&claims(json!({ "exp": NOW - 29 })));
    let reply = gateway
        .get("/tokens/x", &[("authorization", &bearer(&within_leeway))])
        .await;
    assert_eq!(reply.status, 200, "expired less than the leeway ago");
    assert_eq!(upstream.hits(), 1, "no refused token reached the upstream");
    gateway.stop().await;
}

#[tokio::test]
async fn an_unknown_kid_is_refused_until_the_key_set_rotates_to_include_it() {
    let upstream = Upstream::start("api").await;
    let old = jwt_mint::rs256("2026-11");
    let new = jwt_mint::es256("2026-12");
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, jwt_mint::jwks(&[&old])).unwrap();
    let clock = ManualClock::starting_at(Duration::from_secs(NOW));
    let gateway = Gateway::start_with(&config(&upstream), clock as Arc<_>, dir).await;
    let token = new.mint(&claims(json!({})));
    let reply = gateway
        .get("/tokens/x", &[("authorization", &bearer(&token))])
        .await;
    assert_eq!(reply.status, 401, "the new key is not published yet");

    std::fs::write(&jwks, jwt_mint::jwks(&[&old, &new])).unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await; // past min_refetch_interval_ms
    let reply = gateway
        .get("/tokens/x", &[("authorization", &bearer(&token))])
        .await;
    assert_eq!(
        reply.status, 200,
        "the unknown kid made the gateway read the set again"
    );
    let old_token = old.mint(&claims(json!({})));
    let reply = gateway
        .get("/tokens/x", &[("authorization", &bearer(&old_token))])
        .await;
    assert_eq!(
        reply.status, 200,
        "the old key still verifies while it is published"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn a_missing_scope_is_403_and_any_accepted_credential_will_do() {
    let upstream = Upstream::start("api").await;
    let ec = jwt_mint::es256("ec-1");
    let gateway = start(&upstream, &[&ec]).await;
    let reader = ec.mint(&claims(json!({ "scope": "links:read" })));
    let reply = gateway
        .get("/admin/x", &[("authorization", &bearer(&reader))])
        .await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.json()["error"], "forbidden");
    assert!(
        reply
            .header("www-authenticate")
            .unwrap_or_default()
            .contains("insufficient_scope")
    );

    let admin = ec.mint(&claims(json!({ "scope": "links:read links:admin" })));
    let reply = gateway
        .get("/admin/x", &[("authorization", &bearer(&admin))])
        .await;
    assert_eq!(reply.status, 200);

    let reply = gateway.get("/admin/x", &[]).await;
    assert_eq!(reply.status, 401);
    let challenges: Vec<_> = reply.headers.get_all("www-authenticate").iter().collect();
    assert_eq!(
        challenges.len(),
        2,
        "one challenge per accepted method: {challenges:?}"
    );
    gateway.stop().await;
}
