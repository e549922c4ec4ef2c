//! Tests of the partition log: appends and reads across segments, roll, retention, indexes,
//! and recovery from torn tails, bit flips and lost index files. Randomized tests take their
//! choices from `harness::seeded_rng` (the seed is printed on failure; `TEST_SEED` replays).

use std::path::Path;

use harness::seeded_rng;
use rand::RngExt;

use super::*;
use crate::record_batch::{BatchBuilder, ProducerStamp, Record, records};

/// A batch of `count` records with values `"{first}"`, `"{first + 1}"`, … at `timestamp`.
fn batch(first: u64, count: u64, timestamp: i64) -> Vec<u8> {
    let mut builder = BatchBuilder::new();
    for n in first..first + count {
        let value = format!("value-{n:06}");
        builder.push(&Record {
            key: Some(b"key"),
            value: Some(value.as_bytes()),
            headers: &[],
            timestamp,
        });
    }
    builder.finish(ProducerStamp::NONE).to_vec()
}

fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 512,
        max_batch_bytes: 4096,
        retention_ms: -1,
        ..LogConfig::default()
    }
}

/// Appends `batches` batches of 3 records each (about 130 bytes); returns the end offset.
fn fill(log: &mut PartitionLog, batches: u64, timestamp: i64) -> u64 {
    for _ in 0..batches {
        let first = log.end_offset();
        let header = log
            .append(&mut batch(first, 3, timestamp), timestamp)
            .unwrap();
        assert_eq!(header.base_offset, first);
    }
    log.end_offset()
}

/// Every value from `from` to the end, read back through `read` in `max_bytes` steps.
fn read_all(log: &PartitionLog, from: u64, max_bytes: usize) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut next = from;
    while let Some(range) = log.read(next, max_bytes).unwrap() {
        let bytes = range.read().unwrap();
        let mut rest = &bytes[..];
        while let Ok(header) = record_batch::check(rest, 1 << 20) {
            for record in records(rest, header) {
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
    out
}

fn assert_values(values: &[(u64, String)], from: u64, to: u64) {
    let expected: Vec<(u64, String)> = (from..to).map(|n| (n, format!("value-{n:06}"))).collect();
    assert_eq!(values, expected);
}

fn log_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn appends_roll_by_size_and_read_back_from_every_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_segments()).unwrap();
    let end = fill(&mut log, 100, 1_000);
    assert_eq!(end, 300);
    assert!(
        log.segments().len() > 3,
        "{} segments",
        log.segments().len()
    );
    for segment in log.segments() {
        assert!(segment.size() <= 4096);
    }
    // Closed segments have their index files; names are 20-digit base offsets.
    let names = log_files(dir.path());
    assert!(
        names.contains(&"00000000000000000000.index".to_owned()),
        "{names:?}"
    );
    assert!(names.contains(&"00000000000000000000.timeindex".to_owned()));
    for from in 0..end {
        let values = read_all(&log, from, 700);
        assert_values(&values, from, end);
    }
    assert!(log.read(end, 700).unwrap().is_none());
    assert!(matches!(
        log.read(end + 1, 700),
        Err(LogError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn a_read_returns_at_least_one_whole_batch_whatever_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_segments()).unwrap();
    fill(&mut log, 5, 1_000);
    let range = log.read(4, 1).unwrap().unwrap();
    let bytes = range.read().unwrap();
    let header = record_batch::check(&bytes, 1 << 20).unwrap();
    assert_eq!((header.base_offset, header.size), (3, bytes.len()));
}

#[test]
fn segments_roll_by_age_since_their_first_append() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_ms: 1_000,
        ..small_segments()
    };
    let mut log = PartitionLog::open(dir.path(), config).unwrap();
    fill(&mut log, 2, 10_000);
    fill(&mut log, 1, 10_999);
    assert_eq!(log.segments().len(), 1);
    fill(&mut log, 1, 11_000);
    assert_eq!(log.segments().len(), 2);
    assert_eq!(log.segments()[1].base_offset(), 9);
}

#[test]
fn record_timestamps_from_long_ago_do_not_make_every_append_roll() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_segments()).unwrap();
    // `fill` stamps records with 0 (1970); the broker's clock says 2026.
    for _ in 0..10 {
        let first = log.end_offset();
        log.append(&mut batch(first, 1, 0), 1_790_000_000_000)
            .unwrap();
    }
    assert_eq!(log.segments().len(), 1);
}

#[test]
fn retention_by_time_deletes_only_whole_closed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_ms: 5_000,
        ..small_segments()
    };
    let mut log = PartitionLog::open(dir.path(), config).unwrap();
    fill(&mut log, 60, 1_000); // old
    let old_segments = log.segments().len();
    let boundary = log.end_offset();
    log.roll().unwrap();
    fill(&mut log, 10, 9_000); // recent
    let outcome = log.enforce_retention(10_000).unwrap();
    assert_eq!(outcome.segments, old_segments);
    assert_eq!(log.start_offset(), boundary);
    assert_values(
        &read_all(&log, boundary, 1 << 20),
        boundary,
        log.end_offset(),
    );
    // Nothing left to delete, and the active segment is never deleted even when expired.
    assert_eq!(log.enforce_retention(1_000_000).unwrap().segments, 0);
    assert_eq!(log.segments().len(), 1);
    // Reopening sees the same start.
    drop(log);
    let log = PartitionLog::open(dir.path(), small_segments()).unwrap();
    assert_eq!(log.start_offset(), boundary);
}

#[test]
fn retention_by_size_keeps_at_least_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_bytes: 10_000,
        ..small_segments()
    };
    let mut log = PartitionLog::open(dir.path(), config).unwrap();
    fill(&mut log, 300, 1_000);
    let before = log.size_bytes();
    let outcome = log.enforce_retention(2_000).unwrap();
    assert!(outcome.segments > 0);
    assert_eq!(log.size_bytes(), before - outcome.bytes);
    assert!(log.size_bytes() >= 10_000, "{}", log.size_bytes());
    assert!(log.size_bytes() - log.segments()[0].size() < 10_000);
}

#[test]
fn offsets_are_found_by_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_segments()).unwrap();
    for n in 0..200i64 {
        let first = log.end_offset();
        // Timestamps rise by 10 per batch; records of a batch share one.
        log.append(&mut batch(first, 2, n * 10), 0).unwrap();
    }
    assert_eq!(log.offset_for_timestamp(i64::MIN).unwrap(), Some(0));
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some(0));
    assert_eq!(log.offset_for_timestamp(1).unwrap(), Some(2));
    assert_eq!(log.offset_for_timestamp(1_000).unwrap(), Some(200));
    assert_eq!(log.offset_for_timestamp(1_990).unwrap(), Some(398));
    assert_eq!(log.offset_for_timestamp(1_991).unwrap(), None);
}

#[test]
fn an_invalid_or_oversized_batch_is_refused_and_the_log_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_segments()).unwrap();
    fill(&mut log, 2, 0);
    let mut damaged = batch(0, 3, 0);
    let last = damaged.len() - 1;
    damaged[last] ^= 0x40;
    assert!(matches!(
        log.append(&mut damaged, 0),
        Err(LogError::InvalidBatch(record_batch::Defect::Crc { .. }))
    ));
    let mut huge = batch(0, 200, 0);
    assert!(matches!(
        log.append(&mut huge, 0),
        Err(LogError::BatchTooLarge { .. })
    ));
    let mut trailing = batch(0, 1, 0);
    trailing.push(0);
    assert!(log.append(&mut trailing, 0).is_err());
    assert_eq!(log.end_offset(), 6);
    assert_values(&read_all(&log, 0, 1 << 20), 0, 6);
}

#[test]
fn reopening_continues_the_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_segments()).unwrap();
    let end = fill(&mut log, 50, 0);
    let segments = log.segments().len();
    drop(log);
    let mut log = PartitionLog::open(dir.path(), small_segments()).unwrap();
    assert_eq!(log.end_offset(), end);
    assert_eq!(log.segments().len(), segments);
    assert!(log.recovery().truncated.is_none());
    assert!(log.recovery().rebuilt_indexes.is_empty());
    let end = fill(&mut log, 10, 0);
    assert_values(&read_all(&log, 0, 1 << 20), 0, end);
}

/// Positions and next offsets of the batches of the active segment, from its rebuilt index
/// and a walk over its headers.
fn batch_bounds(log: &PartitionLog) -> Vec<(u64, u64)> {
    let active = log.segments().last().unwrap();
    let mut bounds = Vec::new();
    let mut position = 0;
    let bytes = std::fs::read(active.path()).unwrap();
    while position < bytes.len() {
        let header = record_batch::check(&bytes[position..], 1 << 20).unwrap();
        position += header.size;
        bounds.push((position as u64, header.next_offset()));
    }
    bounds
}

#[test]
fn a_torn_tail_at_a_random_byte_is_cut_back_to_the_last_whole_batch() {
    let mut rng = seeded_rng();
    for _ in 0..40 {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), small_segments()).unwrap();
        fill(&mut log, rng.random_range(1..70), 0);
        let bounds = batch_bounds(&log);
        let active = log.segments().last().unwrap().path().to_path_buf();
        let base = log.segments().last().unwrap().base_offset();
        drop(log);

        let len = std::fs::metadata(&active).unwrap().len();
        let cut = rng.random_range(0..=len);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&active)
            .unwrap();
        file.set_len(cut).unwrap();
        drop(file);

        let mut log = PartitionLog::open(dir.path(), small_segments()).unwrap();
        let (kept_bytes, kept_end) = bounds
            .iter()
            .copied()
            .take_while(|&(end, _)| end <= cut)
            .last()
            .unwrap_or((0, base));
        assert_eq!(log.end_offset(), kept_end, "cut at {cut} of {len}");
        assert_eq!(std::fs::metadata(&active).unwrap().len(), kept_bytes);
        assert_eq!(log.recovery().truncated.is_some(), kept_bytes != cut);
        // Offsets continue without a gap after the cut.
        let end = fill(&mut log, 3, 0);
        assert_values(&read_all(&log, 0, 1 << 20), 0, end);
    }
}

#[test]
fn a_flipped_bit_in_the_active_segment_truncates_from_that_batch() {
    let mut rng = seeded_rng();
    for _ in 0..40 {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), small_segments()).unwrap();
        fill(&mut log, rng.random_range(1..70), 0);
        let bounds = batch_bounds(&log);
        let active = log.segments().last().unwrap().path().to_path_buf();
        let base = log.segments().last().unwrap().base_offset();
        drop(log);

        let mut bytes = std::fs::read(&active).unwrap();
        // Any byte except the leader epoch (12..16 of a batch), which no check covers.
        let position = loop {
            let position = rng.random_range(0..bytes.len());
            let start = bounds
                .iter()
                .map(|&(end, _)| end as usize)
                .take_while(|&end| end <= position)
                .last()
                .unwrap_or(0);
            if !(12..16).contains(&(position - start)) {
                break position;
            }
        };
        bytes[position] ^= 1 << rng.random_range(0..8);
        std::fs::write(&active, &bytes).unwrap();

        let log = PartitionLog::open(dir.path(), small_segments()).unwrap();
        let (kept_bytes, kept_end) = bounds
            .iter()
            .copied()
            .take_while(|&(end, _)| end as usize <= position)
            .last()
            .unwrap_or((0, base));
        assert_eq!(log.end_offset(), kept_end, "flip at byte {position}");
        let torn = log.recovery().truncated.as_ref().expect("a cut");
        assert_eq!(torn.position, kept_bytes);
        assert_values(&read_all(&log, 0, 1 << 20), 0, kept_end);
    }
}

#[test]
fn a_flipped_bit_in_a_closed_segment_is_an_error_naming_file_and_position() {
    let mut rng = seeded_rng();
    for _ in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), small_segments()).unwrap();
        fill(&mut log, 100, 0);
        let closed = rng.random_range(0..log.segments().len() - 1);
        let path = log.segments()[closed].path().to_path_buf();
        drop(log);

        let mut bytes = std::fs::read(&path).unwrap();
        let mut starts = Vec::new();
        let mut position = 0;
        while position < bytes.len() {
            starts.push(position);
            position += record_batch::check(&bytes[position..], 1 << 20)
                .unwrap()
                .size;
        }
        let flip = loop {
            let flip = rng.random_range(0..bytes.len());
            let start = *starts.iter().rev().find(|&&s| s <= flip).unwrap();
            if !(12..16).contains(&(flip - start)) {
                break flip;
            }
        };
        bytes[flip] ^= 1 << rng.random_range(0..8);
        std::fs::write(&path, &bytes).unwrap();
        let batch_start = *starts.iter().rev().find(|&&s| s <= flip).unwrap() as u64;

        let err = PartitionLog::open(dir.path(), small_segments()).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        match err {
            LogError::Corrupt { position, .. } | LogError::OffsetsOutOfOrder { position, .. } => {
                assert_eq!(position, batch_start, "{message}")
            }
            other => panic!("unexpected error {other}"),
        }
        // The damaged file is left exactly as it was: nothing is repaired behind our back.
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }
}

#[test]
fn missing_or_bad_indexes_are_rebuilt_identically() {
    for verify in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            verify_closed_segments: verify,
            ..small_segments()
        };
        let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        let end = fill(&mut log, 100, 0);
        drop(log);
        let index = dir.path().join(file_name(0, "index"));
        let timeindex = dir.path().join(file_name(0, "timeindex"));
        let original = (
            std::fs::read(&index).unwrap(),
            std::fs::read(&timeindex).unwrap(),
        );

        std::fs::remove_file(&index).unwrap();
        let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        assert_eq!(log.recovery().rebuilt_indexes, vec![index.clone()]);
        assert_eq!(std::fs::read(&index).unwrap(), original.0);
        drop(log);

        // Garbage that fails the sanity checks (a position far past the end of the log).
        std::fs::write(&timeindex, [0xff; 24]).unwrap();
        let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        assert_eq!(log.recovery().rebuilt_indexes, vec![index.clone()]);
        assert_eq!(std::fs::read(&timeindex).unwrap(), original.1);
        assert_values(&read_all(&log, 0, 1 << 20), 0, end);
        assert_eq!(log.offset_for_timestamp(0).unwrap(), Some(0));
    }
}

#[test]
fn orphaned_index_files_are_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_segments()).unwrap();
    fill(&mut log, 3, 0);
    drop(log);
    let orphan = dir.path().join(file_name(12345, "index"));
    std::fs::write(&orphan, [0; 8]).unwrap();
    let log = PartitionLog::open(dir.path(), small_segments()).unwrap();
    assert_eq!(log.recovery().removed_orphans, vec![orphan.clone()]);
    assert!(!orphan.exists());
}

#[test]
fn a_missing_segment_in_the_middle_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_segments()).unwrap();
    fill(&mut log, 100, 0);
    let middle = log.segments()[1].path().to_path_buf();
    drop(log);
    std::fs::remove_file(&middle).unwrap();
    let err = PartitionLog::open(dir.path(), small_segments()).unwrap_err();
    assert!(matches!(err, LogError::OffsetsOutOfOrder { .. }), "{err}");
}

fn keyed(key: &str, value: Option<&str>, timestamp: i64) -> Vec<u8> {
    let mut builder = BatchBuilder::new();
    builder.push(&Record {
        key: Some(key.as_bytes()),
        value: value.map(str::as_bytes),
        headers: &[],
        timestamp,
    });
    builder.finish(ProducerStamp::NONE).to_vec()
}

/// Every record of the log: (offset, key, value).
fn read_keyed(log: &PartitionLog) -> Vec<(u64, String, Option<String>)> {
    let mut out = Vec::new();
    let mut next = log.start_offset();
    while let Some(range) = log.read(next, 1 << 20).unwrap() {
        let bytes = range.read().unwrap();
        let mut rest = &bytes[..];
        while let Ok(header) = record_batch::check_stored(rest, 1 << 20) {
            for record in records(rest, header) {
                let record = record.unwrap();
                if record.offset >= next {
                    let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
                    out.push((
                        record.offset,
                        text(record.key.unwrap()),
                        record.value.map(text),
                    ));
                }
            }
            next = header.next_offset();
            rest = &rest[header.size..];
        }
    }
    out
}

#[test]
fn compaction_keeps_the_newest_record_per_key_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        cleanup: CleanupPolicy::Compact,
        delete_retention_ms: 1_000,
        ..small_segments()
    };
    let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    let mut newest: std::collections::BTreeMap<String, (u64, Option<String>)> = Default::default();
    for n in 0..300u64 {
        let key = format!("k{}", n % 10);
        let value = format!("v{n}");
        let offset = log
            .append(&mut keyed(&key, Some(&value), 5_000), 5_000)
            .unwrap()
            .base_offset;
        newest.insert(key, (offset, Some(value)));
    }
    // k7 is deleted long ago (its tombstone expires), k8 just now (its tombstone stays).
    let old = log
        .append(&mut keyed("k7", None, 0), 0)
        .unwrap()
        .base_offset;
    let recent = log
        .append(&mut keyed("k8", None, 9_500), 9_500)
        .unwrap()
        .base_offset;
    newest.remove("k7");
    newest.insert("k8".into(), (recent, None));
    log.roll().unwrap();
    let end = log.end_offset();
    let segment_ends: Vec<u64> = log.segments().iter().map(|s| s.next_offset() - 1).collect();

    let outcome = log.compact(10_000).unwrap();
    assert!(
        outcome.segments_rewritten > 0 && outcome.records_removed > 250,
        "{outcome:?}"
    );
    let check = |log: &PartitionLog| {
        let kept = read_keyed(log);
        for (key, (offset, value)) in &newest {
            assert!(
                kept.contains(&(*offset, key.clone(), value.clone())),
                "{key} lost"
            );
        }
        for (offset, key, _) in &kept {
            let is_newest = newest.get(key).is_some_and(|(o, _)| o == offset);
            // Anything else kept is the last record of a segment, which keeps the segment's end.
            assert!(
                is_newest || segment_ends.contains(offset),
                "stale {key} at {offset}"
            );
        }
        assert!(
            !kept
                .iter()
                .any(|(o, _, _)| *o == old && !segment_ends.contains(o))
        );
        assert_eq!(log.end_offset(), end);
    };
    check(&log);
    // A second pass finds nothing more to do; a reopen reads the gaps back.
    assert_eq!(log.compact(10_000).unwrap().segments_rewritten, 0);
    drop(log);
    let mut log = PartitionLog::open(dir.path(), config).unwrap();
    check(&log);
    let appended = log
        .append(&mut keyed("k1", Some("after"), 11_000), 11_000)
        .unwrap();
    assert_eq!(appended.base_offset, end);
}

#[test]
fn a_compaction_cut_short_leaves_the_original_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_segments()).unwrap();
    let end = fill(&mut log, 50, 0);
    drop(log);
    let leftover = dir.path().join(format!("{}.cleaned", file_name(0, "log")));
    std::fs::write(&leftover, b"half a rewrite").unwrap();
    let log = PartitionLog::open(dir.path(), small_segments()).unwrap();
    assert!(!leftover.exists());
    assert_values(&read_all(&log, 0, 1 << 20), 0, end);
}
