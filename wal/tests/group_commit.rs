//! Group commit: concurrent appenders through one writer thread, and what each sync policy
//! promises before it answers.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use wal::{
    CommitHandle, Error, GroupCommit, GroupCommitOptions, HardState, SyncPolicy, Wal, WalOptions,
};

/// Every test finishes well within this; a hang fails instead of blocking the suite.
const TEST_DEADLINE: Duration = Duration::from_secs(30);

fn start(dir: &std::path::Path, sync_policy: SyncPolicy) -> GroupCommit {
    let wal = Wal::open(
        dir,
        WalOptions {
            segment_bytes: 4096,
        },
    )
    .unwrap();
    let options = GroupCommitOptions {
        sync_policy,
        ..GroupCommitOptions::default()
    };
    GroupCommit::start(wal, options).unwrap()
}

async fn bounded<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_DEADLINE, future)
        .await
        .expect("test exceeded its deadline")
}

/// Runs `appenders` tasks, each appending `per_appender` records, and returns index -> payload.
async fn append_concurrently(
    handle: &CommitHandle,
    appenders: usize,
    per_appender: usize,
) -> BTreeMap<u64, Vec<u8>> {
    let mut tasks = Vec::new();
    for appender in 0..appenders {
        let handle = handle.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for seq in 0..per_appender {
                let payload = format!("appender {appender} record {seq}").into_bytes();
                let index = handle.append(payload.clone()).await.unwrap();
                acked.push((index, payload));
            }
            acked
        }));
    }
    let mut all = BTreeMap::new();
    for task in tasks {
        for (index, payload) in task.await.unwrap() {
            assert!(
                all.insert(index, payload).is_none(),
                "index {index} given twice"
            );
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appenders_share_fsyncs_and_every_ack_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let group = start(dir.path(), SyncPolicy::Always);
    let handle = group.handle();
    let (appenders, per_appender) = (64, 20);
    let acked = bounded(append_concurrently(&handle, appenders, per_appender)).await;

    let total = (appenders * per_appender) as u64;
    assert_eq!(
        acked.keys().copied().collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
    let stats = handle.stats().unwrap();
    assert_eq!(stats.records_appended, total);
    assert!(
        stats.data_syncs < total,
        "{} fsyncs for {total} appends: no batching happened",
        stats.data_syncs
    );
    eprintln!("{total} appends shared {} fsyncs", stats.data_syncs);
    bounded(group.shutdown()).await.unwrap();
    drop(handle);

    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    for (index, payload) in acked {
        assert_eq!(wal.read(index).unwrap(), Some(payload), "index {index}");
    }
}

#[tokio::test]
async fn under_always_each_lone_append_waits_for_its_own_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let group = start(dir.path(), SyncPolicy::Always);
    let handle = group.handle();
    for expected in 1..=10 {
        let index = bounded(handle.append(b"x".to_vec())).await.unwrap();
        assert_eq!(index, expected);
        assert_eq!(handle.stats().unwrap().data_syncs, expected);
    }
    bounded(group.shutdown()).await.unwrap();
}

#[tokio::test]
async fn under_no_appends_are_answered_without_fsync_and_shutdown_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let group = start(dir.path(), SyncPolicy::No);
    let handle = group.handle();
    for _ in 0..100 {
        bounded(handle.append(b"cheap".to_vec())).await.unwrap();
    }
    assert_eq!(handle.stats().unwrap().data_syncs, 0);
    bounded(group.shutdown()).await.unwrap();
    assert_eq!(handle.stats().unwrap().data_syncs, 1);
    assert!(matches!(
        handle.append(b"late".to_vec()).await,
        Err(Error::Closed)
    ));
}

#[tokio::test]
async fn under_everysec_a_background_fsync_follows_within_about_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let group = start(dir.path(), SyncPolicy::EverySec);
    let handle = group.handle();
    bounded(handle.append(b"soon durable".to_vec()))
        .await
        .unwrap();
    assert_eq!(handle.stats().unwrap().data_syncs, 0);
    let started = Instant::now();
    while handle.stats().unwrap().data_syncs == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no background fsync"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(started.elapsed() < Duration::from_millis(2500));
    bounded(group.shutdown()).await.unwrap();
}

#[tokio::test]
async fn an_explicit_sync_is_honoured_under_every_policy() {
    for policy in [SyncPolicy::No, SyncPolicy::EverySec] {
        let dir = tempfile::tempdir().unwrap();
        let group = start(dir.path(), policy);
        let handle = group.handle();
        bounded(handle.append(b"x".to_vec())).await.unwrap();
        bounded(handle.sync()).await.unwrap();
        assert_eq!(handle.stats().unwrap().data_syncs, 1, "{policy:?}");
        bounded(group.shutdown()).await.unwrap();
    }
}

#[tokio::test]
async fn truncation_and_appends_apply_in_the_order_sent() {
    let dir = tempfile::tempdir().unwrap();
    let group = start(dir.path(), SyncPolicy::Always);
    let handle = group.handle();
    let entries: Vec<Vec<u8>> = (1..=10)
        .map(|i| format!("term 1 entry {i}").into_bytes())
        .collect();
    bounded(handle.append_at(1, entries)).await.unwrap();
    assert!(matches!(
        handle.append_at(5, vec![b"conflict".to_vec()]).await,
        Err(Error::NotContiguous {
            expected: 11,
            found: 5
        })
    ));
    bounded(handle.truncate_suffix(5)).await.unwrap();
    bounded(handle.append_at(5, vec![b"term 2 entry 5".to_vec()]))
        .await
        .unwrap();
    let state = HardState {
        term: 2,
        vote: Some(3),
        commit: 5,
    };
    bounded(handle.save_hard_state(state)).await.unwrap();
    bounded(group.shutdown()).await.unwrap();
    drop(handle);

    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(wal.last_index(), Some(5));
    assert_eq!(
        wal.read(4).unwrap().as_deref(),
        Some(&b"term 1 entry 4"[..])
    );
    assert_eq!(
        wal.read(5).unwrap().as_deref(),
        Some(&b"term 2 entry 5"[..])
    );
    assert_eq!(wal.hard_state(), Some(state));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_of_depth_one_still_serves_many_appenders() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let options = GroupCommitOptions {
        queue_depth: 1,
        batch_bytes_max: 1,
        ..GroupCommitOptions::default()
    };
    let group = GroupCommit::start(wal, options).unwrap();
    let acked = bounded(append_concurrently(&group.handle(), 16, 10)).await;
    assert_eq!(acked.len(), 160);
    bounded(group.shutdown()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_see_acknowledged_records_while_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let group = start(dir.path(), SyncPolicy::Always);
    let handle = group.handle();
    let writer = tokio::spawn({
        let handle = handle.clone();
        async move { append_concurrently(&handle, 4, 50).await }
    });
    let first = bounded(handle.append(b"first".to_vec())).await.unwrap();
    while !writer.is_finished() {
        assert_eq!(handle.read(first).unwrap().as_deref(), Some(&b"first"[..]));
        let (first_index, last_index) = handle
            .with_wal(|w| (w.first_index(), w.last_index()))
            .unwrap();
        assert!(first_index <= last_index);
        tokio::task::yield_now().await;
    }
    assert_eq!(bounded(writer).await.unwrap().len(), 200);
    bounded(group.shutdown()).await.unwrap();
}

#[test]
fn an_out_of_range_option_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let options = GroupCommitOptions {
        queue_depth: 0,
        ..GroupCommitOptions::default()
    };
    assert!(matches!(
        GroupCommit::start(wal, options),
        Err(Error::InvalidOption {
            field: "queue_depth",
            ..
        })
    ));
}
