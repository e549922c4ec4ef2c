//! Crash simulation: whatever a crash or the disk does to the files, the log reopens to exactly
//! the records that are provably intact, or refuses with an error naming the file and offset.
//!
//! Each test writes a real log, copies its segment files into a fresh directory with damage
//! applied (cut at a byte, a flipped bit, garbage appended), reopens, and compares the records
//! with what the format says must survive. Random choices come from one seed, printed at the
//! start and on failure; `TEST_SEED=<seed>` replays a run.

use std::fs;
use std::ops::Range;

use harness::{TestRng, seeded_rng};
use rand::RngExt;
use wal::segment::SEGMENT_HEADER_BYTES;
use wal::{Error, Wal, WalOptions};

const SEGMENT_BYTES: u64 = 256;
const RECORDS: u64 = 60;
const RANDOM_CASES: usize = 300;

fn options() -> WalOptions {
    WalOptions {
        segment_bytes: SEGMENT_BYTES,
    }
}

/// A record and the bytes it occupies in its file: (index, payload, byte range).
type Located = (u64, Vec<u8>, Range<usize>);

/// A log as it was written: its files' bytes, and where each record lies in them.
struct Written {
    /// (file name, bytes), in index order.
    files: Vec<(String, Vec<u8>)>,
    /// For each file, its records: (index, payload, byte range in the file).
    records: Vec<Vec<Located>>,
}

impl Written {
    fn last(&self) -> usize {
        self.files.len() - 1
    }

    /// The records that must survive when segment `damaged` is intact only before byte
    /// `intact_until`: everything in earlier segments, and the records of `damaged` that end by
    /// then.
    fn expected(&self, damaged: usize, intact_until: usize) -> Vec<(u64, Vec<u8>)> {
        let mut expected = Vec::new();
        for (segment, records) in self.records.iter().enumerate().take(damaged + 1) {
            for (index, payload, range) in records {
                if segment < damaged || range.end <= intact_until {
                    expected.push((*index, payload.clone()));
                }
            }
        }
        expected
    }

    /// The record of segment `segment` that contains byte `offset`.
    fn record_at(&self, segment: usize, offset: usize) -> &Range<usize> {
        let (_, _, range) = self.records[segment]
            .iter()
            .find(|(_, _, range)| range.contains(&offset))
            .expect("offset inside a record");
        range
    }

    /// Writes the files, with `damage` applied to file `target`, into a new directory and opens
    /// the log there.
    fn reopen_damaged(
        &self,
        target: usize,
        damage: impl Fn(&mut Vec<u8>),
    ) -> (tempfile::TempDir, wal::Result<Wal>) {
        let dir = tempfile::tempdir().unwrap();
        for (position, (name, bytes)) in self.files.iter().enumerate() {
            let mut bytes = bytes.clone();
            if position == target {
                damage(&mut bytes);
            }
            fs::write(dir.path().join(name), bytes).unwrap();
        }
        let wal = Wal::open(dir.path(), options());
        (dir, wal)
    }
}

/// Writes `RECORDS` records of random sizes and contents, across several segments.
fn write_log(rng: &mut TestRng) -> Written {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), options()).unwrap();
    let mut payloads = Vec::new();
    for index in 1..=RECORDS {
        let mut payload = vec![0; rng.random_range(0..48)];
        rng.fill(&mut payload[..]);
        wal.append(index, &payload).unwrap();
        payloads.push((index, payload));
    }
    wal.sync().unwrap();
    drop(wal);

    let mut names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".wal"))
        .collect();
    names.sort();
    assert!(names.len() >= 3, "the test needs closed segments");
    let files: Vec<_> = names
        .iter()
        .map(|name| (name.clone(), fs::read(dir.path().join(name)).unwrap()))
        .collect();
    let records = locate_records(&names, payloads);
    Written { files, records }
}

/// Places each record in its file from the documented layout: segments start at their named
/// index, records follow the 24-byte header back to back, each 16 bytes plus its payload.
fn locate_records(names: &[String], payloads: Vec<(u64, Vec<u8>)>) -> Vec<Vec<Located>> {
    let bases: Vec<u64> = names.iter().map(|n| n[..20].parse().unwrap()).collect();
    let mut records = vec![Vec::new(); names.len()];
    let mut offset = SEGMENT_HEADER_BYTES;
    let mut segment = 0;
    for (index, payload) in payloads {
        if segment + 1 < bases.len() && index == bases[segment + 1] {
            segment += 1;
            offset = SEGMENT_HEADER_BYTES;
        }
        let end = offset + 16 + payload.len();
        records[segment].push((index, payload, offset..end));
        offset = end;
    }
    records
}

fn all_records(wal: &Wal) -> Vec<(u64, Vec<u8>)> {
    wal.iter_from(0).map(Result::unwrap).collect()
}

fn rng_with_seed_printed() -> TestRng {
    let rng = seeded_rng();
    eprintln!(
        "seed = {} (replay with TEST_SEED={})",
        rng.seed(),
        rng.seed()
    );
    rng
}

#[test]
fn the_log_as_written_reopens_whole() {
    let written = write_log(&mut rng_with_seed_printed());
    let (_dir, wal) = written.reopen_damaged(usize::MAX, |_| {});
    let wal = wal.unwrap();
    assert_eq!(
        all_records(&wal),
        written.expected(written.last(), usize::MAX)
    );
    assert_eq!(wal.open_summary().truncated_tail, None);
}

#[test]
fn a_crash_at_every_byte_of_the_last_segment_keeps_the_longest_complete_prefix() {
    let written = write_log(&mut rng_with_seed_printed());
    let last = written.last();
    let len = written.files[last].1.len();
    for cut in SEGMENT_HEADER_BYTES..=len {
        let (_dir, wal) = written.reopen_damaged(last, |bytes| bytes.truncate(cut));
        let mut wal = wal.unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        let expected = written.expected(last, cut);
        assert_eq!(all_records(&wal), expected, "cut at byte {cut}");
        let cut_something = wal.open_summary().truncated_tail.is_some();
        let on_boundary = written.records[last].iter().any(|(_, _, r)| r.end == cut);
        assert_eq!(
            cut_something,
            !on_boundary && cut > SEGMENT_HEADER_BYTES,
            "cut at {cut}"
        );

        // The log continues right after the surviving prefix.
        let next = expected.last().unwrap().0 + 1;
        wal.append(next, b"after recovery").unwrap();
        wal.sync().unwrap();
    }
}

#[test]
fn a_segment_cut_inside_its_header_is_refused_since_creation_is_atomic() {
    let written = write_log(&mut rng_with_seed_printed());
    let last = written.last();
    for cut in 0..SEGMENT_HEADER_BYTES {
        let (_dir, wal) = written.reopen_damaged(last, |bytes| bytes.truncate(cut));
        let error = wal.unwrap_err();
        assert!(
            matches!(error, Error::ForeignFile { .. }),
            "cut at {cut}: {error}"
        );
        assert!(
            error.to_string().contains(&written.files[last].0),
            "{error}"
        );
    }
}

#[test]
fn random_cuts_of_the_last_segment_keep_the_longest_complete_prefix() {
    let mut rng = rng_with_seed_printed();
    for _ in 0..RANDOM_CASES / 10 {
        let written = write_log(&mut rng);
        let last = written.last();
        let len = written.files[last].1.len();
        for _ in 0..10 {
            let cut = rng.random_range(SEGMENT_HEADER_BYTES..=len);
            let (_dir, wal) = written.reopen_damaged(last, |bytes| bytes.truncate(cut));
            assert_eq!(
                all_records(&wal.unwrap()),
                written.expected(last, cut),
                "cut at {cut}"
            );
        }
    }
}

#[test]
fn a_flipped_bit_in_the_last_segment_keeps_the_records_before_it() {
    let mut rng = rng_with_seed_printed();
    let written = write_log(&mut rng);
    let last = written.last();
    let len = written.files[last].1.len();
    for _ in 0..RANDOM_CASES {
        let offset = rng.random_range(SEGMENT_HEADER_BYTES..len);
        let bit = rng.random_range(0..8);
        let (_dir, wal) = written.reopen_damaged(last, |bytes| bytes[offset] ^= 1 << bit);
        let wal = wal.unwrap_or_else(|e| panic!("bit {bit} of byte {offset}: {e}"));
        let record = written.record_at(last, offset);
        assert_eq!(
            all_records(&wal),
            written.expected(last, record.start),
            "bit {bit} of byte {offset}"
        );
        let tail = wal.open_summary().truncated_tail.clone().unwrap();
        assert_eq!(tail.offset, record.start as u64);
    }
}

#[test]
fn zeros_or_garbage_after_the_last_record_are_cut() {
    let mut rng = rng_with_seed_printed();
    let written = write_log(&mut rng);
    let last = written.last();
    let mut garbage = vec![0; 100];
    rng.fill(&mut garbage[..]);
    for tail in [vec![0; 4096], garbage] {
        let (_dir, wal) = written.reopen_damaged(last, |bytes| bytes.extend_from_slice(&tail));
        let wal = wal.unwrap();
        assert_eq!(all_records(&wal), written.expected(last, usize::MAX));
        assert_eq!(
            wal.open_summary()
                .truncated_tail
                .as_ref()
                .unwrap()
                .bytes_removed,
            tail.len() as u64
        );
    }
}

#[test]
fn a_flipped_bit_in_a_closed_segment_is_an_error_naming_file_and_offset() {
    let mut rng = rng_with_seed_printed();
    let written = write_log(&mut rng);
    for _ in 0..RANDOM_CASES {
        let segment = rng.random_range(0..written.last());
        let (name, bytes) = &written.files[segment];
        let offset = rng.random_range(SEGMENT_HEADER_BYTES..bytes.len());
        let bit = rng.random_range(0..8);
        let (_dir, wal) = written.reopen_damaged(segment, |bytes| bytes[offset] ^= 1 << bit);
        let error = wal.expect_err("damage in a closed segment must not be dropped silently");
        let record = written.record_at(segment, offset);
        let Error::Corrupt {
            path, offset: at, ..
        } = &error
        else {
            panic!("bit {bit} of byte {offset} in {name}: {error}");
        };
        assert!(path.ends_with(name), "{error}");
        assert_eq!(*at, record.start as u64, "{error}");
        let message = error.to_string();
        assert!(
            message.contains(name) && message.contains(&format!("offset {at}")),
            "{message}"
        );
    }
}

#[test]
fn a_closed_segment_cut_short_is_an_error_never_a_silent_drop() {
    let mut rng = rng_with_seed_printed();
    let written = write_log(&mut rng);
    for _ in 0..RANDOM_CASES / 10 {
        let segment = rng.random_range(0..written.last());
        let len = written.files[segment].1.len();
        let cut = rng.random_range(SEGMENT_HEADER_BYTES..len);
        let (_dir, wal) = written.reopen_damaged(segment, |bytes| bytes.truncate(cut));
        let error = wal.unwrap_err();
        assert!(
            matches!(error, Error::Corrupt { .. } | Error::Gap { .. }),
            "cut at {cut}: {error}"
        );
    }
}

#[test]
fn a_missing_middle_segment_is_a_gap_naming_the_next_file() {
    let written = write_log(&mut rng_with_seed_printed());
    let dir = tempfile::tempdir().unwrap();
    for (position, (name, bytes)) in written.files.iter().enumerate() {
        if position != 1 {
            fs::write(dir.path().join(name), bytes).unwrap();
        }
    }
    let error = Wal::open(dir.path(), options()).unwrap_err();
    assert!(matches!(error, Error::Gap { .. }), "{error}");
    assert!(error.to_string().contains(&written.files[2].0), "{error}");
}

#[test]
fn a_foreign_file_with_a_segment_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let name = "00000000000000000001.wal";
    fs::write(
        dir.path().join(name),
        b"PK\x03\x04 this is a zip file, not a log",
    )
    .unwrap();
    let error = Wal::open(dir.path(), options()).unwrap_err();
    assert!(matches!(error, Error::ForeignFile { .. }), "{error}");
    assert!(error.to_string().contains(name), "{error}");
}

#[test]
fn a_badly_named_segment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("42.wal"), b"").unwrap();
    let error = Wal::open(dir.path(), options()).unwrap_err();
    assert!(matches!(error, Error::ForeignFile { .. }), "{error}");
}

#[test]
fn a_segment_from_a_future_format_version_is_refused() {
    let written = write_log(&mut rng_with_seed_printed());
    let (_dir, wal) =
        written.reopen_damaged(0, |bytes| bytes[8..12].copy_from_slice(&2u32.to_le_bytes()));
    let error = wal.unwrap_err();
    assert!(
        matches!(
            error,
            Error::UnsupportedVersion {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn a_renamed_segment_is_caught_by_its_header() {
    let written = write_log(&mut rng_with_seed_printed());
    let dir = tempfile::tempdir().unwrap();
    let (name, bytes) = &written.files[0];
    assert_eq!(name, "00000000000000000001.wal");
    fs::write(dir.path().join("00000000000000000005.wal"), bytes).unwrap();
    let error = Wal::open(dir.path(), options()).unwrap_err();
    assert!(matches!(error, Error::ForeignFile { .. }), "{error}");
}

/// `truncate_suffix` and `reset` delete segments newest first, `drop_prefix` oldest first, each
/// deletion made durable before the next. A crash between two deletions therefore leaves a
/// contiguous run of the original segments, which must open to exactly their records.
#[test]
fn a_crash_between_segment_deletions_leaves_a_log_that_opens() {
    let written = write_log(&mut rng_with_seed_printed());
    let count = written.files.len();
    let runs = (1..=count)
        .map(|keep| 0..keep)
        .chain((1..count).map(|skip| skip..count));
    for run in runs {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in &written.files[run.clone()] {
            fs::write(dir.path().join(name), bytes).unwrap();
        }
        let wal = Wal::open(dir.path(), options()).unwrap_or_else(|e| panic!("{run:?}: {e}"));
        let expected: Vec<(u64, Vec<u8>)> = written.records[run.clone()]
            .iter()
            .flatten()
            .map(|(index, payload, _)| (*index, payload.clone()))
            .collect();
        assert_eq!(all_records(&wal), expected, "segments {run:?}");
    }
}
