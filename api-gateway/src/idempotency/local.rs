//! The local backend: records in a bounded map in this process.
//!
//! ```text
//!   entries           key digest ─▶ { record, expires_ns, seq }
//!   by_expiry         (expires_ns, seq) ─▶ key     purged from the front on every call
//!   completed_by_age  seq ─▶ key                    evicted from the front when full
//! ```
//!
//! Time is the caller's `now_ns`; nothing runs in the background. Expired records are purged
//! at the start of every call, from the front of `by_expiry`, so the work is proportional to
//! what expired. When the store is full (`max_keys` records, or `max_stored_bytes` of
//! responses) the oldest *completed* response goes first. A running claim is never evicted:
//! dropping it would let a retry run the request a second time while the first still runs;
//! when every slot is a running claim, a new key gets [`StoreError::Full`] (503) instead.
//!
//! One `std::sync::Mutex` guards the map: every operation is a few map updates with no await
//! inside, so a tokio mutex would only add cost.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::record::{Record, Token, new_token};
use super::{
    Begin, Claim, ClaimBackend, IdempotencyConfig, NANOS_PER_MS, StoreError, StoredResponse,
    key_digest,
};

type Key = [u8; 32];

/// The local store. Clones share the same map.
#[derive(Debug, Clone)]
pub struct LocalStore {
    table: Arc<Mutex<Table>>,
    limits: Limits,
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    ttl_ns: u64,
    lock_ttl_ns: u64,
    max_keys: usize,
    max_stored_bytes: usize,
    max_body_bytes: usize,
}

#[derive(Debug)]
struct Entry {
    record: Record,
    expires_ns: u64,
    /// Order of insertion; unique, so it also tells entries with the same expiry apart.
    seq: u64,
}

/// Invariant: every entry appears once in `by_expiry` under its `(expires_ns, seq)`, and once
/// in `completed_by_age` under its `seq` if and only if it is completed; `stored_bytes` is the
/// sum of the completed responses' sizes.
#[derive(Debug, Default)]
struct Table {
    entries: HashMap<Key, Entry>,
    by_expiry: BTreeMap<(u64, u64), Key>,
    completed_by_age: BTreeMap<u64, Key>,
    stored_bytes: usize,
    next_seq: u64,
}

impl LocalStore {
    pub fn new(config: &IdempotencyConfig) -> LocalStore {
        LocalStore {
            table: Arc::new(Mutex::new(Table::default())),
            limits: Limits {
                ttl_ns: config.ttl_ms.saturating_mul(NANOS_PER_MS),
                lock_ttl_ns: config.lock_ttl_ms.saturating_mul(NANOS_PER_MS),
                max_keys: config.max_keys.max(1),
                max_stored_bytes: config.max_stored_bytes,
                max_body_bytes: config.max_body_bytes,
            },
        }
    }

    /// Records held now (claims and completed responses), expired ones not yet purged
    /// included.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn begin(
        &self,
        key: &str,
        fingerprint: [u8; 32],
        now_ns: u64,
    ) -> Result<Begin, StoreError> {
        let digest = key_digest(key);
        let mut table = self.lock();
        table.purge(now_ns);
        if let Some(entry) = table.entries.get(&digest) {
            return Ok(answer(&entry.record, &fingerprint));
        }
        if table.entries.len() >= self.limits.max_keys && !table.evict_oldest_completed() {
            return Err(StoreError::Full {
                max_keys: self.limits.max_keys,
            });
        }
        let token = new_token(now_ns);
        let claim = Record::Claim { fingerprint, token };
        table.insert(
            digest,
            claim,
            now_ns.saturating_add(self.limits.lock_ttl_ns),
        );
        Ok(Begin::Proceed(Claim {
            backend: ClaimBackend::Local {
                store: self.clone(),
                key: digest,
            },
            fingerprint,
            token,
            max_body_bytes: self.limits.max_body_bytes,
        }))
    }

    /// Replaces our claim with the response. If the claim expired and nobody took the key,
    /// the response is stored all the same: the request did run, and a later retry must see
    /// it. If another request holds the key now, theirs stays.
    pub(super) fn complete(
        &self,
        key: &Key,
        token: Token,
        fingerprint: [u8; 32],
        response: StoredResponse,
        now_ns: u64,
    ) -> Result<(), StoreError> {
        let mut table = self.lock();
        table.purge(now_ns);
        let ours = match table.entries.get(key).map(|entry| &entry.record) {
            Some(Record::Claim { token: theirs, .. }) => *theirs == token,
            Some(Record::Completed { .. }) => false,
            None => {
                let full = table.entries.len() >= self.limits.max_keys;
                if full && !table.evict_oldest_completed() {
                    return Err(StoreError::Full {
                        max_keys: self.limits.max_keys,
                    });
                }
                false
            }
        };
        if ours {
            table.remove(key);
        } else if table.entries.contains_key(key) {
            return Err(StoreError::ClaimLost);
        }
        let record = Record::Completed {
            fingerprint,
            response,
        };
        table.insert(*key, record, now_ns.saturating_add(self.limits.ttl_ns));
        while table.stored_bytes > self.limits.max_stored_bytes {
            if !table.evict_oldest_completed_except(key) {
                break;
            }
        }
        Ok(())
    }

    /// Removes our claim, if it is still ours.
    pub(super) fn release(&self, key: &Key, token: Token) {
        let mut table = self.lock();
        if let Some(Entry {
            record: Record::Claim { token: theirs, .. },
            ..
        }) = table.entries.get(key)
            && *theirs == token
        {
            table.remove(key);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // Every mutation keeps the invariant between statements that can panic, so a poisoned
        // lock leaves a consistent table.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What an existing record means for a request with `fingerprint`.
pub(super) fn answer(record: &Record, fingerprint: &[u8; 32]) -> Begin {
    if record.fingerprint() != fingerprint {
        return Begin::Mismatch;
    }
    match record {
        Record::Claim { .. } => Begin::InProgress,
        Record::Completed { response, .. } => Begin::Replay(response.clone()),
    }
}

impl Table {
    fn insert(&mut self, key: Key, record: Record, expires_ns: u64) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Record::Completed { response, .. } = &record {
            self.stored_bytes += response.stored_bytes();
            self.completed_by_age.insert(seq, key);
        }
        self.by_expiry.insert((expires_ns, seq), key);
        let entry = Entry {
            record,
            expires_ns,
            seq,
        };
        if self.entries.insert(key, entry).is_some() {
            debug_assert!(false, "insert over a live entry: remove it first");
        }
    }

    fn remove(&mut self, key: &Key) {
        let Some(entry) = self.entries.remove(key) else {
            return;
        };
        self.by_expiry.remove(&(entry.expires_ns, entry.seq));
        if let Record::Completed { response, .. } = &entry.record {
            self.stored_bytes -= response.stored_bytes();
            self.completed_by_age.remove(&entry.seq);
        }
    }

    /// Removes every entry whose time is up at `now_ns`.
    fn purge(&mut self, now_ns: u64) {
        while let Some((&(expires_ns, _), &key)) = self.by_expiry.first_key_value() {
            if expires_ns > now_ns {
                break;
            }
            self.remove(&key);
        }
    }

    /// Evicts the oldest completed response; false if there is none.
    fn evict_oldest_completed(&mut self) -> bool {
        match self.completed_by_age.first_key_value() {
            Some((_, &key)) => {
                self.remove(&key);
                true
            }
            None => false,
        }
    }

    /// As [`Table::evict_oldest_completed`], sparing `keep` (the response just stored: one
    /// response over the byte limit alone is bounded by `max_body_bytes`).
    fn evict_oldest_completed_except(&mut self, keep: &Key) -> bool {
        let oldest = self
            .completed_by_age
            .values()
            .find(|key| *key != keep)
            .copied();
        match oldest {
            Some(key) => {
                self.remove(&key);
                true
            }
            None => false,
        }
    }
}
