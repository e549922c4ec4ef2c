//! Redrive: dead-lettered records back to a topic, at a bounded rate (as SQS's redrive does).
//!
//! The dead-letter topic is read from the redrive position, which is committed for the group
//! `<group>.redrive` on the dead-letter topic after each record: a redrive that is interrupted
//! and run again continues where it stopped, and a record is redriven once (at most one
//! record twice, if the process dies between the append and the commit). Each record goes to
//! `to`, or back to the topic named in its `dlq.original.topic` header, with its key, value and
//! original headers (the `dlq.*` ones are dropped).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Client, ClientError};
use crate::protocol::{
    Acks, CommitOffset, ErrorCode, FetchPartition, FetchRequest, OffsetCommitRequest,
    OffsetFetchRequest, ProducePartition, RequestBody, ResponseBody, TopicPartition,
};
use crate::record_batch::{self, BatchBuilder, ProducerStamp, Record};

/// Headers the broker adds to dead-lettered records start with this.
pub const DLQ_HEADER_PREFIX: &str = "dlq.";

/// Moves the records of `dead_letter_topic` (partition 0) to `to` or their original topic, at
/// most `rate_per_second` a second. Returns how many were moved.
pub async fn redrive(
    client: &Arc<Client>,
    dead_letter_topic: &str,
    group: &str,
    to: Option<&str>,
    rate_per_second: u32,
) -> Result<u64, ClientError> {
    let position_group = format!("{group}.redrive");
    let mut position = redrive_position(client, &position_group, dead_letter_topic).await?;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate_per_second.max(1)));
    let mut next_send = Instant::now();
    let mut moved = 0;
    loop {
        let request = FetchRequest {
            max_wait_ms: 0,
            min_bytes: 0,
            max_bytes: 1 << 20,
            partitions: vec![FetchPartition {
                topic: dead_letter_topic.to_owned(),
                partition: 0,
                offset: position,
                max_bytes: 1 << 20,
            }],
        };
        let answer = client.fetch(request).await?.partitions.remove(0);
        if !answer.error.is_ok() {
            return Err(ClientError::Broker {
                code: answer.error,
                message: format!("fetch {dead_letter_topic}"),
            });
        }
        if answer.records.is_empty() {
            return Ok(moved);
        }
        let mut rest = &answer.records[..];
        while let Ok(header) = record_batch::check_stored(rest, rest.len()) {
            for record in record_batch::records(rest, header) {
                let record = record.map_err(|defect| ClientError::CorruptData {
                    topic: dead_letter_topic.to_owned(),
                    partition: 0,
                    offset: position,
                    defect,
                })?;
                if record.offset < position {
                    continue;
                }
                tokio::time::sleep_until(next_send.into()).await;
                next_send = Instant::now() + interval;
                send_back(client, &record, to).await?;
                position = record.offset + 1;
                commit_position(client, &position_group, dead_letter_topic, position).await?;
                moved += 1;
            }
            rest = &rest[header.size..];
        }
    }
}

async fn send_back(
    client: &Client,
    record: &record_batch::RecordView<'_>,
    to: Option<&str>,
) -> Result<(), ClientError> {
    let header = |name: &str| {
        record
            .headers()
            .find(|(k, _)| *k == name.as_bytes())
            .and_then(|(_, v)| v)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    let topic = match to {
        Some(to) => to.to_owned(),
        None => header("dlq.original.topic").ok_or(ClientError::Broker {
            code: ErrorCode::InvalidRequest,
            message: "a dead-letter record without dlq.original.topic; pass --to".into(),
        })?,
    };
    let partition = match to {
        Some(_) => 0,
        None => header("dlq.original.partition")
            .and_then(|p| p.parse().ok())
            .unwrap_or(0),
    };
    let kept: Vec<(String, Vec<u8>)> = record
        .headers()
        .filter(|(k, _)| !k.starts_with(DLQ_HEADER_PREFIX.as_bytes()))
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                v.unwrap_or_default().to_vec(),
            )
        })
        .collect();
    let headers: Vec<(&str, &[u8])> = kept
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    let mut builder = BatchBuilder::new();
    builder.push(&Record {
        key: record.key,
        value: record.value,
        headers: &headers,
        timestamp: crate::server::now_ms(),
    });
    let batch = builder.finish(ProducerStamp::NONE).to_vec();
    let request = vec![ProducePartition {
        topic: topic.clone(),
        partition,
        records: batch,
    }];
    let answer = client
        .produce(Acks::All, request)
        .await?
        .expect("acks all is answered");
    let code = answer.partitions[0].error;
    if !code.is_ok() {
        return Err(ClientError::Broker {
            code,
            message: format!("redrive to {topic}/{partition}"),
        });
    }
    Ok(())
}

async fn redrive_position(client: &Client, group: &str, topic: &str) -> Result<u64, ClientError> {
    let request = OffsetFetchRequest {
        group_id: group.to_owned(),
        partitions: Some(vec![TopicPartition {
            topic: topic.to_owned(),
            partition: 0,
        }]),
    };
    let body = client
        .connection()
        .call(RequestBody::OffsetFetch(request))
        .await?;
    let ResponseBody::OffsetFetch(answer) = body else {
        return Err(ClientError::UnexpectedResponse { api: "OffsetFetch" });
    };
    Ok(answer.offsets.first().and_then(|o| o.offset).unwrap_or(0))
}

async fn commit_position(
    client: &Client,
    group: &str,
    topic: &str,
    offset: u64,
) -> Result<(), ClientError> {
    let request = OffsetCommitRequest {
        group_id: group.to_owned(),
        generation_id: -1,
        member_id: String::new(),
        offsets: vec![CommitOffset {
            topic: topic.to_owned(),
            partition: 0,
            offset,
            metadata: "redrive".into(),
        }],
    };
    let body = client
        .connection()
        .call(RequestBody::OffsetCommit(request))
        .await?;
    match body {
        ResponseBody::OffsetCommit(answer) if answer.error.is_ok() => Ok(()),
        ResponseBody::OffsetCommit(answer) => Err(ClientError::Broker {
            code: answer.error,
            message: "commit the redrive position".into(),
        }),
        _ => Err(ClientError::UnexpectedResponse {
            api: "OffsetCommit",
        }),
    }
}
