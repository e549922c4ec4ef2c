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
#[derive(Debug, Clone)]
pub struct Entry {
    pub value: Value,
    /// Unix time in milliseconds at which the key expires; 0 for never.
    pub expires_at_ms: u64,
    /// Last access for LRU, or the LFU counter and decay time; see `eviction`.
    pub access: u32,
    /// Changed since the last checkpoint: the next one must write it (see [`Db::drain_dirty`]).
    /// Bookkeeping, not state: equality ignores it. It fits in the padding after `access`, so
    /// it costs no memory, where a set of dirty keys cost a key clone and a table slot each.
    dirty: bool,
}

impl Entry {
    /// A new entry, never accessed, not yet marked changed.
    pub fn new(value: Value, expires_at_ms: u64) -> Entry {
        Entry {
            value,
            expires_at_ms,
            access: 0,
            dirty: false,
        }
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        self.value == other.value
            && self.expires_at_ms == other.expires_at_ms
            && self.access == other.access
    }
}

/// The keyspace of database 0 (the only one: `SELECT` accepts only 0, as Redis Cluster does).
#[derive(Debug, Default)]
pub struct Db {
    entries: IndexMap<Bytes, Entry>,
    /// Keys with a time to live, for the active expiry sweep and the `volatile-*` policies.
    volatile: IndexSet<Bytes>,
    /// What the next checkpoint of the state machine must write, besides the entries marked
    /// `dirty`: positions in `entries` where a dirty entry is or was (a position can go stale
    /// when entries move; [`Db::drain_dirty`] checks the flag), ...
    dirty_positions: Vec<usize>,
    /// ... and the keys removed since the last checkpoint (moved here, not cloned).
    removed: HashSet<Bytes>,
}

macro_rules! typed_access {
    ($get:ident, $get_mut:ident, $create:ident, $project:ident, $variant:ident, $ty:ty) => {
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
            match self.entries.get_index_of(key) {
                None => Ok(None),
                Some(position) => self.typed_at(position, Self::$project).map(Some),
            }
        }

        /// The key's value, created empty (without a TTL) if the key is absent. The caller
        /// must leave it non-empty.
        pub fn $create(&mut self, key: &[u8]) -> Result<&mut $ty, Frame> {
            let position = match self.entries.get_index_of(key) {
                Some(position) => position,
                None => {
                    let value = Value::$variant(Default::default());
                    self.set(Bytes::copy_from_slice(key), value, 0);
                    self.entries.len() - 1
                }
            };
            self.typed_at(position, Self::$project)
        }

        fn $project(value: &mut Value) -> Option<&mut $ty> {
            match value {
                Value::$variant(inner) => Some(BorrowMut::borrow_mut(inner)),
                _ => None,
            }
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
        let position = self.entries.get_index_of(key)?;
        self.mark_position_dirty(position);
        self.entries.get_index_mut(position).map(|(_, entry)| entry)
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

    /// The value at `position` as the type `project` picks out, marked dirty; `WRONGTYPE` if
    /// it holds another.
    fn typed_at<T: ?Sized>(
        &mut self,
        position: usize,
        project: fn(&mut Value) -> Option<&mut T>,
    ) -> Result<&mut T, Frame> {
        if project(&mut self.entries[position].value).is_none() {
            return Err(wrong_type());
        }
        self.mark_position_dirty(position);
        Ok(project(&mut self.entries[position].value).expect("its type was checked above"))
    }

    fn mark_position_dirty(&mut self, position: usize) {
        let (_, entry) = self.entries.get_index_mut(position).expect("below len");
        if !entry.dirty {
            entry.dirty = true;
            self.push_dirty_position(position);
        }
    }

    /// Records where a dirty entry is. Removals can leave stale positions behind (a moved
    /// entry's old place); if checkpoints cannot run for a while (the disk fails), the list is
    /// compacted to the dirty entries' positions so that it stays bounded by the keyspace.
    fn push_dirty_position(&mut self, position: usize) {
        self.dirty_positions.push(position);
        if self.dirty_positions.len() > 2 * self.entries.len() + 1024 {
            let entries = &self.entries;
            self.dirty_positions
                .retain(|&p| entries.get_index(p).is_some_and(|(_, e)| e.dirty));
            self.dirty_positions.sort_unstable();
            self.dirty_positions.dedup();
        }
    }

    /// Calls `visit` with every key changed since the last call: with its entry, or `None` if
    /// it was removed; and clears the marks. O(keys changed), not O(keys).
    pub fn drain_dirty(&mut self, mut visit: impl FnMut(&Bytes, Option<&Entry>)) {
        for position in std::mem::take(&mut self.dirty_positions) {
            // Stale positions (the entry moved or went) find a clean entry or none.
            if let Some((key, entry)) = self.entries.get_index_mut(position)
                && entry.dirty
            {
                entry.dirty = false;
                visit(key, Some(entry));
            }
        }
        for key in std::mem::take(&mut self.removed) {
            // A key removed and then set again was visited above, with its new entry.
            if !self.entries.contains_key(&key) {
                visit(&key, None);
            }
        }
    }

    /// Marks a key for the next checkpoint again (after a failed one).
    pub fn mark_dirty(&mut self, key: Bytes) {
        match self.entries.get_index_of(&key) {
            Some(position) => self.mark_position_dirty(position),
            None => {
                self.removed.insert(key);
            }
        }
    }

    /// Changes recorded since the last [`Db::drain_dirty`]: positions of dirty entries plus keys
    /// removed. At least the number of keys the next checkpoint writes; more when removals
    /// moved dirty entries or keys were removed and set again. It bounds the bookkeeping, so it
    /// is what triggers checkpoints.
    pub fn dirty_len(&self) -> usize {
        self.dirty_positions.len() + self.removed.len()
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
        let (position, replaced) = self
            .entries
            .insert_full(key, Entry::new(value, expires_at_ms));
        if replaced.is_some_and(|old| old.dirty) {
            // Its position is on the list already.
            self.entries[position].dirty = true;
        } else {
            self.mark_position_dirty(position);
        }
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let (position, stored, entry) = self.entries.swap_remove_full(key)?;
        if entry.expires_at_ms != 0 {
            self.volatile.swap_remove(key);
        }
        // The last entry moved into `position`; if it is dirty, its mark must follow it.
        if self
            .entries
            .get_index(position)
            .is_some_and(|(_, moved)| moved.dirty)
        {
            self.push_dirty_position(position);
        }
        self.removed.insert(stored);
        Some(entry)
    }

    /// Sets or (with 0) clears the key's expiry time. False if the key does not exist.
    pub fn set_expiry(&mut self, key: &[u8], expires_at_ms: u64) -> bool {
        let Some(position) = self.entries.get_index_of(key) else {
            return false;
        };
        self.mark_position_dirty(position);
        let (stored, entry) = self.entries.get_index_mut(position).expect("found");
        entry.expires_at_ms = expires_at_ms;
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

    /// Removes every key; each is marked removed, so the next checkpoint deletes it from the
    /// image.
    pub fn clear(&mut self) {
        self.removed
            .extend(self.entries.drain(..).map(|(key, _)| key));
        self.dirty_positions.clear();
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

    typed_access!(string, string_mut, string_or_new, as_string, Str, Bytes);
    typed_access!(list, list_mut, list_or_new, as_list, List, VecDeque<Bytes>);
    typed_access!(hash, hash_mut, hash_or_new, as_hash, Hash, HashMap<Bytes, Bytes>);
    typed_access!(set_of, set_of_mut, set_or_new, as_set, Set, HashSet<Bytes>);
    typed_access!(zset, zset_mut, zset_or_new, as_zset, ZSet, ZSet);

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

    /// What the next checkpoint is told, as key -> Some(string value) or None for removed.
    fn drained(db: &mut Db) -> std::collections::BTreeMap<Bytes, Option<Bytes>> {
        let mut changes = std::collections::BTreeMap::new();
        db.drain_dirty(|key, entry| {
            let value = entry.map(|e| match &e.value {
                Value::Str(s) => s.clone(),
                other => panic!("{other:?}"),
            });
            assert!(
                changes.insert(key.clone(), value).is_none(),
                "{key:?} twice"
            );
        });
        changes
    }

    #[test]
    fn changes_reach_the_next_checkpoint_once_whatever_moved() {
        let mut db = Db::new();
        let text = |t: &str| Value::Str(Bytes::copy_from_slice(t.as_bytes()));
        for i in 0..10 {
            db.set(key(i), text("old"), 0);
        }
        assert_eq!(drained(&mut db).len(), 10);
        assert_eq!(db.dirty_len(), 0);
        assert!(drained(&mut db).is_empty(), "nothing changed since");

        // k9 (the last entry) is changed, then k2 is removed: k9 moves into k2's place and its
        // mark must follow. k5 is removed and set again; k7 removed for good; k1 expires.
        db.set(key(9), text("newer"), 0);
        db.set(key(9), text("new9"), 0);
        assert_eq!(db.dirty_len(), 1, "a key set twice is one change to write");
        db.remove(b"k2");
        db.remove(b"k5");
        db.set(key(5), text("new5"), 0);
        db.remove(b"k7");
        assert!(db.set_expiry(b"k1", 1000));
        db.string_mut(b"k3").unwrap().unwrap();
        let changes = drained(&mut db);
        let expected: std::collections::BTreeMap<Bytes, Option<Bytes>> = [
            (key(1), Some(Bytes::from("old"))),
            (key(2), None),
            (key(3), Some(Bytes::from("old"))),
            (key(5), Some(Bytes::from("new5"))),
            (key(7), None),
            (key(9), Some(Bytes::from("new9"))),
        ]
        .into_iter()
        .collect();
        assert_eq!(changes, expected);

        db.clear();
        assert_eq!(drained(&mut db).values().filter(|v| v.is_none()).count(), 8);
    }

    #[test]
    fn the_bookkeeping_stays_bounded_when_no_checkpoint_drains_it() {
        let mut db = Db::new();
        let empty = || Value::Str(Bytes::new());
        for i in 0..100 {
            db.set(key(i), empty(), 0);
        }
        // Each round marks a new key and moves a dirty entry: two positions per round.
        for i in 100..100_000 {
            db.set(key(i), empty(), 0);
            db.remove(&key(i - 100));
        }
        assert!(
            db.dirty_len() <= 2 * db.len() + 1024 + 100_000,
            "{}",
            db.dirty_len()
        );
        assert!(db.dirty_positions.len() <= 2 * db.len() + 1025);
        let changes = drained(&mut db);
        assert_eq!(changes.values().filter(|v| v.is_some()).count(), 100);
        assert_eq!(changes.values().filter(|v| v.is_none()).count(), 99_900);
    }

    #[test]
    fn the_dirty_mark_costs_no_memory() {
        // A `Value` is 40 bytes; the expiry, access record and mark fit in 16 more.
        assert_eq!(std::mem::size_of::<Entry>(), 56);
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
