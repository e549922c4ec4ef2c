//! `broker-perf`: producer and consumer throughput against a running broker, in the spirit of
//! Kafka's `kafka-producer-perf-test` / `kafka-consumer-perf-test` (Jay Kreps' 2014 setup:
//! 100-byte records, one topic with 6 partitions).
//!
//! ```text
//! broker-perf --broker 127.0.0.1:9093 produce --topic perf --records 5000000 --acks leader
//! broker-perf --broker 127.0.0.1:9093 consume --topic perf --records 5000000
//! broker-perf --broker 127.0.0.1:9093 both --topic perf2 --records 5000000
//! broker-perf --broker 127.0.0.1:9093 latency --topic lat --records 20000 --rate 1000
//! ```
//!
//! `produce`, `consume` and `both` (a producer and a consumer at once, on two threads) print
//! one line each: records, seconds, records/s and MB/s (10^6 bytes of record values).
//! `latency` measures end to end, from the moment a record is due at the producer to the
//! moment the consumer has it: records go out one at a time at a fixed rate, each carrying
//! the time it was due, so a stalled producer shows up in the figures rather than slowing the
//! schedule (open loop); it prints the p50, p99, p99.9 and largest latency.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::{Args, Parser, Subcommand, ValueEnum};
use message_broker::client::{
    Client, Consumer, ConsumerConfig, Producer, ProducerConfig, StartFrom,
};
use message_broker::protocol::{Acks, CreateTopicRequest, ErrorCode};
use message_broker::record_batch::Record;
use message_broker::server::now_ms;

#[derive(Parser)]
#[command(name = "broker-perf", version, about = "Throughput of message-broker")]
struct Cli {
    /// Broker address.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:9093",
        global = true
    )]
    broker: SocketAddr,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Produce records as fast as the broker takes them.
    Produce {
        #[command(flatten)]
        target: Target,
        /// Records to send.
        #[arg(long)]
        records: u64,
        /// What each batch waits for.
        #[arg(long, value_enum, default_value = "leader")]
        acks: AcksArg,
        /// Producer batch size, bytes.
        #[arg(long, default_value_t = 64 * 1024)]
        batch_bytes: usize,
        /// Producer linger, ms.
        #[arg(long, default_value_t = 5)]
        linger_ms: u64,
    },
    /// Read records from the start of every partition.
    Consume {
        /// Topic.
        #[arg(long)]
        topic: String,
        /// Records to read.
        #[arg(long)]
        records: u64,
    },
    /// A producer (`acks leader`, batching as `produce`) and a consumer of the same records at
    /// once.
    Both {
        #[command(flatten)]
        target: Target,
        /// Records to send (and read).
        #[arg(long)]
        records: u64,
    },
    /// End-to-end latency: one record at a time at `--rate` per second, `acks leader`
    /// (`--record-bytes` at least 8: each record carries its due time).
    Latency {
        #[command(flatten)]
        target: Target,
        /// Records to send.
        #[arg(long, default_value_t = 20_000)]
        records: u64,
        /// Records per second.
        #[arg(long, default_value_t = 1000)]
        rate: u32,
    },
}

/// Where the producing commands write, and what.
#[derive(Args)]
struct Target {
    /// Topic (created with `--partitions` if missing).
    #[arg(long)]
    topic: String,
    /// Partitions of a topic created here.
    #[arg(long, default_value_t = 6)]
    partitions: u32,
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 100)]
    record_bytes: usize,
}

#[derive(Clone, Copy, ValueEnum)]
enum AcksArg {
    None,
    Leader,
    All,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A producer and a consumer at once get a thread each; alone, one thread, as before.
    let runtime = match &cli.command {
        Command::Both { .. } | Command::Latency { .. } => {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
        }
        _ => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("broker-perf: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("broker-perf: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let client = Arc::new(Client::connect(cli.broker).await?);
    match cli.command {
        Command::Produce {
            target:
                Target {
                    topic,
                    partitions,
                    record_bytes,
                },
            records,
            acks,
            batch_bytes,
            linger_ms,
        } => {
            create_topic(&client, &topic, partitions).await?;
            let acks = match acks {
                AcksArg::None => Acks::None,
                AcksArg::Leader => Acks::Leader,
                AcksArg::All => Acks::All,
            };
            let config = ProducerConfig {
                acks,
                batch_bytes,
                linger_ms,
                ..ProducerConfig::default()
            };
            let started = Instant::now();
            produce(client, &topic, records, record_bytes, config).await?;
            report("produce", records, record_bytes as u64 * records, started);
        }
        Command::Consume { topic, records } => {
            let consumer = consumer(client, &topic, StartFrom::Earliest).await?;
            let started = Instant::now();
            let bytes = consume(consumer, records, |_| {}).await?;
            report("consume", records, bytes, started);
        }
        Command::Both {
            target:
                Target {
                    topic,
                    partitions,
                    record_bytes,
                },
            records,
        } => {
            create_topic(&client, &topic, partitions).await?;
            // The consumer starts at the end, before anything is produced.
            let reader = consumer(client.clone(), &topic, StartFrom::Latest).await?;
            let started = Instant::now();
            let consuming = tokio::spawn(async move {
                let bytes = consume(reader, records, |_| {}).await?;
                report("both: consume", records, bytes, started);
                anyhow::Ok(())
            });
            let config = ProducerConfig {
                acks: Acks::Leader,
                ..perf_producer_config()
            };
            produce(client, &topic, records, record_bytes, config).await?;
            report(
                "both: produce",
                records,
                record_bytes as u64 * records,
                started,
            );
            consuming.await??;
        }
        Command::Latency {
            target:
                Target {
                    topic,
                    partitions,
                    record_bytes,
                },
            records,
            rate,
        } => {
            if record_bytes < 8 || rate == 0 {
                bail!("--record-bytes must be at least 8 and --rate positive");
            }
            create_topic(&client, &topic, partitions).await?;
            let reader = consumer(client.clone(), &topic, StartFrom::Latest).await?;
            latency(client, &topic, reader, records, rate, record_bytes).await?;
        }
    }
    Ok(())
}

/// The producer settings of `produce` by default: 64 KiB batches, 5 ms linger.
fn perf_producer_config() -> ProducerConfig {
    ProducerConfig {
        batch_bytes: 64 * 1024,
        linger_ms: 5,
        ..ProducerConfig::default()
    }
}

async fn create_topic(client: &Client, topic: &str, partitions: u32) -> anyhow::Result<()> {
    let create = CreateTopicRequest {
        name: topic.to_owned(),
        partitions,
        ..CreateTopicRequest::default()
    };
    let code = client.create_topic(create).await?;
    if !code.is_ok() && code != ErrorCode::TopicAlreadyExists {
        bail!("create {topic}: {code}");
    }
    Ok(())
}

/// Sends `records` keyless records of `record_bytes` as fast as the broker takes them.
async fn produce(
    client: Arc<Client>,
    topic: &str,
    records: u64,
    record_bytes: usize,
    config: ProducerConfig,
) -> anyhow::Result<()> {
    let mut producer = Producer::new(client, topic, config).await?;
    let value = vec![b'x'; record_bytes];
    let timestamp = now_ms();
    for _ in 0..records {
        let record = Record {
            key: None,
            value: Some(&value),
            headers: &[],
            timestamp,
        };
        producer.send(&record).await?;
    }
    let stats = producer.flush().await?.clone();
    if stats.records_failed > 0 {
        bail!(
            "{} records failed: {:?}",
            stats.records_failed,
            stats.last_error
        );
    }
    Ok(())
}

async fn consumer(client: Arc<Client>, topic: &str, from: StartFrom) -> anyhow::Result<Consumer> {
    let config = ConsumerConfig {
        max_wait_ms: 100,
        ..ConsumerConfig::default()
    };
    Ok(Consumer::new(client, topic, None, from, config).await?)
}

/// Reads until `records` have arrived, calling `each` with every value; the value bytes read.
async fn consume(
    mut consumer: Consumer,
    records: u64,
    mut each: impl FnMut(&[u8]),
) -> anyhow::Result<u64> {
    let started = Instant::now();
    let (mut seen, mut bytes) = (0u64, 0u64);
    while seen < records {
        let before = seen;
        consumer
            .poll_with(|_, record| {
                seen += 1;
                let value = record.value.unwrap_or_default();
                bytes += value.len() as u64;
                each(value);
            })
            .await?;
        if seen == before && started.elapsed().as_secs() > 600 {
            bail!("only {seen} of {records} records after 10 minutes");
        }
    }
    Ok(bytes)
}

/// Sends one record every `1/rate` s, each carrying the nanoseconds from `origin` at which it
/// was due; the consumer notes how long after that it arrived.
async fn latency(
    client: Arc<Client>,
    topic: &str,
    reader: Consumer,
    records: u64,
    rate: u32,
    record_bytes: usize,
) -> anyhow::Result<()> {
    let origin = Instant::now();
    let reading = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(records as usize);
        consume(reader, records, |value| {
            let mut due = [0u8; 8];
            due.copy_from_slice(&value[..8]);
            let due = Duration::from_nanos(u64::from_le_bytes(due));
            latencies.push(origin.elapsed().saturating_sub(due));
        })
        .await?;
        anyhow::Ok(latencies)
    });
    let config = ProducerConfig {
        acks: Acks::Leader,
        linger_ms: 0,
        ..ProducerConfig::default()
    };
    let mut producer = Producer::new(client, topic, config).await?;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let mut value = vec![b'x'; record_bytes];
    for i in 0..records {
        let due = interval.mul_f64(i as f64);
        tokio::time::sleep_until((origin + due).into()).await;
        value[..8].copy_from_slice(&(due.as_nanos() as u64).to_le_bytes());
        let record = Record {
            key: None,
            value: Some(&value),
            headers: &[],
            timestamp: now_ms(),
        };
        producer.send(&record).await?;
        producer.flush().await?;
    }
    let mut latencies = reading.await??;
    latencies.sort_unstable();
    let at = |q: f64| {
        let i = ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i].as_secs_f64() * 1000.0
    };
    println!(
        "latency: {records} records at {rate}/s, end to end: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        at(0.5),
        at(0.99),
        at(0.999),
        at(1.0)
    );
    Ok(())
}

fn report(what: &str, records: u64, bytes: u64, started: Instant) {
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{what}: {records} records in {seconds:.2} s: {:.0} records/s, {:.1} MB/s",
        records as f64 / seconds,
        bytes as f64 / seconds / 1e6
    );
}
