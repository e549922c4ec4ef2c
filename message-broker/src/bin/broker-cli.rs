//! `broker-cli`: topics, producing and consuming from the command line.
//!
//! ```text
//! broker-cli --broker 127.0.0.1:9093 topic create orders --partitions 6 --retention-ms 86400000
//! broker-cli topic list | topic describe orders | topic delete orders
//! printf 'k1:v1\nk2:v2\n' | broker-cli produce orders --key-separator : --acks all
//! broker-cli consume orders --from earliest --max 10 --idle-timeout-ms 2000 --print-key --print-offset
//! broker-cli consume orders --group billing --from earliest      # a group member, commits as it goes
//! broker-cli group list | group describe billing                  # members, offsets, lag
//! broker-cli dlq list orders --group billing                      # dead letters and why
//! broker-cli dlq redrive orders --group billing --rate 50         # back to their topic
//! ```
//!
//! `consume` prints one record per line: `PARTITION:OFFSET<TAB>` with `--print-offset`, then
//! `KEY<TAB>` with `--print-key`, then the value (bytes that are not UTF-8 are shown with the
//! replacement character). Exit codes: 0 done, 1 a broker or connection error, 2 bad usage.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use message_broker::client::assignor::{Assignment, Assignor};
use message_broker::client::redrive::redrive;
use message_broker::client::{
    Client, Consumer, ConsumerConfig, DEFAULT_BATCH_BYTES, DEFAULT_LINGER_MS,
    DEFAULT_SESSION_TIMEOUT_MS, GroupConfig, GroupConsumer, Producer, ProducerConfig, StartFrom,
};
use message_broker::protocol::{Acks, CleanupPolicy, CreateTopicRequest, ErrorCode, OffsetSpec};
use message_broker::record_batch::Record;
use message_broker::server::now_ms;
use tokio::io::AsyncBufReadExt;

#[derive(Parser)]
#[command(
    name = "broker-cli",
    version,
    about = "Command-line client of message-broker"
)]
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
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Read records from stdin, one per line, and produce them; prints how many were acknowledged.
    Produce {
        /// Topic.
        topic: String,
        /// Split each line at the first SEP into key and value (a line without SEP has no key).
        #[arg(long, value_name = "SEP")]
        key_separator: Option<String>,
        /// What each batch waits for.
        #[arg(long, value_enum, default_value = "all")]
        acks: AcksArg,
        /// Longest a record waits for its batch to fill, ms.
        #[arg(long, value_name = "MS", default_value_t = DEFAULT_LINGER_MS)]
        linger_ms: u64,
        /// Batch size at which a batch is sent, bytes.
        #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_BATCH_BYTES)]
        batch_bytes: usize,
    },
    /// Print records of a topic, one value per line.
    Consume {
        /// Topic.
        topic: String,
        /// Where to start: earliest, latest, or an offset (in every partition).
        #[arg(long, value_name = "WHERE", default_value = "latest", value_parser = parse_from)]
        from: StartFrom,
        /// Stop after this many records.
        #[arg(long, value_name = "N")]
        max: Option<u64>,
        /// Stop when no record arrives for this long, ms.
        #[arg(long, value_name = "MS")]
        idle_timeout_ms: Option<u64>,
        /// Print the key before the value.
        #[arg(long)]
        print_key: bool,
        /// Print PARTITION:OFFSET before the record.
        #[arg(long)]
        print_offset: bool,
        /// Consume as a member of this consumer group, committing as it goes; `--from` then
        /// applies only to partitions the group never committed.
        #[arg(long, value_name = "G")]
        group: Option<String>,
        /// Group session timeout, ms.
        #[arg(long, value_name = "MS", default_value_t = DEFAULT_SESSION_TIMEOUT_MS)]
        session_timeout_ms: u32,
        /// In a group, commit at most this often, ms; 0 commits after every poll. What was
        /// printed since the last commit is delivered again if this member dies (Kafka's
        /// `auto.commit.interval.ms`, 5000 there).
        #[arg(long, value_name = "MS", default_value_t = 0)]
        commit_interval_ms: u64,
        /// Group assignor.
        #[arg(long, value_enum, default_value = "range")]
        assignor: AssignorArg,
    },
    /// List and describe consumer groups.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Inspect and redrive a group's dead-letter topic (`<topic>.<group>.dlq`).
    #[command(subcommand)]
    Dlq(DlqCommand),
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Print the dead-lettered records with their attempts, last error and origin.
    List {
        /// The original topic.
        topic: String,
        /// The group that gave up on them.
        #[arg(long, value_name = "G")]
        group: String,
    },
    /// Move the dead-lettered records back (to their original topic, or `--to`).
    Redrive {
        /// The original topic.
        topic: String,
        /// The group that gave up on them.
        #[arg(long, value_name = "G")]
        group: String,
        /// Send them here instead of their original topic (partition 0).
        #[arg(long, value_name = "TOPIC")]
        to: Option<String>,
        /// Most records moved per second.
        #[arg(long, value_name = "N", default_value_t = 100)]
        rate: u32,
    },
}

#[derive(Subcommand)]
enum GroupCommand {
    /// Groups with members or committed offsets.
    List,
    /// Members, their assignments, and committed offset and lag per partition.
    Describe {
        /// Group.
        group: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum AssignorArg {
    Range,
    Roundrobin,
}

#[derive(Subcommand)]
enum TopicCommand {
    /// Create a topic.
    Create {
        /// Name: letters, digits, `.`, `_`, `-`; at most 249.
        name: String,
        /// Partition count.
        #[arg(long, value_name = "N")]
        partitions: u32,
        /// Delete closed segments older than this, ms (-1: keep forever).
        #[arg(long, value_name = "MS", allow_hyphen_values = true)]
        retention_ms: Option<i64>,
        /// Delete the oldest closed segments while the partition stays over this size (-1: no limit).
        #[arg(long, value_name = "BYTES", allow_hyphen_values = true)]
        retention_bytes: Option<i64>,
        /// Segment size, bytes.
        #[arg(long, value_name = "BYTES")]
        segment_bytes: Option<u64>,
        /// What happens to old data.
        #[arg(long, value_enum)]
        cleanup: Option<CleanupArg>,
    },
    /// List topic names.
    List,
    /// Partitions, start and end offsets, sizes.
    Describe {
        /// Topic.
        name: String,
    },
    /// Delete a topic and its data.
    Delete {
        /// Topic.
        name: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum AcksArg {
    None,
    Leader,
    All,
}

#[derive(Clone, Copy, ValueEnum)]
enum CleanupArg {
    Delete,
    Compact,
}

fn parse_from(text: &str) -> Result<StartFrom, String> {
    match text {
        "earliest" => Ok(StartFrom::Earliest),
        "latest" => Ok(StartFrom::Latest),
        offset => offset
            .parse()
            .map(StartFrom::Offset)
            .map_err(|_| format!("`{offset}` is not earliest, latest or an offset")),
    }
}

/// `println!` that hands a failed write back as an error instead of panicking, so that a
/// reader that goes away (`broker-cli ... | head`) ends the command quietly.
macro_rules! out {
    ($($arg:tt)*) => {
        std::io::Write::write_fmt(&mut std::io::stdout(), format_args!("{}\n", format_args!($($arg)*)))?
    };
}

/// Whether the error is stdout closed by its reader: not a failure of the command.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("broker-cli: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("broker-cli: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let client = Client::connect(cli.broker).await?;
    match cli.command {
        Command::Topic(command) => topic(&client, command).await,
        Command::Produce {
            topic,
            key_separator,
            acks,
            linger_ms,
            batch_bytes,
        } => {
            let acks = match acks {
                AcksArg::None => Acks::None,
                AcksArg::Leader => Acks::Leader,
                AcksArg::All => Acks::All,
            };
            let config = ProducerConfig {
                acks,
                linger_ms,
                batch_bytes,
                ..ProducerConfig::default()
            };
            produce(Arc::new(client), &topic, key_separator, config).await
        }
        Command::Consume {
            topic,
            from,
            max,
            idle_timeout_ms,
            print_key,
            print_offset,
            group,
            session_timeout_ms,
            commit_interval_ms,
            assignor,
        } => {
            let format = Format {
                print_key,
                print_offset,
            };
            let stop = Stop {
                max,
                idle: idle_timeout_ms.map(Duration::from_millis),
            };
            let client = Arc::new(client);
            match group {
                None => consume(client, &topic, from, stop, format).await,
                Some(group) => {
                    let mut config = GroupConfig::new(&group, vec![topic]);
                    config.from = from;
                    config.session_timeout_ms = session_timeout_ms;
                    config.rebalance_timeout_ms = session_timeout_ms;
                    config.client_id = format!("broker-cli-{}", std::process::id());
                    config.assignors = vec![match assignor {
                        AssignorArg::Range => Assignor::Range,
                        AssignorArg::Roundrobin => Assignor::RoundRobin,
                    }];
                    let commit_interval = Duration::from_millis(commit_interval_ms);
                    consume_in_group(client, config, stop, format, commit_interval).await
                }
            }
        }
        Command::Group(command) => group(&client, command).await,
        Command::Dlq(command) => dlq(Arc::new(client), command).await,
    }
}

fn check(code: ErrorCode, what: &str) -> anyhow::Result<()> {
    if code.is_ok() {
        return Ok(());
    }
    let hint = match code {
        ErrorCode::InvalidConfig => {
            " (a setting out of range, or cleanup compact, which this broker does not implement yet)"
        }
        ErrorCode::InvalidTopic => {
            " (names: 1 to 249 of letters, digits, `.`, `_`, `-`, not starting with `.`)"
        }
        _ => "",
    };
    bail!("{what}: {code}{hint}")
}

async fn topic(client: &Client, command: TopicCommand) -> anyhow::Result<()> {
    match command {
        TopicCommand::Create {
            name,
            partitions,
            retention_ms,
            retention_bytes,
            segment_bytes,
            cleanup,
        } => {
            let request = CreateTopicRequest {
                name: name.clone(),
                partitions,
                retention_ms,
                retention_bytes,
                segment_bytes,
                cleanup: cleanup.map(|c| match c {
                    CleanupArg::Delete => CleanupPolicy::Delete,
                    CleanupArg::Compact => CleanupPolicy::Compact,
                }),
                ..CreateTopicRequest::default()
            };
            check(
                client.create_topic(request).await?,
                &format!("create {name}"),
            )?;
            out!("created {name} with {partitions} partitions");
        }
        TopicCommand::List => {
            for topic in client.metadata(None).await?.topics {
                out!("{}", topic.name);
            }
        }
        TopicCommand::Describe { name } => {
            let metadata = client.metadata(Some(vec![name.clone()])).await?;
            let topic = metadata.topics.into_iter().next().context("empty answer")?;
            check(topic.error, &format!("describe {name}"))?;
            let log = &topic.config.log;
            out!(
                "topic {} partitions {} cleanup {:?} retention_ms {} retention_bytes {} segment_bytes {}",
                topic.name,
                topic.partitions.len(),
                topic.config.log.cleanup,
                log.retention_ms,
                log.retention_bytes,
                log.segment_bytes
            );
            for p in topic.partitions {
                out!(
                    "partition {} start {} end {} size {} segments {}",
                    p.partition,
                    p.start_offset,
                    p.end_offset,
                    p.size_bytes,
                    p.segments
                );
            }
        }
        TopicCommand::Delete { name } => {
            check(client.delete_topic(&name).await?, &format!("delete {name}"))?;
            out!("deleted {name}");
        }
    }
    Ok(())
}

async fn produce(
    client: Arc<Client>,
    topic: &str,
    key_separator: Option<String>,
    config: ProducerConfig,
) -> anyhow::Result<()> {
    let acks = config.acks;
    let mut producer = Producer::new(client, topic, config).await?;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        let linger = producer.linger_deadline();
        let line = tokio::select! {
            line = lines.next_line() => line.context("reading stdin")?,
            () = sleep_until(linger) => {
                producer.send_lingered().await?;
                continue;
            }
        };
        let Some(line) = line else { break };
        let (key, value) = match key_separator
            .as_deref()
            .and_then(|sep| line.split_once(sep))
        {
            Some((key, value)) => (Some(key.as_bytes()), value.as_bytes()),
            None => (None, line.as_bytes()),
        };
        let record = Record {
            key,
            value: Some(value),
            headers: &[],
            timestamp: now_ms(),
        };
        producer.send(&record).await?;
    }
    let stats = producer.flush().await?.clone();
    if acks == Acks::None {
        out!(
            "sent {} (acks none: nothing is acknowledged)",
            stats.records_sent
        );
    } else {
        out!("acknowledged {}", stats.records_acknowledged);
    }
    if stats.records_failed > 0 {
        bail!(
            "{} of {} records failed: {}",
            stats.records_failed,
            stats.records_sent,
            stats.last_error.unwrap_or_default()
        );
    }
    Ok(())
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

#[derive(Clone, Copy)]
struct Format {
    print_key: bool,
    print_offset: bool,
}

/// When a consume command ends.
#[derive(Clone, Copy)]
struct Stop {
    max: Option<u64>,
    idle: Option<Duration>,
}

impl Stop {
    fn room(&self, printed: u64) -> bool {
        self.max.is_none_or(|max| printed < max)
    }
}

async fn consume(
    client: Arc<Client>,
    topic: &str,
    from: StartFrom,
    stop: Stop,
    format: Format,
) -> anyhow::Result<()> {
    let mut config = ConsumerConfig::default();
    if let Some(idle) = stop.idle {
        config.max_wait_ms = config
            .max_wait_ms
            .min(idle.as_millis().try_into().unwrap_or(u32::MAX));
    }
    let mut consumer = Consumer::new(client, topic, None, from, config).await?;
    let mut last_record = Instant::now();
    let mut printed = 0u64;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    while stop.room(printed) {
        let mut lines = Vec::new();
        consumer
            .poll_with(|partition, record| {
                if stop.room(printed + lines.len() as u64) {
                    lines.push(render(format, partition, record));
                }
            })
            .await?;
        if lines.is_empty() {
            if stop.idle.is_some_and(|idle| last_record.elapsed() >= idle) {
                break;
            }
            continue;
        }
        last_record = Instant::now();
        printed += lines.len() as u64;
        write_lines(&mut out, &lines)?;
    }
    Ok(())
}

/// Consumes as a group member: prints each poll's records, then commits their positions
/// (after every poll, or once `commit_interval` has passed since the last commit). Assignment
/// changes are reported on stderr.
async fn consume_in_group(
    client: Arc<Client>,
    config: GroupConfig,
    stop: Stop,
    format: Format,
    commit_interval: Duration,
) -> anyhow::Result<()> {
    let mut member = GroupConsumer::new(client, config);
    let mut last_commit = Instant::now();
    let mut uncommitted = false;
    let mut last_record = Instant::now();
    let mut printed = 0u64;
    let mut assignment = (-1, Vec::new());
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    while stop.room(printed) {
        let mut lines = Vec::new();
        member
            .poll_with(|_topic, partition, record| {
                if stop.room(printed + lines.len() as u64) {
                    lines.push(render(format, partition, record));
                }
            })
            .await?;
        let current: Vec<String> = member
            .positions()
            .keys()
            .map(|(topic, partition)| format!("{topic}/{partition}"))
            .collect();
        if (member.generation(), &current) != (assignment.0, &assignment.1) {
            eprintln!(
                "member {} generation {} assigned [{}]",
                member.member_id(),
                member.generation(),
                current.join(",")
            );
            assignment = (member.generation(), current);
        }
        if !lines.is_empty() {
            last_record = Instant::now();
            printed += lines.len() as u64;
            write_lines(&mut out, &lines)?;
            uncommitted = true;
        }
        if uncommitted && last_commit.elapsed() >= commit_interval {
            commit(&mut member).await?;
            (uncommitted, last_commit) = (false, Instant::now());
        }
        if lines.is_empty() && stop.idle.is_some_and(|idle| last_record.elapsed() >= idle) {
            break;
        }
    }
    if uncommitted {
        commit(&mut member).await?;
    }
    member.leave().await?;
    Ok(())
}

/// Commits the member's positions; a refusal (a rebalance) is reported, not fatal.
async fn commit(member: &mut GroupConsumer) -> anyhow::Result<()> {
    let code = member.commit().await?;
    if !code.is_ok() {
        eprintln!("commit refused ({code}); rejoining, records since the last commit may repeat");
    }
    Ok(())
}

fn write_lines(out: &mut impl std::io::Write, lines: &[String]) -> anyhow::Result<()> {
    for line in lines {
        out.write_all(line.as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

async fn dlq(client: Arc<Client>, command: DlqCommand) -> anyhow::Result<()> {
    match command {
        DlqCommand::List { topic, group } => {
            let dlq_topic = format!("{topic}.{group}.dlq");
            let mut consumer = Consumer::new(
                client,
                &dlq_topic,
                Some(vec![0]),
                StartFrom::Earliest,
                ConsumerConfig {
                    max_wait_ms: 0,
                    ..ConsumerConfig::default()
                },
            )
            .await?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            loop {
                let mut lines = Vec::new();
                let count = consumer
                    .poll_with(|_, record| lines.push(render_dead_letter(record)))
                    .await?;
                if count == 0 {
                    break;
                }
                write_lines(&mut out, &lines)?;
            }
        }
        DlqCommand::Redrive {
            topic,
            group,
            to,
            rate,
        } => {
            let dlq_topic = format!("{topic}.{group}.dlq");
            let moved = redrive(&client, &dlq_topic, &group, to.as_deref(), rate).await?;
            out!("redriven {moved}");
        }
    }
    Ok(())
}

/// `OFFSET<TAB>attempts=N<TAB>error=E<TAB>original=T/P@O<TAB>VALUE`
fn render_dead_letter(record: &message_broker::record_batch::RecordView<'_>) -> String {
    let header = |name: &str| {
        record
            .headers()
            .find(|(k, _)| *k == name.as_bytes())
            .and_then(|(_, v)| v)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    };
    format!(
        "{}\tattempts={}\terror={}\toriginal={}/{}@{}\t{}\n",
        record.offset,
        header("dlq.attempts"),
        header("dlq.last.error"),
        header("dlq.original.topic"),
        header("dlq.original.partition"),
        header("dlq.original.offset"),
        String::from_utf8_lossy(record.value.unwrap_or_default())
    )
}

async fn group(client: &Client, command: GroupCommand) -> anyhow::Result<()> {
    match command {
        GroupCommand::List => {
            for group in client.list_groups().await? {
                out!(
                    "{} {} members {}",
                    group.group_id,
                    group.state,
                    group.members
                );
            }
        }
        GroupCommand::Describe { group } => {
            let description = client.describe_group(&group).await?;
            check(description.error, &format!("describe group {group}"))?;
            out!(
                "group {} state {} generation {} assignor {}",
                description.group_id,
                description.state,
                description.generation_id,
                if description.protocol.is_empty() {
                    "-"
                } else {
                    &description.protocol
                }
            );
            let mut owner = std::collections::BTreeMap::new();
            for member in &description.members {
                let assignment = Assignment::decode(&member.assignment).unwrap_or_default();
                let parts: Vec<String> = assignment
                    .partitions
                    .iter()
                    .map(|(t, p)| format!("{t}/{p}"))
                    .collect();
                out!(
                    "member {} client {} assigned [{}]",
                    member.member_id,
                    member.client_id,
                    parts.join(",")
                );
                for tp in assignment.partitions {
                    owner.insert(tp, member.member_id.clone());
                }
            }
            for committed in client.committed_offsets(&group).await? {
                let end = client
                    .list_offset(&committed.topic, committed.partition, OffsetSpec::Latest)
                    .await?;
                let offset = committed.offset.unwrap_or(0);
                let tp = (committed.topic.clone(), committed.partition);
                out!(
                    "partition {}/{} committed {} end {} lag {} owner {}",
                    committed.topic,
                    committed.partition,
                    offset,
                    end,
                    end.saturating_sub(offset),
                    owner.get(&tp).map_or("-", String::as_str)
                );
            }
        }
    }
    Ok(())
}

fn render(
    format: Format,
    partition: u32,
    record: &message_broker::record_batch::RecordView<'_>,
) -> String {
    let mut line = String::new();
    if format.print_offset {
        line.push_str(&format!("{partition}:{}\t", record.offset));
    }
    if format.print_key {
        line.push_str(&String::from_utf8_lossy(record.key.unwrap_or_default()));
        line.push('\t');
    }
    line.push_str(&String::from_utf8_lossy(record.value.unwrap_or_default()));
    line.push('\n');
    line
}
