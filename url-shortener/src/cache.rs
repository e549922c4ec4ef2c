//! Cache-aside in front of the store: an LRU with a TTL and a byte bound, and negative entries.
//!
//! ```text
//!   GET /{code} ─▶ cache.get ── hit ──────────────────────────────▶ answer (no store call)
//!                     │  negative hit (code known to be absent) ──▶ 404
//!                     └─ miss ─▶ ticket ─▶ store.get ─▶ cache.put(result, ticket) ─▶ answer
//!   PATCH, DELETE, create ─▶ store write ─▶ cache.invalidate(code)
//! ```
//!
//! The application, not the store, fills the cache ("cache-aside", as with memcached in front
//! of MySQL): the store stays the source of truth and the cache can be dropped at any time.
//!
//! - **Bounds.** Entries are charged their code and URL bytes plus [`ENTRY_OVERHEAD_BYTES`];
//!   when a shard is over its share of `max_bytes` the least recently used entries go. Found
//!   links live `ttl`, unknown codes `negative_ttl` (shorter: a code probed before it is
//!   created must start working soon, and typo traffic must not crowd out real links).
//! - **The invalidation race.** A lookup that misses, reads the old value from the store,
//!   and is overtaken by a PATCH that writes and invalidates, would put the *old* value back
//!   and serve it for a whole TTL. So a miss takes a *ticket* (its shard's generation) before
//!   it reads the store, every invalidation bumps the generation, and a `put` with a stale
//!   ticket is ignored.
//! - **Scope.** Invalidation reaches this process only. Instances sharing a store see another
//!   instance's change after at most `ttl`, which bounds the staleness: keep it short.
//! - **Shards.** [`SHARDS`] independent LRUs, picked by a hash of the code, each behind a std
//!   `Mutex` (held for a map lookup and a few index swaps, never across an `.await`), so that
//!   worker threads seldom wait for each other.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use service_kit::metrics::{IntCounter, IntGauge, MetricsError, Registry};

use crate::store::Link;

/// Independent LRU shards.
pub const SHARDS: usize = 16;

/// Bytes charged per entry beyond its code and URL: the map slot, the list node, the `Link`.
pub const ENTRY_OVERHEAD_BYTES: usize = 160;

/// Default byte bound of the whole cache.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// What the cache knows about a code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The link, as the store had it.
    Found(Arc<Link>),
    /// The store had no such code a moment ago.
    Absent,
    /// Nothing cached: ask the store.
    Miss,
}

/// Proof that a `put` follows a store read begun after the last invalidation.
#[derive(Clone, Copy, Debug)]
pub struct Ticket(u64);

/// Lifetimes and bound of a [`LinkCache`].
#[derive(Clone, Copy, Debug)]
pub struct CacheLimits {
    pub max_bytes: u64,
    pub ttl: Duration,
    pub negative_ttl: Duration,
}

struct CacheMetrics {
    /// The `link` and `absent` series of `url_shortener_cache_hits_total`.
    link_hits: IntCounter,
    absent_hits: IntCounter,
    misses: IntCounter,
    evictions: IntCounter,
    bytes: IntGauge,
}

/// The cache of links by code.
pub struct LinkCache {
    shards: Box<[Mutex<Lru>]>,
    hasher: RandomState,
    limits: CacheLimits,
    metrics: CacheMetrics,
}

impl LinkCache {
    /// An empty cache; registers its metrics (hit ratio = hits / (hits + misses)).
    pub fn new(limits: CacheLimits, registry: &Registry) -> Result<LinkCache, MetricsError> {
        let hits = registry.counter_vec(
            "url_shortener_cache_hits_total",
            "Lookups answered by the cache, by kind (link: a cached link; absent: a cached unknown code).",
            &["kind"],
        )?;
        let metrics = CacheMetrics {
            link_hits: hits.with_label_values(&["link"]),
            absent_hits: hits.with_label_values(&["absent"]),
            misses: registry.counter(
                "url_shortener_cache_misses_total",
                "Lookups the cache could not answer, which went to the store.",
            )?,
            evictions: registry.counter(
                "url_shortener_cache_evictions_total",
                "Entries evicted to stay under cache_max_bytes.",
            )?,
            bytes: registry.gauge(
                "url_shortener_cache_bytes",
                "Bytes charged to cache entries (code, URL and a fixed overhead each).",
            )?,
        };
        let shard_bytes = (limits.max_bytes / SHARDS as u64) as usize;
        let shards = (0..SHARDS)
            .map(|_| Mutex::new(Lru::new(shard_bytes)))
            .collect();
        Ok(LinkCache {
            shards,
            hasher: RandomState::new(),
            limits,
            metrics,
        })
    }

    fn shard(&self, code: &str) -> std::sync::MutexGuard<'_, Lru> {
        let index = self.hasher.hash_one(code) as usize % SHARDS;
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// What is cached for `code` at `now`.
    pub fn get(&self, code: &str, now: Instant) -> Lookup {
        let lookup = self.shard(code).get(code, now);
        match &lookup {
            Lookup::Found(_) => self.metrics.link_hits.inc(),
            Lookup::Absent => self.metrics.absent_hits.inc(),
            Lookup::Miss => self.metrics.misses.inc(),
        }
        lookup
    }

    /// A ticket to take before reading the store after a miss.
    pub fn ticket(&self, code: &str) -> Ticket {
        Ticket(self.shard(code).generation)
    }

    /// Caches what the store said about `code` (`None`: no such code), unless an invalidation
    /// happened since `ticket` was taken.
    pub fn put(&self, code: &str, link: Option<Arc<Link>>, ticket: Ticket, now: Instant) {
        let ttl = match link {
            Some(_) => self.limits.ttl,
            None => self.limits.negative_ttl,
        };
        if ttl.is_zero() || self.limits.max_bytes == 0 {
            return;
        }
        let mut shard = self.shard(code);
        if shard.generation != ticket.0 {
            return;
        }
        let before = shard.bytes;
        let evicted = shard.insert(code, link, now + ttl);
        let after = shard.bytes;
        drop(shard);
        self.metrics.evictions.inc_by(evicted);
        self.metrics.bytes.add(after as i64 - before as i64);
    }

    /// Forgets `code` and voids the tickets of lookups in flight on its shard.
    pub fn invalidate(&self, code: &str) {
        let mut shard = self.shard(code);
        shard.generation += 1;
        let before = shard.bytes;
        shard.remove(code);
        let after = shard.bytes;
        drop(shard);
        self.metrics.bytes.add(after as i64 - before as i64);
    }
}

/// One shard: a hash map into a doubly linked list kept in a `Vec` (indices, not pointers),
/// most recently used at the head.
struct Lru {
    map: HashMap<String, usize>,
    nodes: Vec<Node>,
    free: Vec<usize>,
    head: Option<usize>,
    tail: Option<usize>,
    bytes: usize,
    max_bytes: usize,
    generation: u64,
}

struct Node {
    code: String,
    link: Option<Arc<Link>>,
    expires: Instant,
    prev: Option<usize>,
    next: Option<usize>,
}

fn cost(code: &str, link: &Option<Arc<Link>>) -> usize {
    code.len() + link.as_ref().map_or(0, |l| l.url.len() + l.code.len()) + ENTRY_OVERHEAD_BYTES
}

impl Lru {
    fn new(max_bytes: usize) -> Lru {
        Lru {
            map: HashMap::new(),
            nodes: Vec::new(),
            free: Vec::new(),
            head: None,
            tail: None,
            bytes: 0,
            max_bytes,
            generation: 0,
        }
    }

    fn get(&mut self, code: &str, now: Instant) -> Lookup {
        let Some(&index) = self.map.get(code) else {
            return Lookup::Miss;
        };
        if self.nodes[index].expires <= now {
            self.remove(code);
            return Lookup::Miss;
        }
        self.unlink(index);
        self.push_front(index);
        match &self.nodes[index].link {
            Some(link) => Lookup::Found(link.clone()),
            None => Lookup::Absent,
        }
    }

    /// Inserts or replaces; returns how many entries were evicted to make room.
    fn insert(&mut self, code: &str, link: Option<Arc<Link>>, expires: Instant) -> u64 {
        self.remove(code);
        let size = cost(code, &link);
        if size > self.max_bytes {
            return 0;
        }
        let mut evicted = 0;
        while self.bytes + size > self.max_bytes {
            let Some(tail) = self.tail else { break };
            let victim = self.nodes[tail].code.clone();
            self.remove(&victim);
            evicted += 1;
        }
        let node = Node {
            code: code.to_owned(),
            link,
            expires,
            prev: None,
            next: None,
        };
        let index = match self.free.pop() {
            Some(index) => {
                self.nodes[index] = node;
                index
            }
            None => {
                self.nodes.push(node);
                self.nodes.len() - 1
            }
        };
        self.push_front(index);
        self.map.insert(code.to_owned(), index);
        self.bytes += size;
        evicted
    }

    fn remove(&mut self, code: &str) {
        let Some(index) = self.map.remove(code) else {
            return;
        };
        self.unlink(index);
        let node = &mut self.nodes[index];
        self.bytes -= cost(&node.code, &node.link);
        node.link = None;
        node.code = String::new();
        self.free.push(index);
    }

    fn unlink(&mut self, index: usize) {
        let (prev, next) = (self.nodes[index].prev, self.nodes[index].next);
        match prev {
            Some(p) => self.nodes[p].next = next,
            None => self.head = next,
        }
        match next {
            Some(n) => self.nodes[n].prev = prev,
            None => self.tail = prev,
        }
    }

    fn push_front(&mut self, index: usize) {
        self.nodes[index].prev = None;
        self.nodes[index].next = self.head;
        if let Some(head) = self.head {
            self.nodes[head].prev = Some(index);
        }
        self.head = Some(index);
        if self.tail.is_none() {
            self.tail = Some(index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(code: &str) -> Arc<Link> {
        Arc::new(Link {
            code: code.to_owned(),
            url: "https://example.com/".to_owned(),
            created_at_ms: 0,
            expires_at_ms: None,
            permanent: false,
        })
    }

    fn cache(max_bytes: u64) -> LinkCache {
        let limits = CacheLimits {
            max_bytes,
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(5),
        };
        LinkCache::new(limits, &Registry::new()).unwrap()
    }

    #[test]
    fn found_and_absent_entries_expire_after_their_own_ttl() {
        let cache = cache(DEFAULT_MAX_BYTES);
        let t0 = Instant::now();
        cache.put("abc", Some(link("abc")), cache.ticket("abc"), t0);
        cache.put("zzz", None, cache.ticket("zzz"), t0);
        assert_eq!(cache.get("abc", t0), Lookup::Found(link("abc")));
        assert_eq!(cache.get("zzz", t0), Lookup::Absent);
        let later = t0 + Duration::from_secs(5);
        assert_eq!(
            cache.get("zzz", later),
            Lookup::Miss,
            "negative entries are short"
        );
        assert_eq!(cache.get("abc", later), Lookup::Found(link("abc")));
        assert_eq!(cache.get("abc", t0 + Duration::from_secs(60)), Lookup::Miss);
        assert_eq!(cache.metrics.misses.get(), 2);
        assert_eq!(cache.metrics.link_hits.get(), 2);
    }

    #[test]
    fn invalidation_removes_the_entry_and_voids_older_tickets() {
        let cache = cache(DEFAULT_MAX_BYTES);
        let now = Instant::now();
        cache.put("abc", Some(link("abc")), cache.ticket("abc"), now);
        let stale = cache.ticket("abc");
        cache.invalidate("abc");
        assert_eq!(cache.get("abc", now), Lookup::Miss);
        // A lookup that read the store before the invalidation must not cache what it read.
        cache.put("abc", Some(link("abc")), stale, now);
        assert_eq!(cache.get("abc", now), Lookup::Miss);
        cache.put("abc", None, cache.ticket("abc"), now);
        assert_eq!(cache.get("abc", now), Lookup::Absent);
    }

    #[test]
    fn the_least_recently_used_entry_goes_first_and_bytes_stay_bounded() {
        let per_entry = cost("c00", &Some(link("c00")));
        let mut lru = Lru::new(per_entry * 3);
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        for code in ["c00", "c01", "c02"] {
            assert_eq!(lru.insert(code, Some(link(code)), later), 0);
        }
        assert!(
            matches!(lru.get("c00", now), Lookup::Found(_)),
            "c00 is now the most recent"
        );
        assert_eq!(lru.insert("c03", Some(link("c03")), later), 1);
        assert_eq!(
            lru.get("c01", now),
            Lookup::Miss,
            "c01 was least recently used"
        );
        for code in ["c00", "c02", "c03"] {
            assert!(matches!(lru.get(code, now), Lookup::Found(_)), "{code}");
        }
        for i in 4..100 {
            let code = format!("c{i:02}");
            lru.insert(&code, Some(link(&code)), later);
            assert!(lru.bytes <= per_entry * 3);
        }
        assert_eq!(lru.map.len(), 3);
        assert!(lru.nodes.len() <= 4, "freed nodes are reused");
    }

    #[test]
    fn a_zero_byte_cache_holds_nothing() {
        let cache = cache(0);
        let now = Instant::now();
        cache.put("abc", Some(link("abc")), cache.ticket("abc"), now);
        assert_eq!(cache.get("abc", now), Lookup::Miss);
    }
}
