//! The broker protocol over a real loopback socket, with the server running in this process:
//! produce and fetch, long polling, list offsets, idempotent retries, pipelining, and bad
//! input that gets an error (or a closed connection) while the server and its logs stay whole.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use message_broker::client::{Client, ClientError};
use message_broker::protocol::{
    Acks, CreateTopicRequest, ErrorCode, FetchPartition, FetchRequest, OffsetSpec,
    ProducePartition, Request, RequestBody,
};
use message_broker::record_batch::{self, BatchBuilder, ProducerStamp, Record};
use message_broker::server::coordinator::Coordinator;
use message_broker::server::{self, Broker, Config, FlushPolicy, Limits, Metrics, State};
use service_kit::metrics::Registry;
use service_kit::shutdown::Shutdown;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct TestBroker {
    addr: SocketAddr,
    state: Arc<State>,
    _dir: tempfile::TempDir,
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.state.shutdown.trigger();
    }
}

async fn start(flush: FlushPolicy) -> TestBroker {
    start_with(flush, Limits::default()).await
}

async fn start_with(flush: FlushPolicy, limits: Limits) -> TestBroker {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        flush,
        limits,
        ..Config::default()
    };
    let broker = Arc::new(Broker::open(&config).unwrap());
    let coordinator = Arc::new(Coordinator::open(&broker, flush, config.limits.clone()).unwrap());
    let metrics = Metrics::register(&Registry::new()).unwrap();
    let state = State::start(broker, coordinator, &config, metrics, Shutdown::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server::run(listener, Arc::clone(&state)));
    let client = Client::connect(addr).await.unwrap();
    let create = CreateTopicRequest {
        name: "t".into(),
        partitions: 2,
        ..CreateTopicRequest::default()
    };
    assert_eq!(client.create_topic(create).await.unwrap(), ErrorCode::None);
    TestBroker {
        addr,
        state,
        _dir: dir,
    }
}

fn batch(values: &[&str], timestamp: i64, stamp: ProducerStamp) -> Vec<u8> {
    let mut builder = BatchBuilder::new();
    for value in values {
        builder.push(&Record {
            key: Some(b"k"),
            value: Some(value.as_bytes()),
            headers: &[("trace", b"abc")],
            timestamp,
        });
    }
    builder.finish(stamp).to_vec()
}

fn to(partition: u32, records: Vec<u8>) -> Vec<ProducePartition> {
    vec![ProducePartition {
        topic: "t".into(),
        partition,
        records,
    }]
}

fn fetch_request(partition: u32, offset: u64, max_wait_ms: u32) -> FetchRequest {
    FetchRequest {
        max_wait_ms,
        min_bytes: 1,
        max_bytes: 1 << 20,
        partitions: vec![FetchPartition {
            topic: "t".into(),
            partition,
            offset,
            max_bytes: 1 << 20,
        }],
    }
}

fn values(records: &[u8]) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut rest = records;
    while let Ok(header) = record_batch::check(rest, 1 << 20) {
        for record in record_batch::records(rest, header) {
            let record = record.unwrap();
            let value = String::from_utf8(record.value.unwrap().to_vec()).unwrap();
            out.push((record.offset, value));
        }
        rest = &rest[header.size..];
    }
    out
}

#[tokio::test]
async fn produced_batches_are_fetched_back_with_their_offsets() {
    let broker = start(FlushPolicy::Always).await;
    let client = Client::connect(broker.addr).await.unwrap();
    for (n, acks) in [Acks::Leader, Acks::All].into_iter().enumerate() {
        let records = batch(
            &["a", "b", "c"],
            1_000 * (n as i64 + 1),
            ProducerStamp::NONE,
        );
        let answer = client.produce(acks, to(1, records)).await.unwrap().unwrap();
        assert_eq!(answer.partitions[0].error, ErrorCode::None);
        assert_eq!(answer.partitions[0].base_offset, 3 * n as u64);
    }
    let fetched = client.fetch(fetch_request(1, 4, 0)).await.unwrap();
    let answer = &fetched.partitions[0];
    assert_eq!((answer.error, answer.high_watermark), (ErrorCode::None, 6));
    // The range starts at the batch holding offset 4.
    let expected: Vec<(u64, String)> = vec![(3, "a".into()), (4, "b".into()), (5, "c".into())];
    assert_eq!(values(&answer.records), expected);

    assert_eq!(
        client
            .list_offset("t", 1, OffsetSpec::Earliest)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        client
            .list_offset("t", 1, OffsetSpec::Latest)
            .await
            .unwrap(),
        6
    );
    let by_time = client
        .list_offset("t", 1, OffsetSpec::Timestamp(1_500))
        .await;
    assert_eq!(by_time.unwrap(), 3);
    let metadata = client
        .metadata(Some(vec!["t".into(), "nope".into()]))
        .await
        .unwrap();
    assert_eq!(metadata.topics[0].partitions[1].end_offset, 6);
    assert_eq!(metadata.topics[1].error, ErrorCode::UnknownTopicOrPartition);
}

#[tokio::test]
async fn a_long_poll_is_answered_as_soon_as_data_arrives() {
    let broker = start(FlushPolicy::Interval).await;
    let consumer = Client::connect(broker.addr).await.unwrap();
    let producer = Client::connect(broker.addr).await.unwrap();
    let started = Instant::now();
    let poll = tokio::spawn(async move { consumer.fetch(fetch_request(0, 0, 10_000)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!poll.is_finished(), "the fetch must wait for data");
    let records = batch(&["late"], 1, ProducerStamp::NONE);
    producer
        .produce(Acks::Leader, to(0, records))
        .await
        .unwrap();
    let fetched = poll.await.unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        values(&fetched.partitions[0].records),
        vec![(0, "late".into())]
    );
}

#[tokio::test]
async fn a_long_poll_without_data_ends_empty_at_its_max_wait() {
    let broker = start(FlushPolicy::Interval).await;
    let client = Client::connect(broker.addr).await.unwrap();
    let started = Instant::now();
    let fetched = client.fetch(fetch_request(0, 0, 300)).await.unwrap();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(290), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert!(fetched.partitions[0].records.is_empty());
}

#[tokio::test]
async fn a_retried_idempotent_batch_is_written_once() {
    let broker = start(FlushPolicy::Always).await;
    let client = Client::connect(broker.addr).await.unwrap();
    let producer = client.init_producer_id().await.unwrap();
    let stamp = |base_sequence| ProducerStamp {
        producer_id: producer.producer_id,
        producer_epoch: 0,
        base_sequence,
    };
    let first = batch(&["x", "y"], 1, stamp(0));
    for _ in 0..3 {
        let answer = client
            .produce(Acks::All, to(0, first.clone()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (answer.partitions[0].error, answer.partitions[0].base_offset),
            (ErrorCode::None, 0)
        );
    }
    let gap = batch(&["z"], 1, stamp(5));
    let answer = client
        .produce(Acks::All, to(0, gap))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.partitions[0].error, ErrorCode::OutOfOrderSequence);
    let next = batch(&["z"], 1, stamp(2));
    let answer = client
        .produce(Acks::All, to(0, next))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.partitions[0].base_offset, 2);
    assert_eq!(
        client
            .list_offset("t", 0, OffsetSpec::Latest)
            .await
            .unwrap(),
        3
    );
}

#[tokio::test]
async fn pipelined_requests_on_one_connection_are_all_answered() {
    let broker = start(FlushPolicy::Always).await;
    let client = Arc::new(Client::connect(broker.addr).await.unwrap());
    let calls: Vec<_> = (0..200)
        .map(|n| {
            let client = Arc::clone(&client);
            tokio::spawn(async move {
                let value = format!("v{n}");
                let records = batch(&[&value], 1, ProducerStamp::NONE);
                let acks = if n % 2 == 0 { Acks::All } else { Acks::Leader };
                client
                    .produce(acks, to(n % 2, records))
                    .await
                    .unwrap()
                    .unwrap()
            })
        })
        .collect();
    let mut offsets = [Vec::new(), Vec::new()];
    for call in calls {
        let answer = call.await.unwrap();
        let partition = &answer.partitions[0];
        assert_eq!(partition.error, ErrorCode::None);
        offsets[partition.partition as usize].push(partition.base_offset);
    }
    for mut offsets in offsets {
        offsets.sort_unstable();
        assert_eq!(offsets, (0..100).collect::<Vec<u64>>());
    }
}

#[tokio::test]
async fn acks_none_gets_no_answer_but_is_appended() {
    let broker = start(FlushPolicy::Os).await;
    let client = Client::connect(broker.addr).await.unwrap();
    for _ in 0..10 {
        let records = batch(&["fire", "forget"], 1, ProducerStamp::NONE);
        assert!(
            client
                .produce(Acks::None, to(0, records))
                .await
                .unwrap()
                .is_none()
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while client
        .list_offset("t", 0, OffsetSpec::Latest)
        .await
        .unwrap()
        < 20
    {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn bad_batches_get_error_codes_and_nothing_is_written() {
    let broker = start(FlushPolicy::Always).await;
    let client = Client::connect(broker.addr).await.unwrap();
    let mut corrupt = batch(&["a"], 1, ProducerStamp::NONE);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    let huge_value = "x".repeat(2 << 20);
    let cases = [
        (to(0, corrupt), ErrorCode::CorruptMessage),
        (to(0, vec![1, 2, 3]), ErrorCode::CorruptMessage),
        (
            to(0, batch(&[&huge_value], 1, ProducerStamp::NONE)),
            ErrorCode::MessageTooLarge,
        ),
        (
            to(7, batch(&["a"], 1, ProducerStamp::NONE)),
            ErrorCode::UnknownTopicOrPartition,
        ),
    ];
    for (request, expected) in cases {
        let answer = client.produce(Acks::All, request).await.unwrap().unwrap();
        assert_eq!(answer.partitions[0].error, expected);
    }
    let fetched = client.fetch(fetch_request(0, 5, 0)).await.unwrap();
    assert_eq!(fetched.partitions[0].error, ErrorCode::OffsetOutOfRange);
    assert_eq!(
        client
            .list_offset("t", 0, OffsetSpec::Latest)
            .await
            .unwrap(),
        0
    );

    let request = RequestBody::ApiVersions;
    let raw = Request {
        correlation_id: 1,
        api_version: 9,
        body: request,
    };
    // An unsupported version is answered with an error, on a connection that stays usable.
    let mut socket = tokio::net::TcpStream::connect(broker.addr).await.unwrap();
    let payload = postcard::to_stdvec(&raw).unwrap();
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.push(service_kit::frame::FRAME_VERSION);
    frame.extend_from_slice(&payload);
    socket.write_all(&frame).await.unwrap();
    let mut head = [0; 5];
    socket.read_exact(&mut head).await.unwrap();
    let mut body = vec![0; u32::from_be_bytes(head[..4].try_into().unwrap()) as usize];
    socket.read_exact(&mut body).await.unwrap();
    let response: message_broker::protocol::Response = postcard::from_bytes(&body).unwrap();
    assert!(matches!(
        response.body,
        message_broker::protocol::ResponseBody::Error(ref e) if e.code == ErrorCode::UnsupportedVersion
    ));
}

#[tokio::test]
async fn a_malformed_frame_closes_only_its_own_connection() {
    let broker = start(FlushPolicy::Always).await;
    let client = Client::connect(broker.addr).await.unwrap();
    let records = batch(&["kept"], 1, ProducerStamp::NONE);
    client.produce(Acks::All, to(0, records)).await.unwrap();

    let garbage: [&[u8]; 3] = [
        // A valid header announcing 4 bytes that are not a request.
        &[
            0,
            0,
            0,
            4,
            service_kit::frame::FRAME_VERSION,
            0xff,
            0xff,
            0xff,
            0xff,
        ],
        // A frame far over the limit.
        &[0x7f, 0xff, 0xff, 0xff, service_kit::frame::FRAME_VERSION],
        // Another frame version.
        &[0, 0, 0, 1, 99, 0],
    ];
    for bytes in garbage {
        let mut socket = tokio::net::TcpStream::connect(broker.addr).await.unwrap();
        socket.write_all(bytes).await.unwrap();
        let mut buf = [0; 16];
        let read = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    }
    // The server and the log are untouched.
    let fetched = client.fetch(fetch_request(0, 0, 0)).await.unwrap();
    assert_eq!(
        values(&fetched.partitions[0].records),
        vec![(0, "kept".into())]
    );
    let dead = Client::connect(broker.addr).await.unwrap();
    assert!(dead.metadata(None).await.is_ok());
    drop(broker);
    // After shutdown the client sees a lost connection, not a hang.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match client.metadata(None).await {
            Err(ClientError::Disconnected) => break,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(10)).await,
            other => panic!("still answered after shutdown: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_poison_record_is_retried_with_growing_backoff_then_dead_lettered_and_redriven() {
    use message_broker::client::ShareConsumer;
    use message_broker::client::redrive::redrive;
    use message_broker::protocol::RetrySettings;

    let broker = start(FlushPolicy::Always).await;
    let client = Arc::new(Client::connect(broker.addr).await.unwrap());
    let inputs: Vec<String> = (0..10)
        .map(|n| {
            if n == 3 {
                "poison".into()
            } else {
                format!("v{n}")
            }
        })
        .collect();
    for value in &inputs {
        let records = batch(&[value], 1_000, ProducerStamp::NONE);
        client.produce(Acks::All, to(0, records)).await.unwrap();
    }

    let settings = RetrySettings {
        max_delivery_attempts: 4,
        ack_timeout_ms: 5_000,
        backoff_initial_ms: 100,
        backoff_max_ms: 2_000,
        dead_letter_topic: String::new(),
    };
    let mut consumer = ShareConsumer::new(Arc::clone(&client), "workers", "t", 0, settings);
    let started = Instant::now();
    let mut poison_deliveries: Vec<(u32, Instant)> = Vec::new();
    let mut acked = Vec::new();
    let mut acked_before_second_poison = 0;
    while consumer.committed() < 10 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "stuck at {}",
            consumer.committed()
        );
        for record in consumer.poll().await.unwrap() {
            let value = String::from_utf8(record.value.clone().unwrap()).unwrap();
            if value == "poison" {
                poison_deliveries.push((record.attempt, Instant::now()));
                consumer.nack(record.offset, "cannot parse");
            } else {
                assert_eq!(record.attempt, 1, "a good record is delivered once");
                consumer.ack(record.offset);
                acked.push(record.offset);
            }
        }
        if poison_deliveries.len() < 2 {
            acked_before_second_poison = acked.len();
        }
    }
    // The rest of the partition flowed past the poison record.
    assert_eq!(acked_before_second_poison, 9);
    let attempts: Vec<u32> = poison_deliveries.iter().map(|(a, _)| *a).collect();
    assert_eq!(attempts, vec![1, 2, 3, 4]);
    // Equal jitter: the waits are at least 50, 100, 200 ms, at most 100, 200, 400 ms (plus
    // scheduling), so each is at least as long as the bound of the one before.
    let gaps: Vec<Duration> = poison_deliveries
        .windows(2)
        .map(|w| w[1].1 - w[0].1)
        .collect();
    for (gap, floor_ms) in gaps.iter().zip([50, 100, 200]) {
        assert!(*gap >= Duration::from_millis(floor_ms), "{gaps:?}");
    }
    assert!(gaps[2] >= gaps[0], "{gaps:?}");

    // The dead-letter record, with its metadata.
    let fetched = client
        .fetch(FetchRequest {
            max_wait_ms: 0,
            min_bytes: 0,
            max_bytes: 1 << 20,
            partitions: vec![FetchPartition {
                topic: "t.workers.dlq".into(),
                partition: 0,
                offset: 0,
                max_bytes: 1 << 20,
            }],
        })
        .await
        .unwrap();
    let bytes = &fetched.partitions[0].records;
    let header = record_batch::check(bytes, 1 << 20).unwrap();
    let record = record_batch::records(bytes, header)
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(record.value, Some(&b"poison"[..]));
    let headers: std::collections::HashMap<String, String> = record
        .headers()
        .map(|(k, v)| {
            (
                String::from_utf8(k.to_vec()).unwrap(),
                String::from_utf8(v.unwrap().to_vec()).unwrap(),
            )
        })
        .collect();
    for (name, expected) in [
        ("dlq.original.topic", "t"),
        ("dlq.original.partition", "0"),
        ("dlq.original.offset", "3"),
        ("dlq.original.timestamp", "1000"),
        ("dlq.group", "workers"),
        ("dlq.attempts", "4"),
        ("dlq.last.error", "cannot parse"),
        ("trace", "abc"),
    ] {
        assert_eq!(
            headers.get(name).map(String::as_str),
            Some(expected),
            "{name}"
        );
    }
    let first: i64 = headers["dlq.first.failure.ms"].parse().unwrap();
    let last: i64 = headers["dlq.last.failure.ms"].parse().unwrap();
    assert!(last - first >= 350, "{first} .. {last}");
    // The group's committed offset passed the poison record only once it was dead-lettered.
    let committed = client.committed_offsets("workers").await.unwrap();
    assert_eq!(committed[0].offset, Some(10));

    // Redrive brings it back to the end of its topic, once.
    let moved = redrive(&client, "t.workers.dlq", "workers", None, 100)
        .await
        .unwrap();
    assert_eq!(moved, 1);
    assert_eq!(
        redrive(&client, "t.workers.dlq", "workers", None, 100)
            .await
            .unwrap(),
        0
    );
    let tail = client.fetch(fetch_request(0, 10, 0)).await.unwrap();
    assert_eq!(
        values(&tail.partitions[0].records),
        vec![(10, "poison".into())]
    );
}

#[tokio::test]
async fn an_unacknowledged_delivery_times_out_and_the_pending_window_is_bounded() {
    use message_broker::client::ShareConsumer;
    use message_broker::protocol::RetrySettings;

    let broker = start(FlushPolicy::Interval).await;
    let client = Arc::new(Client::connect(broker.addr).await.unwrap());
    let many: Vec<String> = (0..1_500).map(|n| format!("m{n}")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    for chunk in refs.chunks(500) {
        client
            .produce(Acks::Leader, to(1, batch(chunk, 1, ProducerStamp::NONE)))
            .await
            .unwrap();
    }
    let settings = RetrySettings {
        ack_timeout_ms: 1_000,
        backoff_initial_ms: 50,
        ..RetrySettings::default()
    };
    let mut consumer = ShareConsumer::new(Arc::clone(&client), "slow", "t", 1, settings);
    // Nothing is acknowledged: the window (1000 by default) fills and stops there.
    let mut first_deliveries = 0;
    for _ in 0..5 {
        let records = consumer.poll().await.unwrap();
        first_deliveries += records.iter().filter(|r| r.attempt == 1).count();
    }
    assert_eq!(first_deliveries, 1000);
    // After the ack timeout and the backoff the same records come again, as second attempts.
    let deadline = Instant::now() + Duration::from_secs(10);
    let again = loop {
        let records = consumer.poll().await.unwrap();
        if !records.is_empty() {
            break records;
        }
        assert!(
            Instant::now() < deadline,
            "no redelivery after the ack timeout"
        );
    };
    assert!(
        again.iter().all(|r| r.attempt == 2 && r.offset < 1000),
        "{:?}",
        again[0]
    );
}

#[tokio::test]
async fn a_compacted_topic_serves_the_newest_value_per_key_to_consumers() {
    use message_broker::client::{Consumer, ConsumerConfig, StartFrom};
    use message_broker::protocol::CleanupPolicy;

    let broker = start(FlushPolicy::Interval).await;
    let client = Arc::new(Client::connect(broker.addr).await.unwrap());
    let create = CreateTopicRequest {
        name: "kv".into(),
        partitions: 1,
        segment_bytes: Some(2048),
        max_batch_bytes: Some(1024),
        cleanup: Some(CleanupPolicy::Compact),
        ..CreateTopicRequest::default()
    };
    assert_eq!(client.create_topic(create).await.unwrap(), ErrorCode::None);
    for n in 0..200 {
        let mut builder = BatchBuilder::new();
        let (key, value) = (format!("key{}", n % 5), format!("{n}"));
        builder.push(&Record {
            key: Some(key.as_bytes()),
            value: Some(value.as_bytes()),
            headers: &[],
            timestamp: message_broker::server::now_ms(),
        });
        let records = builder.finish(ProducerStamp::NONE).to_vec();
        let request = vec![ProducePartition {
            topic: "kv".into(),
            partition: 0,
            records,
        }];
        client.produce(Acks::Leader, request).await.unwrap();
    }
    let partition = broker.state.broker.partition("kv", 0).unwrap();
    let size_before = partition.metadata().size_bytes;
    partition.clean(message_broker::server::now_ms()).unwrap();
    assert!(partition.metadata().size_bytes < size_before / 2);

    let config = ConsumerConfig {
        max_wait_ms: 0,
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(client, "kv", None, StartFrom::Earliest, config)
        .await
        .unwrap();
    let mut latest = std::collections::BTreeMap::new();
    let mut offsets = Vec::new();
    loop {
        let records = consumer.poll().await.unwrap();
        if records.is_empty() {
            break;
        }
        for record in records {
            offsets.push(record.offset);
            latest.insert(record.key.unwrap(), record.value.unwrap());
        }
    }
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
    assert!(offsets.len() < 100, "{} records left", offsets.len());
    // Reading the compacted log from the start still ends with the newest value of each key.
    for n in 195..200 {
        let key = format!("key{}", n % 5).into_bytes();
        assert_eq!(latest[&key], format!("{n}").into_bytes());
    }
}

#[tokio::test]
async fn a_record_removed_by_retention_while_it_waits_for_a_retry_stops_holding_the_group_back() {
    use message_broker::client::ShareConsumer;
    use message_broker::protocol::RetrySettings;

    let broker = start(FlushPolicy::Interval).await;
    let client = Arc::new(Client::connect(broker.addr).await.unwrap());
    // Small segments, and retention that keeps only the active one.
    let create = CreateTopicRequest {
        name: "short".into(),
        partitions: 1,
        segment_bytes: Some(2048),
        max_batch_bytes: Some(1024),
        retention_bytes: Some(1),
        ..CreateTopicRequest::default()
    };
    assert_eq!(client.create_topic(create).await.unwrap(), ErrorCode::None);
    const RECORDS: u64 = 60;
    for n in 0..RECORDS {
        let records = batch(&[&format!("value {n}")], 1_000, ProducerStamp::NONE);
        let request = vec![ProducePartition {
            topic: "short".into(),
            partition: 0,
            records,
        }];
        client.produce(Acks::Leader, request).await.unwrap();
    }

    // Offset 0 fails and waits for its retry; every other record is acknowledged.
    let settings = RetrySettings {
        max_delivery_attempts: 10,
        ack_timeout_ms: 5_000,
        backoff_initial_ms: 400,
        backoff_max_ms: 400,
        dead_letter_topic: String::new(),
    };
    let mut consumer = ShareConsumer::new(Arc::clone(&client), "slow", "short", 0, settings);
    let mut delivered = 0;
    while delivered < RECORDS {
        for record in consumer.poll().await.unwrap() {
            delivered += 1;
            match record.offset {
                0 => consumer.nack(0, "not yet"),
                offset => consumer.ack(offset),
            }
        }
    }
    consumer.poll().await.unwrap();

    // Retention removes the segment that holds it before the retry is due.
    let partition = broker.state.broker.partition("short", 0).unwrap();
    partition.clean(message_broker::server::now_ms()).unwrap();
    assert!(partition.offsets().0 > 0, "the first segment is gone");

    // Once the retry is due, the record is found gone and the group moves past it.
    let committed = || async {
        let offsets = client.committed_offsets("slow").await.unwrap();
        offsets
            .iter()
            .find(|c| c.topic == "short" && c.partition == 0)
            .and_then(|c| c.offset)
    };
    let started = Instant::now();
    while committed().await != Some(RECORDS) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the group stays at {:?}",
            committed().await
        );
        consumer.poll().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn delivery_state_past_its_limit_is_refused_and_the_others_keep_working() {
    use message_broker::client::ShareConsumer;
    use message_broker::protocol::RetrySettings;

    let limits = Limits {
        max_delivery_trackers: 1,
        ..Limits::default()
    };
    let broker = start_with(FlushPolicy::Interval, limits).await;
    let client = Arc::new(Client::connect(broker.addr).await.unwrap());
    let records = batch(&["a"], 1_000, ProducerStamp::NONE);
    client.produce(Acks::Leader, to(0, records)).await.unwrap();
    let settings = RetrySettings::default();
    let mut first = ShareConsumer::new(Arc::clone(&client), "first", "t", 0, settings.clone());
    assert_eq!(first.poll().await.unwrap().len(), 1);
    let mut second = ShareConsumer::new(Arc::clone(&client), "second", "t", 0, settings);
    match second.poll().await {
        Err(ClientError::Broker { code, .. }) => assert_eq!(code, ErrorCode::LimitExceeded),
        other => panic!("a second tracker was not refused: {other:?}"),
    }
    first.ack(0);
    first.poll().await.unwrap();
    assert_eq!(first.committed(), 1);
}

#[tokio::test]
async fn past_max_connections_a_client_waits_in_the_backlog_until_another_leaves() {
    let limits = Limits {
        max_connections: 2,
        ..Limits::default()
    };
    let broker = start_with(FlushPolicy::Interval, limits).await;
    let served = |client: Arc<Client>| async move { client.metadata(None).await.is_ok() };
    let within = Duration::from_secs(10);
    let first = Arc::new(Client::connect(broker.addr).await.unwrap());
    let second = Arc::new(Client::connect(broker.addr).await.unwrap());
    for client in [&first, &second] {
        let answer = tokio::time::timeout(within, served(Arc::clone(client))).await;
        assert_eq!(
            answer.ok(),
            Some(true),
            "a client within the limit is served"
        );
    }
    // The third connects (the kernel completes the handshake) but is not accepted.
    let third = Arc::new(Client::connect(broker.addr).await.unwrap());
    let waiting = tokio::spawn(served(Arc::clone(&third)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "a client past the limit was served");
    // One leaves: the waiting one is accepted and answered.
    drop(first);
    let answer = tokio::time::timeout(within, waiting).await;
    assert!(
        matches!(answer, Ok(Ok(true))),
        "the waiting client was never served: {answer:?}"
    );
    let answer = tokio::time::timeout(within, served(second)).await;
    assert_eq!(answer.ok(), Some(true), "the other client is still served");
}

#[tokio::test]
async fn at_max_in_flight_requests_the_broker_reads_no_more_of_that_connection() {
    for (limit, second_waits) in [(1, true), (64, false)] {
        let limits = Limits {
            max_in_flight_requests: limit,
            ..Limits::default()
        };
        let broker = start_with(FlushPolicy::Interval, limits).await;
        let client = Arc::new(Client::connect(broker.addr).await.unwrap());
        // A long poll on an empty partition holds its slot for its whole wait.
        let long_poll = {
            let client = Arc::clone(&client);
            tokio::spawn(async move { client.fetch(fetch_request(1, 0, 1_500)).await })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        client.metadata(None).await.unwrap();
        let took = started.elapsed();
        if second_waits {
            assert!(
                took >= Duration::from_millis(1_000),
                "limit {limit}: the second request was read while the first held the only slot ({took:?})"
            );
        } else {
            assert!(
                took < Duration::from_millis(1_000),
                "limit {limit}: a pipelined request waited behind a long poll ({took:?})"
            );
        }
        long_poll.await.unwrap().unwrap();
    }
}
