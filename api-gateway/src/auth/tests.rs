//! The guarantees of `authenticate`, one failure at a time, through the public API with a JWKS
//! file (the URL source and the cache's timing are tested in `jwks.rs`).

use std::time::{Duration, Instant};

use http::{HeaderValue, StatusCode};
use rand::RngExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::jwt_mint::{self, SigningKey};
use super::*;

const NOW: u64 = 1_700_000_000;
const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "orders";
const HMAC_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

struct Fixture {
    auth: Authenticator,
    rsa: SigningKey,
    ec: SigningKey,
    hmac: SigningKey,
    jwks_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn claims() -> Value {
    json!({
        "sub": "user-1",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": NOW + 300,
        "nbf": NOW - 10,
        "iat": NOW - 10,
        "scope": "orders:read orders:write",
        "tenant": "acme",
    })
}

fn jwt_config(path: &std::path::Path) -> JwtConfig {
    JwtConfig {
        jwks_file: Some(path.to_owned()),
        issuers: vec![ISSUER.into()],
        audiences: vec![AUDIENCE.into()],
        algorithms: vec!["RS256".into(), "ES256".into(), "HS256".into()],
        consumer_claim: "tenant".into(),
        forward_claims: [
            ("sub".to_owned(), "x-user-id".to_owned()),
            ("roles".to_owned(), "x-user-roles".to_owned()),
        ]
        .into(),
        ..JwtConfig::default()
    }
}

fn auth_config(jwks_path: &std::path::Path) -> AuthConfig {
    AuthConfig {
        api_key: ApiKeySettings {
            header: DEFAULT_API_KEY_HEADER.into(),
            query_param: Some("apikey".into()),
        },
        api_keys: vec![ApiKeyEntry {
            id: "mobile".into(),
            sha256: Sha256::digest(b"k-123")
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            consumer: "acme".into(),
        }],
        jwt: Some(jwt_config(jwks_path)),
    }
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let (rsa, ec, hmac) = (
        jwt_mint::rs256("rsa-1"),
        jwt_mint::es256("ec-1"),
        jwt_mint::hs256("hmac-1", HMAC_SECRET),
    );
    let jwks_path = dir.path().join("jwks.json");
    std::fs::write(&jwks_path, jwt_mint::jwks(&[&rsa, &ec, &hmac])).expect("write JWKS");
    let auth = Authenticator::new(&auth_config(&jwks_path))
        .await
        .expect("authenticator");
    Fixture {
        auth,
        rsa,
        ec,
        hmac,
        jwks_path,
        _dir: dir,
    }
}

fn bearer(token: &str) -> RequestHead {
    let mut head = RequestHead::new(http::Method::GET, "/orders");
    let value = HeaderValue::from_str(&format!("Bearer {token}")).expect("header value");
    head.headers.insert(http::header::AUTHORIZATION, value);
    head
}

const BOTH: [Method; 2] = [Method::ApiKey, Method::Jwt];

impl Fixture {
    async fn check(&self, token: &str) -> Result<Identity, AuthError> {
        self.auth
            .authenticate(&bearer(token), &BOTH, &[], NOW)
            .await
    }

    /// The reason a token is refused with, asserting that it is a 401 for a JWT.
    async fn refusal(&self, token: &str) -> String {
        match self.check(token).await {
            Err(AuthError::Invalid {
                method: Method::Jwt,
                reason,
            }) => reason,
            other => panic!("expected an invalid token, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn each_algorithm_verifies_and_yields_the_identity() {
    let f = fixture().await;
    for key in [&f.rsa, &f.ec, &f.hmac] {
        let identity = f.check(&key.mint(&claims())).await;
        let identity = identity.unwrap_or_else(|e| panic!("{}: {e:?}", key.alg()));
        assert_eq!(identity.method, Method::Jwt);
        assert_eq!(identity.consumer.as_deref(), Some("acme"));
        assert_eq!(identity.credential_id, "user-1");
        assert_eq!(identity.scopes, ["orders:read", "orders:write"]);
    }
}

#[tokio::test]
async fn no_credentials_is_401_naming_every_accepted_method() {
    let f = fixture().await;
    let head = RequestHead::new(http::Method::GET, "/orders");
    let error = f
        .auth
        .authenticate(&head, &BOTH, &[], NOW)
        .await
        .expect_err("no credentials");
    assert_eq!(
        error,
        AuthError::Missing {
            accepted: BOTH.to_vec()
        }
    );
    assert_eq!(error.www_authenticate().len(), 2);
    let mut basic = head.clone();
    basic.headers.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_static("Basic dTpw"),
    );
    let error = f
        .auth
        .authenticate(&basic, &[Method::Jwt], &[], NOW)
        .await
        .expect_err("not bearer");
    assert_eq!(
        error,
        AuthError::Missing {
            accepted: vec![Method::Jwt]
        }
    );
}

#[tokio::test]
async fn a_wrong_signature_is_refused() {
    let f = fixture().await;
    let token = f.rsa.mint(&claims());
    let (signed, _) = token.rsplit_once('.').expect("three segments");
    let other = f.ec.mint(&claims());
    let (_, foreign_signature) = other.rsplit_once('.').expect("three segments");
    assert_eq!(
        f.refusal(&format!("{signed}.{foreign_signature}")).await,
        "signature does not verify"
    );

    // The same claims signed by a key the set does not hold, under a kid it does.
    let impostor = jwt_mint::es256("ec-1");
    assert_eq!(
        f.refusal(&impostor.mint(&claims())).await,
        "signature does not verify"
    );

    // A payload changed after signing.
    let parts: Vec<&str> = token.split('.').collect();
    let mut changed = claims();
    changed["sub"] = json!("admin");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        jwt_mint::b64(changed.to_string().as_bytes()),
        parts[2]
    );
    assert_eq!(f.refusal(&forged).await, "signature does not verify");
}

#[tokio::test]
async fn es256_signatures_are_fixed_size_r_and_s() {
    let f = fixture().await;
    let token = f.ec.mint(&claims());
    let (signed, signature) = token.rsplit_once('.').expect("three segments");
    let mut bytes =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, signature)
            .expect("base64url");
    bytes.push(0);
    let longer = format!("{signed}.{}", jwt_mint::b64(&bytes));
    assert_eq!(f.refusal(&longer).await, "signature does not verify");
}

#[tokio::test]
async fn expired_and_not_yet_valid_tokens_are_refused() {
    let f = fixture().await;
    let leeway = DEFAULT_LEEWAY_S;
    let mut c = claims();
    c["exp"] = json!(NOW - leeway);
    assert_eq!(
        f.refusal(&f.rsa.mint(&c)).await,
        "token expired",
        "exactly exp + leeway"
    );
    c["exp"] = json!(NOW - leeway + 1);
    assert!(
        f.check(&f.rsa.mint(&c)).await.is_ok(),
        "one second inside the leeway"
    );
    let mut c = claims();
    c["nbf"] = json!(NOW + leeway + 1);
    assert_eq!(f.refusal(&f.ec.mint(&c)).await, "token not yet valid");
    c["nbf"] = json!(NOW + leeway);
    assert!(
        f.check(&f.ec.mint(&c)).await.is_ok(),
        "exactly nbf - leeway"
    );
}

#[tokio::test]
async fn wrong_issuer_or_audience_is_refused() {
    let f = fixture().await;
    let mut c = claims();
    c["iss"] = json!("https://evil.test");
    assert_eq!(f.refusal(&f.rsa.mint(&c)).await, "issuer not accepted");
    let mut c = claims();
    c["aud"] = json!(["billing", "shipping"]);
    assert_eq!(f.refusal(&f.rsa.mint(&c)).await, "audience not accepted");
    c["aud"] = json!(["billing", AUDIENCE]);
    assert!(f.check(&f.rsa.mint(&c)).await.is_ok());
}

#[tokio::test]
async fn alg_none_is_refused_even_with_a_known_kid() {
    let f = fixture().await;
    for alg in ["none", "None", "NONE"] {
        let header = json!({"alg": alg, "typ": "JWT", "kid": "rsa-1"});
        for signature in [&b""[..], b"sig"] {
            let token = jwt_mint::unsigned(&header, &claims(), signature);
            assert_eq!(
                f.refusal(&token).await,
                "unsecured tokens (alg none) are not accepted"
            );
        }
    }
}

#[tokio::test]
async fn an_rsa_key_never_verifies_an_hmac_token() {
    // Algorithm confusion (RFC 8725 section 2.1): the attacker signs HS256 with the RSA public
    // key as the secret and names the RSA key's kid. HS256 is on the gateway's allowlist here,
    // so only the key's own algorithm stops it.
    let f = fixture().await;
    let modulus = f.rsa.rsa_modulus().expect("an RSA key");
    let public_pem_like = jwt_mint::b64(&modulus);
    for secret in [modulus.clone(), public_pem_like.into_bytes()] {
        let attacker = jwt_mint::hs256("rsa-1", &secret);
        let header = json!({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"});
        let token = attacker.sign(&header, &claims());
        assert_eq!(
            f.refusal(&token).await,
            "algorithm not allowed for this key"
        );
    }
    // And an RS256 token naming an HMAC key is refused the same way.
    let header = json!({"alg": "RS256", "kid": "hmac-1"});
    assert_eq!(
        f.refusal(&f.rsa.sign(&header, &claims())).await,
        "algorithm not allowed for this key"
    );
}

#[tokio::test]
async fn the_gateway_allowlist_applies_before_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let hmac = jwt_mint::hs256("hmac-1", HMAC_SECRET);
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwt_mint::jwks(&[&hmac])).expect("write");
    let mut config = auth_config(&path);
    if let Some(jwt) = &mut config.jwt {
        jwt.algorithms = vec!["RS256".into()];
    }
    let auth = Authenticator::new(&config).await.expect("authenticator");
    let error = auth
        .authenticate(&bearer(&hmac.mint(&claims())), &BOTH, &[], NOW)
        .await
        .expect_err("HS256 is not allowed");
    assert_eq!(
        error,
        AuthError::Invalid {
            method: Method::Jwt,
            reason: "algorithm not allowed".into()
        }
    );
}

#[tokio::test]
async fn unknown_kid_then_rotation_through_the_file() {
    let f = fixture().await;
    let verifier = f.auth.jwt.as_ref().expect("jwt configured");
    let rotated = jwt_mint::es256("ec-2");
    let token = rotated.mint(&claims());
    let start = Instant::now();
    // A token of the key about to be retired, verified (and remembered) before the rotation.
    let old_token = f.ec.mint(&claims());
    verifier
        .verify(&old_token, NOW, start)
        .await
        .expect("the old key still signs");
    let refused = verifier
        .verify(&token, NOW, start)
        .await
        .expect_err("kid unknown");
    assert_eq!(
        refused,
        AuthError::Invalid {
            method: Method::Jwt,
            reason: "unknown key id".into()
        }
    );
    // The issuer publishes the new key; the first token naming it reloads the file once the
    // refetch interval since the last load has passed.
    std::fs::write(&f.jwks_path, jwt_mint::jwks(&[&f.rsa, &rotated])).expect("rotate");
    let interval = Duration::from_millis(DEFAULT_MIN_REFETCH_INTERVAL_MS);
    let identity = verifier
        .verify(&token, NOW, start + interval)
        .await
        .expect("rotated key");
    assert_eq!(identity.credential_id, "user-1");
    // The old EC key is gone from the set now, and with it the token verified under it.
    let old = verifier.verify(&old_token, NOW, start + interval).await;
    assert!(matches!(old, Err(AuthError::Invalid { .. })), "{old:?}");
}

#[tokio::test]
async fn a_verified_token_is_reused_only_while_its_time_claims_hold() {
    let f = fixture().await;
    let verifier = f.auth.jwt.as_ref().expect("jwt configured");
    let token = f.hmac.mint(&claims());
    let now = Instant::now();
    let first = verifier.verify(&token, NOW, now).await.expect("valid");
    assert_eq!(verifier.verified_len(), 1);
    let again = verifier.verify(&token, NOW, now).await.expect("remembered");
    assert_eq!(again, first);
    assert_eq!(verifier.verified_len(), 1);
    // exp is NOW + 300; the leeway is 60 s.
    let last_second = NOW + 300 + DEFAULT_LEEWAY_S - 1;
    assert!(verifier.verify(&token, last_second, now).await.is_ok());
    let expired = verifier.verify(&token, last_second + 1, now).await;
    assert_eq!(
        expired,
        Err(AuthError::Invalid {
            method: Method::Jwt,
            reason: "token expired".into()
        })
    );
    assert_eq!(verifier.verified_len(), 0, "an expired entry is dropped");
}

#[tokio::test]
async fn the_table_of_verified_tokens_is_bounded() {
    let f = fixture().await;
    let config = JwtConfig {
        verified_cache_entries: 2,
        ..jwt_config(&f.jwks_path)
    };
    let verifier = JwtVerifier::new(&config).await.expect("verifier");
    for sub in ["a", "b", "c", "d"] {
        let mut c = claims();
        c["sub"] = json!(sub);
        let identity = verifier.verify(&f.hmac.mint(&c), NOW, Instant::now()).await;
        assert_eq!(identity.expect("valid").credential_id, sub);
        assert!(verifier.verified_len() <= 2);
    }
    let none = JwtConfig {
        verified_cache_entries: 0,
        ..jwt_config(&f.jwks_path)
    };
    let verifier = JwtVerifier::new(&none).await.expect("verifier");
    assert!(
        verifier
            .verify(&f.hmac.mint(&claims()), NOW, Instant::now())
            .await
            .is_ok()
    );
    assert_eq!(verifier.verified_len(), 0);
}

#[tokio::test]
async fn api_keys_in_the_header_and_the_query_parameter() {
    let f = fixture().await;
    let mut head = RequestHead::new(http::Method::GET, "/orders");
    head.headers
        .insert("x-api-key", HeaderValue::from_static("k-123"));
    let identity = f
        .auth
        .authenticate(&head, &BOTH, &[], NOW)
        .await
        .expect("good key");
    assert_eq!(
        (
            identity.method,
            identity.consumer.as_deref(),
            identity.credential_id.as_str()
        ),
        (Method::ApiKey, Some("acme"), "mobile")
    );
    let query = RequestHead::new(http::Method::GET, "/orders?page=2&apikey=k-123");
    let identity = f
        .auth
        .authenticate(&query, &BOTH, &[], NOW)
        .await
        .expect("key in query");
    assert_eq!(identity.credential_id, "mobile");

    head.headers
        .insert("x-api-key", HeaderValue::from_static("k-124"));
    let error = f
        .auth
        .authenticate(&head, &BOTH, &[], NOW)
        .await
        .expect_err("wrong key");
    assert_eq!(error.status(), StatusCode::UNAUTHORIZED);
    assert!(
        matches!(
            error,
            AuthError::Invalid {
                method: Method::ApiKey,
                ..
            }
        ),
        "{error:?}"
    );
    // A route that takes only tokens does not look at API keys.
    let error = f
        .auth
        .authenticate(&head, &[Method::Jwt], &[], NOW)
        .await
        .expect_err("jwt only");
    assert_eq!(
        error,
        AuthError::Missing {
            accepted: vec![Method::Jwt]
        }
    );
}

#[tokio::test]
async fn scopes_as_a_string_or_an_array_and_403_when_missing() {
    let f = fixture().await;
    let required = ["orders:write".to_owned()];
    for scope in [
        json!("orders:read  orders:write"),
        json!(["orders:write", "x"]),
    ] {
        let mut c = claims();
        c["scope"] = scope.clone();
        let token = f.ec.mint(&c);
        let identity = f
            .auth
            .authenticate(&bearer(&token), &BOTH, &required, NOW)
            .await;
        assert!(identity.is_ok(), "{scope}: {identity:?}");
    }
    let mut c = claims();
    c["scope"] = json!(["orders:read"]);
    let required = ["orders:read".to_owned(), "orders:write".to_owned()];
    let error = f
        .auth
        .authenticate(&bearer(&f.ec.mint(&c)), &BOTH, &required, NOW)
        .await
        .expect_err("missing a scope");
    assert_eq!(error.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        error,
        AuthError::InsufficientScope {
            required: "orders:read orders:write".into()
        }
    );
    c["scope"] = json!(7);
    assert_eq!(f.refusal(&f.ec.mint(&c)).await, "malformed claims");
    // An API key grants no scope.
    let mut head = RequestHead::new(http::Method::GET, "/orders");
    head.headers
        .insert("x-api-key", HeaderValue::from_static("k-123"));
    let error = f
        .auth
        .authenticate(&head, &BOTH, &required, NOW)
        .await
        .expect_err("no scopes");
    assert_eq!(error.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn claims_are_forwarded_and_injection_is_refused() {
    let f = fixture().await;
    let mut c = claims();
    c["roles"] = json!(["admin", "ops"]);
    let identity = f.check(&f.rsa.mint(&c)).await.expect("valid");
    let forward: Vec<(String, String)> = identity
        .forward
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_str().expect("ASCII").to_owned()))
        .collect();
    assert_eq!(
        forward,
        [
            ("x-user-roles".to_owned(), r#"["admin","ops"]"#.to_owned()),
            ("x-user-id".to_owned(), "user-1".to_owned()),
        ]
    );
    for sub in ["user\r\nx-admin: yes", "user\0", "a\tb"] {
        let mut c = claims();
        c["sub"] = json!(sub);
        assert_eq!(
            f.refusal(&f.rsa.mint(&c)).await,
            "claim cannot be forwarded as a header"
        );
    }
}

#[tokio::test]
async fn oversized_and_garbage_tokens_are_refused_before_any_key() {
    let f = fixture().await;
    let mut c = claims();
    c["padding"] = json!("p".repeat(DEFAULT_MAX_TOKEN_BYTES));
    assert_eq!(f.refusal(&f.rsa.mint(&c)).await, "token too large");
    for garbage in ["x", "a.b", "a.b.c.d", "a.b.c.d.e", "....", "e30.e30.e30"] {
        assert_eq!(f.refusal(garbage).await, "malformed token", "{garbage}");
    }
    let mut rng = harness::seeded_rng();
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/";
    for _ in 0..200 {
        let len = rng.random_range(0..400);
        let token: String = (0..len)
            .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
            .collect();
        let result = f.check(&token).await;
        assert!(
            matches!(result, Err(AuthError::Invalid { .. })),
            "{token}: {result:?}"
        );
    }
}

#[tokio::test]
async fn strip_credentials_keeps_the_rest_of_the_request() {
    let f = fixture().await;
    let mut head = RequestHead::new(http::Method::GET, "/orders?a=1&apikey=k-123&b=%20");
    head.headers
        .insert("x-api-key", HeaderValue::from_static("k-123"));
    head.headers
        .insert("x-user-id", HeaderValue::from_static("forged"));
    head.headers.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_static("Bearer t"),
    );
    head.headers
        .insert("accept", HeaderValue::from_static("*/*"));
    f.auth.strip_credentials(&mut head);
    assert_eq!(head.target, "/orders?a=1&b=%20");
    assert!(!head.headers.contains_key("x-api-key"));
    assert!(
        !head.headers.contains_key("x-user-id"),
        "a client cannot forge a forwarded claim"
    );
    assert!(head.headers.contains_key(http::header::AUTHORIZATION));
    assert!(head.headers.contains_key("accept"));
}

#[tokio::test]
async fn a_bad_jwks_file_fails_start_up_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("absent.json");
    let error = Authenticator::new(&auth_config(&missing))
        .await
        .expect_err("missing file");
    assert!(error.contains("absent.json"), "{error}");
    let bad = dir.path().join("bad.json");
    for content in [
        "not json",
        r#"{"keys": []}"#,
        r#"{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}"#,
    ] {
        std::fs::write(&bad, content).expect("write");
        let error = Authenticator::new(&auth_config(&bad))
            .await
            .expect_err(content);
        assert!(error.contains("bad.json"), "{error}");
    }
}

#[tokio::test]
async fn an_unreachable_jwks_url_is_503_not_401() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    let config = AuthConfig {
        jwt: Some(JwtConfig {
            jwks_url: Some(format!("http://{addr}/jwks.json")),
            ..JwtConfig::default()
        }),
        ..AuthConfig::default()
    };
    let auth = Authenticator::new(&config)
        .await
        .expect("a URL is fetched lazily");
    let token = jwt_mint::es256("k").mint(&claims());
    let error = auth
        .authenticate(&bearer(&token), &[Method::Jwt], &[], NOW)
        .await
        .expect_err("no keys");
    assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(matches!(error, AuthError::Unavailable { .. }), "{error:?}");
}
