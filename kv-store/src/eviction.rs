//! `maxmemory` and its policies: approximate LRU and LFU by sampling, as Redis does.
//!
//! Before a command that may grow memory (flag `denyoom`) runs, [`make_room`] compares the
//! bytes allocated (see `memory`), less the log records waiting to be written (a buffer, not
//! data; Redis likewise leaves its AOF buffer out), with `maxmemory`. Over the limit, `noeviction` refuses the
//! command with Redis's `-OOM` error; the other policies evict keys until the server is under
//! the limit again. Each eviction samples `maxmemory_samples` keys (all keys, or only those with
//! a TTL for `volatile-*`) and removes the best candidate of the sample: the least recently
//! used, the least frequently used, or the one nearest its expiry. Like an expiry, an eviction
//! is a decision of this node and is logged as a `DEL`.
//!
//! Redis improves the sample with a pool of 16 good candidates kept across evictions; this
//! implementation samples afresh each time (Redis 2.8's algorithm), which approximates LRU less
//! closely for the same sample size.
//!
//! # The access record (`Entry::access`)
//!
//! ```text
//!  LRU policies:  seconds of Unix time when the key was last used (u32)
//!  LFU policy:    bits 31..8: minutes of Unix time of the last decrement (mod 2^24)
//!                 bits  7..0: logarithmic access counter, Redis's LFU counter
//! ```
//!
//! The LFU counter grows with probability `1 / ((counter - 5) * 10 + 1)` per access (Redis's
//! `lfu-log-factor` 10), so 255 means about a million accesses; it decays by one per minute
//! without access (`lfu-decay-time` 1). A new key starts at 5, so it is not evicted at once.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use rand::RngExt;

use crate::command::Ctx;
use crate::config::MaxmemoryPolicy;
use crate::db::{Db, Entry};
use crate::memory;
use crate::resp::Frame;

/// Redis's error for a write refused at the memory limit.
pub const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";

/// Initial LFU counter of a new key, as Redis's `LFU_INIT_VAL`.
pub const LFU_INIT: u8 = 5;
/// Redis's `lfu-log-factor` default.
pub const LFU_LOG_FACTOR: u32 = 10;

/// Most keys evicted to make room for one command; a bound on the time a command can spend
/// evicting (a value larger than everything else stored could otherwise empty the keyspace).
pub const MAX_EVICTIONS_PER_COMMAND: usize = 10_000;

/// Whether the policy keeps access records up to date. They are kept only while such a policy
/// is configured (it costs a lookup per key per command), so a switch to an LRU or LFU policy
/// at run time starts from keys that all look equally old.
pub fn tracks_access(policy: MaxmemoryPolicy) -> bool {
    matches!(
        policy,
        MaxmemoryPolicy::AllkeysLru | MaxmemoryPolicy::VolatileLru | MaxmemoryPolicy::AllkeysLfu
    )
}

/// Updates the access record of `key` for the policy.
pub fn touch(
    db: &mut Db,
    key: &[u8],
    policy: MaxmemoryPolicy,
    now_ms: u64,
    rng: &mut rand::rngs::StdRng,
) {
    let Some(entry) = db.access_mut(key) else {
        return;
    };
    match policy {
        MaxmemoryPolicy::AllkeysLfu => {
            let mut counter = lfu_counter(entry, now_ms);
            if counter < u8::MAX {
                let base = u32::from(counter.saturating_sub(LFU_INIT));
                if rng.random_range(0..base * LFU_LOG_FACTOR + 1) == 0 {
                    counter += 1;
                }
            }
            entry.access = (minutes(now_ms) << 8) | u32::from(counter);
        }
        _ => entry.access = (now_ms / 1000) as u32,
    }
}

fn minutes(now_ms: u64) -> u32 {
    ((now_ms / 60_000) & 0x00FF_FFFF) as u32
}

/// The LFU counter after decay: one less per minute since the last decrement. A key never
/// touched under LFU (access 0) counts as new.
fn lfu_counter(entry: &Entry, now_ms: u64) -> u8 {
    if entry.access == 0 {
        return LFU_INIT;
    }
    let last = entry.access >> 8;
    let elapsed = minutes(now_ms).wrapping_sub(last) & 0x00FF_FFFF;
    let counter = (entry.access & 0xFF) as u8;
    counter.saturating_sub(elapsed.min(255) as u8)
}

/// Lower is evicted first.
fn rank(entry: &Entry, policy: MaxmemoryPolicy, now_ms: u64) -> u64 {
    match policy {
        MaxmemoryPolicy::AllkeysLfu => u64::from(lfu_counter(entry, now_ms)),
        MaxmemoryPolicy::VolatileTtl => entry.expires_at_ms,
        _ => u64::from(entry.access),
    }
}

/// Picks the key to evict from a sample of `samples` keys, or `None` if there is no candidate.
fn choose_victim(
    db: &Db,
    policy: MaxmemoryPolicy,
    samples: usize,
    now_ms: u64,
    rng: &mut rand::rngs::StdRng,
) -> Option<Bytes> {
    let volatile_only = matches!(
        policy,
        MaxmemoryPolicy::VolatileLru | MaxmemoryPolicy::VolatileTtl
    );
    let population = if volatile_only {
        db.volatile_len()
    } else {
        db.len()
    };
    if population == 0 {
        return None;
    }
    let mut best: Option<(u64, Bytes)> = None;
    for _ in 0..samples {
        let position = rng.random_range(0..population);
        let (key, entry) = if volatile_only {
            let key = db.volatile_key_at(position)?;
            (key, db.get(key)?)
        } else {
            db.entry_at(position)?
        };
        let score = rank(entry, policy, now_ms);
        if best.as_ref().is_none_or(|(b, _)| score < *b) {
            best = Some((score, key.clone()));
        }
    }
    best.map(|(_, key)| key)
}

/// Evicts keys until memory is under `maxmemory`, or refuses with `-OOM`. A no-op without a
/// limit.
pub fn make_room(ctx: &mut Ctx<'_>, records: &mut Vec<Vec<u8>>) -> Result<(), Frame> {
    let limit = ctx.settings.maxmemory;
    if limit == 0 {
        return Ok(());
    }
    let log = ctx.shared.log();
    let over = || {
        memory::allocated_bytes()
            .is_some_and(|used| used.saturating_sub(log.pending_bytes()) as u64 > limit)
    };
    if !over() {
        return Ok(());
    }
    let policy = ctx.settings.maxmemory_policy;
    if policy == MaxmemoryPolicy::Noeviction {
        return Err(Frame::error(OOM));
    }
    for _ in 0..MAX_EVICTIONS_PER_COMMAND {
        let samples = ctx.settings.maxmemory_samples;
        let Some(victim) = choose_victim(ctx.db, policy, samples, ctx.now_ms, ctx.rng) else {
            return Err(Frame::error(OOM));
        };
        ctx.db.remove(&victim);
        ctx.shared
            .stats
            .evicted_keys
            .fetch_add(1, Ordering::Relaxed);
        records.push(crate::command::encode_record(&[
            Bytes::from_static(b"DEL"),
            victim,
        ]));
        if !over() {
            return Ok(());
        }
    }
    Err(Frame::error(OOM))
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::db::Value;

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(7)
    }

    #[test]
    fn lfu_counter_grows_slowly_and_decays_per_minute() {
        let mut db = Db::new();
        db.set(Bytes::from_static(b"k"), Value::Str(Bytes::new()), 0);
        let mut rng = rng();
        let now = 10 * 60_000;
        for _ in 0..1000 {
            touch(&mut db, b"k", MaxmemoryPolicy::AllkeysLfu, now, &mut rng);
        }
        let counter = lfu_counter(db.get(b"k").unwrap(), now);
        // Logarithmic: a thousand hits give a counter in the low tens, not 255.
        assert!((10..40).contains(&counter), "{counter}");
        let later = lfu_counter(db.get(b"k").unwrap(), now + 3 * 60_000);
        assert_eq!(later, counter - 3);
    }

    #[test]
    fn the_sample_yields_its_least_recently_used_key() {
        let mut db = Db::new();
        let mut rng = rng();
        for i in 0..4u64 {
            let key = Bytes::from(format!("k{i}"));
            db.set(key.clone(), Value::Str(Bytes::new()), 0);
            touch(
                &mut db,
                &key,
                MaxmemoryPolicy::AllkeysLru,
                (10 + i) * 1000,
                &mut rng,
            );
        }
        // With many samples over four keys, the oldest is always found.
        let victim = choose_victim(&db, MaxmemoryPolicy::AllkeysLru, 64, 20_000, &mut rng);
        assert_eq!(victim.as_deref(), Some(&b"k0"[..]));
        assert_eq!(
            choose_victim(&db, MaxmemoryPolicy::VolatileLru, 64, 20_000, &mut rng),
            None
        );
    }
}
