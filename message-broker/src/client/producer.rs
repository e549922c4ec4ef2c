//! A batching producer for one topic.
//!
//! ```text
//!  send(record) ─▶ partitioner ─▶ the partition's open batch (BatchBuilder)
//!                                   │ full (batch_bytes) or lingered (linger_ms)
//!                                   ▼
//!                      produce request in flight (at most max_in_flight) ─▶ acks counted
//! ```
//!
//! Records are encoded straight into the partition's batch buffer: no allocation per record.
//! A batch is sent when it reaches `batch_bytes`, or when its first record has waited
//! `linger_ms` (by [`Producer::send_lingered`], which a caller
//! with irregular input calls when [`Producer::linger_deadline`] passes, as `broker-cli
//! produce` does). When
//! `max_in_flight` requests are unanswered, `send` waits for one: back-pressure instead of an
//! unbounded queue. Requests to one partition are written to the one connection in order, and
//! the broker appends in arrival order, so an idempotent producer's sequence numbers arrive in
//! order even with several requests in flight.
//!
//! Not here yet: retries of failed batches (a failure is counted and reported), and topics
//! whose partition count changes while producing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::task::JoinHandle;

use super::partitioner::Partitioner;
use super::{Client, ClientError};
use crate::protocol::{Acks, ErrorCode, ProducePartition};
use crate::record_batch::{BatchBuilder, ProducerStamp, Record};

/// Default `batch_bytes`: 16 KiB, Kafka's `batch.size`.
pub const DEFAULT_BATCH_BYTES: usize = 16 * 1024;
/// Default `linger_ms`: 5, Kafka's `linger.ms` since 4.0.
pub const DEFAULT_LINGER_MS: u64 = 5;
/// Default `max_in_flight`: produce requests awaiting an answer, all partitions together.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 16;

/// How a [`Producer`] batches and what it waits for.
#[derive(Clone, Debug)]
pub struct ProducerConfig {
    /// What an answer waits for.
    pub acks: Acks,
    /// A partition's batch is sent once it holds this many bytes.
    pub batch_bytes: usize,
    /// Longest a record waits for its batch to fill, ms.
    pub linger_ms: u64,
    /// Produce requests awaiting an answer before `send` waits; memory is bounded by about
    /// `max_in_flight * batch_bytes` plus one open batch per partition.
    pub max_in_flight: usize,
    /// Stamp batches with a producer id and sequence numbers, so retries are not duplicated.
    pub idempotent: bool,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: Acks::All,
            batch_bytes: DEFAULT_BATCH_BYTES,
            linger_ms: DEFAULT_LINGER_MS,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            idempotent: true,
        }
    }
}

/// What happened to the records sent so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerStats {
    /// Records handed to `send`.
    pub records_sent: u64,
    /// Records the broker acknowledged (always 0 with `acks = none`).
    pub records_acknowledged: u64,
    /// Records whose batch failed.
    pub records_failed: u64,
    /// The last failure, for a message.
    pub last_error: Option<String>,
}

struct OpenBatch {
    builder: BatchBuilder,
    first_record_at: Option<Instant>,
}

/// A batching producer for one topic (see the module doc).
pub struct Producer {
    client: Arc<Client>,
    topic: String,
    config: ProducerConfig,
    partitioner: Partitioner,
    batches: Vec<OpenBatch>,
    sequences: Vec<i32>,
    producer_id: i64,
    producer_epoch: i16,
    in_flight: FuturesUnordered<JoinHandle<(u64, Result<ErrorCode, ClientError>)>>,
    stats: ProducerStats,
}

impl Producer {
    /// A producer for `topic`, which must exist.
    pub async fn new(
        client: Arc<Client>,
        topic: &str,
        config: ProducerConfig,
    ) -> Result<Producer, ClientError> {
        let partitions = super::partition_count(&client, topic).await?;
        let (producer_id, producer_epoch) = if config.idempotent {
            let answer = client.init_producer_id().await?;
            if !answer.error.is_ok() {
                return Err(ClientError::Broker {
                    code: answer.error,
                    message: "no producer id".into(),
                });
            }
            (answer.producer_id, answer.producer_epoch)
        } else {
            (
                ProducerStamp::NONE.producer_id,
                ProducerStamp::NONE.producer_epoch,
            )
        };
        let batches = (0..partitions)
            .map(|_| OpenBatch {
                builder: BatchBuilder::new(),
                first_record_at: None,
            })
            .collect();
        Ok(Producer {
            client,
            topic: topic.to_owned(),
            partitioner: Partitioner::new(partitions),
            batches,
            sequences: vec![0; partitions as usize],
            producer_id,
            producer_epoch,
            in_flight: FuturesUnordered::new(),
            stats: ProducerStats::default(),
            config,
        })
    }

    /// Adds a record to its partition's batch; sends batches that are full or lingered.
    /// Returns the partition chosen.
    pub async fn send(&mut self, record: &Record<'_>) -> Result<u32, ClientError> {
        let partition = self.partitioner.partition(record.key);
        let batch = &mut self.batches[partition as usize];
        if batch.builder.is_empty() {
            batch.first_record_at = Some(Instant::now());
        } else if batch.builder.size() + batch.builder.record_size(record) > self.config.batch_bytes
        {
            self.ship(partition).await?;
        }
        let batch = &mut self.batches[partition as usize];
        batch.first_record_at.get_or_insert_with(Instant::now);
        batch.builder.push(record);
        self.stats.records_sent += 1;
        if batch.builder.size() >= self.config.batch_bytes {
            self.ship(partition).await?;
        }
        self.reap_finished();
        Ok(partition)
    }

    /// When the oldest waiting record's linger ends, if any record is waiting.
    pub fn linger_deadline(&self) -> Option<Instant> {
        let linger = Duration::from_millis(self.config.linger_ms);
        self.batches
            .iter()
            .filter_map(|b| b.first_record_at)
            .min()
            .map(|first| first + linger)
    }

    /// Sends every batch whose first record has waited `linger_ms` or more. A caller whose
    /// input is irregular sleeps until [`Producer::linger_deadline`] beside its input and
    /// then calls this.
    pub async fn send_lingered(&mut self) -> Result<(), ClientError> {
        let linger = Duration::from_millis(self.config.linger_ms);
        let now = Instant::now();
        for partition in 0..self.batches.len() {
            if self.batches[partition]
                .first_record_at
                .is_some_and(|first| now >= first + linger)
            {
                self.ship(partition as u32).await?;
            }
        }
        Ok(())
    }

    /// Sends every open batch and waits for every answer.
    pub async fn flush(&mut self) -> Result<&ProducerStats, ClientError> {
        for partition in 0..self.batches.len() {
            self.ship(partition as u32).await?;
        }
        while let Some(done) = self.in_flight.next().await {
            self.account(done);
        }
        Ok(&self.stats)
    }

    /// Counts so far.
    pub fn stats(&self) -> &ProducerStats {
        &self.stats
    }

    /// Sends the open batch of `partition`, if it has records; waits for a slot first.
    async fn ship(&mut self, partition: u32) -> Result<(), ClientError> {
        let batch = &mut self.batches[partition as usize];
        if batch.builder.is_empty() {
            return Ok(());
        }
        while self.in_flight.len() >= self.config.max_in_flight {
            if let Some(done) = self.in_flight.next().await {
                self.account(done);
            }
        }
        let batch = &mut self.batches[partition as usize];
        let count = batch.builder.len();
        let stamp = ProducerStamp {
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: if self.config.idempotent {
                self.sequences[partition as usize]
            } else {
                ProducerStamp::NONE.base_sequence
            },
        };
        let records = batch.builder.finish(stamp).to_vec();
        batch.builder.clear();
        batch.first_record_at = None;
        self.sequences[partition as usize] =
            self.sequences[partition as usize].wrapping_add(count as i32) & i32::MAX;
        self.partitioner.batch_sent(partition);
        let request = vec![ProducePartition {
            topic: self.topic.clone(),
            partition,
            records,
        }];
        let (client, acks) = (Arc::clone(&self.client), self.config.acks);
        // The request is written before the task is spawned, so batches of one partition go
        // out in the order they were shipped.
        let answer = client.produce_pipelined(acks, request).await?;
        self.in_flight.push(tokio::spawn(async move {
            let result = match answer.await {
                Ok(Some(response)) => Ok(response.partitions[0].error),
                Ok(None) => Ok(ErrorCode::None),
                Err(err) => Err(err),
            };
            (u64::from(count), result)
        }));
        Ok(())
    }

    fn reap_finished(&mut self) {
        while let Some(Some(done)) = futures_util::FutureExt::now_or_never(self.in_flight.next()) {
            self.account(done);
        }
    }

    fn account(
        &mut self,
        done: Result<(u64, Result<ErrorCode, ClientError>), tokio::task::JoinError>,
    ) {
        let (count, result) = match done {
            Ok(done) => done,
            Err(err) => {
                self.stats.last_error = Some(err.to_string());
                return;
            }
        };
        match result {
            Ok(ErrorCode::None) if self.config.acks != Acks::None => {
                self.stats.records_acknowledged += count
            }
            Ok(ErrorCode::None) => {}
            Ok(code) => {
                self.stats.records_failed += count;
                self.stats.last_error = Some(format!("broker answered {code}"));
            }
            Err(err) => {
                self.stats.records_failed += count;
                self.stats.last_error = Some(err.to_string());
            }
        }
    }
}
