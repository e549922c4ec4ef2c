//! API keys: an opaque secret in a header (or, if enabled, a query parameter), known to the
//! gateway only by its SHA-256 digest.
//!
//! ```text
//!  GET /orders HTTP/1.1               GET /orders?apikey=s3cr3t HTTP/1.1
//!  x-api-key: s3cr3t                  (only with `query_param` set; the header wins)
//!
//!  SHA-256(key) ── compared with every configured digest, in constant time ──> entry
//!                                                      { id, consumer }
//! ```
//!
//! **Why digests.** The config holds `sha256 = "..."`, never the key: a leaked config file, a
//! backup or a `git log` gives an attacker nothing to present (a preimage of SHA-256 is out of
//! reach, and API keys are long random strings, so no dictionary helps either). This is how
//! GitHub and Stripe store tokens. A plain hash, not a password hash: the key is high-entropy,
//! so a slow KDF would add latency to every request and no security.
//!
//! **Why constant time.** The presented digest is compared with *every* entry, each comparison
//! touching all 32 bytes, and the match is picked without branching on which one it was. The
//! response time then says nothing about how many bytes of which digest matched. (Comparing
//! digests rather than keys already blunts byte-by-byte timing attacks; this removes them.)
//! The cost is linear in the number of keys, which `MAX_API_KEYS` bounds.
//!
//! A request carrying the header twice, or the parameter twice, is refused as ambiguous
//! rather than guessing which copy a later hop would read.

use http::HeaderName;
use http1::RequestHead;
use sha2::{Digest, Sha256};

use super::config::{ApiKeySettings, AuthConfig, parse_digest};

/// One configured key.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    digest: [u8; 32],
    pub id: String,
    pub consumer: String,
}

/// What a request carried in the API-key places.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Presented {
    None,
    /// One key (the header's, else the query parameter's, percent-decoded).
    Key(Vec<u8>),
    /// The same place twice, or a query value whose percent-escapes do not decode: no one
    /// key can be read, so the request is refused rather than guessed at.
    Ambiguous,
}

/// The configured keys and where to find them in a request.
#[derive(Debug)]
pub(crate) struct ApiKeys {
    header: HeaderName,
    query_param: Option<String>,
    entries: Vec<Entry>,
}

impl ApiKeys {
    /// From a validated config; `Err` names what `validate` should have refused.
    pub(crate) fn new(config: &AuthConfig) -> Result<ApiKeys, String> {
        let ApiKeySettings {
            header,
            query_param,
        } = &config.api_key;
        let header = HeaderName::from_bytes(header.as_bytes())
            .map_err(|_| "auth.api_key.header: not a header name".to_owned())?;
        let mut entries = Vec::with_capacity(config.api_keys.len());
        for (i, entry) in config.api_keys.iter().enumerate() {
            let digest = parse_digest(&entry.sha256)
                .ok_or_else(|| format!("auth.api_keys[{i}].sha256: not 64 hex digits"))?;
            entries.push(Entry {
                digest,
                id: entry.id.clone(),
                consumer: entry.consumer.clone(),
            });
        }
        Ok(ApiKeys {
            header,
            query_param: query_param.clone(),
            entries,
        })
    }

    /// The key a request presents: the header first, then the query parameter.
    pub(crate) fn presented(&self, head: &RequestHead) -> Presented {
        let mut values = head.headers.get_all(&self.header).iter();
        match (values.next(), values.next()) {
            (Some(_), Some(_)) => return Presented::Ambiguous,
            (Some(value), None) => return Presented::Key(value.as_bytes().to_vec()),
            _ => {}
        }
        let (Some(param), Some(query)) = (&self.query_param, head.query()) else {
            return Presented::None;
        };
        let mut found = query.split('&').filter_map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (name == param).then_some(value)
        });
        match (found.next(), found.next()) {
            (Some(_), Some(_)) => Presented::Ambiguous,
            (Some(value), None) => match percent_decode(value) {
                Some(key) => Presented::Key(key),
                None => Presented::Ambiguous,
            },
            _ => Presented::None,
        }
    }

    /// The entry whose digest is SHA-256(`key`), found in constant time (see the module doc).
    pub(crate) fn lookup(&self, key: &[u8]) -> Option<&Entry> {
        let digest: [u8; 32] = Sha256::digest(key).into();
        let mut found = None;
        for entry in &self.entries {
            // Every entry is compared; the match is recorded, never returned early.
            if digests_equal(&entry.digest, &digest) {
                found = Some(entry);
            }
        }
        found
    }

    /// Removes the header and the query parameter, leaving every other byte of the target as
    /// it was.
    pub(crate) fn strip(&self, head: &mut RequestHead) {
        head.headers.remove(&self.header);
        let Some(param) = &self.query_param else {
            return;
        };
        let Some((path, query)) = head.target.split_once('?') else {
            return;
        };
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| pair.split_once('=').map_or(*pair, |(name, _)| name) != param)
            .collect();
        head.target = match kept.as_slice() {
            [] => path.to_owned(),
            _ => format!("{path}?{}", kept.join("&")),
        };
    }
}

/// Compares all 32 bytes whatever they hold. `black_box` keeps the optimiser from turning the
/// OR-fold back into an early-exit comparison.
fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut difference = 0u8;
    for (x, y) in a.iter().zip(b) {
        difference |= x ^ y;
    }
    std::hint::black_box(difference) == 0
}

/// `%XX` escapes (RFC 3986 section 2.1) and `+` for a space (form encoding). `None` for a
/// broken escape.
fn percent_decode(value: &str) -> Option<Vec<u8>> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let high = char::from(hex[0]).to_digit(16)?;
                let low = char::from(hex[1]).to_digit(16)?;
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use http::{HeaderValue, Method};

    use super::*;
    use crate::auth::config::ApiKeyEntry;

    fn hex_sha256(key: &str) -> String {
        Sha256::digest(key.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn keys(query_param: Option<&str>) -> ApiKeys {
        let config = AuthConfig {
            api_key: ApiKeySettings {
                header: "X-Api-Key".into(),
                query_param: query_param.map(str::to_owned),
            },
            api_keys: ["alpha", "beta"]
                .iter()
                .map(|name| ApiKeyEntry {
                    id: format!("{name}-id"),
                    sha256: hex_sha256(&format!("{name}-secret")),
                    consumer: format!("{name}-consumer"),
                })
                .collect(),
            jwt: None,
        };
        ApiKeys::new(&config).expect("valid config")
    }

    fn head(target: &str, header: &[&str]) -> RequestHead {
        let mut head = RequestHead::new(Method::GET, target);
        for value in header {
            head.headers
                .append("x-api-key", HeaderValue::from_str(value).expect("value"));
        }
        head
    }

    #[test]
    fn the_right_key_finds_its_entry_and_a_wrong_one_nothing() {
        let keys = keys(None);
        let found = keys.lookup(b"beta-secret").expect("beta is configured");
        assert_eq!(
            (found.id.as_str(), found.consumer.as_str()),
            ("beta-id", "beta-consumer")
        );
        assert!(keys.lookup(b"beta-secreT").is_none());
        assert!(keys.lookup(b"").is_none());
        assert!(
            keys.lookup(&hex_sha256("beta-secret").into_bytes())
                .is_none(),
            "the digest is not the key"
        );
    }

    #[test]
    fn header_then_query_parameter() {
        let with_query = keys(Some("apikey"));
        let h = head("/a?apikey=from-query", &["from-header"]);
        assert_eq!(
            with_query.presented(&h),
            Presented::Key(b"from-header".to_vec())
        );
        let h = head("/a?x=1&apikey=alpha%2Dsecret+1&y", &[]);
        assert_eq!(
            with_query.presented(&h),
            Presented::Key(b"alpha-secret 1".to_vec())
        );
        let h = head("/a?apikey=1&apikey=2", &[]);
        assert_eq!(with_query.presented(&h), Presented::Ambiguous);
        let h = head("/a?apikey=%zz", &[]);
        assert_eq!(with_query.presented(&h), Presented::Ambiguous);
        let h = head("/a?apikeyx=1", &[]);
        assert_eq!(with_query.presented(&h), Presented::None);
        let without_query = keys(None);
        let h = head("/a?apikey=alpha-secret", &[]);
        assert_eq!(
            without_query.presented(&h),
            Presented::None,
            "query keys are opt-in"
        );
        let h = head("/a", &["one", "two"]);
        assert_eq!(without_query.presented(&h), Presented::Ambiguous);
    }

    #[test]
    fn strip_removes_only_the_credential() {
        let keys = keys(Some("apikey"));
        let cases = [
            ("/a?apikey=s", "/a"),
            ("/a?x=%41&apikey=s&y=2&&z", "/a?x=%41&y=2&&z"),
            ("/a?apikey", "/a"),
            ("/a?apikeys=s", "/a?apikeys=s"),
            ("/a", "/a"),
            ("/a?", "/a?"),
        ];
        for (before, after) in cases {
            let mut h = head(before, &["s"]);
            h.headers
                .insert("x-other", HeaderValue::from_static("kept"));
            keys.strip(&mut h);
            assert_eq!(h.target, after, "{before}");
            assert!(!h.headers.contains_key("x-api-key"));
            assert_eq!(
                h.headers.get("x-other").map(|v| v.as_bytes()),
                Some(&b"kept"[..])
            );
        }
    }

    #[test]
    fn digest_comparison_is_exact() {
        let a = [7u8; 32];
        let mut b = a;
        assert!(digests_equal(&a, &b));
        b[31] ^= 1;
        assert!(!digests_equal(&a, &b));
    }
}
