//! Clicks through the message broker (`--broker HOST:PORT`): every instance publishes its
//! clicks to one topic, and a consumer group of all the instances counts them into the store.
//!
//! ```text
//!  each instance
//!   click queue ──▶ publish: the events of each click_flush_interval_ms ──▶ topic `clicks`
//!                   (a batch that fails is kept and sent again,            key = code, so one
//!                    at most click_max_unsent events)                      code, one partition
//!
//!   topic `clicks` ──▶ count: a member of the group `url-shortener-clicks`, its share of the
//!                      partitions ──▶ code -> n ──▶ every click_flush_interval_ms:
//!                      store.add_clicks(counts), and only then commit the offsets
//! ```
//!
//! Keying by code puts all of a code's clicks in one partition, so one member aggregates them
//! and a hot link costs one store write per interval, as in-process aggregation does. The
//! topic is created, if missing, by whichever instance gets there first.
//!
//! # Delivery: at least once, duplicates bounded and counted
//!
//! - **Publishing.** A batch whose answer is lost (the broker died after appending some of it)
//!   is sent again whole: at most one batch of duplicates per failure. The events sent again
//!   are counted in `url_shortener_click_events_resent_total`, an upper bound on these
//!   duplicates.
//! - **Counting.** Counts are added to the store before their offsets are committed. A member
//!   that added counts and then failed to commit (the broker went away, or the group
//!   rebalanced), or whose add failed after the store may have applied part of it, has those
//!   records delivered again, to itself or to the partition's next owner: at most one flush
//!   interval (or `click_max_pending_codes` codes) of one member's records. They are counted
//!   in `url_shortener_clicks_uncommitted_total`. Counts consumed but not yet added when the
//!   group rebalances are dropped, not added: their records go to the partitions' owners
//!   from the last commit.
//!
//! So once the broker is back, a link's stored count converges to at least its true count and
//! at most that plus the two counters. What is lost: clicks dropped because the queue or the
//! unsent batch was full (`url_shortener_clicks_dropped_total`), and the unsent batch of an
//! instance that is itself killed. A record that is not a click event is skipped and counted
//! (`url_shortener_click_events_unreadable_total`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use message_broker::client::{
    Client, ClientError, GroupConfig, GroupConsumer, Producer, ProducerConfig,
};
use message_broker::protocol::{CreateTopicRequest, ErrorCode};
use message_broker::record_batch::Record;
use service_kit::metrics::{IntCounter, MetricsError, Registry};
use service_kit::shutdown::Shutdown;

use super::{ClickAggregator, ClickEvent};
use crate::store::Store;

/// Default topic of click events.
pub const DEFAULT_TOPIC: &str = "clicks";
/// Default partitions of the topic, when an instance creates it.
pub const DEFAULT_PARTITIONS: u32 = 4;
/// Default consumer group of the counting members.
pub const DEFAULT_GROUP: &str = "url-shortener-clicks";
/// Default most events kept for sending while the broker is away.
pub const DEFAULT_MAX_UNSENT: usize = 100_000;
/// Longest one publishing attempt (connect, send, acknowledgements) may take.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// Waits between attempts to reach the broker again, doubling from the first to the last.
const RECONNECT_BACKOFF: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(2));

/// Where the clicks go, and how.
#[derive(Clone, Debug)]
pub struct BrokerSettings {
    pub addr: SocketAddr,
    pub topic: String,
    /// Partitions of the topic, when it has to be created.
    pub partitions: u32,
    pub group: String,
    pub flush_interval: Duration,
    /// Most events kept for sending; more are dropped and counted.
    pub max_unsent: usize,
    /// Most codes a counting member holds before it adds and commits early.
    pub max_pending_codes: usize,
}

/// The counters of the broker path.
#[derive(Clone, Debug)]
pub struct BrokerMetrics {
    published: IntCounter,
    resent: IntCounter,
    uncommitted: IntCounter,
    unreadable: IntCounter,
}

impl BrokerMetrics {
    pub fn register(registry: &Registry) -> Result<BrokerMetrics, MetricsError> {
        Ok(BrokerMetrics {
            published: registry.counter(
                "url_shortener_click_events_published_total",
                "Click events the broker acknowledged.",
            )?,
            resent: registry.counter(
                "url_shortener_click_events_resent_total",
                "Click events sent again after a failed publish (an upper bound on duplicates).",
            )?,
            uncommitted: registry.counter(
                "url_shortener_clicks_uncommitted_total",
                "Clicks added to the store whose offsets were not committed (they may be counted again).",
            )?,
            unreadable: registry.counter(
                "url_shortener_click_events_unreadable_total",
                "Records in the click topic that are not click events; skipped.",
            )?,
        })
    }
}

/// Creates the topic unless it exists.
async fn ensure_topic(client: &Client, settings: &BrokerSettings) -> Result<(), ClientError> {
    let request = CreateTopicRequest {
        name: settings.topic.clone(),
        partitions: settings.partitions,
        ..CreateTopicRequest::default()
    };
    match client.create_topic(request).await? {
        ErrorCode::None | ErrorCode::TopicAlreadyExists => Ok(()),
        code => Err(ClientError::Broker {
            code,
            message: format!("creating the topic {}", settings.topic),
        }),
    }
}

fn backoff(previous: Duration) -> Duration {
    (previous * 2).clamp(RECONNECT_BACKOFF.0, RECONNECT_BACKOFF.1)
}

impl ClickAggregator {
    /// Publishes the queue's events to the topic until every recorder is dropped, then sends
    /// what is left (one attempt) and returns.
    pub async fn publish(mut self, settings: BrokerSettings, metrics: BrokerMetrics) {
        let mut publisher = Publisher {
            settings,
            metrics,
            producer: None,
            unsent: Vec::new(),
        };
        let mut ticks = tokio::time::interval(publisher.settings.flush_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = self.queue.recv() => {
                    let Some(event) = event else { break };
                    if publisher.unsent.len() >= publisher.settings.max_unsent {
                        self.dropped.inc();
                        continue;
                    }
                    publisher.unsent.push(event);
                }
                _ = ticks.tick() => publisher.send().await,
            }
        }
        publisher.send().await;
        if !publisher.unsent.is_empty() {
            let lost = publisher.unsent.len();
            tracing::warn!(lost, "click events not published at shutdown");
            self.dropped.inc_by(lost as u64);
        }
    }
}

struct Publisher {
    settings: BrokerSettings,
    metrics: BrokerMetrics,
    producer: Option<Producer>,
    unsent: Vec<ClickEvent>,
}

impl Publisher {
    /// One attempt to publish everything unsent. On failure the events stay, the producer is
    /// dropped, and the next attempt connects again.
    async fn send(&mut self) {
        if self.unsent.is_empty() {
            return;
        }
        let count = self.unsent.len();
        match tokio::time::timeout(PUBLISH_TIMEOUT, self.try_send()).await {
            Ok(Ok(())) => {
                self.metrics.published.inc_by(count as u64);
                self.unsent.clear();
                return;
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, events = count, "click publish failed; will retry")
            }
            Err(_) => tracing::warn!(events = count, "click publish timed out; will retry"),
        }
        // Any of them may have been appended: every one sent again may be a duplicate.
        self.metrics.resent.inc_by(count as u64);
        self.producer = None;
    }

    async fn try_send(&mut self) -> Result<(), ClientError> {
        if self.producer.is_none() {
            let client = Arc::new(Client::connect(self.settings.addr).await?);
            ensure_topic(&client, &self.settings).await?;
            let producer =
                Producer::new(client, &self.settings.topic, ProducerConfig::default()).await?;
            self.producer = Some(producer);
        }
        let producer = self.producer.as_mut().expect("set above");
        let failed_before = producer.stats().records_failed;
        for event in &self.unsent {
            let value = serde_json::to_vec(event).expect("a click event serialises");
            let record = Record {
                key: Some(event.code.as_bytes()),
                value: Some(&value),
                headers: &[],
                timestamp: event.at as i64,
            };
            producer.send(&record).await?;
        }
        let stats = producer.flush().await?;
        if stats.records_failed > failed_before {
            return Err(ClientError::Broker {
                code: ErrorCode::Unknown,
                message: stats.last_error.clone().unwrap_or_default(),
            });
        }
        Ok(())
    }
}

/// Counts the topic's clicks into `store` as a member of the group, until `shutdown`; then
/// adds and commits what it holds and leaves the group.
pub async fn count<S: Store>(
    store: Arc<S>,
    settings: BrokerSettings,
    metrics: BrokerMetrics,
    flushed: IntCounter,
    shutdown: Shutdown,
) {
    let mut wait = Duration::ZERO;
    while !shutdown.is_triggered() {
        let joined = Instant::now();
        let mut member = Member {
            store: &*store,
            settings: &settings,
            metrics: &metrics,
            flushed: &flushed,
            pending: HashMap::new(),
        };
        match member.run(&shutdown).await {
            Ok(()) => return,
            Err(error) => {
                // A membership that lasted starts the waits over.
                if joined.elapsed() > RECONNECT_BACKOFF.1 {
                    wait = Duration::ZERO;
                }
                wait = backoff(wait);
                tracing::warn!(%error, retry_in = ?wait, "click counting stopped; rejoining");
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = shutdown.triggered() => return,
                }
            }
        }
    }
}

/// One membership of the group: from joining to the first failure (or shutdown).
struct Member<'a, S> {
    store: &'a S,
    settings: &'a BrokerSettings,
    metrics: &'a BrokerMetrics,
    flushed: &'a IntCounter,
    /// Clicks consumed since the last commit, by code. They never outlive the membership:
    /// after a failure the records since the last commit are delivered again.
    pending: HashMap<String, u64>,
}

/// Why a membership ended.
#[derive(Debug, thiserror::Error)]
enum MemberError {
    #[error("broker: {0}")]
    Broker(#[from] ClientError),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("the group moved on ({0}): the records since the last commit go to their new owner")]
    Rebalanced(ErrorCode),
}

impl<S: Store> Member<'_, S> {
    async fn run(&mut self, shutdown: &Shutdown) -> Result<(), MemberError> {
        let client = Arc::new(Client::connect(self.settings.addr).await?);
        ensure_topic(&client, self.settings).await?;
        let mut config = GroupConfig::new(&self.settings.group, vec![self.settings.topic.clone()]);
        config.client_id = "url-shortener".into();
        let mut group = GroupConsumer::new(client, config);
        let mut last_commit = Instant::now();
        // A member's polls return within the fetch wait (at most half a second), so shutdown
        // is seen between them and a poll is never cancelled halfway. Joining is different:
        // it waits until every member the group knows has rejoined, and one that died
        // (SIGKILL) holds it until its session timeout. So the first poll, which joins, gives
        // way to shutdown; nothing is pending then, and leaving tells the group at once.
        while !shutdown.is_triggered() {
            if group.is_joined() {
                self.poll(&mut group).await?;
            } else {
                tokio::select! {
                    polled = self.poll(&mut group) => polled?,
                    () = shutdown.triggered() => {
                        debug_assert!(self.pending.is_empty());
                        group.leave().await?;
                        return Ok(());
                    }
                }
            }
            if last_commit.elapsed() >= self.settings.flush_interval
                || self.pending.len() >= self.settings.max_pending_codes
            {
                self.add_and_commit(&mut group).await?;
                last_commit = Instant::now();
            }
        }
        self.add_and_commit(&mut group).await?;
        group.leave().await?;
        Ok(())
    }

    /// One fetch of the member's partitions into `pending`.
    async fn poll(&mut self, group: &mut GroupConsumer) -> Result<(), MemberError> {
        let metrics = self.metrics;
        let generation = group.generation();
        let mut polled: HashMap<String, u64> = HashMap::new();
        group
            .poll_with(|_, _, record| {
                match record
                    .value
                    .and_then(|v| serde_json::from_slice::<ClickEvent>(v).ok())
                {
                    Some(event) => *polled.entry(event.code).or_insert(0) += 1,
                    None => metrics.unreadable.inc(),
                }
            })
            .await?;
        if group.generation() != generation {
            // The poll rejoined the group and started again from the committed offsets: what
            // was pending will be delivered again, here or to another member.
            self.pending.clear();
        }
        for (code, n) in polled {
            *self.pending.entry(code).or_insert(0) += n;
        }
        Ok(())
    }

    /// Adds the pending counts to the store, then commits the offsets they came from.
    async fn add_and_commit(&mut self, group: &mut GroupConsumer) -> Result<(), MemberError> {
        let batch: Vec<(String, u64)> = self.pending.drain().collect();
        let clicks: u64 = batch.iter().map(|(_, n)| n).sum();
        if !batch.is_empty() {
            if let Err(error) = self.store.add_clicks(&batch).await {
                // Part of it may be in the store; all of it will be delivered again.
                self.metrics.uncommitted.inc_by(clicks);
                return Err(error.into());
            }
            self.flushed.inc_by(clicks);
        }
        let committed = group.commit().await;
        if !matches!(committed, Ok(ErrorCode::None)) {
            self.metrics.uncommitted.inc_by(clicks);
        }
        match committed? {
            ErrorCode::None => Ok(()),
            code => Err(MemberError::Rebalanced(code)),
        }
    }
}

#[cfg(test)]
mod tests {
    use message_broker::server::coordinator::Coordinator;
    use message_broker::server::{self, Broker, Config, Metrics, State};

    use super::*;
    use crate::store::{Link, SledStore};

    /// A broker in this process on a free port, and its address.
    async fn broker(dir: &std::path::Path) -> SocketAddr {
        let config = Config {
            data_dir: dir.to_path_buf(),
            ..Config::default()
        };
        let broker = Arc::new(Broker::open(&config).unwrap());
        let coordinator =
            Arc::new(Coordinator::open(&broker, config.flush, config.limits.clone()).unwrap());
        let metrics = Metrics::register(&Registry::new()).unwrap();
        let state = State::start(broker, coordinator, &config, metrics, Shutdown::new());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(server::run(listener, state));
        addr
    }

    /// Group `g` on a one-partition topic, flushing every `flush_interval`.
    fn settings(addr: SocketAddr, flush_interval: Duration) -> BrokerSettings {
        BrokerSettings {
            addr,
            topic: DEFAULT_TOPIC.into(),
            partitions: 1,
            group: "g".into(),
            flush_interval,
            max_unsent: 100,
            max_pending_codes: 100,
        }
    }

    /// A member config whose heartbeats come every 100 ms, so a rebalance is seen quickly.
    fn quick(group: &str) -> GroupConfig {
        let mut config = GroupConfig::new(group, vec![DEFAULT_TOPIC.into()]);
        config.session_timeout_ms = 300;
        config.rebalance_timeout_ms = 3_000;
        config
    }

    #[tokio::test]
    async fn shutdown_while_joining_does_not_wait_for_a_dead_members_session() {
        let dir = tempfile::tempdir().unwrap();
        let addr = broker(dir.path()).await;
        let settings = settings(addr, Duration::from_millis(100));
        // A member that joins and then goes silent, like an instance SIGKILLed a moment ago:
        // the group waits for it until its 10 s session runs out.
        let client = Arc::new(Client::connect(addr).await.unwrap());
        ensure_topic(&client, &settings).await.unwrap();
        let mut config = GroupConfig::new("g", vec![DEFAULT_TOPIC.into()]);
        config.session_timeout_ms = 10_000;
        config.rebalance_timeout_ms = 10_000;
        let mut silent = GroupConsumer::new(client, config);
        silent.poll_with(|_, _, _| {}).await.unwrap();
        assert!(silent.is_joined());

        let registry = Registry::new();
        let metrics = BrokerMetrics::register(&registry).unwrap();
        let flushed = registry.counter("test_flushed_total", "test").unwrap();
        let store = Arc::new(SledStore::temporary().unwrap());
        let shutdown = Shutdown::new();
        let counting = tokio::spawn(count(store, settings, metrics, flushed, shutdown.clone()));
        // Its join now waits on the silent member.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!counting.is_finished());
        shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(3), counting)
            .await
            .expect("count() waited for the rebalance instead of leaving at shutdown")
            .unwrap();
        drop(silent);
    }

    #[tokio::test]
    async fn a_rebalance_drops_the_uncommitted_counts_instead_of_adding_them_twice() {
        let dir = tempfile::tempdir().unwrap();
        let addr = broker(dir.path()).await;
        let settings = settings(addr, Duration::from_secs(3600));
        let client = Arc::new(Client::connect(addr).await.unwrap());
        ensure_topic(&client, &settings).await.unwrap();
        let mut producer = Producer::new(client, DEFAULT_TOPIC, ProducerConfig::default())
            .await
            .unwrap();
        for at in 0..3 {
            let value = serde_json::to_vec(&ClickEvent::new("x", at, &Default::default())).unwrap();
            let record = Record {
                key: Some(b"x"),
                value: Some(&value),
                headers: &[],
                timestamp: at as i64,
            };
            producer.send(&record).await.unwrap();
        }
        assert_eq!(producer.flush().await.unwrap().records_failed, 0);

        let store = SledStore::temporary().unwrap();
        let link = Link {
            code: "x".into(),
            url: "https://example.com/".into(),
            created_at_ms: 0,
            expires_at_ms: None,
            permanent: false,
        };
        store.create(&link).await.unwrap();
        let registry = Registry::new();
        let metrics = BrokerMetrics::register(&registry).unwrap();
        let flushed = registry.counter("test_flushed_total", "test").unwrap();
        let mut member = Member {
            store: &store,
            settings: &settings,
            metrics: &metrics,
            flushed: &flushed,
            pending: HashMap::new(),
        };
        let mut first =
            GroupConsumer::new(Arc::new(Client::connect(addr).await.unwrap()), quick("g"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while member.pending.get("x") != Some(&3) {
            assert!(Instant::now() < deadline, "the three clicks never arrived");
            member.poll(&mut first).await.unwrap();
        }

        // A second member joins: the group rebalances and the first member's next heartbeat
        // makes it rejoin, from the committed offsets (none yet).
        let second = tokio::spawn(async move {
            let client = Arc::new(Client::connect(addr).await.unwrap());
            let mut group = GroupConsumer::new(client, quick("g"));
            let mut seen = 0;
            let until = Instant::now() + Duration::from_secs(3);
            while Instant::now() < until {
                group.poll_with(|_, _, _| seen += 1).await.unwrap();
            }
            seen
        });
        let generation = first.generation();
        while first.generation() == generation {
            assert!(Instant::now() < deadline, "no rebalance");
            member.poll(&mut first).await.unwrap();
        }
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            member.poll(&mut first).await.unwrap();
        }
        member.add_and_commit(&mut first).await.unwrap();
        let seen_by_second = second.await.unwrap();
        // Whichever member owns the partition now has the three clicks; none twice.
        assert_eq!(
            store.clicks("x").await.unwrap() + seen_by_second,
            3,
            "{seen_by_second} seen by the second member"
        );
    }
}
