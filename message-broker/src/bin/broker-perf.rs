//! `broker-perf`: producer and consumer throughput against a running broker, in the spirit of
//! Kafka's `kafka-producer-perf-test` / `kafka-consumer-perf-test` (Jay Kreps' 2014 setup:
//! 100-byte records, one topic with 6 partitions).
//!
//! ```text
//! broker-perf --broker 127.0.0.1:9093 produce --topic perf --records 5000000 --acks leader
//! broker-perf --broker 127.0.0.1:9093 consume --topic perf --records 5000000
//! ```
//!
//! Each prints one line: records, seconds, records/s and MB/s (10^6 bytes of record values).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::bail;
use clap::{Parser, Subcommand, ValueEnum};
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
        /// Topic (created with `--partitions` if missing).
        #[arg(long)]
        topic: String,
        /// Partitions of a topic created here.
        #[arg(long, default_value_t = 6)]
        partitions: u32,
        /// Records to send.
        #[arg(long)]
        records: u64,
        /// Bytes of each record's value.
        #[arg(long, default_value_t = 100)]
        record_bytes: usize,
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
}

#[derive(Clone, Copy, ValueEnum)]
enum AcksArg {
    None,
    Leader,
    All,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
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
            topic,
            partitions,
            records,
            record_bytes,
            acks,
            batch_bytes,
            linger_ms,
        } => {
            let create = CreateTopicRequest {
                name: topic.clone(),
                partitions,
                ..CreateTopicRequest::default()
            };
            let code = client.create_topic(create).await?;
            if !code.is_ok() && code != ErrorCode::TopicAlreadyExists {
                bail!("create {topic}: {code}");
            }
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
            let mut producer = Producer::new(client, &topic, config).await?;
            let value = vec![b'x'; record_bytes];
            let started = Instant::now();
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
            report("produce", records, record_bytes as u64 * records, started);
        }
        Command::Consume { topic, records } => {
            let config = ConsumerConfig {
                max_wait_ms: 100,
                ..ConsumerConfig::default()
            };
            let mut consumer =
                Consumer::new(client, &topic, None, StartFrom::Earliest, config).await?;
            let started = Instant::now();
            let (mut seen, mut bytes) = (0u64, 0u64);
            while seen < records {
                let before = seen;
                consumer
                    .poll_with(|_, record| {
                        seen += 1;
                        bytes += record.value.map_or(0, |v| v.len() as u64);
                    })
                    .await?;
                if seen == before && started.elapsed().as_secs() > 600 {
                    bail!("only {seen} of {records} records after 10 minutes");
                }
            }
            report("consume", seen, bytes, started);
        }
    }
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
