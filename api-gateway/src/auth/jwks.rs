//! JSON Web Key Sets (RFC 7517) and the cache that keeps one fresh.
//!
//! ```text
//! {"keys": [
//!   {"kty": "RSA", "kid": "r1", "alg": "RS256", "use": "sig", "n": "...", "e": "AQAB"},
//!   {"kty": "EC",  "kid": "e1", "crv": "P-256", "x": "...", "y": "..."},
//!   {"kty": "oct", "kid": "h1", "alg": "HS256", "k": "..."}
//! ]}
//! ```
//!
//! **Keys** (RFC 7517 section 4, RFC 7518 section 6). Each usable key verifies exactly one
//! algorithm, fixed by its type: `RSA` (`n`, `e`; modulus of 2048 bits or more, RFC 7518
//! section 3.3) verifies RS256, `EC` with `crv: P-256` (`x`, `y`, 32 bytes each) ES256, `oct`
//! (`k`) HS256. A key's `alg`, when present, is its allowlist: it must name that same algorithm,
//! or the key is skipped. So a token saying `alg: HS256` never meets an RSA key as an HMAC
//! secret (the algorithm-confusion attack, RFC 8725 section 2.1). Keys with `use` other than
//! `sig` (section 4.2), `key_ops` without `verify` (section 4.3), other types, curves or
//! algorithms are skipped, not errors: a set may serve other software too.
//!
//! **The cache.** Keys are looked up by `kid`. A set is used for `ttl` after it was fetched.
//!
//! ```text
//!  lookup(kid) ── set fresh and kid in it ────────────────────────────> key
//!      │
//!      ├─ no set yet, set stale, or kid unknown
//!      │     and the last fetch started >= min_interval ago ── fetch ──> look again
//!      │     (one fetch at a time: a task that waited while another
//!      │      fetched uses that result instead of fetching again)
//!      │
//!      └─ otherwise ── the set we have (stale is better than nothing) or an error
//! ```
//!
//! A failed fetch keeps the old set (the issuer's outage must not become ours while its keys
//! are still good) and is retried at most once per `min_interval`. A file is re-read exactly as
//! a URL is refetched, so rotation works with a file too: write the new set, and the first token
//! with the new `kid` loads it. Key rotation by the issuer (publish the new key, then sign with
//! it) therefore needs no restart.
//!
//! **The fetch.** A URL is fetched with the workspace's HTTP/1.1 client, one connection per
//! fetch (fetches are rare). Over `https://` the connection is TLS (rustls), and the server's
//! certificate must chain to a CA of `jwks_ca_file` and name the URL's host: the key set is
//! what every token is trusted by, so where it comes from is checked as strictly as a token.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Method, StatusCode};
use ring::signature::RsaPublicKeyComponents;
use serde::Deserialize;

use super::config::JwksUrl;
use super::jwt::{Algorithm, JwtError};

/// Largest JWKS document read from a file or a URL.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Most keys kept from one set; the rest are skipped.
pub const MAX_KEYS: usize = 100;
/// A fetch (connect, response, body) that takes longer fails.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Smallest RSA modulus accepted, in bits (RFC 7518 section 3.3).
pub const MIN_RSA_MODULUS_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits: ring's own ceiling for PKCS#1 verification.
pub const MAX_RSA_MODULUS_BITS: usize = 8192;
/// Length of a P-256 coordinate.
const P256_COORDINATE_BYTES: usize = 32;
/// Shortest HMAC secret: the hash's output size (RFC 7518 section 3.2).
const MIN_HMAC_KEY_BYTES: usize = 32;

/// What a key verifies with.
pub(crate) enum KeyMaterial {
    Rsa(RsaPublicKeyComponents<Vec<u8>>),
    /// The uncompressed point `0x04 || x || y` (SEC 1 section 2.3.3).
    Ec(Vec<u8>),
    Oct(ring::hmac::Key),
}

/// One usable key: it verifies `alg` and nothing else.
pub(crate) struct Jwk {
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub material: KeyMaterial,
}

impl std::fmt::Debug for Jwk {
    // Key material stays out of logs, even public halves: a debug print is not the place.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwk")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// The usable keys of one JWKS document.
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    keys: Vec<Arc<Jwk>>,
}

/// Why a key set could not be loaded. These go to the operator's log, not to clients.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JwksError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    #[error("not a JWKS document (a JSON object with a `keys` array)")]
    NotJwks,
    #[error("fetch failed: {0}")]
    Fetch(String),
    #[error("fetch answered {0}")]
    Status(StatusCode),
    #[error("fetch timed out after {FETCH_TIMEOUT:?}")]
    Timeout,
}

/// One member of `keys`, as written. Every field is optional here; `to_key` decides.
#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    k: Option<String>,
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

impl KeySet {
    /// Parses a JWKS document, keeping the usable keys (see the module doc).
    pub(crate) fn parse(document: &[u8]) -> Result<KeySet, JwksError> {
        if document.len() > MAX_JWKS_BYTES {
            return Err(JwksError::TooLarge);
        }
        let raw: RawSet = serde_json::from_slice(document).map_err(|_| JwksError::NotJwks)?;
        let mut keys = Vec::new();
        for value in raw.keys {
            let Ok(raw) = serde_json::from_value::<RawJwk>(value) else {
                continue;
            };
            let kid = raw.kid.clone();
            match to_key(raw) {
                Some(key) if keys.len() < MAX_KEYS => keys.push(Arc::new(key)),
                Some(_) => tracing::warn!(max = MAX_KEYS, "JWKS has too many keys; rest skipped"),
                None => tracing::debug!(?kid, "JWKS key skipped: not a usable signing key"),
            }
        }
        Ok(KeySet { keys })
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The key a token names. A token without `kid` may use the only key of a one-key set
    /// (RFC 7515 section 4.1.4 makes `kid` optional); with more keys it is ambiguous.
    pub(crate) fn find(&self, kid: Option<&str>) -> Result<Arc<Jwk>, JwtError> {
        let found = match kid {
            Some(kid) => self.keys.iter().find(|key| key.kid.as_deref() == Some(kid)),
            None if self.keys.len() == 1 => self.keys.first(),
            None => return Err(JwtError::MissingKeyId),
        };
        found.cloned().ok_or(JwtError::UnknownKeyId)
    }
}

/// The usable key a JWK describes, or `None` to skip it.
fn to_key(raw: RawJwk) -> Option<Jwk> {
    if raw.use_.as_deref().is_some_and(|u| u != "sig") {
        return None;
    }
    if raw
        .key_ops
        .as_ref()
        .is_some_and(|ops| !ops.iter().any(|op| op == "verify"))
    {
        return None;
    }
    let (alg, material) = match raw.kty.as_deref()? {
        "RSA" => (
            Algorithm::Rs256,
            rsa_material(raw.n.as_deref()?, raw.e.as_deref()?)?,
        ),
        "EC" if raw.crv.as_deref() == Some("P-256") => (
            Algorithm::Es256,
            ec_material(raw.x.as_deref()?, raw.y.as_deref()?)?,
        ),
        "oct" => {
            let secret = URL_SAFE_NO_PAD.decode(raw.k.as_deref()?).ok()?;
            if secret.len() < MIN_HMAC_KEY_BYTES {
                return None;
            }
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
            (Algorithm::Hs256, KeyMaterial::Oct(key))
        }
        _ => return None,
    };
    // The key's `alg` is its allowlist; a disagreement with its type is a broken key.
    if raw.alg.as_deref().is_some_and(|named| named != alg.name()) {
        return None;
    }
    Some(Jwk {
        kid: raw.kid,
        alg,
        material,
    })
}

fn rsa_material(n: &str, e: &str) -> Option<KeyMaterial> {
    let n = URL_SAFE_NO_PAD.decode(n).ok()?;
    let e = URL_SAFE_NO_PAD.decode(e).ok()?;
    let n = strip_leading_zeros(n);
    let bits = bit_length(&n);
    if !(MIN_RSA_MODULUS_BITS..=MAX_RSA_MODULUS_BITS).contains(&bits) || e.is_empty() {
        return None;
    }
    Some(KeyMaterial::Rsa(RsaPublicKeyComponents { n, e }))
}

fn strip_leading_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    bytes.drain(..zeros);
    bytes
}

/// Bits of a big-endian number without leading zero bytes.
fn bit_length(be: &[u8]) -> usize {
    match be.first() {
        Some(&first) => (be.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
        None => 0,
    }
}

fn ec_material(x: &str, y: &str) -> Option<KeyMaterial> {
    let x = URL_SAFE_NO_PAD.decode(x).ok()?;
    let y = URL_SAFE_NO_PAD.decode(y).ok()?;
    // RFC 7518 section 6.2.1.2: each coordinate is the full field size, zero-padded.
    if x.len() != P256_COORDINATE_BYTES || y.len() != P256_COORDINATE_BYTES {
        return None;
    }
    let mut point = Vec::with_capacity(1 + 2 * P256_COORDINATE_BYTES);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Some(KeyMaterial::Ec(point))
}

/// Where the key set comes from.
pub(crate) enum Source {
    File(PathBuf),
    Url {
        url: JwksUrl,
        client: http1::Client,
        /// Set for an `https://` URL.
        tls: Option<tokio_rustls::TlsConnector>,
    },
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(path) => f.debug_tuple("File").field(path).finish(),
            Source::Url { url, tls, .. } => f
                .debug_struct("Url")
                .field("url", url)
                .field("tls", &tls.is_some())
                .finish(),
        }
    }
}

impl Source {
    async fn load(&self) -> Result<KeySet, JwksError> {
        let document = match self {
            Source::File(path) => read_file(path).await?,
            Source::Url { url, client, tls } => {
                tokio::time::timeout(FETCH_TIMEOUT, fetch(url, client, tls.as_ref()))
                    .await
                    .map_err(|_| JwksError::Timeout)??
            }
        };
        KeySet::parse(&document)
    }
}

async fn read_file(path: &PathBuf) -> Result<Vec<u8>, JwksError> {
    let read_error = |source| JwksError::Read {
        path: path.clone(),
        source,
    };
    let len = tokio::fs::metadata(path).await.map_err(read_error)?.len();
    if len > MAX_JWKS_BYTES as u64 {
        return Err(JwksError::TooLarge);
    }
    tokio::fs::read(path).await.map_err(read_error)
}

async fn fetch(
    url: &JwksUrl,
    client: &http1::Client,
    tls: Option<&tokio_rustls::TlsConnector>,
) -> Result<Vec<u8>, JwksError> {
    let addr: SocketAddr = tokio::net::lookup_host((url.host.as_str(), url.port))
        .await
        .map_err(|e| JwksError::Fetch(format!("cannot resolve {}: {e}", url.host)))?
        .next()
        .ok_or_else(|| JwksError::Fetch(format!("{} has no address", url.host)))?;
    let mut request = http1::Request::new(Method::GET, url.target.clone(), http1::Body::empty());
    let host = http::HeaderValue::from_str(&url.authority)
        .map_err(|_| JwksError::Fetch("the URL's authority is not a header value".into()))?;
    request.head.headers.insert(http::header::HOST, host);
    let fetch_error = |e: &dyn std::fmt::Display| JwksError::Fetch(e.to_string());
    let response = match tls {
        None => client.send(addr, request).await,
        Some(connector) => {
            let name = rustls_pki_types::ServerName::try_from(url.host.clone())
                .map_err(|e| fetch_error(&format!("{} is not a TLS server name: {e}", url.host)))?;
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| fetch_error(&format!("connect to {addr}: {e}")))?;
            let stream = connector
                .connect(name, tcp)
                .await
                .map_err(|e| fetch_error(&format!("TLS with {}: {e}", url.host)))?;
            client.send_on(stream, request).await
        }
    }
    .map_err(|e| fetch_error(&e))?;
    if response.status() != StatusCode::OK {
        return Err(JwksError::Status(response.status()));
    }
    let body = response
        .body
        .collect(MAX_JWKS_BYTES as u64)
        .await
        .map_err(|e| JwksError::Fetch(e.to_string()))?;
    Ok(body.data.to_vec())
}

/// What the cache holds between fetches. Behind a std `Mutex`: it is never held across an
/// `await`, only to read or swap these fields.
#[derive(Debug, Default)]
struct State {
    keys: Option<Arc<KeySet>>,
    /// When the current `keys` were loaded.
    loaded_at: Option<Instant>,
    /// When the last fetch started, successful or not.
    attempted_at: Option<Instant>,
    /// Counts finished fetches, so a task that waited for another's fetch can tell.
    generation: u64,
}

/// Why a key could not be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LookupError {
    /// The token's fault: the set does not have its key.
    Token(JwtError),
    /// No set could ever be loaded.
    Unavailable,
}

/// Keys by `kid`, refreshed by TTL and on unknown `kid`s (see the module doc).
#[derive(Debug)]
pub(crate) struct KeyCache {
    source: Source,
    ttl: Duration,
    min_interval: Duration,
    state: Mutex<State>,
    /// Held for the whole of a fetch: concurrent refreshes queue here and coalesce.
    refresh: tokio::sync::Mutex<()>,
}

impl KeyCache {
    pub(crate) fn new(source: Source, ttl: Duration, min_interval: Duration) -> KeyCache {
        KeyCache {
            source,
            ttl,
            min_interval,
            state: Mutex::new(State::default()),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    /// Loads the set now (at start-up, for a file), returning how many usable keys it has.
    pub(crate) async fn load_now(&self, now: Instant) -> Result<usize, JwksError> {
        let keys = self.source.load().await?;
        let len = keys.len();
        let mut state = self.lock();
        state.keys = Some(Arc::new(keys));
        state.loaded_at = Some(now);
        state.attempted_at = Some(now);
        state.generation += 1;
        Ok(len)
    }

    /// The key for `kid` at time `now`, fetching when the module doc's rules allow.
    pub(crate) async fn key(
        &self,
        kid: Option<&str>,
        now: Instant,
    ) -> Result<Arc<Jwk>, LookupError> {
        let generation = {
            let state = self.lock();
            match self.answer(&state, kid, now) {
                Some(answer) => return answer,
                None => state.generation,
            }
        };
        let _refreshing = self.refresh.lock().await;
        {
            let state = self.lock();
            if state.generation != generation {
                // Another task fetched while we waited: its set is the one to use.
                return self.settle(&state, kid);
            }
        }
        self.refetch(now).await;
        self.settle(&self.lock(), kid)
    }

    /// `Some` when the lookup is decided without fetching; `None` when a fetch is due.
    fn answer(
        &self,
        state: &State,
        kid: Option<&str>,
        now: Instant,
    ) -> Option<Result<Arc<Jwk>, LookupError>> {
        let fresh = state.loaded_at.is_some_and(|at| now < at + self.ttl);
        let found = state.keys.as_ref().map(|keys| keys.find(kid));
        if fresh && matches!(found, Some(Ok(_))) {
            return found.map(|found| found.map_err(LookupError::Token));
        }
        let may_fetch = state
            .attempted_at
            .is_none_or(|at| now >= at + self.min_interval);
        if may_fetch {
            return None;
        }
        Some(self.settle(state, kid))
    }

    /// The answer from what is held, without fetching.
    fn settle(&self, state: &State, kid: Option<&str>) -> Result<Arc<Jwk>, LookupError> {
        match &state.keys {
            Some(keys) => keys.find(kid).map_err(LookupError::Token),
            None => Err(LookupError::Unavailable),
        }
    }

    async fn refetch(&self, now: Instant) {
        self.lock().attempted_at = Some(now);
        let loaded = self.source.load().await;
        let mut state = self.lock();
        state.generation += 1;
        match loaded {
            Ok(keys) => {
                tracing::info!(keys = keys.len(), "JWKS loaded");
                state.keys = Some(Arc::new(keys));
                state.loaded_at = Some(now);
            }
            Err(e) => tracing::warn!(error = %e, "JWKS refresh failed; keeping the keys held"),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a few plain fields, consistent after every statement: a panic elsewhere
        // while it was locked leaves nothing half-written.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http1::{Request, Response};
    use serde_json::json;
    use tokio::net::TcpListener;
    use tokio::sync::Semaphore;

    use super::*;
    use crate::auth::jwt_mint::{self, SigningKey};

    /// An in-process JWKS endpoint that counts its fetches and serves what the test sets.
    struct JwksServer {
        url: JwksUrl,
        fetches: Arc<AtomicUsize>,
        document: Arc<Mutex<(StatusCode, String)>>,
        /// Each fetch takes a permit before answering, so a test can hold fetches in flight.
        gate: Arc<Semaphore>,
    }

    impl JwksServer {
        async fn start(keys: &[&SigningKey]) -> JwksServer {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("local addr");
            let fetches = Arc::new(AtomicUsize::new(0));
            let document = Arc::new(Mutex::new((StatusCode::OK, jwt_mint::jwks(keys))));
            let gate = Arc::new(Semaphore::new(Semaphore::MAX_PERMITS));
            let (count, served, permits) = (fetches.clone(), document.clone(), gate.clone());
            let handler = move |_request: Request| {
                let (count, served, permits) = (count.clone(), served.clone(), permits.clone());
                async move {
                    count.fetch_add(1, Ordering::SeqCst);
                    if let Ok(permit) = permits.acquire().await {
                        permit.forget();
                    }
                    let (status, body) = served.lock().expect("not poisoned").clone();
                    Response::text(status, body)
                }
            };
            let config = http1::server::ServerConfig::default();
            tokio::spawn(http1::server::serve(
                listener,
                config,
                handler,
                std::future::pending(),
            ));
            let url = JwksUrl::parse(&format!("http://{addr}/jwks.json")).expect("URL");
            JwksServer {
                url,
                fetches,
                document,
                gate,
            }
        }

        fn cache(&self, ttl: Duration, min_interval: Duration) -> KeyCache {
            let client = http1::Client::new(http1::ClientConfig::default()).expect("client");
            let source = Source::Url {
                url: self.url.clone(),
                client,
                tls: None,
            };
            KeyCache::new(source, ttl, min_interval)
        }

        fn serve(&self, status: StatusCode, keys: &[&SigningKey]) {
            *self.document.lock().expect("not poisoned") = (status, jwt_mint::jwks(keys));
        }

        fn fetches(&self) -> usize {
            self.fetches.load(Ordering::SeqCst)
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);
    const SECOND: Duration = Duration::from_secs(1);

    fn kid_of(found: Result<Arc<Jwk>, LookupError>) -> Result<String, LookupError> {
        found.map(|key| key.kid.clone().unwrap_or_default())
    }

    #[tokio::test]
    async fn an_unknown_kid_refetches_at_most_once_per_interval() {
        let old = jwt_mint::es256("old");
        let server = JwksServer::start(&[&old]).await;
        let cache = server.cache(HOUR, SECOND);
        let t0 = Instant::now();
        assert_eq!(kid_of(cache.key(Some("old"), t0).await), Ok("old".into()));
        assert_eq!(server.fetches(), 1, "the first lookup loads the set");
        assert_eq!(kid_of(cache.key(Some("old"), t0).await), Ok("old".into()));
        assert_eq!(server.fetches(), 1, "a known kid is served from the cache");

        let unknown = Err(LookupError::Token(JwtError::UnknownKeyId));
        for i in 0..50 {
            let made_up = format!("made-up-{i}");
            let at = t0 + Duration::from_millis(i);
            assert_eq!(kid_of(cache.key(Some(&made_up), at).await), unknown);
        }
        assert_eq!(
            server.fetches(),
            1,
            "inside the interval a made-up kid causes no fetch"
        );

        let new = jwt_mint::es256("new");
        server.serve(StatusCode::OK, &[&old, &new]);
        assert_eq!(
            kid_of(cache.key(Some("new"), t0 + SECOND).await),
            Ok("new".into())
        );
        assert_eq!(
            server.fetches(),
            2,
            "rotation: the new kid is found by one refetch"
        );
        assert_eq!(
            kid_of(cache.key(Some("other"), t0 + SECOND + SECOND / 2).await),
            unknown
        );
        assert_eq!(server.fetches(), 2);
    }

    #[tokio::test]
    async fn concurrent_refetches_coalesce_into_one() {
        let server = JwksServer::start(&[]).await;
        // No interval at all: only the coalescing keeps this to one fetch.
        let cache = Arc::new(server.cache(HOUR, Duration::ZERO));
        let t0 = Instant::now();
        assert_eq!(
            kid_of(cache.key(Some("k"), t0).await),
            Err(LookupError::Token(JwtError::UnknownKeyId))
        );
        assert_eq!(server.fetches(), 1);

        let key = jwt_mint::rs256("k");
        server.serve(StatusCode::OK, &[&key]);
        let permits = server.gate.available_permits();
        server.gate.forget_permits(permits);
        let mut lookups = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let cache = cache.clone();
            lookups.spawn(async move { kid_of(cache.key(Some("k"), t0).await) });
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.fetches() < 2 {
            assert!(
                Instant::now() < deadline,
                "the refetch never reached the server"
            );
            tokio::task::yield_now().await;
        }
        server.gate.add_permits(Semaphore::MAX_PERMITS);
        while let Some(found) = lookups.join_next().await {
            assert_eq!(found.expect("lookup task"), Ok("k".into()));
        }
        assert_eq!(server.fetches(), 2, "eight lookups, one fetch");
    }

    #[tokio::test]
    async fn the_set_is_refetched_after_its_ttl_and_kept_when_that_fails() {
        let key = jwt_mint::es256("k");
        let server = JwksServer::start(&[&key]).await;
        let ttl = Duration::from_secs(300);
        let cache = server.cache(ttl, SECOND);
        let t0 = Instant::now();
        assert!(cache.key(Some("k"), t0).await.is_ok());
        assert!(cache.key(Some("k"), t0 + ttl - SECOND).await.is_ok());
        assert_eq!(server.fetches(), 1);

        server.serve(StatusCode::INTERNAL_SERVER_ERROR, &[]);
        assert_eq!(
            kid_of(cache.key(Some("k"), t0 + ttl).await),
            Ok("k".into()),
            "stale beats none"
        );
        assert_eq!(server.fetches(), 2, "the TTL passed: one refetch");
        assert!(cache.key(Some("k"), t0 + ttl + SECOND / 2).await.is_ok());
        assert_eq!(
            server.fetches(),
            2,
            "a failed refetch is retried once per interval"
        );
        server.serve(StatusCode::OK, &[&key]);
        assert!(cache.key(Some("k"), t0 + ttl + SECOND).await.is_ok());
        assert_eq!(server.fetches(), 3);
    }

    #[tokio::test]
    async fn no_set_at_all_is_unavailable() {
        let server = JwksServer::start(&[]).await;
        server.serve(StatusCode::NOT_FOUND, &[]);
        let cache = server.cache(HOUR, SECOND);
        assert_eq!(
            kid_of(cache.key(Some("k"), Instant::now()).await),
            Err(LookupError::Unavailable)
        );
    }

    fn parse(keys: serde_json::Value) -> KeySet {
        KeySet::parse(json!({ "keys": keys }).to_string().as_bytes()).expect("a JWKS document")
    }

    #[test]
    fn a_keys_alg_is_its_allowlist() {
        let rsa = jwt_mint::rs256("r");
        let mut jwk = rsa.jwk();
        assert_eq!(parse(json!([jwk.clone()])).len(), 1);
        jwk["alg"] = json!("HS256");
        assert_eq!(
            parse(json!([jwk.clone()])).len(),
            0,
            "an RSA key never becomes an HMAC key"
        );
        jwk["alg"] = json!("PS256");
        assert_eq!(
            parse(json!([jwk])).len(),
            0,
            "an algorithm we do not verify"
        );
        let set = parse(json!([rsa.jwk()]));
        let key = set.find(Some("r")).expect("present");
        assert_eq!(key.alg, Algorithm::Rs256);
    }

    #[test]
    fn unusable_keys_are_skipped() {
        let ec = jwt_mint::es256("e");
        let mut encryption = ec.jwk();
        encryption["use"] = json!("enc");
        let mut wrong_curve = ec.jwk();
        wrong_curve["crv"] = json!("P-384");
        let mut no_verify = ec.jwk();
        no_verify["key_ops"] = json!(["sign"]);
        let mut short_x = ec.jwk();
        short_x["x"] = json!(jwt_mint::b64(&[1; 31]));
        // A 1024-bit modulus: top bit set, 128 bytes.
        let mut small = vec![0xC0u8; 128];
        small[127] = 1;
        let weak_rsa =
            json!({"kty": "RSA", "kid": "weak", "n": jwt_mint::b64(&small), "e": "AQAB"});
        let short_secret = json!({"kty": "oct", "kid": "h", "k": jwt_mint::b64(b"short")});
        let keys = json!([encryption, wrong_curve, no_verify, short_x, weak_rsa, short_secret, {"kty": "OKP"}, 5]);
        assert_eq!(parse(keys).len(), 0);
        assert!(KeySet::parse(b"[]").is_err());
        assert!(KeySet::parse(&vec![b' '; MAX_JWKS_BYTES + 1]).is_err());
    }

    #[test]
    fn a_token_without_kid_uses_the_only_key() {
        let one = parse(json!([jwt_mint::es256("a").jwk()]));
        assert!(one.find(None).is_ok());
        let two = parse(json!([
            jwt_mint::es256("a").jwk(),
            jwt_mint::es256("b").jwk()
        ]));
        assert_eq!(two.find(None).map(|_| ()), Err(JwtError::MissingKeyId));
        assert_eq!(two.find(Some("c")).map(|_| ()), Err(JwtError::UnknownKeyId));
    }

    #[test]
    fn modulus_bits_ignore_leading_zeros() {
        assert_eq!(bit_length(&strip_leading_zeros(vec![0, 0, 0x01, 0xff])), 9);
        assert_eq!(bit_length(&[]), 0);
        assert_eq!(bit_length(&[0x80; 256]), 2048);
    }

    /// A CA, a certificate it signed for `names`, and both as PEM files in `dir`.
    fn pki(dir: &std::path::Path, tag: &str, names: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca =
            CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("CA");
        let key = KeyPair::generate().expect("key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = CertificateParams::new(names)
            .expect("params")
            .signed_by(&key, &ca)
            .expect("certificate");
        let paths = ["ca.crt", "leaf.crt", "leaf.key"].map(|f| dir.join(format!("{tag}-{f}")));
        let ca_pem = AsRef::<rcgen::Certificate>::as_ref(&ca).pem();
        std::fs::write(&paths[0], ca_pem).expect("write");
        std::fs::write(&paths[1], cert.pem()).expect("write");
        std::fs::write(&paths[2], key.serialize_pem()).expect("write");
        let [ca, leaf, key] = paths;
        (ca, leaf, key)
    }

    /// An HTTPS JWKS endpoint on the reverse proxy's TLS listener, with the given certificate.
    async fn https_jwks(cert_file: PathBuf, key_file: PathBuf, keys: &[&SigningKey]) -> u16 {
        use reverse_proxy::tls::{CertificateConfig, TlsConfig};
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let server = reverse_proxy::tls::server_config(&TlsConfig {
            listen: addr,
            certificates: vec![CertificateConfig {
                cert_file,
                key_file,
                server_names: Vec::new(),
            }],
            handshake_timeout_ms: 5_000,
        })
        .expect("server config");
        let document = jwt_mint::jwks(keys);
        let handler = move |_request: Request| {
            let document = document.clone();
            async move { Response::text(StatusCode::OK, document) }
        };
        tokio::spawn(reverse_proxy::tls::serve(
            listener,
            Arc::new(std::sync::RwLock::new(server)),
            Duration::from_secs(5),
            Arc::new(http1::server::ServerConfig::default()),
            Arc::new(handler),
            http1::server::AcceptGroup::members(16, 1).remove(0),
            service_kit::shutdown::Shutdown::new(),
        ));
        addr.port()
    }

    fn https_cache(port: u16, ca_file: &std::path::Path) -> KeyCache {
        let url = JwksUrl::parse(&format!("https://127.0.0.1:{port}/jwks.json")).expect("URL");
        let tls = reverse_proxy::tls::client_config_trusting(ca_file, "ca").expect("CAs");
        let source = Source::Url {
            url,
            client: http1::Client::new(http1::ClientConfig::default()).expect("client"),
            tls: Some(tokio_rustls::TlsConnector::from(tls)),
        };
        KeyCache::new(source, HOUR, SECOND)
    }

    #[tokio::test]
    async fn an_https_set_is_loaded_only_from_a_server_the_cas_vouch_for() {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = jwt_mint::es256("e1");
        let (ca, cert, cert_key) = pki(dir.path(), "good", &["127.0.0.1"]);
        let port = https_jwks(cert, cert_key, &[&key]).await;
        let loaded = https_cache(port, &ca).load_now(Instant::now()).await;
        assert!(matches!(loaded, Ok(1)), "{loaded:?}");

        // The same server, trusted through another CA: the handshake fails, no keys.
        let (other_ca, _, _) = pki(dir.path(), "other", &["127.0.0.1"]);
        let refused = https_cache(port, &other_ca).load_now(Instant::now()).await;
        assert!(
            matches!(&refused, Err(JwksError::Fetch(e)) if e.contains("TLS")),
            "{refused:?}"
        );

        // A certificate from the trusted CA, but for another name.
        let (ca, cert, cert_key) = pki(dir.path(), "misnamed", &["keys.example"]);
        let port = https_jwks(cert, cert_key, &[&key]).await;
        let refused = https_cache(port, &ca).load_now(Instant::now()).await;
        assert!(
            matches!(&refused, Err(JwksError::Fetch(e)) if e.contains("TLS")),
            "{refused:?}"
        );
    }
}
