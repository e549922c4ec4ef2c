//! Consumer groups with real processes: three `broker-cli consume --group` members share a
//! topic; one is SIGKILLed while records keep arriving; its partitions move to the others
//! within the session timeout; every record is consumed at least once, and the only
//! duplicates are records of the dead member's partitions at or after its last committed
//! offset (its uncommitted window).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::{DataDir, Process, ProcessSpec, cargo_bin, free_addr};
use message_broker::client::{Client, Producer, ProducerConfig};
use message_broker::protocol::{CreateTopicRequest, ErrorCode};
use message_broker::record_batch::Record;

const TOPIC: &str = "g";
const GROUP: &str = "grp";
const PARTITIONS: u32 = 6;
const SESSION_TIMEOUT: Duration = Duration::from_millis(2_000);
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What one member's output says.
#[derive(Default)]
struct Output {
    /// (partition, offset) of every printed record, in order.
    records: Vec<(u32, u64)>,
    /// The last reported assignment.
    assigned: BTreeSet<u32>,
    /// Generation of the last reported assignment.
    generation: i32,
}

fn parse(log: &str, name: &str) -> Output {
    let prefix = format!("[{name}] ");
    let mut output = Output::default();
    for line in log.lines() {
        let Some(line) = line.strip_prefix(&prefix) else {
            continue;
        };
        if let Some(rest) = line.strip_prefix("member ") {
            let words: Vec<&str> = rest.split(' ').collect();
            // member ID generation N assigned [g/0,g/3]
            output.generation = words[2].parse().unwrap();
            let list = words[4].trim_start_matches('[').trim_end_matches(']');
            output.assigned = list
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|tp| tp.rsplit_once('/').unwrap().1.parse().unwrap())
                .collect();
        } else if let Some((position, _value)) = line.split_once('\t') {
            let (partition, offset) = position.split_once(':').unwrap();
            output
                .records
                .push((partition.parse().unwrap(), offset.parse().unwrap()));
        }
    }
    output
}

async fn produce(client: &Arc<Client>, from: usize, count: usize) {
    let mut producer = Producer::new(Arc::clone(client), TOPIC, ProducerConfig::default())
        .await
        .unwrap();
    for n in from..from + count {
        let (key, value) = (format!("k{n}"), format!("v{n}"));
        producer
            .send(&Record {
                key: Some(key.as_bytes()),
                value: Some(value.as_bytes()),
                headers: &[],
                timestamp: message_broker::server::now_ms(),
            })
            .await
            .unwrap();
    }
    let stats = producer.flush().await.unwrap();
    assert_eq!(stats.records_acknowledged, count as u64, "{stats:?}");
}

fn member(name: &str, broker: SocketAddr) -> Process {
    let spec = ProcessSpec::new(name, cargo_bin("broker-cli"))
        .args(["--broker", &broker.to_string()])
        .args([
            "consume",
            TOPIC,
            "--group",
            GROUP,
            "--from",
            "earliest",
            "--print-offset",
        ])
        .args([
            "--session-timeout-ms",
            &SESSION_TIMEOUT.as_millis().to_string(),
        ])
        // A commit a second, so a member that dies leaves records printed but uncommitted.
        .args(["--commit-interval-ms", "1000"]);
    Process::spawn(spec).unwrap()
}

/// Polls `check` every 20 ms until it holds, failing after `limit`.
async fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn covered(outputs: &[&Output], ends: &BTreeMap<u32, u64>) -> bool {
    let seen: BTreeSet<(u32, u64)> = outputs
        .iter()
        .flat_map(|o| o.records.iter().copied())
        .collect();
    ends.iter()
        .all(|(&p, &end)| (0..end).all(|offset| seen.contains(&(p, offset))))
}

async fn ends(client: &Client) -> BTreeMap<u32, u64> {
    let metadata = client.metadata(Some(vec![TOPIC.into()])).await.unwrap();
    metadata.topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition, p.end_offset))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_members_partitions_move_and_only_its_uncommitted_window_repeats() {
    let (listen, admin) = (free_addr(), free_addr());
    let data = DataDir::new("broker-group");
    let spec = ProcessSpec::new("message-broker", cargo_bin("message-broker"))
        .args(["--listen", &listen.to_string()])
        .args(["--admin-listen", &admin.to_string()])
        .args(["--data-dir", data.path().to_str().unwrap()]);
    let mut broker = Process::spawn(spec).unwrap();
    broker.wait_ready(admin, READY_TIMEOUT).unwrap();
    let client = Arc::new(Client::connect(listen).await.unwrap());
    let create = CreateTopicRequest {
        name: TOPIC.into(),
        partitions: PARTITIONS,
        ..CreateTopicRequest::default()
    };
    assert_eq!(client.create_topic(create).await.unwrap(), ErrorCode::None);
    produce(&client, 0, 600).await;

    let names = ["c0", "c1", "c2"];
    let mut members: Vec<Process> = names.iter().map(|n| member(n, listen)).collect();
    let read = |members: &[Process]| -> Vec<Output> {
        members
            .iter()
            .zip(names)
            .map(|(m, n)| parse(&m.log(), n))
            .collect()
    };
    // A stable group of three: two partitions each, one generation, everything consumed.
    let target = ends(&client).await;
    eventually(
        Duration::from_secs(30),
        "three members share the topic",
        || {
            let outputs = read(&members);
            let generations: BTreeSet<i32> = outputs.iter().map(|o| o.generation).collect();
            outputs.iter().all(|o| o.assigned.len() == 2)
                && generations.len() == 1
                && covered(&outputs.iter().collect::<Vec<_>>(), &target)
        },
    )
    .await;
    produce(&client, 600, 300).await;
    let target = ends(&client).await;
    eventually(
        Duration::from_secs(30),
        "the second round is consumed",
        || covered(&read(&members).iter().collect::<Vec<_>>(), &target),
    )
    .await;

    // Records keep coming, a few at a time, and c1 is SIGKILLed in the middle of them, so it
    // dies between printing some records and committing them. Its last commits are what the
    // group has for its partitions then (nobody else owns them until the group rebalances).
    let trickle = {
        let client = Arc::clone(&client);
        tokio::spawn(async move {
            for round in 0..30 {
                produce(&client, 900 + round * 20, 20).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    let dead = parse(&members[1].log(), "c1").assigned;
    members[1].kill().unwrap();
    let killed_at = Instant::now();
    let committed: HashMap<u32, u64> = client
        .committed_offsets(GROUP)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.partition, c.offset.unwrap_or(0)))
        .collect();
    // What c1 printed past its last commit (from the start of a partition it never committed):
    // the window the others must deliver again.
    let window = parse(&members[1].log(), "c1")
        .records
        .iter()
        .filter(|&&(partition, offset)| offset >= committed.get(&partition).copied().unwrap_or(0))
        .count();
    trickle.await.unwrap();

    let survivors = [0usize, 2];
    let mut moved_after = None;
    let target = ends(&client).await;
    eventually(
        Duration::from_secs(30),
        "the survivors consume everything",
        || {
            let outputs = read(&members);
            let taken: BTreeSet<u32> = survivors
                .iter()
                .flat_map(|&i| outputs[i].assigned.iter().copied())
                .collect();
            if moved_after.is_none() && dead.iter().all(|p| taken.contains(p)) {
                moved_after = Some(killed_at.elapsed());
            }
            moved_after.is_some() && covered(&outputs.iter().collect::<Vec<_>>(), &target)
        },
    )
    .await;
    let moved_after = moved_after.unwrap();
    assert!(
        moved_after < SESSION_TIMEOUT + Duration::from_secs(2),
        "partitions {dead:?} moved only after {moved_after:?}"
    );

    // At least once: covered above. Duplicates: only in the dead member's uncommitted window.
    let outputs = read(&members);
    let mut times_seen: HashMap<(u32, u64), usize> = HashMap::new();
    for output in &outputs {
        for &record in &output.records {
            *times_seen.entry(record).or_default() += 1;
        }
    }
    let duplicates: Vec<(u32, u64)> = times_seen
        .iter()
        .filter(|&(_, &n)| n > 1)
        .map(|(&record, _)| record)
        .collect();
    for &(partition, offset) in &duplicates {
        assert!(
            dead.contains(&partition) && offset >= committed.get(&partition).copied().unwrap_or(0),
            "duplicate {partition}:{offset} outside the dead member's window \
             (its partitions {dead:?}, committed {committed:?})"
        );
    }
    assert!(
        duplicates.len() <= window,
        "{} duplicates, more than the {window} records c1 printed past its last commit",
        duplicates.len()
    );
    eprintln!(
        "partitions {dead:?} moved after {moved_after:?}; c1 printed {window} records past its \
         last commit; {} duplicates, all in the dead member's uncommitted window",
        duplicates.len()
    );

    // `group describe` shows the two survivors, and no lag once their commits are in.
    let describe = || {
        let output = Command::new(cargo_bin("broker-cli"))
            .args(["--broker", &listen.to_string(), "group", "describe", GROUP])
            .output()
            .unwrap();
        String::from_utf8(output.stdout).unwrap()
    };
    let mut described = describe();
    let deadline = Instant::now() + Duration::from_secs(10);
    while described.matches(" lag 0 ").count() != PARTITIONS as usize {
        assert!(Instant::now() < deadline, "lag stays: {described}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        described = describe();
    }
    assert_eq!(described.matches("\nmember ").count(), 2, "{described}");
}
