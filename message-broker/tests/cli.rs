//! `broker-cli` and `message-broker` as real processes: topic administration, producing lines
//! from stdin with keys, consuming them back, and the usage errors of both binaries.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::{DataDir, Process, ProcessSpec, cargo_bin, free_addr};
use message_broker::client::partitioner::partition_for_key;

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const CLI_TIMEOUT: Duration = Duration::from_secs(30);

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs broker-cli with `args` and `stdin`, killing it if it runs past [`CLI_TIMEOUT`].
fn cli(broker: SocketAddr, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(cargo_bin("broker-cli"))
        .arg("--broker")
        .arg(broker.to_string())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let deadline = Instant::now() + CLI_TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("broker-cli {args:?} did not finish within {CLI_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child.wait_with_output().unwrap();
    Output {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

fn start_broker(data: &DataDir) -> (Process, SocketAddr) {
    let (listen, admin) = (free_addr(), free_addr());
    let spec = ProcessSpec::new("message-broker", cargo_bin("message-broker"))
        .args(["--listen", &listen.to_string()])
        .args(["--admin-listen", &admin.to_string()])
        .args(["--data-dir", data.path().to_str().unwrap()]);
    let mut process = Process::spawn(spec).unwrap();
    process.wait_ready(admin, READY_TIMEOUT).unwrap();
    (process, listen)
}

#[test]
fn topics_are_created_described_and_deleted() {
    let data = DataDir::new("broker-cli-topics");
    let (_broker, addr) = start_broker(&data);
    let created = cli(
        addr,
        &[
            "topic",
            "create",
            "orders",
            "--partitions",
            "3",
            "--retention-ms",
            "-1",
        ],
        "",
    );
    assert_eq!(created.code, Some(0), "{}", created.stderr);
    assert_eq!(created.stdout, "created orders with 3 partitions\n");
    let again = cli(
        addr,
        &["topic", "create", "orders", "--partitions", "3"],
        "",
    );
    assert_eq!(again.code, Some(1));
    assert!(
        again.stderr.contains("TopicAlreadyExists"),
        "{}",
        again.stderr
    );
    let compact = cli(
        addr,
        &[
            "topic",
            "create",
            "c",
            "--partitions",
            "1",
            "--cleanup",
            "compact",
        ],
        "",
    );
    assert_eq!(compact.code, Some(0), "{}", compact.stderr);
    let described = cli(addr, &["topic", "describe", "c"], "").stdout;
    assert!(
        described.starts_with("topic c partitions 1 cleanup Compact"),
        "{described}"
    );
    assert_eq!(cli(addr, &["topic", "delete", "c"], "").code, Some(0));
    let bad = cli(
        addr,
        &[
            "topic",
            "create",
            "r",
            "--partitions",
            "1",
            "--retention-ms",
            "-7",
        ],
        "",
    );
    assert_eq!(bad.code, Some(1));
    assert!(bad.stderr.contains("InvalidConfig"), "{}", bad.stderr);

    assert_eq!(
        cli(addr, &["topic", "list"], "").stdout,
        "__consumer_offsets\norders\n"
    );
    let described = cli(addr, &["topic", "describe", "orders"], "").stdout;
    assert!(
        described.starts_with("topic orders partitions 3 cleanup Delete retention_ms -1"),
        "{described}"
    );
    assert!(
        described.contains("partition 2 start 0 end 0 size 0 segments 1"),
        "{described}"
    );

    assert_eq!(cli(addr, &["topic", "delete", "orders"], "").code, Some(0));
    assert_eq!(
        cli(addr, &["topic", "list"], "").stdout,
        "__consumer_offsets\n"
    );
    let missing = cli(addr, &["topic", "describe", "orders"], "");
    assert_eq!(missing.code, Some(1));
    assert!(
        missing.stderr.contains("UnknownTopicOrPartition"),
        "{}",
        missing.stderr
    );
}

#[test]
fn lines_from_stdin_are_produced_and_consumed_back_with_keys_and_offsets() {
    let data = DataDir::new("broker-cli-produce");
    let (_broker, addr) = start_broker(&data);
    assert_eq!(
        cli(addr, &["topic", "create", "t", "--partitions", "3"], "").code,
        Some(0)
    );

    let input: String = (0..100).map(|n| format!("key{n}:value {n}\n")).collect();
    let produced = cli(
        addr,
        &["produce", "t", "--key-separator", ":", "--acks", "all"],
        &input,
    );
    assert_eq!(produced.code, Some(0), "{}", produced.stderr);
    assert_eq!(produced.stdout, "acknowledged 100\n");

    let consumed = cli(
        addr,
        &[
            "consume",
            "t",
            "--from",
            "earliest",
            "--max",
            "100",
            "--print-key",
            "--print-offset",
        ],
        "",
    );
    assert_eq!(consumed.code, Some(0), "{}", consumed.stderr);
    let mut seen = Vec::new();
    for line in consumed.stdout.lines() {
        let [position, key, value] = line.split('\t').collect::<Vec<_>>()[..] else {
            panic!("bad line {line:?}");
        };
        let (partition, _offset) = position.split_once(':').unwrap();
        // Keys land where Kafka's partitioner puts them.
        let expected = partition_for_key(key.as_bytes(), 3);
        assert_eq!(partition.parse::<u32>().unwrap(), expected, "{line}");
        let n: u32 = key.strip_prefix("key").unwrap().parse().unwrap();
        assert_eq!(value, format!("value {n}"));
        seen.push(n);
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..100).collect::<Vec<_>>());

    // From the end nothing new arrives; the idle timeout ends the command.
    let started = Instant::now();
    let idle = cli(addr, &["consume", "t", "--idle-timeout-ms", "300"], "");
    assert_eq!((idle.code, idle.stdout.as_str()), (Some(0), ""));
    assert!(started.elapsed() < Duration::from_secs(10));

    // From an offset: partition 0's records from offset 1 on, values only.
    let from_one = cli(
        addr,
        &["consume", "t", "--from", "1", "--idle-timeout-ms", "300"],
        "",
    );
    assert_eq!(from_one.stdout.lines().count(), 100 - 3);
}

#[test]
fn a_reader_that_stops_early_ends_the_command_quietly() {
    use std::io::{BufRead, BufReader};
    let data = DataDir::new("broker-cli-pipe");
    let (_broker, addr) = start_broker(&data);
    let created = cli(addr, &["topic", "create", "t", "--partitions", "1"], "");
    assert_eq!(created.code, Some(0), "{}", created.stderr);
    // Far more than a pipe's buffer, so the writes after the reader leaves must fail.
    let input: String = (0..20_000).map(|n| format!("{n:0>60}\n")).collect();
    assert_eq!(cli(addr, &["produce", "t"], &input).code, Some(0));

    let mut child = Command::new(cargo_bin("broker-cli"))
        .args(["--broker", &addr.to_string()])
        .args(["consume", "t", "--from", "earliest", "--max", "20000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first.trim_end(), format!("{:0>60}", 0));
    // The reader is dropped: like `broker-cli consume t | head -1`.
    let deadline = Instant::now() + CLI_TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "broker-cli did not stop");
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn usage_errors_exit_2() {
    let bad_flag = cli(free_addr(), &["consume"], "");
    assert_eq!(bad_flag.code, Some(2), "{}", bad_flag.stderr);
    let bad_from = cli(free_addr(), &["consume", "t", "--from", "soon"], "");
    assert_eq!(bad_from.code, Some(2));
    assert!(
        bad_from
            .stderr
            .contains("not earliest, latest or an offset"),
        "{}",
        bad_from.stderr
    );

    let data = DataDir::new("broker-bad-config");
    let path = data.join("broker.toml");
    std::fs::write(&path, "flush_interval_ms = 0\n").unwrap();
    let spec = ProcessSpec::new("message-broker", cargo_bin("message-broker"))
        .args(["--config", path.to_str().unwrap()]);
    let mut process = Process::spawn(spec).unwrap();
    let status = process
        .wait_exit(READY_TIMEOUT)
        .unwrap()
        .expect("must exit");
    assert_eq!(status.code(), Some(2), "{}", process.log());
    assert!(
        process
            .log()
            .contains("invalid value for `flush_interval_ms`"),
        "{}",
        process.log()
    );
}

#[test]
fn a_consumer_without_a_broker_fails_with_exit_1() {
    let unreachable = cli(free_addr(), &["topic", "list"], "");
    assert_eq!(unreachable.code, Some(1));
    assert!(
        unreachable.stderr.contains("cannot connect"),
        "{}",
        unreachable.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_redriven() {
    use std::sync::Arc;

    use message_broker::client::{Client, ShareConsumer};
    use message_broker::protocol::RetrySettings;

    let data = DataDir::new("broker-cli-dlq");
    let (_broker, addr) = start_broker(&data);
    let run = |args: Vec<&'static str>, stdin: &'static str| {
        tokio::task::spawn_blocking(move || cli(addr, &args, stdin))
    };
    assert_eq!(
        run(vec!["topic", "create", "t", "--partitions", "1"], "")
            .await
            .unwrap()
            .code,
        Some(0)
    );
    let produced = run(vec!["produce", "t"], "a\npoison\nb\n").await.unwrap();
    assert_eq!(produced.stdout, "acknowledged 3\n", "{}", produced.stderr);

    let client = Arc::new(Client::connect(addr).await.unwrap());
    let settings = RetrySettings {
        max_delivery_attempts: 2,
        backoff_initial_ms: 50,
        ..RetrySettings::default()
    };
    let mut consumer = ShareConsumer::new(client, "w", "t", 0, settings);
    let deadline = Instant::now() + Duration::from_secs(20);
    while consumer.committed() < 3 {
        assert!(
            Instant::now() < deadline,
            "the poison record was not dead-lettered"
        );
        for record in consumer.poll().await.unwrap() {
            if record.value.as_deref() == Some(b"poison") {
                consumer.nack(record.offset, "bad");
            } else {
                consumer.ack(record.offset);
            }
        }
    }

    let listed = run(vec!["dlq", "list", "t", "--group", "w"], "")
        .await
        .unwrap();
    assert_eq!(
        listed.stdout, "0\tattempts=2\terror=bad\toriginal=t/0@1\tpoison\n",
        "{}",
        listed.stderr
    );
    let redriven = run(
        vec!["dlq", "redrive", "t", "--group", "w", "--rate", "10"],
        "",
    )
    .await
    .unwrap();
    assert_eq!(redriven.stdout, "redriven 1\n", "{}", redriven.stderr);
    let again = run(vec!["dlq", "redrive", "t", "--group", "w"], "")
        .await
        .unwrap();
    assert_eq!(again.stdout, "redriven 0\n");
    let tail = run(
        vec!["consume", "t", "--from", "3", "--idle-timeout-ms", "300"],
        "",
    )
    .await
    .unwrap();
    assert_eq!(tail.stdout, "poison\n");
}
