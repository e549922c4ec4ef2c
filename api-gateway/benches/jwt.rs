//! The cost of the authenticate phase for one bearer token, per algorithm, in two groups:
//! `verify`, a token seen for the first time (the compact JWS parsed, its signature verified
//! with a cached key, the claims checked, the identity built), and `remembered`, the same token
//! again, answered from the table of verified tokens (`auth/verified.rs`). The tokens carry the
//! claims the `bench/api-gateway.sh` token carries. Run: `cargo bench -p api-gateway --bench jwt`.

#[path = "../tests/fixtures/jwt_mint.rs"]
mod jwt_mint;

use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use api_gateway::auth::{AuthConfig, Authenticator, JwtConfig, Method};
use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderValue;
use http1::RequestHead;
use serde_json::json;

fn jwt(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let keys = [
        jwt_mint::hs256("hs", b"bench secret, thirty-two bytes or more"),
        jwt_mint::rs256("rs"),
        jwt_mint::es256("es"),
    ];
    let dir = tempfile::tempdir().expect("a temp dir");
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, jwt_mint::jwks(&keys.iter().collect::<Vec<_>>())).expect("JWKS");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let claims =
        json!({"sub": "bench", "iss": "bench", "aud": "bench", "iat": now, "exp": now + 86400});
    for (group, verified_cache_entries) in [("verify", 0), ("remembered", 10_000)] {
        let config = AuthConfig {
            jwt: Some(JwtConfig {
                jwks_file: Some(jwks.clone()),
                issuers: vec!["bench".into()],
                audiences: vec!["bench".into()],
                algorithms: vec!["HS256".into(), "RS256".into(), "ES256".into()],
                verified_cache_entries,
                ..JwtConfig::default()
            }),
            ..AuthConfig::default()
        };
        let auth = runtime
            .block_on(Authenticator::new(&config))
            .expect("an authenticator");
        let mut group = c.benchmark_group(group);
        for key in &keys {
            let mut head = RequestHead::new(http::Method::GET, "/");
            let bearer = format!("Bearer {}", key.mint(&claims));
            let value = HeaderValue::from_str(&bearer).expect("a header value");
            head.headers.insert(http::header::AUTHORIZATION, value);
            group.bench_function(key.alg(), |b| {
                b.iter(|| {
                    let identity =
                        runtime.block_on(auth.authenticate(&head, &[Method::Jwt], &[], now));
                    black_box(identity.expect("a valid token"))
                })
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = jwt
}
criterion_main!(benches);
