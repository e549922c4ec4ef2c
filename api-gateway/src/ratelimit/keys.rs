//! The keyed table of a local policy: key → algorithm state, sharded, bounded by `max_keys`.
//!
//! ```text
//!  decide(key, now)
//!    shard = hash(key) mod shards ──▶ read lock ──▶ found: decide on the state (atomics inside)
//!                                          │
//!                                          └─ absent: write lock, make room if full, insert fresh
//! ```
//!
//! The hot path takes a shard's *read* lock only: the decision itself is a compare-and-swap on
//! the key's state (or, for the sliding log, the key's own mutex), so requests for different
//! keys, and for the same key, proceed in parallel. The write lock is taken once per new key.
//!
//! **Forgetting.** A key unused for longer than its algorithm needs to restore the whole
//! quota ([`Algorithm::forget_after_ns`]) is treated as new: its old state is replaced by a
//! fresh one, exactly equivalent, so no packed state is ever read across a wrap of its clock.
//!
//! **Memory bound.** The table holds at most `max_keys` keys (each shard an equal share).
//! When a new key finds its shard full, the shard first forgets every *idle* key (one whose
//! state is back to a full quota: forgetting it changes no decision). If none is idle, it
//! forgets the stalest eighth of its keys by last use. Never refusing to track a key keeps
//! the limit enforced for the keys in use; the price, under a flood of distinct keys (random
//! source addresses), is that an evicted key starts again with a full quota, so the table
//! errs toward allowing, and `max_keys` should exceed the number of keys active in a window.
//! Evicting an eighth at a time keeps the cost of making room amortised O(1) per new key.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};

use super::{Algorithm, Verdict};

/// Most shards of one table.
pub const SHARDS: usize = 16;
/// Fewest keys per shard: a small table has fewer shards, so that each shard's eviction
/// still chooses among enough keys.
const MIN_KEYS_PER_SHARD: usize = 64;
/// How finely a key's last use is recorded.
const TOUCH_GRANULARITY_NS: u64 = 1_000_000;

/// A bounded, sharded map from key to `A::State`.
pub struct Keyed<A: Algorithm> {
    algorithm: A,
    shards: Box<[RwLock<Shard<A::State>>]>,
    per_shard: usize,
}

type Shard<S> = HashMap<Box<str>, Entry<S>, foldhash::fast::RandomState>;

struct Entry<S> {
    state: S,
    /// Last decision's time, for evicting the stalest keys.
    last_seen_ns: AtomicU64,
}

impl<S> Entry<S> {
    /// Records a use. Eviction needs only the order of uses to a millisecond, so a key in
    /// use stores at most once per millisecond, not once per decision (a shared cache line
    /// written by every request would cost more than the decision).
    fn touch(&self, now_ns: u64) {
        if self.last_seen_ns.load(Ordering::Relaxed) + TOUCH_GRANULARITY_NS < now_ns {
            self.last_seen_ns.store(now_ns, Ordering::Relaxed);
        }
    }
}

/// The shard of a key: FNV-1a, cheap for short keys. The maps inside the shards hash with
/// foldhash under a per-process random seed (hashbrown's default): against std's SipHash it
/// saves 10 to 20 ns of a 50 to 110 ns decision (`benches/limiters.rs`), and being seeded,
/// keys chosen without knowledge of the process's seed cannot make them collide.
/// Keys chosen to land in one shard could only crowd it, which costs that shard's share of
/// `max_keys` and nothing else.
fn shard_of(key: &str, shards: usize) -> usize {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (hash % shards as u64) as usize
}

impl<A: Algorithm> Keyed<A> {
    pub fn new(algorithm: A, max_keys: usize) -> Keyed<A> {
        let shards = SHARDS.min(max_keys / MIN_KEYS_PER_SHARD).max(1);
        Keyed {
            algorithm,
            shards: (0..shards)
                .map(|_| RwLock::new(HashMap::with_hasher(Default::default())))
                .collect(),
            per_shard: (max_keys / shards).max(1),
        }
    }

    /// One request for `key` at `now_ns`.
    pub fn decide(&self, key: &str, now_ns: u64) -> Verdict {
        let shard = &self.shards[shard_of(key, self.shards.len())];
        if let Some(entry) = shard
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            && !self.forgotten(entry, now_ns)
        {
            entry.touch(now_ns);
            return self.algorithm.decide(&entry.state, now_ns);
        }
        let mut map = shard.write().unwrap_or_else(PoisonError::into_inner);
        if map.get(key).is_some_and(|e| self.forgotten(e, now_ns)) {
            map.remove(key);
        }
        if !map.contains_key(key) && map.len() >= self.per_shard {
            self.make_room(&mut map, now_ns);
        }
        let entry = map.entry(key.into()).or_insert_with(|| Entry {
            state: self.algorithm.fresh(now_ns),
            last_seen_ns: AtomicU64::new(now_ns),
        });
        entry.touch(now_ns);
        self.algorithm.decide(&entry.state, now_ns)
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Unused for so long that its quota is whole whatever its state says: the key starts
    /// again from a fresh state. (The last use is known to a millisecond, hence the margin.)
    fn forgotten(&self, entry: &Entry<A::State>, now_ns: u64) -> bool {
        let last = entry.last_seen_ns.load(Ordering::Relaxed);
        now_ns.saturating_sub(last) > self.algorithm.forget_after_ns() + TOUCH_GRANULARITY_NS
    }

    fn make_room(&self, map: &mut Shard<A::State>, now_ns: u64) {
        map.retain(|_, e| !self.forgotten(e, now_ns) && !self.algorithm.is_idle(&e.state, now_ns));
        if map.len() < self.per_shard {
            return;
        }
        let mut seen: Vec<u64> = map
            .values()
            .map(|e| e.last_seen_ns.load(Ordering::Relaxed))
            .collect();
        let eighth = (seen.len() / 8).max(1);
        let (_, &mut threshold, _) = seen.select_nth_unstable(eighth - 1);
        map.retain(|_, e| e.last_seen_ns.load(Ordering::Relaxed) > threshold);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::fixed_window::FixedWindow;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn the_table_never_holds_more_than_max_keys() {
        let keyed = Keyed::new(FixedWindow::new(5, 60 * SECOND), 1000);
        for i in 0..50_000u64 {
            keyed.decide(&format!("client-{i}"), 1_000 * SECOND + i);
            assert!(keyed.len() <= 1000, "after {i} keys: {}", keyed.len());
        }
        assert!(
            keyed.len() > 800,
            "a full table stays mostly full: {}",
            keyed.len()
        );
    }

    #[test]
    fn idle_keys_go_first_and_active_ones_keep_their_state() {
        let keyed = Keyed::new(FixedWindow::new(2, 10 * SECOND), 16);
        let t0 = 1_000 * SECOND;
        // "hot" uses its quota up; "cold" keys are seen once, in an earlier window.
        for i in 0..15 {
            keyed.decide(&format!("cold-{i}"), t0 - 20 * SECOND);
        }
        assert!(keyed.decide("hot", t0).allowed);
        assert!(keyed.decide("hot", t0).allowed);
        // A newcomer evicts the idle cold keys, not "hot", which stays denied.
        assert!(keyed.decide("new", t0).allowed);
        assert_eq!(keyed.len(), 2);
        assert!(!keyed.decide("hot", t0).allowed);
    }

    #[test]
    fn without_idle_keys_the_stalest_go() {
        let keyed = Keyed::new(FixedWindow::new(1, 100 * SECOND), 16);
        let t0 = 1_000 * SECOND;
        for i in 0..16u64 {
            assert!(keyed.decide(&format!("k{i}"), t0 + i).allowed);
        }
        // All 16 have used their quota (none idle): k0, the stalest, is forgotten.
        assert!(keyed.decide("newcomer", t0 + 100).allowed);
        assert!(
            keyed.decide("k0", t0 + 101).allowed,
            "k0 was evicted and starts again"
        );
        assert!(!keyed.decide("k15", t0 + 102).allowed, "k15 kept its state");
    }
}
