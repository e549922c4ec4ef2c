//! Idempotent producers: a retried batch is not written twice.
//!
//! A producer asks for an id once (`InitProducerId`) and numbers its records per partition
//! 0, 1, 2, … (`base_sequence` in the batch header). For each producer and partition the broker
//! remembers the last [`REMEMBERED_BATCHES`] batches it appended (sequence range and offset):
//!
//! | incoming batch                                  | answer                                     |
//! |-------------------------------------------------|--------------------------------------------|
//! | no producer id (-1)                             | append                                     |
//! | same sequences as a remembered batch            | success with that batch's offset, no write |
//! | first sequence = last remembered + 1            | append                                     |
//! | unknown producer, first sequence 0              | append                                     |
//! | older than what is remembered                   | `DuplicateSequence`                        |
//! | anything else (a gap)                           | `OutOfOrderSequence`                       |
//! | epoch below the remembered one                  | `InvalidProducerEpoch`                     |
//!
//! Five batches, as in Kafka, because a producer keeps at most five requests in flight per
//! partition: any retry it can send is one of them. The state is rebuilt at start-up from the
//! batch headers of the last two segments of each partition (it is not snapshotted), so a
//! producer whose last batch lies further back than that is treated as unknown.

use std::collections::{HashMap, VecDeque};

use crate::protocol::ErrorCode;
use crate::record_batch::{BatchHeader, NO_PRODUCER_ID};

/// Batches remembered per producer and partition.
pub const REMEMBERED_BATCHES: usize = 5;

/// What to do with an incoming batch.
#[derive(Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Write it.
    Append,
    /// Already written at this offset: answer success without writing.
    Duplicate {
        /// Where the first copy was written.
        base_offset: u64,
    },
    /// Refuse it.
    Reject(ErrorCode),
}

#[derive(Clone, Copy, Debug)]
struct Appended {
    first_sequence: i32,
    last_sequence: i32,
    base_offset: u64,
}

#[derive(Debug)]
struct Producer {
    epoch: i16,
    recent: VecDeque<Appended>,
    /// A logical clock of the partition's appends, for forgetting the least recent producer.
    last_seen: u64,
}

/// The producers of one partition.
#[derive(Debug)]
pub struct ProducerState {
    producers: HashMap<i64, Producer>,
    max_producers: usize,
    clock: u64,
}

impl ProducerState {
    /// Remembers at most `max_producers` producers.
    pub fn new(max_producers: usize) -> Self {
        ProducerState {
            producers: HashMap::new(),
            max_producers,
            clock: 0,
        }
    }

    /// Decides what to do with `header` (see the table in the module doc).
    pub fn check(&self, header: &BatchHeader) -> SequenceCheck {
        if header.producer_id == NO_PRODUCER_ID {
            return SequenceCheck::Append;
        }
        let Some(producer) = self.producers.get(&header.producer_id) else {
            return if header.base_sequence == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::Reject(ErrorCode::OutOfOrderSequence)
            };
        };
        if header.producer_epoch < producer.epoch {
            return SequenceCheck::Reject(ErrorCode::InvalidProducerEpoch);
        }
        if header.producer_epoch > producer.epoch {
            return if header.base_sequence == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::Reject(ErrorCode::OutOfOrderSequence)
            };
        }
        let (first, last) = (header.base_sequence, header.last_sequence());
        if let Some(done) = producer
            .recent
            .iter()
            .find(|b| b.first_sequence == first && b.last_sequence == last)
        {
            return SequenceCheck::Duplicate {
                base_offset: done.base_offset,
            };
        }
        let newest = producer.recent.back().map_or(-1, |b| b.last_sequence);
        if first == next_sequence(newest) {
            SequenceCheck::Append
        } else if first <= newest {
            SequenceCheck::Reject(ErrorCode::DuplicateSequence)
        } else {
            SequenceCheck::Reject(ErrorCode::OutOfOrderSequence)
        }
    }

    /// Records a batch that was appended (its header carries the assigned base offset).
    pub fn record(&mut self, header: &BatchHeader) {
        if header.producer_id == NO_PRODUCER_ID {
            return;
        }
        self.clock += 1;
        if !self.producers.contains_key(&header.producer_id)
            && self.producers.len() >= self.max_producers
        {
            self.forget_least_recent();
        }
        let producer = self
            .producers
            .entry(header.producer_id)
            .or_insert_with(|| Producer {
                epoch: header.producer_epoch,
                recent: VecDeque::with_capacity(REMEMBERED_BATCHES),
                last_seen: 0,
            });
        if header.producer_epoch != producer.epoch {
            producer.epoch = header.producer_epoch;
            producer.recent.clear();
        }
        if producer.recent.len() == REMEMBERED_BATCHES {
            producer.recent.pop_front();
        }
        producer.recent.push_back(Appended {
            first_sequence: header.base_sequence,
            last_sequence: header.last_sequence(),
            base_offset: header.base_offset,
        });
        producer.last_seen = self.clock;
    }

    fn forget_least_recent(&mut self) {
        let oldest = self
            .producers
            .iter()
            .min_by_key(|(_, p)| p.last_seen)
            .map(|(&id, _)| id);
        if let Some(id) = oldest {
            self.producers.remove(&id);
        }
    }

    /// Producers remembered.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// Whether no producer is remembered.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
}

/// The sequence after `sequence` (sequences wrap to 0 after `i32::MAX`).
fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(producer_id: i64, epoch: i16, first: i32, count: u32, offset: u64) -> BatchHeader {
        BatchHeader {
            base_offset: offset,
            size: 100,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id,
            producer_epoch: epoch,
            base_sequence: first,
            record_count: count,
            attributes: 0,
        }
    }

    #[test]
    fn sequences_must_follow_on_and_retries_are_recognised() {
        let mut state = ProducerState::new(10);
        assert_eq!(state.check(&header(1, 0, 0, 3, 0)), SequenceCheck::Append);
        state.record(&header(1, 0, 0, 3, 100));
        assert_eq!(state.check(&header(1, 0, 3, 2, 0)), SequenceCheck::Append);
        state.record(&header(1, 0, 3, 2, 103));
        // A retry of either batch answers with its first offset.
        assert_eq!(
            state.check(&header(1, 0, 0, 3, 0)),
            SequenceCheck::Duplicate { base_offset: 100 }
        );
        assert_eq!(
            state.check(&header(1, 0, 3, 2, 0)),
            SequenceCheck::Duplicate { base_offset: 103 }
        );
        assert_eq!(
            state.check(&header(1, 0, 6, 1, 0)),
            SequenceCheck::Reject(ErrorCode::OutOfOrderSequence)
        );
        assert_eq!(
            state.check(&header(1, 0, 1, 1, 0)),
            SequenceCheck::Reject(ErrorCode::DuplicateSequence)
        );
        assert_eq!(
            state.check(&header(2, 0, 4, 1, 0)),
            SequenceCheck::Reject(ErrorCode::OutOfOrderSequence)
        );
        assert_eq!(
            state.check(&header(NO_PRODUCER_ID, -1, -1, 1, 0)),
            SequenceCheck::Append
        );
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut state = ProducerState::new(10);
        for n in 0..6 {
            state.record(&header(1, 0, n, 1, n as u64));
        }
        assert_eq!(
            state.check(&header(1, 0, 0, 1, 0)),
            SequenceCheck::Reject(ErrorCode::DuplicateSequence)
        );
        assert_eq!(
            state.check(&header(1, 0, 1, 1, 0)),
            SequenceCheck::Duplicate { base_offset: 1 }
        );
    }

    #[test]
    fn epochs_fence_old_producers_and_restart_sequences() {
        let mut state = ProducerState::new(10);
        state.record(&header(1, 1, 0, 5, 0));
        assert_eq!(
            state.check(&header(1, 0, 5, 1, 0)),
            SequenceCheck::Reject(ErrorCode::InvalidProducerEpoch)
        );
        assert_eq!(state.check(&header(1, 2, 0, 1, 0)), SequenceCheck::Append);
    }

    #[test]
    fn the_least_recent_producer_is_forgotten_at_the_limit() {
        let mut state = ProducerState::new(2);
        state.record(&header(1, 0, 0, 1, 0));
        state.record(&header(2, 0, 0, 1, 1));
        state.record(&header(1, 0, 1, 1, 2));
        state.record(&header(3, 0, 0, 1, 3));
        assert_eq!(state.len(), 2);
        // Producer 2 was forgotten: its next batch now looks like a gap.
        assert_eq!(
            state.check(&header(2, 0, 1, 1, 0)),
            SequenceCheck::Reject(ErrorCode::OutOfOrderSequence)
        );
        assert_eq!(state.check(&header(1, 0, 2, 1, 0)), SequenceCheck::Append);
    }
}
