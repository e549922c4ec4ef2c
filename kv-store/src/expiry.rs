//! Expiry: deciding that a key's time has passed, and making that decision a log entry.
//!
//! Two ways a key is found expired, as in Redis: lazily, when a command touches it
//! (`command::execute` checks the command's keys first), and actively, by a sweep that samples
//! keys with a TTL several times a second. Either way [`expire_key`] removes the key and emits a
//! `DEL` record: the log, not each node's clock, says when a key went. Replaying the log (or,
//! later, a replica applying it) removes the key at the same point in the sequence of commands.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use crate::command::encode_record;
use crate::db::Db;
use crate::server::Shared;

/// Removes the expired `key` and appends the `DEL` that records it to `records`.
pub fn expire_key(db: &mut Db, shared: &Shared, key: &[u8], records: &mut Vec<Vec<u8>>) {
    if db.remove(key).is_some() {
        shared.stats.expired_keys.fetch_add(1, Ordering::Relaxed);
        records.push(encode_record(&[
            Bytes::from_static(b"DEL"),
            Bytes::copy_from_slice(key),
        ]));
    }
}

/// Keys with a TTL sampled per round of the active sweep, as Redis's
/// `ACTIVE_EXPIRE_CYCLE_KEYS_PER_LOOP`.
pub const SAMPLE_KEYS: usize = 20;

/// Share of a sweep period the active sweep may spend, in percent, as Redis's
/// `ACTIVE_EXPIRE_CYCLE_SLOW_TIME_PERC`.
pub const SWEEP_TIME_PERCENT: u32 = 25;

/// One active expiry cycle, Redis's sampling algorithm: take [`SAMPLE_KEYS`] random keys with a
/// TTL and expire those whose time has passed; if more than a quarter of the sample was
/// expired, the keyspace probably holds many more, so go again, until under a quarter or the
/// `budget` is spent. Each round holds the keyspace lock only for its sample. Returns how many
/// keys were expired.
pub fn sweep_once(
    shared: &Shared,
    rng: &mut rand::rngs::StdRng,
    budget: std::time::Duration,
) -> usize {
    use rand::RngExt;
    let started = std::time::Instant::now();
    let mut total = 0;
    loop {
        let mut state = shared.lock();
        let now = shared.clock.now_ms();
        let volatile = state.db.volatile_len();
        if volatile == 0 {
            return total;
        }
        let mut due = Vec::new();
        for _ in 0..SAMPLE_KEYS.min(volatile) {
            let key = state
                .db
                .volatile_key_at(rng.random_range(0..volatile))
                .expect("below len");
            if state.db.is_expired(key, now) && !due.contains(key) {
                due.push(key.clone());
            }
        }
        let mut records = Vec::new();
        for key in &due {
            expire_key(&mut state.db, shared, key, &mut records);
        }
        if !records.is_empty() {
            shared.log().submit(records);
        }
        drop(state);
        total += due.len();
        if due.len() * 4 <= SAMPLE_KEYS.min(volatile) || started.elapsed() >= budget {
            return total;
        }
    }
}

/// Runs [`sweep_once`] `hz` times a second until `stop` resolves.
pub async fn sweep_loop(
    shared: std::sync::Arc<Shared>,
    stop: impl std::future::Future<Output = ()>,
) {
    use rand::{SeedableRng, TryRng};
    let seed = rand::rngs::SysRng.try_next_u64().unwrap_or(1);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    tokio::pin!(stop);
    loop {
        let hz = shared.lock().settings.hz.max(1);
        let period = std::time::Duration::from_millis(1000 / u64::from(hz));
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            () = &mut stop => return,
        }
        sweep_once(&shared, &mut rng, period * SWEEP_TIME_PERCENT / 100);
    }
}
