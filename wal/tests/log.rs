//! The log's operations, one guarantee per test, against a real directory.

use std::fs;
use std::path::{Path, PathBuf};

use wal::{Error, HardState, Wal, WalOptions};

/// Segments this small roll every few records, so tests cross boundaries cheaply.
fn small_segments() -> WalOptions {
    WalOptions { segment_bytes: 128 }
}

fn payload(index: u64) -> Vec<u8> {
    format!("record {index}").into_bytes()
}

fn append_range(wal: &mut Wal, indexes: std::ops::RangeInclusive<u64>) {
    for index in indexes {
        wal.append(index, &payload(index)).unwrap();
    }
    wal.sync().unwrap();
}

fn all_records(wal: &Wal) -> Vec<(u64, Vec<u8>)> {
    wal.iter_from(0).map(Result::unwrap).collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    files.sort();
    files
}

#[test]
fn a_new_log_is_empty_and_starts_at_index_one() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert!(wal.is_empty());
    assert_eq!(wal.next_index(), 1);
    assert_eq!((wal.first_index(), wal.last_index()), (None, None));
    assert!(wal.open_summary().created);
    assert_eq!(
        segment_files(dir.path()),
        vec![dir.path().join("00000000000000000001.wal")]
    );
}

#[test]
fn appended_records_read_back_before_and_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    wal.append(1, b"one").unwrap();
    wal.append_batch(2, &[&b"two"[..], b"", b"four"]).unwrap();
    wal.sync().unwrap();
    assert_eq!(wal.read(3).unwrap(), Some(Vec::new()));
    drop(wal);

    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!((wal.first_index(), wal.last_index()), (Some(1), Some(4)));
    assert_eq!(wal.read(1).unwrap().as_deref(), Some(&b"one"[..]));
    assert_eq!(wal.read(4).unwrap().as_deref(), Some(&b"four"[..]));
    assert_eq!(wal.read(0).unwrap(), None);
    assert_eq!(wal.read(5).unwrap(), None);
    assert_eq!(wal.open_summary().truncated_tail, None);
    assert_eq!(wal.open_summary().records, 4);
}

#[test]
fn an_append_at_any_index_but_the_next_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    wal.append(1, b"a").unwrap();
    for wrong in [0, 1, 3, u64::MAX] {
        assert!(matches!(
            wal.append(wrong, b"b"),
            Err(Error::NotContiguous { expected: 2, found }) if found == wrong
        ));
    }
    assert_eq!(wal.last_index(), Some(1));
}

#[test]
fn a_payload_over_the_limit_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let big = vec![0; wal::MAX_PAYLOAD_BYTES + 1];
    let batch: [&[u8]; 2] = [b"fine", &big];
    assert!(matches!(
        wal.append_batch(1, &batch),
        Err(Error::PayloadTooLarge { .. })
    ));
    assert!(wal.is_empty());
}

#[test]
fn records_roll_across_segments_named_by_their_first_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), small_segments()).unwrap();
    append_range(&mut wal, 1..=40);
    assert!(wal.segment_count() > 3, "{} segments", wal.segment_count());
    drop(wal);

    let wal = Wal::open(dir.path(), small_segments()).unwrap();
    let records = all_records(&wal);
    assert_eq!(records.len(), 40);
    for (index, record) in records {
        assert_eq!(record, payload(index));
    }
    for file in segment_files(dir.path()) {
        let name = file.file_stem().unwrap().to_str().unwrap();
        let base: u64 = name.parse().unwrap();
        assert_eq!(name.len(), 20);
        assert_eq!(wal.read(base).unwrap(), Some(payload(base)), "{name}");
        assert!(fs::metadata(&file).unwrap().len() <= 128);
    }
}

#[test]
fn a_record_larger_than_a_segment_gets_a_segment_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), small_segments()).unwrap();
    wal.append(1, b"small").unwrap();
    wal.append(2, &[7; 500]).unwrap();
    wal.append(3, b"small again").unwrap();
    wal.sync().unwrap();
    assert_eq!(wal.segment_count(), 3);
    drop(wal);
    let wal = Wal::open(dir.path(), small_segments()).unwrap();
    assert_eq!(wal.read(2).unwrap(), Some(vec![7; 500]));
}

#[test]
fn iteration_starts_at_the_given_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), small_segments()).unwrap();
    append_range(&mut wal, 1..=20);
    let indexes: Vec<u64> = wal.iter_from(15).map(|r| r.unwrap().0).collect();
    assert_eq!(indexes, (15..=20).collect::<Vec<_>>());
    assert_eq!(wal.iter_from(21).count(), 0);
}

#[test]
fn truncate_suffix_across_a_segment_boundary_then_append() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), small_segments()).unwrap();
    append_range(&mut wal, 1..=30);
    let segments_before = wal.segment_count();
    wal.truncate_suffix(6).unwrap();
    assert_eq!(wal.last_index(), Some(5));
    assert!(wal.segment_count() < segments_before);
    assert!(matches!(
        wal.append(30, b"x"),
        Err(Error::NotContiguous { expected: 6, .. })
    ));
    wal.append(6, b"new 6").unwrap();
    wal.append(7, b"new 7").unwrap();
    wal.sync().unwrap();
    drop(wal);

    let wal = Wal::open(dir.path(), small_segments()).unwrap();
    let records = all_records(&wal);
    assert_eq!(records.len(), 7);
    assert_eq!(records[4], (5, payload(5)));
    assert_eq!(records[5], (6, b"new 6".to_vec()));
    assert_eq!(records[6], (7, b"new 7".to_vec()));
}

#[test]
fn truncate_suffix_at_a_segment_start_removes_that_whole_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), small_segments()).unwrap();
    append_range(&mut wal, 1..=30);
    let files = segment_files(dir.path());
    let second_base: u64 = files[1]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    wal.truncate_suffix(second_base).unwrap();
    assert_eq!(segment_files(dir.path()), files[..1]);
    assert_eq!(wal.next_index(), second_base);
    append_range(&mut wal, second_base..=second_base + 10);
    drop(wal);
    let wal = Wal::open(dir.path(), small_segments()).unwrap();
    assert_eq!(wal.last_index(), Some(second_base + 10));
}

#[test]
fn truncate_suffix_to_the_first_index_empties_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), small_segments()).unwrap();
    append_range(&mut wal, 1..=30);
    wal.truncate_suffix(1).unwrap();
    assert!(wal.is_empty());
    assert_eq!(wal.next_index(), 1);
    assert_eq!(segment_files(dir.path()).len(), 1);
    drop(wal);
    let wal = Wal::open(dir.path(), small_segments()).unwrap();
    assert!(wal.is_empty());
    assert_eq!(wal.next_index(), 1);
}

#[test]
fn truncate_suffix_past_the_end_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    append_range(&mut wal, 1..=3);
    wal.truncate_suffix(4).unwrap();
    wal.truncate_suffix(100).unwrap();
    assert_eq!(wal.last_index(), Some(3));
}

#[test]
fn drop_prefix_deletes_only_whole_segments_below_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), small_segments()).unwrap();
    append_range(&mut wal, 1..=40);
    let segments = wal.segment_count();
    let removed = wal.drop_prefix(20).unwrap();
    assert!(removed > 0);
    assert_eq!(wal.segment_count(), segments - removed);
    let first = wal.first_index().unwrap();
    assert!(first <= 20, "record 20 must survive, log starts at {first}");
    assert_eq!(wal.read(first - 1).unwrap(), None);
    assert_eq!(wal.read(20).unwrap(), Some(payload(20)));
    drop(wal);

    let wal = Wal::open(dir.path(), small_segments()).unwrap();
    assert_eq!(wal.first_index(), Some(first));
    assert_eq!(wal.last_index(), Some(40));
    assert!(matches!(
        Wal::open(dir.path(), small_segments()).map(|mut w| w.truncate_suffix(first - 1)),
        Ok(Err(Error::TruncateBeforeStart { .. }))
    ));
}

#[test]
fn drop_prefix_never_deletes_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), small_segments()).unwrap();
    append_range(&mut wal, 1..=40);
    wal.drop_prefix(u64::MAX).unwrap();
    assert_eq!(wal.segment_count(), 1);
    assert_eq!(wal.last_index(), Some(40));
    wal.append(41, b"still appendable").unwrap();
}

#[test]
fn reset_restarts_the_log_after_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), small_segments()).unwrap();
    append_range(&mut wal, 1..=40);
    wal.reset(1001).unwrap();
    assert!(wal.is_empty());
    assert_eq!(
        segment_files(dir.path()),
        vec![dir.path().join("00000000000000001001.wal")]
    );
    wal.append(1001, b"after the snapshot").unwrap();
    wal.sync().unwrap();
    drop(wal);
    let wal = Wal::open(dir.path(), small_segments()).unwrap();
    assert_eq!(
        (wal.first_index(), wal.last_index()),
        (Some(1001), Some(1001))
    );
}

#[test]
fn the_hard_state_survives_reopen_and_is_replaced_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(wal.hard_state(), None);
    let voted = HardState {
        term: 3,
        vote: Some(2),
        commit: 0,
    };
    wal.save_hard_state(voted).unwrap();
    let later = HardState {
        term: 4,
        vote: None,
        commit: 17,
    };
    wal.save_hard_state(later).unwrap();
    drop(wal);
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(wal.hard_state(), Some(later));
}

#[test]
fn a_damaged_hard_state_is_an_error_not_a_default() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    wal.save_hard_state(HardState {
        term: 9,
        vote: Some(1),
        commit: 5,
    })
    .unwrap();
    drop(wal);
    let path = dir.path().join(wal::hard_state::HARD_STATE_FILE);
    let mut bytes = fs::read(&path).unwrap();
    bytes[13] ^= 0x40;
    fs::write(&path, bytes).unwrap();
    let error = Wal::open(dir.path(), WalOptions::default()).unwrap_err();
    assert!(matches!(error, Error::Corrupt { .. }), "{error}");
}

#[test]
fn leftover_temporary_files_are_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(Wal::open(dir.path(), WalOptions::default()).unwrap());
    let temp = dir.path().join("00000000000000000009.wal.tmp");
    fs::write(&temp, b"half a header").unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(wal.open_summary().removed_temp_files, vec![temp.clone()]);
    assert!(!temp.exists());
}

#[test]
fn an_out_of_range_option_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let error = Wal::open(dir.path(), WalOptions { segment_bytes: 1 }).unwrap_err();
    assert!(matches!(
        error,
        Error::InvalidOption {
            field: "segment_bytes",
            ..
        }
    ));
}
