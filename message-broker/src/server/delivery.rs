//! Per-record delivery for a group: acknowledgments, retries with backoff, and the dead-letter
//! queue. The model is Kafka's share groups (KIP-932) with Pulsar's and SQS's dead-letter
//! policies: records of a partition are handed out one by one, each must be acknowledged.
//!
//! For each (group, topic, partition) a [`Tracker`] keeps:
//!
//! ```text
//!   committed                 next
//!      │ pending deliveries      │ never delivered
//!  ────┼─────────────────────────┼──────────▶ offsets
//!      │ 3:acked 4:backoff 5:delivered(deadline) 6:acked …
//! ```
//!
//! - `ShareFetch` hands out first the pending records whose backoff has ended (attempt + 1),
//!   then new records from `next`, while fewer than `max_pending_deliveries_per_partition` are
//!   pending: a full window is back-pressure, and a record stuck in backoff (a poison record)
//!   holds one slot of the window, not the partition.
//! - `Acknowledge` marks records done (`acks`) or failed (`nacks`, with a reason). A delivery
//!   still unanswered at its `ack_timeout_ms` deadline fails with reason `ack timeout`.
//! - A failed record waits `backoff(attempts)` and is delivered again; after
//!   `max_delivery_attempts` deliveries it is appended to the dead-letter topic instead (default
//!   `<topic>.<group>.dlq`, created on demand), with the headers below, and counts as done.
//! - `committed` moves over every done record at the front of the window and is committed for
//!   the group in `__consumer_offsets`: it never passes a record that is neither acknowledged
//!   nor dead-lettered. After a broker restart deliveries start again from it (attempt counts
//!   are not persisted: a record may then get up to `max_delivery_attempts` more).
//! - A pending record that retention deletes (it waited in backoff past the topic's
//!   retention) is gone: nothing is left to deliver or dead-letter, so it counts as done, with
//!   a warning, rather than holding `committed` back for good.
//! - Under `--flush always` a dead letter is fsynced before its record counts as done, so a
//!   power loss cannot keep the commit that passed the record and lose the dead letter.
//!
//! Backoff: `min(backoff_max, backoff_initial * 2^(failures - 1))`, of which a random half is
//! taken off ("equal jitter"), so waits grow and concurrent failures spread out.
//!
//! Dead-letter headers (values as UTF-8 text): `dlq.original.topic`, `dlq.original.partition`,
//! `dlq.original.offset`, `dlq.original.timestamp`, `dlq.group`, `dlq.attempts`,
//! `dlq.last.error`, `dlq.first.failure.ms`, `dlq.last.failure.ms`, followed by the record's
//! own headers. Key and value are the original ones.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rand::RngExt;
use rand::rngs::StdRng;

use super::broker::{Broker, valid_topic_name};
use super::config::FlushPolicy;
use super::coordinator::Coordinator;
use super::now_ms;
use super::partition::Partition;
use crate::protocol::{
    AcknowledgeRequest, AcknowledgeResponse, CommitOffset, CreateTopicRequest, DeliveredRecord,
    ErrorCode, RetrySettings, ShareFetchRequest, ShareFetchResponse,
};
use crate::record_batch::{self, BatchBuilder, ProducerStamp, Record};

/// How often delivery deadlines are checked.
pub const TICK: Duration = Duration::from_millis(20);
/// Most records one `ShareFetch` answers with.
pub const MAX_SHARE_FETCH_RECORDS: u32 = 10_000;

#[derive(Clone, Copy, Debug)]
enum State {
    /// Handed out; fails at the deadline.
    Delivered { deadline: Instant },
    /// Failed; due again at `until`.
    Backoff { until: Instant },
    /// Acknowledged or dead-lettered.
    Done,
}

#[derive(Debug)]
struct Pending {
    attempts: u32,
    state: State,
    first_failure_ms: Option<i64>,
    last_failure_ms: i64,
    last_error: String,
}

/// The deliveries of one partition to one group.
struct Tracker {
    group: String,
    topic: String,
    partition: Arc<Partition>,
    dead_letter: Arc<Partition>,
    dead_letter_topic: String,
    settings: RetrySettings,
    /// `--flush always`: dead letters are fsynced before they count.
    sync_dead_letters: bool,
    committed: u64,
    next: u64,
    pending: BTreeMap<u64, Pending>,
    /// For the backoff jitter.
    rng: StdRng,
}

/// Every tracker, and the timer that fails overdue deliveries.
pub struct Deliveries {
    broker: Arc<Broker>,
    coordinator: Arc<Coordinator>,
    max_pending: usize,
    /// Most trackers at once (`Limits::max_delivery_trackers`).
    max_trackers: usize,
    flush: FlushPolicy,
    trackers: Mutex<HashMap<(String, String, u32), Tracker>>,
}

impl Deliveries {
    /// No trackers yet; they are made by the first `ShareFetch` of each group and partition.
    pub fn new(
        broker: Arc<Broker>,
        coordinator: Arc<Coordinator>,
        max_pending: usize,
        max_trackers: usize,
        flush: FlushPolicy,
    ) -> Self {
        Deliveries {
            broker,
            coordinator,
            max_pending,
            max_trackers,
            flush,
            trackers: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String, u32), Tracker>> {
        self.trackers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `ShareFetch`. Blocking on first use of a partition (may create the dead-letter topic).
    pub fn fetch(&self, request: &ShareFetchRequest) -> ShareFetchResponse {
        let refuse = |error| ShareFetchResponse {
            error,
            records: Vec::new(),
        };
        let key = (
            request.group_id.clone(),
            request.topic.clone(),
            request.partition,
        );
        if !self.lock().contains_key(&key) {
            if self.lock().len() >= self.max_trackers {
                return refuse(ErrorCode::LimitExceeded);
            }
            match self.new_tracker(request) {
                Ok(tracker) => {
                    self.lock().entry(key.clone()).or_insert(tracker);
                }
                Err(code) => return refuse(code),
            }
        }
        let mut trackers = self.lock();
        let tracker = trackers.get_mut(&key).expect("inserted");
        let max = request.max_records.min(MAX_SHARE_FETCH_RECORDS) as usize;
        let handed_out = tracker.hand_out(max, self.max_pending, Instant::now());
        // Records that retention removed while they waited are done now.
        if let Err(code) = tracker.advance(&self.coordinator) {
            tracing::error!(topic = %tracker.topic, %code, "cannot commit past removed records");
        }
        match handed_out {
            Ok(records) => ShareFetchResponse {
                error: ErrorCode::None,
                records,
            },
            Err(code) => refuse(code),
        }
    }

    fn new_tracker(&self, request: &ShareFetchRequest) -> Result<Tracker, ErrorCode> {
        let settings = &request.settings;
        if settings.max_delivery_attempts == 0 || settings.backoff_initial_ms == 0 {
            return Err(ErrorCode::InvalidConfig);
        }
        let partition = self
            .broker
            .partition(&request.topic, request.partition)
            .ok_or(ErrorCode::UnknownTopicOrPartition)?;
        let dead_letter_topic = if settings.dead_letter_topic.is_empty() {
            format!("{}.{}.dlq", request.topic, request.group_id)
        } else {
            settings.dead_letter_topic.clone()
        };
        if !valid_topic_name(&dead_letter_topic) {
            return Err(ErrorCode::InvalidTopic);
        }
        if self.broker.topic(&dead_letter_topic).is_none() {
            let create = CreateTopicRequest {
                name: dead_letter_topic.clone(),
                partitions: 1,
                retention_ms: Some(-1),
                ..CreateTopicRequest::default()
            };
            let code = self.broker.create_topic(&create);
            if !code.is_ok() && code != ErrorCode::TopicAlreadyExists {
                return Err(code);
            }
        }
        let dead_letter = self
            .broker
            .partition(&dead_letter_topic, 0)
            .ok_or(ErrorCode::UnknownTopicOrPartition)?;
        let start = partition.offsets().0;
        let committed = self
            .coordinator
            .offsets()
            .committed(&request.group_id, &request.topic, request.partition)
            .unwrap_or(start)
            .max(start);
        Ok(Tracker {
            group: request.group_id.clone(),
            topic: request.topic.clone(),
            partition,
            dead_letter,
            dead_letter_topic,
            settings: settings.clone(),
            sync_dead_letters: self.flush == FlushPolicy::Always,
            committed,
            next: committed,
            pending: BTreeMap::new(),
            rng: rand::make_rng(),
        })
    }

    /// `Acknowledge`.
    pub fn acknowledge(&self, request: &AcknowledgeRequest) -> AcknowledgeResponse {
        let key = (
            request.group_id.clone(),
            request.topic.clone(),
            request.partition,
        );
        let mut trackers = self.lock();
        let Some(tracker) = trackers.get_mut(&key) else {
            return AcknowledgeResponse {
                error: ErrorCode::UnknownTopicOrPartition,
                committed: 0,
            };
        };
        let now = Instant::now();
        for &offset in &request.acks {
            if let Some(pending) = tracker.pending.get_mut(&offset)
                && matches!(pending.state, State::Delivered { .. })
            {
                pending.state = State::Done;
            }
        }
        for nack in &request.nacks {
            if tracker
                .pending
                .get(&nack.offset)
                .is_some_and(|p| matches!(p.state, State::Delivered { .. }))
            {
                tracker.fail(nack.offset, &nack.reason, now);
            }
        }
        let error = match tracker.advance(&self.coordinator) {
            Ok(()) => ErrorCode::None,
            Err(code) => code,
        };
        AcknowledgeResponse {
            error,
            committed: tracker.committed,
        }
    }

    /// Fails deliveries past their deadline, every [`TICK`], until `stop` resolves.
    pub async fn run_timer(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        let mut ticks = tokio::time::interval(TICK);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = &mut stop => return,
            }
            let now = Instant::now();
            let mut trackers = self.lock();
            for tracker in trackers.values_mut() {
                let overdue: Vec<u64> = tracker
                    .pending
                    .iter()
                    .filter(|(_, p)| matches!(p.state, State::Delivered { deadline } if deadline <= now))
                    .map(|(&offset, _)| offset)
                    .collect();
                for offset in &overdue {
                    tracker.fail(*offset, "ack timeout", now);
                }
                if !overdue.is_empty()
                    && let Err(code) = tracker.advance(&self.coordinator)
                {
                    tracing::error!(topic = %tracker.topic, %code, "cannot commit after dead-lettering");
                }
            }
        }
    }
}

impl Tracker {
    /// Redeliveries due now, then new records, up to `max` and the pending window.
    fn hand_out(
        &mut self,
        max: usize,
        max_pending: usize,
        now: Instant,
    ) -> Result<Vec<DeliveredRecord>, ErrorCode> {
        let due: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| matches!(p.state, State::Backoff { until } if until <= now))
            .map(|(&offset, _)| offset)
            .take(max)
            .collect();
        let mut out = Vec::new();
        for offset in due {
            let Some(mut record) = self.read_record(offset)? else {
                self.removed(offset);
                continue;
            };
            let pending = self.pending.get_mut(&offset).expect("due");
            pending.attempts += 1;
            pending.state = State::Delivered {
                deadline: now + Duration::from_millis(self.settings.ack_timeout_ms.into()),
            };
            record.attempt = pending.attempts;
            out.push(record);
        }
        let deadline = now + Duration::from_millis(self.settings.ack_timeout_ms.into());
        while out.len() < max && self.pending.len() < max_pending {
            let fresh =
                self.read_from(self.next, max - out.len(), max_pending - self.pending.len())?;
            let Some(last) = fresh.last().map(|r| r.offset) else {
                break;
            };
            for record in &fresh {
                self.pending.insert(
                    record.offset,
                    Pending {
                        attempts: 1,
                        state: State::Delivered { deadline },
                        first_failure_ms: None,
                        last_failure_ms: 0,
                        last_error: String::new(),
                    },
                );
            }
            self.next = last + 1;
            out.extend(fresh);
        }
        Ok(out)
    }

    /// Up to `max.min(room)` records from `offset` on, read with one `pread` of whole batches.
    fn read_from(
        &mut self,
        offset: u64,
        max: usize,
        room: usize,
    ) -> Result<Vec<DeliveredRecord>, ErrorCode> {
        let (start, end) = self.partition.offsets();
        if offset >= end {
            return Ok(Vec::new());
        }
        // Retention may have removed records not yet delivered: continue at the first kept.
        let offset = offset.max(start);
        self.next = self.next.max(offset);
        let range = match self.partition.read(offset, 1 << 20) {
            Ok(Some(range)) => range,
            Ok(None) => return Ok(Vec::new()),
            Err(code) => return Err(code),
        };
        let bytes = range
            .read()
            .map_err(|err| super::partition::error_code(&err))?;
        let mut out = Vec::new();
        let mut rest = &bytes[..];
        while let Ok(header) = record_batch::check_stored(rest, rest.len()) {
            for record in record_batch::records(rest, header) {
                let record = record.map_err(|_| ErrorCode::StorageError)?;
                if record.offset >= offset && out.len() < max.min(room) {
                    out.push(copy_out(&record));
                }
            }
            rest = &rest[header.size..];
        }
        Ok(out)
    }

    /// The record at `offset`, copied out of its batch; `None` if the log no longer has it.
    fn read_record(&self, offset: u64) -> Result<Option<DeliveredRecord>, ErrorCode> {
        let range = match self.partition.read(offset, 1) {
            Ok(Some(range)) => range,
            Ok(None) | Err(ErrorCode::OffsetOutOfRange) => return Ok(None),
            Err(code) => return Err(code),
        };
        let bytes = range
            .read()
            .map_err(|err| super::partition::error_code(&err))?;
        let header =
            record_batch::check_stored(&bytes, bytes.len()).map_err(|_| ErrorCode::StorageError)?;
        for record in record_batch::records(&bytes, header) {
            let record = record.map_err(|_| ErrorCode::StorageError)?;
            if record.offset == offset {
                return Ok(Some(copy_out(&record)));
            }
        }
        Ok(None)
    }

    /// A delivery failed: back off, or dead-letter after the last attempt.
    fn fail(&mut self, offset: u64, reason: &str, now: Instant) {
        let Some(pending) = self.pending.get_mut(&offset) else {
            return;
        };
        let now_ms = now_ms();
        pending.first_failure_ms.get_or_insert(now_ms);
        pending.last_failure_ms = now_ms;
        pending.last_error = reason.to_owned();
        if pending.attempts < self.settings.max_delivery_attempts {
            let delay = backoff(&self.settings, pending.attempts, &mut self.rng);
            pending.state = State::Backoff { until: now + delay };
            return;
        }
        match self.dead_letter(offset) {
            Ok(()) => {
                if let Some(pending) = self.pending.get_mut(&offset) {
                    pending.state = State::Done;
                }
            }
            Err(ErrorCode::OffsetOutOfRange) => self.removed(offset),
            Err(code) => {
                // The dead-letter topic refused it: keep retrying rather than lose it.
                tracing::error!(topic = %self.dead_letter_topic, %code, offset, "cannot dead-letter a record");
                if let Some(pending) = self.pending.get_mut(&offset) {
                    pending.state = State::Backoff {
                        until: now + Duration::from_millis(self.settings.backoff_max_ms.into()),
                    };
                }
            }
        }
    }

    /// A pending record that the log no longer has (retention removed it): done, since there
    /// is nothing left to deliver or dead-letter.
    fn removed(&mut self, offset: u64) {
        if let Some(pending) = self.pending.get_mut(&offset) {
            pending.state = State::Done;
            tracing::warn!(topic = %self.topic, partition = self.partition.index, offset, group = %self.group, attempts = pending.attempts, "retention removed a record before it was acknowledged");
        }
    }

    /// Appends the record to the dead-letter topic, with its headers; under `--flush always`
    /// returns only once that append is on disk. `OffsetOutOfRange` if the record is gone.
    fn dead_letter(&self, offset: u64) -> Result<(), ErrorCode> {
        let record = self
            .read_record(offset)?
            .ok_or(ErrorCode::OffsetOutOfRange)?;
        let pending = &self.pending[&offset];
        let texts = [
            ("dlq.original.topic", self.topic.clone()),
            ("dlq.original.partition", self.partition.index.to_string()),
            ("dlq.original.offset", offset.to_string()),
            ("dlq.original.timestamp", record.timestamp.to_string()),
            ("dlq.group", self.group.clone()),
            ("dlq.attempts", pending.attempts.to_string()),
            ("dlq.last.error", pending.last_error.clone()),
            (
                "dlq.first.failure.ms",
                pending.first_failure_ms.unwrap_or_default().to_string(),
            ),
            ("dlq.last.failure.ms", pending.last_failure_ms.to_string()),
        ];
        let mut headers: Vec<(&str, &[u8])> =
            texts.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
        for (key, value) in &record.headers {
            headers.push((key.as_str(), value.as_deref().unwrap_or_default()));
        }
        let mut builder = BatchBuilder::new();
        builder.push(&Record {
            key: record.key.as_deref(),
            value: record.value.as_deref(),
            headers: &headers,
            timestamp: now_ms(),
        });
        let mut batch = builder.finish(ProducerStamp::NONE).to_vec();
        self.dead_letter.append(&mut batch, now_ms())?;
        if self.sync_dead_letters {
            // Blocking, under the trackers' lock: dead letters are rare, and the record must
            // not count as done before its copy is durable.
            self.dead_letter
                .flush()
                .map_err(|err| super::partition::error_code(&err))?;
        }
        tracing::info!(topic = %self.topic, partition = self.partition.index, offset, dlq = %self.dead_letter_topic, "record dead-lettered");
        Ok(())
    }

    /// Moves `committed` over the done records at the front and commits it.
    fn advance(&mut self, coordinator: &Coordinator) -> Result<(), ErrorCode> {
        let before = self.committed;
        while let Some(entry) = self.pending.first_entry() {
            if !matches!(entry.get().state, State::Done) {
                break;
            }
            self.committed = entry.key() + 1;
            entry.remove();
        }
        if self.pending.is_empty() {
            self.committed = self.committed.max(self.next);
        }
        if self.committed == before {
            return Ok(());
        }
        let commit = CommitOffset {
            topic: self.topic.clone(),
            partition: self.partition.index,
            offset: self.committed,
            metadata: String::new(),
        };
        coordinator.offsets().append(&self.group, &[commit])?;
        Ok(())
    }
}

/// A record as handed to a consumer: an owned copy, first attempt.
fn copy_out(record: &record_batch::RecordView<'_>) -> DeliveredRecord {
    DeliveredRecord {
        offset: record.offset,
        attempt: 1,
        timestamp: record.timestamp,
        key: record.key.map(<[u8]>::to_vec),
        value: record.value.map(<[u8]>::to_vec),
        headers: record
            .headers()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    v.map(<[u8]>::to_vec),
                )
            })
            .collect(),
    }
}

/// The wait after `failures` failed deliveries (see the module doc).
fn backoff(settings: &RetrySettings, failures: u32, rng: &mut StdRng) -> Duration {
    let exponent = failures.saturating_sub(1).min(30);
    let full = u64::from(settings.backoff_initial_ms)
        .saturating_mul(1 << exponent)
        .min(u64::from(
            settings.backoff_max_ms.max(settings.backoff_initial_ms),
        ));
    let half = full / 2;
    let jitter = rng.random_range(0..=full - half);
    Duration::from_millis(half + jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_within_its_bounds() {
        let settings = RetrySettings {
            backoff_initial_ms: 100,
            backoff_max_ms: 1_000,
            ..RetrySettings::default()
        };
        let mut rng: StdRng = rand::make_rng();
        for _ in 0..100 {
            let waits: Vec<Duration> = (1..=6).map(|n| backoff(&settings, n, &mut rng)).collect();
            let bounds = [
                (50, 100),
                (100, 200),
                (200, 400),
                (400, 800),
                (500, 1000),
                (500, 1000),
            ];
            for (wait, (low, high)) in waits.iter().zip(bounds) {
                let ms = wait.as_millis() as u64;
                assert!((low..=high).contains(&ms), "{ms} outside {low}..={high}");
            }
        }
    }
}
