//! The key that consistent hashing (`ring_hash`, `maglev`) maps to an endpoint, and the hash
//! function every balancer here uses.
//!
//! A key is chosen per cluster: the client's IP (sticky per client, the default), the request
//! path (a cache cluster where each object lives on one node), a header (a user or tenant id
//! set by an authenticating layer), or a cookie (a session id). A request that lacks the key
//! (no such header) gets no key, and the balancer picks for it as `random` would.
//!
//! The hash must be the same in every process and every run, so that two proxies (or one
//! proxy before and after a restart) send a key to the same endpoint: Rust's `DefaultHasher`
//! is randomly seeded per process and will not do. [`hash_bytes`] is 64-bit FNV-1a, which is
//! short and stable, followed by a finalizing mix (from SplitMix64), because FNV alone leaves
//! keys that differ only in their last byte close together in the high bits, and both the
//! ring and the Maglev table use the whole 64-bit value.

use std::net::SocketAddr;

use http::HeaderName;
use http1::RequestHead;
use serde::{Deserialize, Serialize};
use service_kit::config::ConfigError;

/// Where the hash key of a request comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case", deny_unknown_fields)]
pub enum HashKey {
    /// The downstream client's IP address (not its port).
    #[default]
    ClientIp,
    /// The request path, without the query.
    Path,
    /// The value of a request header (all of its field lines, joined).
    Header { name: String },
    /// The value of a cookie in the `Cookie` header.
    Cookie { name: String },
}

impl HashKey {
    /// Checks the header or cookie name; `field` is the dotted path of this key.
    pub(crate) fn validate(&self, field: &str) -> Result<(), ConfigError> {
        match self {
            HashKey::ClientIp | HashKey::Path => Ok(()),
            HashKey::Header { name } => match HeaderName::from_bytes(name.as_bytes()) {
                Ok(_) => Ok(()),
                Err(_) => Err(ConfigError::invalid(
                    format!("{field}.name"),
                    format!("`{name}` is not a header name"),
                )),
            },
            HashKey::Cookie { name } => {
                let token = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
                if token {
                    return Ok(());
                }
                Err(ConfigError::invalid(
                    format!("{field}.name"),
                    format!("`{name}` is not a cookie name"),
                ))
            }
        }
    }

    /// The hash of this request's key, or `None` when the request does not carry it.
    pub fn hash_of(&self, head: &RequestHead, client: Option<SocketAddr>) -> Option<u64> {
        match self {
            HashKey::ClientIp => client.map(|addr| match addr.ip() {
                std::net::IpAddr::V4(ip) => hash_bytes(&ip.octets()),
                std::net::IpAddr::V6(ip) => hash_bytes(&ip.octets()),
            }),
            HashKey::Path => Some(hash_bytes(head.path().as_bytes())),
            HashKey::Header { name } => {
                let mut values = head.headers.get_all(name.as_str()).iter().peekable();
                values.peek()?;
                let mut hash = FNV_OFFSET;
                for value in values {
                    hash = fnv1a(hash, value.as_bytes());
                    hash = fnv1a(hash, b",");
                }
                Some(finalize(hash))
            }
            HashKey::Cookie { name } => cookie(head, name).map(hash_bytes),
        }
    }
}

/// The value of cookie `name` (RFC 6265 section 5.4: `name=value` pairs separated by `; `).
fn cookie<'a>(head: &'a RequestHead, name: &str) -> Option<&'a [u8]> {
    for field in head.headers.get_all(http::header::COOKIE) {
        for pair in field.as_bytes().split(|&b| b == b';') {
            let pair = pair.trim_ascii();
            if let Some(value) = pair
                .strip_prefix(name.as_bytes())
                .and_then(|rest| rest.strip_prefix(b"="))
            {
                return Some(value);
            }
        }
    }
    None
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// SplitMix64's finalizer: every input bit affects every output bit.
pub(crate) fn finalize(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The stable 64-bit hash of `bytes` used for keys, ring points and Maglev permutations.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    finalize(fnv1a(FNV_OFFSET, bytes))
}

#[cfg(test)]
mod tests {
    use http::{HeaderValue, Method};

    use super::*;

    fn head_with(name: &'static str, value: &'static str) -> RequestHead {
        let mut head = RequestHead::new(Method::GET, "/a/b?q=1");
        head.headers.append(name, HeaderValue::from_static(value));
        head
    }

    #[test]
    fn the_hash_is_stable_across_runs() {
        // A changed hash would move every key of every deployed cluster.
        assert_eq!(hash_bytes(b""), finalize(FNV_OFFSET));
        assert_eq!(hash_bytes(b"a"), hash_bytes(b"a"));
        assert_ne!(hash_bytes(b"a"), hash_bytes(b"b"));
    }

    #[test]
    fn keys_come_from_where_the_config_says() {
        let head = head_with("cookie", "theme=dark; session=abc123");
        let client: SocketAddr = "10.0.0.7:5555".parse().unwrap();
        let other_port: SocketAddr = "10.0.0.7:6666".parse().unwrap();
        let ip = HashKey::ClientIp;
        assert_eq!(
            ip.hash_of(&head, Some(client)),
            ip.hash_of(&head, Some(other_port))
        );
        assert_eq!(
            HashKey::Path.hash_of(&head, None),
            Some(hash_bytes(b"/a/b"))
        );
        let session = HashKey::Cookie {
            name: "session".into(),
        };
        assert_eq!(session.hash_of(&head, None), Some(hash_bytes(b"abc123")));
        let missing = HashKey::Cookie {
            name: "sess".into(),
        };
        assert_eq!(missing.hash_of(&head, None), None);
        let user = HashKey::Header {
            name: "x-user".into(),
        };
        assert_eq!(user.hash_of(&head, None), None);
        let with_user = head_with("x-user", "42");
        assert!(user.hash_of(&with_user, None).is_some());
    }

    #[test]
    fn bad_names_are_refused_naming_the_field() {
        let bad = HashKey::Header {
            name: "bad header".into(),
        };
        let err = bad.validate("clusters.a.hash_key").unwrap_err().to_string();
        assert!(err.contains("clusters.a.hash_key.name"), "{err}");
        let bad = HashKey::Cookie { name: "a=b".into() };
        assert!(bad.validate("k").is_err());
    }
}
