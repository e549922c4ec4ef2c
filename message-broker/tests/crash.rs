//! The durability guarantee, checked on the real binary: with `--flush always` and
//! `acks = all`, a broker SIGKILLed under load keeps every acknowledged record, exactly once,
//! and its offsets continue without gaps after the restart.
//!
//! Idempotent producers retry each batch until it is acknowledged, across the kills, with the
//! same producer id and sequence numbers; so a batch written before a kill but never answered
//! must be recognised after the restart, not written twice. The kill moments come from the
//! test's seed (`TEST_SEED` replays the choices; the scheduling is not under its control).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use harness::{DataDir, Process, ProcessSpec, cargo_bin, free_addr, seeded_rng};
use message_broker::client::{Client, ClientError};
use message_broker::protocol::{
    Acks, CreateTopicRequest, ErrorCode, FetchPartition, FetchRequest, ProducePartition,
};
use message_broker::record_batch::{self, BatchBuilder, ProducerStamp, Record};
use rand::RngExt;

const TOPIC: &str = "crash";
const PARTITIONS: u32 = 3;
const PRODUCERS: usize = 3;
const RECORDS_PER_BATCH: usize = 20;
const KILLS: usize = 3;
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a producer keeps retrying one batch (the broker restarts within this).
const RETRY_DEADLINE: Duration = Duration::from_secs(30);

async fn connect_until(addr: SocketAddr, deadline: Instant) -> Client {
    loop {
        match Client::connect(addr).await {
            Ok(client) => return client,
            Err(err) if Instant::now() < deadline => {
                let _ = err;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(err) => panic!("broker unreachable: {err}"),
        }
    }
}

/// Produces batches until `stop`, retrying each one until acknowledged; returns the values it
/// had acknowledged.
async fn produce_until_stopped(
    id: usize,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    acked_batches: Arc<AtomicUsize>,
    retries: Arc<AtomicUsize>,
) -> Vec<String> {
    let mut client = connect_until(addr, Instant::now() + READY_TIMEOUT).await;
    let producer = client.init_producer_id().await.unwrap();
    assert_eq!(producer.error, ErrorCode::None);
    let mut sequences = [0i32; PARTITIONS as usize];
    let mut acked = Vec::new();
    let mut builder = BatchBuilder::new();
    let mut batch_number = 0usize;
    while !stop.load(Ordering::Acquire) {
        let partition = (batch_number + id) % PARTITIONS as usize;
        let values: Vec<String> = (0..RECORDS_PER_BATCH)
            .map(|r| format!("p{id}-b{batch_number}-r{r}"))
            .collect();
        builder.clear();
        let now = message_broker::server::now_ms();
        for value in &values {
            builder.push(&Record {
                value: Some(value.as_bytes()),
                timestamp: now,
                ..Record::default()
            });
        }
        let stamp = ProducerStamp {
            producer_id: producer.producer_id,
            producer_epoch: producer.producer_epoch,
            base_sequence: sequences[partition],
        };
        let batch = builder.finish(stamp).to_vec();
        let deadline = Instant::now() + RETRY_DEADLINE;
        loop {
            let request = vec![ProducePartition {
                topic: TOPIC.into(),
                partition: partition as u32,
                records: batch.clone(),
            }];
            match client.produce(Acks::All, request).await {
                Ok(Some(response)) => {
                    let error = response.partitions[0].error;
                    assert_eq!(error, ErrorCode::None, "producer {id} batch {batch_number}");
                    break;
                }
                Ok(None) => unreachable!("acks = all is always answered"),
                Err(ClientError::Disconnected | ClientError::Connect { .. }) => {
                    assert!(
                        Instant::now() < deadline,
                        "producer {id}: no answer for 30 s"
                    );
                    retries.fetch_add(1, Ordering::AcqRel);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    client = connect_until(addr, deadline).await;
                }
                Err(err) => panic!("producer {id}: {err}"),
            }
        }
        sequences[partition] += RECORDS_PER_BATCH as i32;
        acked.extend(values);
        acked_batches.fetch_add(1, Ordering::AcqRel);
        batch_number += 1;
    }
    acked
}

/// Every record of a partition, in offset order: (offset, value).
async fn read_partition(client: &Client, partition: u32) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut next = 0;
    loop {
        let request = FetchRequest {
            max_wait_ms: 0,
            min_bytes: 0,
            max_bytes: 1 << 20,
            partitions: vec![FetchPartition {
                topic: TOPIC.into(),
                partition,
                offset: next,
                max_bytes: 1 << 20,
            }],
        };
        let response = client.fetch(request).await.unwrap();
        let answer = &response.partitions[0];
        assert_eq!(answer.error, ErrorCode::None);
        let mut rest = &answer.records[..];
        if rest.is_empty() {
            assert_eq!(next, answer.high_watermark);
            return out;
        }
        while let Ok(header) = record_batch::check(rest, 1 << 20) {
            for record in record_batch::records(rest, header) {
                let record = record.unwrap();
                if record.offset >= next {
                    let value = String::from_utf8(record.value.unwrap().to_vec()).unwrap();
                    out.push((record.offset, value));
                }
            }
            next = header.next_offset();
            rest = &rest[header.size..];
        }
    }
}

async fn wait_for_batches(acked: &AtomicUsize, at_least: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.load(Ordering::Acquire) < at_least {
        assert!(
            Instant::now() < deadline,
            "producers stalled at {acked:?} batches"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_sigkill_exactly_once_with_gapless_offsets() {
    let mut rng = seeded_rng();
    let (listen, admin) = (free_addr(), free_addr());
    let data = DataDir::new("broker-crash");
    let spec = ProcessSpec::new("message-broker", cargo_bin("message-broker"))
        .args(["--listen", &listen.to_string()])
        .args(["--admin-listen", &admin.to_string()])
        .args(["--data-dir", data.path().to_str().unwrap()])
        .args(["--flush", "always"]);
    let mut broker = Process::spawn(spec).unwrap();
    broker.wait_ready(admin, READY_TIMEOUT).unwrap();

    let client = Client::connect(listen).await.unwrap();
    let create = CreateTopicRequest {
        name: TOPIC.into(),
        partitions: PARTITIONS,
        // Small segments, so that the kills also land around rolls.
        segment_bytes: Some(64 * 1024),
        max_batch_bytes: Some(16 * 1024),
        ..CreateTopicRequest::default()
    };
    assert_eq!(client.create_topic(create).await.unwrap(), ErrorCode::None);
    drop(client);

    let stop = Arc::new(AtomicBool::new(false));
    let acked_batches = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicUsize::new(0));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|id| {
            tokio::spawn(produce_until_stopped(
                id,
                listen,
                Arc::clone(&stop),
                Arc::clone(&acked_batches),
                Arc::clone(&retries),
            ))
        })
        .collect();

    for kill in 0..KILLS {
        let more = rng.random_range(50..300);
        let target = acked_batches.load(Ordering::Acquire) + more;
        wait_for_batches(&acked_batches, target).await;
        broker.kill().unwrap();
        let restarted = Instant::now();
        broker.restart().unwrap();
        broker.wait_ready(admin, READY_TIMEOUT).unwrap();
        eprintln!(
            "kill {kill} after {target} batches; ready again in {:?}",
            restarted.elapsed()
        );
    }
    let target = acked_batches.load(Ordering::Acquire) + 100;
    wait_for_batches(&acked_batches, target).await;
    stop.store(true, Ordering::Release);
    let mut acked: Vec<String> = Vec::new();
    for producer in producers {
        acked.extend(producer.await.unwrap());
    }

    let client = Client::connect(listen).await.unwrap();
    let mut stored: HashMap<String, usize> = HashMap::new();
    let mut ends = BTreeMap::new();
    for partition in 0..PARTITIONS {
        let records = read_partition(&client, partition).await;
        for (i, (offset, value)) in records.iter().enumerate() {
            assert_eq!(*offset, i as u64, "a gap in partition {partition}");
            *stored.entry(value.clone()).or_default() += 1;
        }
        ends.insert(partition, records.len());
    }
    let duplicates: Vec<_> = stored.iter().filter(|&(_, &n)| n > 1).collect();
    assert!(duplicates.is_empty(), "written twice: {duplicates:?}");
    let acked_set: HashSet<&String> = acked.iter().collect();
    let missing: Vec<_> = acked_set
        .iter()
        .filter(|v| !stored.contains_key(**v))
        .collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    // Producers stop only after an acknowledgment, so nothing unacknowledged is left over.
    assert_eq!(stored.len(), acked_set.len());
    // Every kill cuts every producer's connection, so each one resent a batch at least once.
    let retries = retries.load(Ordering::Acquire);
    assert!(retries >= KILLS * PRODUCERS, "only {retries} retries");
    eprintln!(
        "{} records acknowledged, {retries} batch retries, partition ends {ends:?}",
        acked.len()
    );
}
