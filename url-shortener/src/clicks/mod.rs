//! Click counting off the redirect path: a bounded queue, then either in-process aggregation
//! with periodic flushes to the store, or the message broker ([`broker`]).
//!
//! ```text
//!   GET /{code} ── try_send(event) ──▶ [ queue: click_queue_capacity ] ──▶ aggregator task
//!        │              │ full: drop the click,                          pending: code -> n
//!        │              └ count it in clicks_dropped_total               (≤ click_max_pending_codes)
//!        ▼                                                                   │ every click_flush_interval_ms,
//!   302 at once, never waits                                                 ▼ when full, and at shutdown
//!                                                                   store.add_clicks(batch)
//!
//!   with --broker: the queue's events go to the topic `clicks` instead, and a consumer group
//!   (every instance a member) aggregates them into the store: see [`broker`].
//! ```
//!
//! The redirect never waits for analytics: when the queue is full the click is dropped and
//! counted, which is the right trade for a counter (a late redirect is worse than a missing
//! click). Aggregating before writing turns a hot link's thousand clicks a second into one
//! store write a second.
//!
//! What a crash loses in-process: the clicks in the queue and in `pending` (at most one flush
//! interval); a written batch is durable. A store that fails keeps its batch pending for the
//! next tick; new codes are then dropped once `pending` is full. A networked store may have
//! applied part of a batch that failed (the connection broke after some writes), so keeping
//! it errs toward counting those clicks twice rather than not at all.

pub mod broker;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http1::HeaderMap;
use serde::{Deserialize, Serialize};
use service_kit::metrics::{IntCounter, MetricsError, Registry};
use tokio::sync::mpsc;

use crate::store::Store;

/// Longest referrer host kept: a DNS name is at most 253 characters.
pub const MAX_REFERRER_HOST: usize = 253;

/// One click, as queued and as written to the broker's `clicks` topic (JSON, keyed by code):
///
/// ```json
/// {"code": "hello", "at": 1764748800123, "referrer": "news.example", "agent": "mobile"}
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClickEvent {
    /// The link's code.
    pub code: String,
    /// When, Unix milliseconds (the service's clock).
    pub at: u64,
    /// The host of the `Referer`, lower-case; `None` when there was none or it was no URL.
    pub referrer: Option<String>,
    /// What kind of client followed the link, from its `User-Agent`.
    pub agent: AgentClass,
}

/// A coarse class of `User-Agent`, the kind analytics report (bit.ly's "devices").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentClass {
    /// Crawlers and link previewers (`bot`, `crawl`, `spider`, `preview` in the name).
    Bot,
    /// Phones and tablets (`Mobi`, `Android`, `iPhone`, `iPad`).
    Mobile,
    /// Other browsers (`Mozilla/`, `Opera/`).
    Desktop,
    /// Anything else: command-line tools, libraries, no `User-Agent` at all.
    Other,
}

impl AgentClass {
    pub fn of(user_agent: Option<&[u8]>) -> AgentClass {
        let Some(agent) = user_agent else {
            return AgentClass::Other;
        };
        let agent = String::from_utf8_lossy(agent).to_ascii_lowercase();
        let has = |words: &[&str]| words.iter().any(|w| agent.contains(w));
        if has(&["bot", "crawl", "spider", "preview"]) {
            AgentClass::Bot
        } else if has(&["mobi", "android", "iphone", "ipad"]) {
            AgentClass::Mobile
        } else if has(&["mozilla/", "opera/"]) {
            AgentClass::Desktop
        } else {
            AgentClass::Other
        }
    }
}

impl ClickEvent {
    /// The click on `code` at `at` of a request with these headers.
    pub fn new(code: &str, at: u64, headers: &HeaderMap) -> ClickEvent {
        let header = |name| headers.get(name).map(|v| v.as_bytes());
        ClickEvent {
            code: code.to_owned(),
            at,
            referrer: header(http1::header::REFERER).and_then(referrer_host),
            agent: AgentClass::of(header(http1::header::USER_AGENT)),
        }
    }
}

/// `https://News.Example:8443/a?b` ─▶ `news.example`: the host of an absolute http(s) URL.
fn referrer_host(referer: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(referer).ok()?;
    let lower = text.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit('@').next()?;
    let host = match host_port.strip_prefix('[') {
        Some(v6) => &host_port[..v6.find(']')? + 2],
        None => host_port.split(':').next()?,
    };
    (!host.is_empty() && host.len() <= MAX_REFERRER_HOST).then(|| host.to_owned())
}

/// Default capacity of the click queue, in clicks.
pub const DEFAULT_QUEUE_CAPACITY: usize = 65_536;

/// Default time between flushes.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Default most distinct codes aggregated between two flushes.
pub const DEFAULT_MAX_PENDING_CODES: usize = 100_000;

/// The redirect side: records clicks without ever waiting.
#[derive(Clone, Debug)]
pub struct ClickRecorder {
    queue: mpsc::Sender<ClickEvent>,
    dropped: IntCounter,
}

impl ClickRecorder {
    /// Queues one click; drops and counts it if the queue is full.
    pub fn record(&self, event: ClickEvent) {
        if self.queue.try_send(event).is_err() {
            self.dropped.inc();
        }
    }
}

/// The aggregator side, run by [`ClickAggregator::run`] (in-process) or
/// [`ClickAggregator::publish`] (to the broker).
pub struct ClickAggregator {
    queue: mpsc::Receiver<ClickEvent>,
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
    /// `url_shortener_clicks_flushed_total`, which the broker path's counting side moves.
    pub fn flushed_counter(&self) -> IntCounter {
        self.flushed.clone()
    }

    /// Aggregates and flushes until every [`ClickRecorder`] is dropped, then flushes the rest
    /// (one attempt) and returns.
    pub async fn run<S: Store>(mut self, store: Arc<S>) {
        let mut pending: HashMap<String, u64> = HashMap::new();
        let mut ticks = tokio::time::interval(self.flush_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                click = self.queue.recv() => {
                    let Some(ClickEvent { code, .. }) = click else { break };
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

    fn click(code: &str) -> ClickEvent {
        ClickEvent::new(code, 0, &HeaderMap::new())
    }

    #[test]
    fn an_event_keeps_the_referrer_host_and_the_kind_of_client() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "referer",
            "https://News.Example:8443/a?b=c".parse().unwrap(),
        );
        headers.insert(
            "user-agent",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Mobile/15E148"
                .parse()
                .unwrap(),
        );
        let event = ClickEvent::new("abc", 7, &headers);
        assert_eq!(event.referrer.as_deref(), Some("news.example"));
        assert_eq!(event.agent, AgentClass::Mobile);
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(
            json,
            r#"{"code":"abc","at":7,"referrer":"news.example","agent":"mobile"}"#
        );
        assert_eq!(serde_json::from_str::<ClickEvent>(&json).unwrap(), event);

        for (referer, host) in [
            ("http://u:p@[::1]:80/x", Some("[::1]")),
            ("https://example.com", Some("example.com")),
            ("android-app://com.example", None),
            ("not a url", None),
            ("https:///path", None),
        ] {
            assert_eq!(
                referrer_host(referer.as_bytes()).as_deref(),
                host,
                "{referer}"
            );
        }
        for (agent, class) in [
            (
                "Googlebot/2.1 (+http://www.google.com/bot.html)",
                AgentClass::Bot,
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0",
                AgentClass::Desktop,
            ),
            ("curl/8.5.0", AgentClass::Other),
        ] {
            assert_eq!(AgentClass::of(Some(agent.as_bytes())), class, "{agent}");
        }
        assert_eq!(AgentClass::of(None), AgentClass::Other);
    }

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
            recorder.record(click("aaa"));
        }
        recorder.record(click("bbb"));
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
        recorder.record(click("aaa"));
        recorder.record(click("aaa"));
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
            recorder.record(click("aaa"));
        }
        assert_eq!(recorder.dropped.get(), 3);
        drop(aggregator);
    }

    #[tokio::test]
    async fn pending_codes_are_bounded_by_flushing_early() {
        let store = store_with(&["aaa", "bbb", "ccc"]).await;
        let (recorder, aggregator) = pipeline(limits(100, 2), &Registry::new()).unwrap();
        for code in ["aaa", "bbb", "ccc", "aaa"] {
            recorder.record(click(code));
        }
        let flushed = aggregator.flushed.clone();
        drop(recorder);
        aggregator.run(store.clone()).await;
        assert_eq!(flushed.get(), 4);
        assert_eq!(store.clicks("aaa").await.unwrap(), 2);
        assert_eq!(store.clicks("ccc").await.unwrap(), 1);
    }
}
