//! A consumer of one topic's partitions, from positions it manages itself.
//!
//! Each [`Consumer::poll_with`] is one fetch for every assigned partition (long-polling up to
//! `max_wait_ms` when nothing is new). Fetched ranges start at the batch holding the position
//! and may end with a batch cut short by the byte limit: records below the position are
//! skipped, and the cut batch is fetched whole next time. Records are handed to the callback
//! as views into the fetched bytes, without a copy; [`Consumer::poll`] copies them out for
//! callers that want owned records.
//!
//! Consumer groups (shared partitions, committed offsets) build on this in the coordinator.

use std::sync::Arc;

use super::{Client, ClientError};
use crate::protocol::{ErrorCode, FetchPartition, FetchRequest, OffsetSpec};
use crate::record_batch::{self, Defect, RecordView};

/// Where a consumer without a committed position starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartFrom {
    /// The first offset still held.
    Earliest,
    /// The end: only records produced from now on.
    Latest,
    /// This offset in every partition.
    Offset(u64),
}

/// Fetch settings.
#[derive(Clone, Debug)]
pub struct ConsumerConfig {
    /// Longest a poll waits for new data, ms.
    pub max_wait_ms: u32,
    /// Bytes per poll, all partitions together (the broker caps it too).
    pub max_bytes: u32,
    /// Bytes per partition per poll.
    pub partition_max_bytes: u32,
    /// Largest batch the consumer accepts when parsing, bytes.
    pub max_batch_bytes: usize,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            max_wait_ms: 500,
            max_bytes: 4 << 20,
            partition_max_bytes: 1 << 20,
            max_batch_bytes: 64 << 20,
        }
    }
}

/// One consumed record, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumedRecord {
    /// Partition.
    pub partition: u32,
    /// Offset.
    pub offset: u64,
    /// ms since the epoch.
    pub timestamp: i64,
    /// Key, if any.
    pub key: Option<Vec<u8>>,
    /// Value (`None` for a tombstone).
    pub value: Option<Vec<u8>>,
    /// Headers.
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// A consumer of a fixed set of partitions of one topic.
pub struct Consumer {
    client: Arc<Client>,
    topic: String,
    /// (partition, next offset to hand out)
    positions: Vec<(u32, u64)>,
    config: ConsumerConfig,
}

impl Consumer {
    /// Consumes `partitions` of `topic` (all of them if `None`) from `from`.
    pub async fn new(
        client: Arc<Client>,
        topic: &str,
        partitions: Option<Vec<u32>>,
        from: StartFrom,
        config: ConsumerConfig,
    ) -> Result<Consumer, ClientError> {
        let partitions = match partitions {
            Some(partitions) => partitions,
            None => (0..super::partition_count(&client, topic).await?).collect(),
        };
        let mut positions = Vec::with_capacity(partitions.len());
        for partition in partitions {
            let offset = match from {
                StartFrom::Earliest => {
                    client
                        .list_offset(topic, partition, OffsetSpec::Earliest)
                        .await?
                }
                StartFrom::Latest => {
                    client
                        .list_offset(topic, partition, OffsetSpec::Latest)
                        .await?
                }
                StartFrom::Offset(offset) => offset,
            };
            positions.push((partition, offset));
        }
        Ok(Consumer {
            client,
            topic: topic.to_owned(),
            positions,
            config,
        })
    }

    /// (partition, next offset) of every assigned partition.
    pub fn positions(&self) -> &[(u32, u64)] {
        &self.positions
    }

    /// Moves a partition's position.
    pub fn seek(&mut self, partition: u32, offset: u64) {
        if let Some(position) = self.positions.iter_mut().find(|(p, _)| *p == partition) {
            position.1 = offset;
        }
    }

    /// Fetches once and calls `each(partition, record)` for every new record, in offset order
    /// per partition; returns how many there were.
    pub async fn poll_with(
        &mut self,
        mut each: impl FnMut(u32, &RecordView<'_>),
    ) -> Result<usize, ClientError> {
        let request = FetchRequest {
            max_wait_ms: self.config.max_wait_ms,
            min_bytes: 1,
            max_bytes: self.config.max_bytes,
            partitions: self
                .positions
                .iter()
                .map(|&(partition, offset)| FetchPartition {
                    topic: self.topic.clone(),
                    partition,
                    offset,
                    max_bytes: self.config.partition_max_bytes,
                })
                .collect(),
        };
        let response = self.client.fetch(request).await?;
        let mut delivered = 0;
        for (answer, position) in response.partitions.iter().zip(&mut self.positions) {
            if answer.error != ErrorCode::None {
                return Err(ClientError::Broker {
                    code: answer.error,
                    message: format!(
                        "fetch {}/{} at {}",
                        self.topic, answer.partition, position.1
                    ),
                });
            }
            let delivered_here = deliver(
                &answer.records,
                &mut position.1,
                self.config.max_batch_bytes,
                |r| each(answer.partition, r),
            )
            .map_err(|defect| ClientError::CorruptData {
                topic: self.topic.clone(),
                partition: answer.partition,
                offset: position.1,
                defect,
            })?;
            delivered += delivered_here;
        }
        Ok(delivered)
    }

    /// Fetches once and returns the new records, copied out.
    pub async fn poll(&mut self) -> Result<Vec<ConsumedRecord>, ClientError> {
        let mut out = Vec::new();
        self.poll_with(|partition, record| {
            out.push(ConsumedRecord {
                partition,
                offset: record.offset,
                timestamp: record.timestamp,
                key: record.key.map(<[u8]>::to_vec),
                value: record.value.map(<[u8]>::to_vec),
                headers: record
                    .headers()
                    .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
                    .collect(),
            });
        })
        .await?;
        Ok(out)
    }
}

/// Hands every record of `records` (fetched bytes) at or after `*position` to `each`, and moves
/// `*position` past every whole batch. A batch cut short at the end is left for the next
/// fetch; any other defect is an error.
pub(crate) fn deliver(
    records: &[u8],
    position: &mut u64,
    max_batch_bytes: usize,
    mut each: impl FnMut(&RecordView<'_>),
) -> Result<usize, Defect> {
    let mut delivered = 0;
    let mut rest = records;
    while !rest.is_empty() {
        let header = match record_batch::check_stored(rest, max_batch_bytes) {
            Ok(header) => header,
            Err(Defect::Incomplete { .. }) => break,
            Err(defect) => return Err(defect),
        };
        for record in record_batch::records(rest, header) {
            let record = record?;
            if record.offset >= *position {
                each(&record);
                delivered += 1;
            }
        }
        *position = (*position).max(header.next_offset());
        rest = &rest[header.size..];
    }
    Ok(delivered)
}
