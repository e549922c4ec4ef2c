//! Committed offsets, kept durably in the internal topic `__consumer_offsets`.
//!
//! Each commit is one batch appended to partition 0 of that topic, one record per partition
//! committed:
//!
//! | part  | encoding                                   |
//! |-------|--------------------------------------------|
//! | key   | postcard of `(group, topic, partition)`    |
//! | value | postcard of `(offset, metadata)`           |
//!
//! The newest record for a key is the committed offset. At start-up the whole partition is read
//! once to rebuild the in-memory table; afterwards reads come from the table. The commit is
//! answered after the append, and under `--flush always` after the fsync that covers it.
//!
//! The topic is compacted, as Kafka's is: only the newest commit per key survives the
//! cleaner, so its size and the start-up read grow with the number of (group, partition)
//! pairs, not with the number of commits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::protocol::{CommitOffset, CommittedOffset, ErrorCode, TopicPartition};
use crate::record_batch::{self, BatchBuilder, ProducerStamp, Record};
use crate::server::config::FlushPolicy;
use crate::server::partition::{AppendOutcome, Partition};

/// Name of the internal topic.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

type Key = (String, String, u32);

/// The committed offsets of every group.
pub struct OffsetStore {
    partition: Arc<Partition>,
    flush: FlushPolicy,
    committed: Mutex<HashMap<Key, (u64, String)>>,
}

impl OffsetStore {
    /// Rebuilds the table from the topic's partition 0.
    pub fn load(partition: Arc<Partition>, flush: FlushPolicy) -> Result<OffsetStore, String> {
        let mut committed = HashMap::new();
        let (mut next, end) = partition.offsets();
        while next < end {
            let Some(range) = partition
                .read(next, 1 << 20)
                .map_err(|code| format!("reading {OFFSETS_TOPIC}: {code}"))?
            else {
                break;
            };
            let bytes = range.read().map_err(|err| err.to_string())?;
            let mut rest = &bytes[..];
            while let Ok(header) = record_batch::check_stored(rest, bytes.len()) {
                for record in record_batch::records(rest, header) {
                    let record = record.map_err(|defect| defect.to_string())?;
                    let (Some(key), Some(value)) = (record.key, record.value) else {
                        continue;
                    };
                    let key: Key = postcard::from_bytes(key).map_err(|err| err.to_string())?;
                    let value: (u64, String) =
                        postcard::from_bytes(value).map_err(|err| err.to_string())?;
                    committed.insert(key, value);
                }
                next = header.next_offset();
                rest = &rest[header.size..];
            }
        }
        Ok(OffsetStore {
            partition,
            flush,
            committed: Mutex::new(committed),
        })
    }

    /// Appends a commit and applies it to the table; returns once it is durable (per the
    /// flush policy).
    pub async fn commit(&self, group: &str, offsets: &[CommitOffset]) -> Result<(), ErrorCode> {
        if let Some(next_offset) = self.append(group, offsets)?
            && self.flush == FlushPolicy::Always
        {
            self.partition.wait_durable(next_offset).await?;
        }
        Ok(())
    }

    /// Appends a commit and applies it to the table without waiting for an fsync; returns
    /// the offset an fsync must cover for it to be durable (`None` if nothing was written).
    pub fn append(&self, group: &str, offsets: &[CommitOffset]) -> Result<Option<u64>, ErrorCode> {
        let mut builder = BatchBuilder::new();
        let now = super::super::now_ms();
        let encoded: Vec<(Vec<u8>, Vec<u8>)> = offsets
            .iter()
            .map(|o| {
                let key = (group, &o.topic, o.partition);
                let value = (o.offset, &o.metadata);
                (
                    postcard::to_stdvec(&key).expect("serializes"),
                    postcard::to_stdvec(&value).expect("serializes"),
                )
            })
            .collect();
        for (key, value) in &encoded {
            builder.push(&Record {
                key: Some(key),
                value: Some(value),
                headers: &[],
                timestamp: now,
            });
        }
        if builder.is_empty() {
            return Ok(None);
        }
        let mut batch = builder.finish(ProducerStamp::NONE).to_vec();
        // The table is updated under its lock together with the append, so that the table's
        // order of commits is the log's (the one a restart replays).
        let mut committed = self.lock();
        let outcome = self.partition.append(&mut batch, now)?;
        for o in offsets {
            committed.insert(
                (group.to_owned(), o.topic.clone(), o.partition),
                (o.offset, o.metadata.clone()),
            );
        }
        Ok(match outcome {
            AppendOutcome::Appended { next_offset, .. } => Some(next_offset),
            AppendOutcome::Duplicate { .. } => None,
        })
    }

    /// The committed offset of one partition for `group`.
    pub fn committed(&self, group: &str, topic: &str, partition: u32) -> Option<u64> {
        self.lock()
            .get(&(group.to_owned(), topic.to_owned(), partition))
            .map(|(offset, _)| *offset)
    }

    /// Committed offsets of `group`: for the given partitions, or every one it has.
    pub fn fetch(
        &self,
        group: &str,
        partitions: Option<&[TopicPartition]>,
    ) -> Vec<CommittedOffset> {
        let committed = self.lock();
        let entry = |topic: &str, partition: u32| {
            let found = committed.get(&(group.to_owned(), topic.to_owned(), partition));
            CommittedOffset {
                topic: topic.to_owned(),
                partition,
                offset: found.map(|(offset, _)| *offset),
                metadata: found.map(|(_, m)| m.clone()).unwrap_or_default(),
            }
        };
        match partitions {
            Some(partitions) => partitions
                .iter()
                .map(|tp| entry(&tp.topic, tp.partition))
                .collect(),
            None => {
                let mut all: Vec<CommittedOffset> = committed
                    .iter()
                    .filter(|((g, _, _), _)| g == group)
                    .map(|((_, topic, partition), _)| entry(topic, *partition))
                    .collect();
                all.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
                all
            }
        }
    }

    /// Groups that have committed offsets.
    pub fn groups(&self) -> Vec<String> {
        let mut groups: Vec<String> = self.lock().keys().map(|(g, _, _)| g.clone()).collect();
        groups.sort();
        groups.dedup();
        groups
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, (u64, String)>> {
        self.committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
