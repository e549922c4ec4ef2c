//! `Produce`: append each batch to its partition, then answer when the acks level is met.
//!
//! ```text
//!  acks = none    append, no answer at all
//!  acks = leader  append, answer
//!  acks = all     append; with --flush always, wait for an fsync covering every batch of the
//!                 request (shared with concurrent producers), then answer
//! ```
//!
//! The appends happen in the connection's read loop, in request order, so two pipelined
//! batches from one producer reach a partition in the order they were sent (their sequence
//! numbers depend on it). Only the wait for durability runs apart.

use std::sync::Arc;

use super::config::FlushPolicy;
use super::connection::{Reply, State};
use super::partition::{AppendOutcome, Partition};
use crate::protocol::{
    Acks, ErrorCode, ProducePartitionResponse, ProduceRequest, ProduceResponse, ResponseBody,
};

/// Handles one produce request.
pub fn produce(state: &Arc<State>, request: ProduceRequest) -> Reply {
    let now = super::now_ms();
    let mut answers = Vec::with_capacity(request.partitions.len());
    // (index into answers, partition, offset that must be durable)
    let mut durable: Vec<(usize, Arc<Partition>, u64)> = Vec::new();
    for mut batch in request.partitions {
        let mut answer = ProducePartitionResponse {
            topic: std::mem::take(&mut batch.topic),
            partition: batch.partition,
            error: ErrorCode::None,
            base_offset: 0,
            log_start_offset: 0,
        };
        match state.broker.partition(&answer.topic, batch.partition) {
            None => answer.error = ErrorCode::UnknownTopicOrPartition,
            Some(partition) => {
                let bytes = batch.records.len() as u64;
                match partition.append(&mut batch.records, now) {
                    Ok(AppendOutcome::Appended {
                        base_offset,
                        next_offset,
                    }) => {
                        state.metrics.produced_bytes.inc_by(bytes);
                        state
                            .metrics
                            .produced_records
                            .inc_by(next_offset - base_offset);
                        answer.base_offset = base_offset;
                        durable.push((answers.len(), Arc::clone(&partition), next_offset));
                    }
                    Ok(AppendOutcome::Duplicate { base_offset }) => {
                        state.metrics.duplicate_batches.inc();
                        answer.base_offset = base_offset;
                        durable.push((answers.len(), Arc::clone(&partition), base_offset + 1));
                    }
                    Err(code) => answer.error = code,
                }
                answer.log_start_offset = partition.offsets().0;
            }
        }
        if !answer.error.is_ok() {
            state.metrics.errors(answer.error);
        }
        answers.push(answer);
    }
    match (request.acks, state.flush) {
        (Acks::None, _) => Reply::Silent,
        (Acks::All, FlushPolicy::Always) if !durable.is_empty() => {
            Reply::Later(Box::pin(wait_durable(answers, durable)))
        }
        _ => Reply::Now(ResponseBody::Produce(ProduceResponse {
            partitions: answers,
        })),
    }
}

async fn wait_durable(
    mut answers: Vec<ProducePartitionResponse>,
    durable: Vec<(usize, Arc<Partition>, u64)>,
) -> ResponseBody {
    for (index, partition, offset) in durable {
        if let Err(code) = partition.wait_durable(offset).await {
            answers[index].error = code;
        }
    }
    ResponseBody::Produce(ProduceResponse {
        partitions: answers,
    })
}
