//! Click counting off the redirect path: a bounded queue, in-process aggregation, periodic
//! flushes to the store.
//!
//! ```text
//!   GET /{code} ── try_send(code) ──▶ [ queue: click_queue_capacity ] ──▶ aggregator task
//!        │              │ full: drop the click,                          pending: code -> n
//!        │              └ count it in clicks_dropped_total               (≤ click_max_pending_codes)
//!        ▼                                                                   │ every click_flush_interval_ms,
//!   302 at once, never waits                                                 ▼ when full, and at shutdown
//!                                                                   store.add_clicks(batch)
//! ```
//!
//! The redirect never waits for analytics: when the queue is full the click is dropped and
//! counted, which is the right trade for a counter (a late redirect is worse than a missing
//! click). Aggregating before writing turns a hot link's thousand clicks a second into one
//! store write a second.
//!
//! What a crash loses: the clicks in the queue and in `pending` (at most one flush interval);
//! a written batch is durable. A store that fails keeps its batch
//! pending for the next tick; new codes are then dropped once `pending` is full.
//!
//! The event carries only the code for now: the fields the analytics topic will carry (time,
//! referrer host, user-agent class) are added with it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use service_kit::metrics::{IntCounter, MetricsError, Registry};
use tokio::sync::mpsc;

use crate::store::Store;

/// Default capacity of the click queue, in clicks.
pub const DEFAULT_QUEUE_CAPACITY: usize = 65_536;

/// Default time between flushes.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Default most distinct codes aggregated between two flushes.
pub const DEFAULT_MAX_PENDING_CODES: usize = 100_000;

/// The redirect side: records clicks without ever waiting.
#[derive(Clone, Debug)]
pub struct ClickRecorder {
    queue: mpsc::Sender<String>,
    dropped: IntCounter,
}

impl ClickRecorder {
    /// Queues one click for `code`; drops and counts it if the queue is full.
    pub fn record(&self, code: &str) {
        if self.queue.try_send(code.to_owned()).is_err() {
            self.dropped.inc();
        }
    }
}

/// The aggregator side, run by [`ClickAggregator::run`].
pub struct ClickAggregator {
    queue: mpsc::Receiver<String>,
    flush_interval: Duration,
    max_pending_codes: usize,
    dropped: IntCounter,
    flushed: IntCounter,
}

/// Limits of the click pipeline.
#[derive(Clone, Copy, Debug)]
pub struct ClickLimits {
    pub queue_capacity: usize,
    pub flush_interval: Duration,
    pub max_pending_codes: usize,
}

/// A connected recorder and aggregator; registers the click metrics.
pub fn pipeline(
    limits: ClickLimits,
    registry: &Registry,
) -> Result<(ClickRecorder, ClickAggregator), MetricsError> {
    let dropped = registry.counter(
        "url_shortener_clicks_dropped_total",
        "Clicks not counted because the click queue or the pending batch was full.",
    )?;
    let flushed = registry.counter(
        "url_shortener_clicks_flushed_total",
        "Clicks written to the store.",
    )?;
    let (tx, rx) = mpsc::channel(limits.queue_capacity);
    let recorder = ClickRecorder {
        queue: tx,
        dropped: dropped.clone(),
    };
    let aggregator = ClickAggregator {
        queue: rx,
        flush_interval: limits.flush_interval,
        max_pending_codes: limits.max_pending_codes,
        dropped,
        flushed,
    };
    Ok((recorder, aggregator))
}

impl ClickAggregator {
    /// Aggregates and flushes until every [`ClickRecorder`] is dropped, then flushes the rest
    /// (one attempt) and returns.
    pub async fn run<S: Store>(mut self, store: Arc<S>) {
        let mut pending: HashMap<String, u64> = HashMap::new();
        let mut ticks = tokio::time::interval(self.flush_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                click = self.queue.recv() => {
                    let Some(code) = click else { break };
                    if !pending.contains_key(&code) && pending.len() >= self.max_pending_codes {
                        self.flush(&*store, &mut pending).await;
                        if pending.len() >= self.max_pending_codes {
                            self.dropped.inc();
                            continue;
                        }
                    }
                    *pending.entry(code).or_insert(0) += 1;
                }
                _ = ticks.tick() => self.flush(&*store, &mut pending).await,
            }
        }
        self.flush(&*store, &mut pending).await;
    }

    async fn flush<S: Store>(&self, store: &S, pending: &mut HashMap<String, u64>) {
        if pending.is_empty() {
            return;
        }
        let batch: Vec<(String, u64)> = pending.iter().map(|(c, n)| (c.clone(), *n)).collect();
        match store.add_clicks(&batch).await {
            Ok(()) => {
                self.flushed.inc_by(batch.iter().map(|(_, n)| n).sum());
                pending.clear();
            }
            Err(err) => {
                tracing::warn!(%err, codes = batch.len(), "click flush failed; keeping the counts for the next one")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Link, SledStore};

    fn limits(queue_capacity: usize, max_pending_codes: usize) -> ClickLimits {
        ClickLimits {
            queue_capacity,
            flush_interval: Duration::from_secs(3600),
            max_pending_codes,
        }
    }

    async fn store_with(codes: &[&str]) -> Arc<SledStore> {
        let store = SledStore::temporary().unwrap();
        for code in codes {
            let link = Link {
                code: (*code).to_owned(),
                url: "https://example.com/".into(),
                created_at_ms: 0,
                expires_at_ms: None,
                permanent: false,
            };
            store.create(&link).await.unwrap();
        }
        Arc::new(store)
    }

    #[tokio::test]
    async fn every_queued_click_reaches_the_store_by_shutdown() {
        let store = store_with(&["aaa", "bbb"]).await;
        let (recorder, aggregator) = pipeline(limits(100, 10), &Registry::new()).unwrap();
        let task = tokio::spawn(aggregator.run(store.clone()));
        for _ in 0..7 {
            recorder.record("aaa");
        }
        recorder.record("bbb");
        drop(recorder);
        task.await.unwrap();
        assert_eq!(store.clicks("aaa").await.unwrap(), 7);
        assert_eq!(store.clicks("bbb").await.unwrap(), 1);
    }

    #[tokio::test]
    async fn counts_are_flushed_every_interval_while_clicks_keep_coming() {
        let store = store_with(&["aaa"]).await;
        let mut limits = limits(100, 10);
        limits.flush_interval = Duration::from_millis(50);
        let (recorder, aggregator) = pipeline(limits, &Registry::new()).unwrap();
        tokio::spawn(aggregator.run(store.clone()));
        recorder.record("aaa");
        recorder.record("aaa");
        // The recorder stays alive: only the periodic flush can write these.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while store.clicks("aaa").await.unwrap() != 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "not flushed within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(recorder);
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let registry = Registry::new();
        let (recorder, aggregator) = pipeline(limits(2, 10), &registry).unwrap();
        for _ in 0..5 {
            recorder.record("aaa");
        }
        assert_eq!(recorder.dropped.get(), 3);
        drop(aggregator);
    }

    #[tokio::test]
    async fn pending_codes_are_bounded_by_flushing_early() {
        let store = store_with(&["aaa", "bbb", "ccc"]).await;
        let (recorder, aggregator) = pipeline(limits(100, 2), &Registry::new()).unwrap();
        for code in ["aaa", "bbb", "ccc", "aaa"] {
            recorder.record(code);
        }
        let flushed = aggregator.flushed.clone();
        drop(recorder);
        aggregator.run(store.clone()).await;
        assert_eq!(flushed.get(), 4);
        assert_eq!(store.clicks("aaa").await.unwrap(), 2);
        assert_eq!(store.clicks("ccc").await.unwrap(), 1);
    }
}
