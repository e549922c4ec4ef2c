//! Optional API keys for the write endpoints (POST, PATCH, DELETE).
//!
//! The config file holds SHA-256 digests of the keys, not the keys: a leaked config file or
//! backup does not leak write access. A request presents its key as `Authorization: Bearer
//! KEY` or `X-Api-Key: KEY` (Shlink's header); the server hashes it and compares the digest
//! with every configured one in constant time, without stopping at the first match, so the
//! response time says nothing about which bytes matched or which key was close. (API keys are
//! long random strings, so a plain fast hash is enough; passwords would need a slow one.)

use http1::{HeaderMap, header};
use sha2::{Digest, Sha256};

/// Header Shlink and many gateways use for API keys.
pub const API_KEY_HEADER: &str = "x-api-key";

/// The configured key digests.
#[derive(Clone, Debug, Default)]
pub struct ApiKeys {
    digests: Vec<[u8; 32]>,
}

impl ApiKeys {
    /// Keys from hex digests already checked by `Config::validate` (bad ones are skipped).
    pub fn from_hex(digests: &[String]) -> Self {
        ApiKeys {
            digests: digests.iter().filter_map(|d| parse_digest(d)).collect(),
        }
    }

    /// Whether writes need a key at all.
    pub fn required(&self) -> bool {
        !self.digests.is_empty()
    }

    /// Whether the request carries one of the keys (always true when none is configured).
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        if !self.required() {
            return true;
        }
        let Some(presented) = presented_key(headers) else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let mut matched = false;
        for known in &self.digests {
            matched |= constant_time_eq(&digest, known);
        }
        matched
    }
}

fn presented_key(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(value) = headers.get(API_KEY_HEADER) {
        return Some(value.as_bytes());
    }
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at(value.iter().position(|&b| b == b' ')?);
    scheme
        .eq_ignore_ascii_case(b"bearer")
        .then(|| token.trim_ascii())
}

/// Equality whose running time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // `black_box` keeps the optimiser from turning the fold back into an early exit.
    std::hint::black_box(diff) == 0
}

/// Parses 64 hex digits (either case) into a digest.
pub fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        digest[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(digest)
}

#[cfg(test)]
mod tests {
    use http1::HeaderValue;

    use super::*;

    /// SHA-256 of "password", as `printf %s password | sha256sum` prints it.
    const PASSWORD_SHA256: &str =
        "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";

    fn headers(name: &str, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            http1::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        headers
    }

    #[test]
    fn without_keys_everything_is_allowed() {
        let keys = ApiKeys::from_hex(&[]);
        assert!(!keys.required());
        assert!(keys.allows(&HeaderMap::new()));
    }

    #[test]
    fn the_key_whose_digest_is_configured_is_accepted_in_either_header() {
        let keys = ApiKeys::from_hex(&["0".repeat(64), PASSWORD_SHA256.to_uppercase()]);
        assert!(keys.allows(&headers("x-api-key", "password")));
        assert!(keys.allows(&headers("authorization", "Bearer password")));
        assert!(keys.allows(&headers("authorization", "bearer  password ")));
    }

    #[test]
    fn other_keys_and_schemes_are_refused() {
        let keys = ApiKeys::from_hex(&[PASSWORD_SHA256.to_owned()]);
        assert!(!keys.allows(&HeaderMap::new()));
        assert!(!keys.allows(&headers("x-api-key", "Password")));
        assert!(!keys.allows(&headers("authorization", "Basic password")));
        assert!(!keys.allows(&headers("authorization", "Bearerpassword")));
        // The digest itself is not a key.
        assert!(!keys.allows(&headers("x-api-key", PASSWORD_SHA256)));
    }

    #[test]
    fn digests_must_be_64_hex_digits() {
        assert!(parse_digest(PASSWORD_SHA256).is_some());
        assert!(parse_digest(&PASSWORD_SHA256[1..]).is_none());
        assert!(parse_digest(&"g".repeat(64)).is_none());
        assert!(parse_digest(&"é".repeat(32)).is_none());
    }
}
