//! Tokens already verified, so that a client sending the same bearer token on every request (the
//! usual case: a token lives for minutes or hours) pays for its signature and claims once, not
//! per request. Envoy's `jwt_authn` filter keeps the same kind of cache (`jwt_cache_config`).
//!
//! Without it, HS256 verification is the largest cost of the gateway's chain: base64 and JSON
//! for header and claims, then an HMAC (`BENCHMARKS.md`); RS256 and ES256 cost ten and thirty
//! times more.
//!
//! An entry answers for its token only while both of these hold; otherwise the token is
//! verified again from scratch, which gives the precise error if there is one:
//!
//! - the time claims still hold at this request's time (`exp`, `nbf`, `iat`, with the leeway):
//!   see [`Validity`];
//! - the key cache still gives, for the token's `kid`, the very key object that verified it. A
//!   key set loaded again (its TTL, an unknown `kid`, a rotation or revocation at the issuer)
//!   is made of new key objects, so every entry verified under the old set is checked again.
//!
//! Issuer, audience and the algorithm allowlist depend only on the token and the config; a
//! reload builds a new verifier, with an empty table. Only successes are stored: a flood of
//! bad tokens costs what it cost before. The table holds at most `max_entries` tokens; when it
//! is full an arbitrary entry makes room (bounded memory, no order to maintain per hit).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::Identity;
use super::jwks::Jwk;
use super::jwt::Validity;

/// One verified token.
#[derive(Debug, Clone)]
pub(crate) struct Verified {
    /// The token's `kid`, to ask the key cache for its key again.
    pub kid: Option<String>,
    /// The key that verified the signature.
    pub key: Arc<Jwk>,
    pub validity: Validity,
    pub identity: Identity,
}

/// Verified tokens by their text. Tokens come from clients, so the hash is seeded per process
/// (foldhash, as the rate limiters' key tables).
#[derive(Debug)]
pub(crate) struct VerifiedTokens {
    max_entries: usize,
    map: Mutex<HashMap<Box<str>, Verified, foldhash::fast::RandomState>>,
}

impl VerifiedTokens {
    /// A table of at most `max_entries` tokens; 0 keeps none.
    pub(crate) fn new(max_entries: usize) -> VerifiedTokens {
        VerifiedTokens {
            max_entries,
            map: Mutex::new(HashMap::default()),
        }
    }

    /// The entry for `token` if its time claims hold at `now_unix_s`; an entry whose time has
    /// passed is removed.
    pub(crate) fn get(&self, token: &str, now_unix_s: u64) -> Option<Verified> {
        if self.max_entries == 0 {
            return None;
        }
        let mut map = self.lock();
        let entry = map.get(token)?;
        if entry.validity.holds_at(now_unix_s) {
            return Some(entry.clone());
        }
        map.remove(token);
        None
    }

    pub(crate) fn insert(&self, token: &str, verified: Verified) {
        if self.max_entries == 0 {
            return;
        }
        let mut map = self.lock();
        if map.len() >= self.max_entries && !map.contains_key(token) {
            let evicted = map.keys().next().cloned();
            if let Some(evicted) = evicted {
                map.remove(&evicted);
            }
        }
        map.insert(token.into(), verified);
    }

    /// Forgets `token` (its key changed).
    pub(crate) fn remove(&self, token: &str) {
        self.lock().remove(token);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Verified, foldhash::fast::RandomState>> {
        // Every update leaves the map consistent: a panic elsewhere cannot have broken it.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}
