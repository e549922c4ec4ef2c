//! Expiry: when a link stops redirecting, and when it is removed from the store.
//!
//! ```text
//!   created ── expires_at ──▶ expired: GET /{code} is 410 Gone ── + retention ──▶ swept: 404
//! ```
//!
//! A link is expired the moment the clock passes `expires_at`, checked on every lookup, so
//! expiry is exact whatever the sweep does. The sweep only reclaims space: it deletes links
//! that have been expired for longer than `expired_retention_seconds`, so that for that long
//! the API can still say "gone" (410) rather than "never existed" (404), and the owner can
//! still read the link's metadata and clicks or extend it with PATCH. After the sweep, a custom
//! alias becomes free to take again; generated codes are never reused, because ids are not.
//!
//! Stores with their own key expiry (Redis' `PEXPIREAT`) do this themselves; the sled store
//! keeps an index ordered by expiry time, so a pass reads only what is due.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::store::{Result, Store};

/// Default time between sweeps.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Links deleted per store call, so one sweep never holds the store for long.
pub const SWEEP_BATCH: usize = 1000;

/// Deletes every link that expired more than `retention` ago; returns how many.
pub async fn sweep<S: Store>(store: &S, now_ms: u64, retention: Duration) -> Result<usize> {
    let before_ms = now_ms.saturating_sub(retention.as_millis() as u64);
    let mut total = 0;
    loop {
        let removed = store.remove_expired(before_ms, SWEEP_BATCH).await?;
        total += removed;
        if removed < SWEEP_BATCH {
            return Ok(total);
        }
    }
}

/// Sweeps every `interval` until `stop` resolves. Failures are logged and retried next time.
pub async fn sweep_periodically<S: Store>(
    store: Arc<S>,
    clock: Arc<dyn Clock>,
    interval: Duration,
    retention: Duration,
    stop: impl std::future::Future<Output = ()>,
    on_swept: impl Fn(usize),
) {
    let mut stop = std::pin::pin!(stop);
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = ticks.tick() => {}
        }
        match sweep(&*store, clock.now_ms(), retention).await {
            Ok(0) => {}
            Ok(removed) => {
                tracing::info!(removed, "swept expired links");
                on_swept(removed);
            }
            Err(err) => tracing::warn!(%err, "expiry sweep failed; retrying next interval"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Link, SledStore};

    fn expiring(code: &str, at_ms: u64) -> Link {
        Link {
            code: code.into(),
            url: "https://example.com/".into(),
            created_at_ms: 0,
            expires_at_ms: Some(at_ms),
            permanent: false,
        }
    }

    #[tokio::test]
    async fn links_stay_through_the_retention_then_go_in_batches() {
        let store = SledStore::temporary().unwrap();
        let count = SWEEP_BATCH as u64 + 5;
        for i in 0..count {
            store
                .create(&expiring(&format!("c{i:05}"), 1_000 + i))
                .await
                .unwrap();
        }
        let retention = Duration::from_secs(10);
        // The first link expired at 1000: within the retention, none may go.
        let during = 1_000 + 9_999;
        assert_eq!(sweep(&store, during, retention).await.unwrap(), 0);
        // The last link expired at 1000 + count - 1.
        let after = 1_000 + count + 10_000;
        assert_eq!(
            sweep(&store, after, retention).await.unwrap(),
            count as usize
        );
        assert!(store.list(None, 10).await.unwrap().is_empty());
    }
}
