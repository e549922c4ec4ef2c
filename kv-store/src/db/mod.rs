//! The keyspace: every key with its value, time to live and access record.
//!
//! This is the state machine that serves reads. It is applied to by commands in the order the
//! write-ahead log gives them, and it holds no clock of its own: a key whose time has passed
//! stays until something *decides* it is expired (a lazy check on access, the active sweep) and
//! that decision becomes a `DEL` in the log. Replaying the log therefore rebuilds exactly this
//! state, whatever the clock says at replay time.
//!
//! Keys live in an [`IndexMap`], a hash map whose entries are also a dense array, because both
//! the active expiry sweep and eviction sample keys at random (Redis's approach), and `SCAN`
//! walks positions. A removal moves the last entry into the hole (`swap_remove`); `SCAN`
//! therefore walks positions from the top down, so an entry that moves only ever moves to a
//! position not yet visited or to one already visited, never out of the unvisited range
//! (see [`Db::scan`]).

mod value;

use std::borrow::{Borrow, BorrowMut};
use std::collections::{HashMap, HashSet, VecDeque};

use bytes::Bytes;
use indexmap::{IndexMap, IndexSet};

pub use value::{Score, Value, ZSet};

use crate::resp::Frame;

/// The error Redis gives for a command used on a key of another type.
pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

/// `Err(Frame)` for a key of the wrong type.
pub fn wrong_type() -> Frame {
    Frame::error(WRONGTYPE)
}

/// One key's record.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub value: Value,
    /// Unix time in milliseconds at which the key expires; 0 for never.
    pub expires_at_ms: u64,
    /// Last access for LRU, or the LFU counter and decay time; see `eviction`.
    pub access: u32,
}

/// The keyspace of database 0 (the only one: `SELECT` accepts only 0, as Redis Cluster does).
#[derive(Debug, Default)]
pub struct Db {
    entries: IndexMap<Bytes, Entry>,
    /// Keys with a time to live, for the active expiry sweep and the `volatile-*` policies.
    volatile: IndexSet<Bytes>,
    /// Keys changed (or removed) since the last [`Db::take_dirty`]: what the next checkpoint of
    /// the state machine must write.
    dirty: HashSet<Bytes>,
}

macro_rules! typed_access {
    ($get:ident, $get_mut:ident, $create:ident, $variant:ident, $ty:ty) => {
        /// The key's value if it holds this type; `Err(WRONGTYPE)` if it holds another.
        pub fn $get(&self, key: &[u8]) -> Result<Option<&$ty>, Frame> {
            match self.entries.get(key).map(|e| &e.value) {
                None => Ok(None),
                Some(Value::$variant(inner)) => Ok(Some(Borrow::borrow(inner))),
                Some(_) => Err(wrong_type()),
            }
        }

        /// Mutable access (which marks the key dirty); see the shared accessor.
        pub fn $get_mut(&mut self, key: &[u8]) -> Result<Option<&mut $ty>, Frame> {
            let Some((_, stored, entry)) = self.entries.get_full_mut(key) else {
                return Ok(None);
            };
            match &mut entry.value {
                Value::$variant(inner) => {
                    self.dirty.insert(stored.clone());
                    Ok(Some(BorrowMut::borrow_mut(inner)))
                }
                _ => Err(wrong_type()),
            }
        }

        /// The key's value, created empty (without a TTL) if the key is absent. The caller
        /// must leave it non-empty.
        pub fn $create(&mut self, key: &[u8]) -> Result<&mut $ty, Frame> {
            if !self.entries.contains_key(key) {
                let value = Value::$variant(Default::default());
                self.set(Bytes::copy_from_slice(key), value, 0);
            }
            self.$get_mut(key).map(|v| v.expect("just inserted"))
        }
    };
}

impl Db {
    pub fn new() -> Db {
        Db::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of keys with a time to live.
    pub fn volatile_len(&self) -> usize {
        self.volatile.len()
    }

    pub fn get(&self, key: &[u8]) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// Mutable access to a whole entry; marks the key dirty.
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut Entry> {
        let (_, stored, entry) = self.entries.get_full_mut(key)?;
        self.dirty.insert(stored.clone());
        Some(entry)
    }

    /// Mutable access for bookkeeping that is not part of the state (the access record):
    /// does not mark the key dirty.
    pub fn access_mut(&mut self, key: &[u8]) -> Option<&mut Entry> {
        self.entries.get_mut(key)
    }

    /// Adds an entry read from the state machine's image at start-up (not dirty: it is stored).
    pub fn insert_loaded(&mut self, key: Bytes, entry: Entry) {
        if entry.expires_at_ms != 0 {
            self.volatile.insert(key.clone());
        }
        self.entries.insert(key, entry);
    }

    /// The keys changed since the last call, emptied.
    pub fn take_dirty(&mut self) -> HashSet<Bytes> {
        std::mem::take(&mut self.dirty)
    }

    /// Marks a key for the next checkpoint again (after a failed one).
    pub fn mark_dirty(&mut self, key: Bytes) {
        self.dirty.insert(key);
    }

    /// Number of keys changed since the last [`Db::take_dirty`].
    pub fn dirty_len(&self) -> usize {
        self.dirty.len()
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        self.entries.contains_key(key)
    }

    /// Stores `value` under `key`, replacing any previous value and its TTL.
    pub fn set(&mut self, key: Bytes, value: Value, expires_at_ms: u64) {
        if expires_at_ms == 0 {
            self.volatile.swap_remove(&key);
        } else {
            self.volatile.insert(key.clone());
        }
        let entry = Entry {
            value,
            expires_at_ms,
            access: 0,
        };
        self.dirty.insert(key.clone());
        self.entries.insert(key, entry);
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let (stored, entry) = self.entries.swap_remove_entry(key)?;
        if entry.expires_at_ms != 0 {
            self.volatile.swap_remove(key);
        }
        self.dirty.insert(stored);
        Some(entry)
    }

    /// Sets or (with 0) clears the key's expiry time. False if the key does not exist.
    pub fn set_expiry(&mut self, key: &[u8], expires_at_ms: u64) -> bool {
        let Some((_, stored, entry)) = self.entries.get_full_mut(key) else {
            return false;
        };
        entry.expires_at_ms = expires_at_ms;
        self.dirty.insert(stored.clone());
        if expires_at_ms == 0 {
            self.volatile.swap_remove(key);
        } else {
            self.volatile.insert(stored.clone());
        }
        true
    }

    /// Whether the key exists and its time has passed at `now_ms`.
    pub fn is_expired(&self, key: &[u8], now_ms: u64) -> bool {
        self.entries
            .get(key)
            .is_some_and(|e| e.expires_at_ms != 0 && e.expires_at_ms <= now_ms)
    }

    /// Removes every key; each is marked dirty, so the next checkpoint deletes it from the image.
    pub fn clear(&mut self) {
        let keys: Vec<Bytes> = self.entries.keys().cloned().collect();
        self.dirty.extend(keys);
        self.entries.clear();
        self.volatile.clear();
    }

    /// The entry at `position` (0..len), for random sampling.
    pub fn entry_at(&self, position: usize) -> Option<(&Bytes, &Entry)> {
        self.entries.get_index(position)
    }

    /// The volatile key at `position` (0..volatile_len), for random sampling.
    pub fn volatile_key_at(&self, position: usize) -> Option<&Bytes> {
        self.volatile.get_index(position)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &Entry)> {
        self.entries.iter()
    }

    /// One step of a `SCAN`: visits up to `count` positions below `cursor` (0 starts at the
    /// top) from the highest down, and returns the next cursor (0 when the walk is done).
    ///
    /// Invariant that makes this correct while keys are removed and added between steps: a
    /// `swap_remove` moves the *last* entry down into the hole. Positions at or above the cursor
    /// are visited, those below are not; the last entry is either visited (moving it may cause
    /// a repeat, which `SCAN` allows) or, if the map shrank below the cursor, unvisited and
    /// moving to a lower, still unvisited position. So an entry present for the whole walk is
    /// returned at least once. New entries go on top and may be missed, which `SCAN` allows.
    pub fn scan(
        &self,
        cursor: usize,
        count: usize,
        mut visit: impl FnMut(&Bytes, &Entry),
    ) -> usize {
        let top = if cursor == 0 {
            self.entries.len()
        } else {
            cursor.min(self.entries.len())
        };
        let bottom = top.saturating_sub(count.max(1));
        for position in (bottom..top).rev() {
            let (key, entry) = self.entries.get_index(position).expect("below len");
            visit(key, entry);
        }
        bottom
    }

    typed_access!(string, string_mut, string_or_new, Str, Bytes);
    typed_access!(list, list_mut, list_or_new, List, VecDeque<Bytes>);
    typed_access!(hash, hash_mut, hash_or_new, Hash, HashMap<Bytes, Bytes>);
    typed_access!(set_of, set_of_mut, set_or_new, Set, HashSet<Bytes>);
    typed_access!(zset, zset_mut, zset_or_new, ZSet, ZSet);

    /// Removes `key` if its collection became empty; returns whether it did.
    pub fn remove_if_empty(&mut self, key: &[u8]) -> bool {
        let empty = match self.entries.get(key).map(|e| &e.value) {
            Some(Value::List(l)) => l.is_empty(),
            Some(Value::Hash(h)) => h.is_empty(),
            Some(Value::Set(s)) => s.is_empty(),
            Some(Value::ZSet(z)) => z.is_empty(),
            _ => false,
        };
        if empty {
            self.remove(key);
        }
        empty
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: usize) -> Bytes {
        Bytes::from(format!("k{i}"))
    }

    #[test]
    fn ttl_bookkeeping_follows_set_expire_and_remove() {
        let mut db = Db::new();
        db.set(key(1), Value::Str(Bytes::new()), 100);
        db.set(key(2), Value::Str(Bytes::new()), 0);
        assert_eq!(db.volatile_len(), 1);
        assert!(db.is_expired(b"k1", 100) && !db.is_expired(b"k1", 99));
        assert!(db.set_expiry(b"k2", 50));
        assert_eq!(db.volatile_len(), 2);
        assert!(db.set_expiry(b"k1", 0));
        db.remove(b"k2");
        assert_eq!(db.volatile_len(), 0);
        assert!(!db.set_expiry(b"missing", 5));
    }

    #[test]
    fn wrong_type_is_reported() {
        let mut db = Db::new();
        db.set(key(1), Value::Str(Bytes::from_static(b"x")), 0);
        assert_eq!(db.list(b"k1"), Err(wrong_type()));
        assert!(db.list_or_new(b"k2").is_ok());
        assert_eq!(db.string(b"k2"), Err(wrong_type()));
    }

    /// SCAN's guarantee under removals between steps: every key present from the start to the
    /// end of the walk is returned.
    #[test]
    fn scan_returns_every_key_that_stays_despite_removals() {
        let mut db = Db::new();
        for i in 0..1000 {
            db.set(key(i), Value::Str(Bytes::new()), 0);
        }
        let mut seen = HashSet::new();
        let mut cursor = 0;
        let mut step = 0;
        loop {
            cursor = db.scan(cursor, 37, |k, _| {
                seen.insert(k.clone());
            });
            // Remove keys that are multiples of 7, some visited, some not.
            for i in (step * 50..step * 50 + 50).filter(|i| i % 7 == 0) {
                db.remove(&key(i));
            }
            step += 1;
            if cursor == 0 {
                break;
            }
        }
        for i in (0..1000).filter(|i| i % 7 != 0) {
            assert!(seen.contains(&key(i)), "k{i} missed");
        }
    }
}
