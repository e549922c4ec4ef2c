//! `X-Request-Id`: one identifier per request, kept across every hop, so that the access logs
//! of the proxy, the gateway and the services can be joined on it.
//!
//! A request that arrives with a plausible id keeps it (an edge proxy or the client chose
//! it). One without, or with a value that is not a short run of visible ASCII, gets a fresh
//! one: 32 hex digits (128 bits). The proxy also returns the id on the response, so a client
//! can quote it in a bug report.
//!
//! Fresh ids come from SplitMix64 over a counter seeded once per process from the clock and
//! the process id. The finalizer is a bijection, so two ids of one process never collide, and
//! the 64 random bits of the seed make collisions between processes as unlikely as with
//! random UUIDs, without a system call or a lock per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{Entry, HeaderMap, HeaderName, HeaderValue};

use crate::balance::{finalize, hash_bytes};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest id kept as received; a longer one is replaced (it would bloat every log line).
pub const MAX_REQUEST_ID_BYTES: usize = 200;

/// Generates request ids.
#[derive(Debug)]
pub struct RequestIds {
    /// High half of every id: fixed per process.
    prefix: u64,
    counter: AtomicU64,
}

impl Default for RequestIds {
    fn default() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        RequestIds::from_seed(finalize(nanos) ^ u64::from(std::process::id()))
    }
}

impl RequestIds {
    pub fn from_seed(seed: u64) -> Self {
        RequestIds {
            prefix: hash_bytes(&seed.to_be_bytes()),
            counter: AtomicU64::new(seed),
        }
    }

    /// Makes sure `headers` has a usable `X-Request-Id` (exactly one) and returns it.
    pub fn ensure(&self, headers: &mut HeaderMap) -> HeaderValue {
        // One lookup for the check and the write.
        match headers.entry(&X_REQUEST_ID) {
            Entry::Occupied(mut entry) => {
                let mut received = entry.iter();
                if let (Some(only), None) = (received.next(), received.next())
                    && is_usable(only)
                {
                    return only.clone();
                }
                let id = self.next();
                // Replaces every value received.
                entry.insert(id.clone());
                id
            }
            Entry::Vacant(entry) => entry.insert(self.next()).clone(),
        }
    }

    fn next(&self) -> HeaderValue {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let id = (u128::from(self.prefix) << 64) | u128::from(finalize(n));
        let mut text = [0u8; 32];
        for (i, digit) in text.iter_mut().enumerate() {
            *digit = b"0123456789abcdef"[(id >> (124 - 4 * i)) as usize & 0xf];
        }
        // Hex digits are always a valid value.
        HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static("0"))
    }
}

/// Whether a received id is kept: short visible ASCII, not empty.
pub(crate) fn is_usable(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_REQUEST_ID_BYTES
        && bytes.iter().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn a_usable_id_is_kept_and_a_missing_or_odd_one_replaced() {
        let ids = RequestIds::from_seed(1);
        let mut headers = HeaderMap::new();
        headers.insert(X_REQUEST_ID.clone(), HeaderValue::from_static("abc-123"));
        assert_eq!(ids.ensure(&mut headers), "abc-123");

        for odd in ["", "has space", &"x".repeat(MAX_REQUEST_ID_BYTES + 1)] {
            let mut headers = HeaderMap::new();
            headers.insert(X_REQUEST_ID.clone(), HeaderValue::from_str(odd).unwrap());
            let id = ids.ensure(&mut headers);
            assert_eq!(id.len(), 32, "{odd:?} replaced by {id:?}");
            assert_eq!(headers[&X_REQUEST_ID], id);
        }

        // Two ids: which to believe? Neither: one fresh id replaces both.
        let mut headers = HeaderMap::new();
        headers.append(X_REQUEST_ID.clone(), HeaderValue::from_static("a"));
        headers.append(X_REQUEST_ID.clone(), HeaderValue::from_static("b"));
        let id = ids.ensure(&mut headers);
        assert_eq!(id.len(), 32);
        let kept: Vec<_> = headers.get_all(&X_REQUEST_ID).iter().collect();
        assert_eq!(kept, [&id]);
    }

    #[test]
    fn a_fresh_id_is_the_128_bits_in_hex() {
        let ids = RequestIds::from_seed(7);
        let expected =
            (u128::from(hash_bytes(&7u64.to_be_bytes())) << 64) | u128::from(finalize(7));
        assert_eq!(ids.next(), format!("{expected:032x}").as_str());
    }

    #[test]
    fn fresh_ids_do_not_repeat() {
        let ids = RequestIds::from_seed(42);
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let id = ids.ensure(&mut HeaderMap::new());
            assert!(seen.insert(id), "repeated id");
        }
    }
}
