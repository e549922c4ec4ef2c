//! The sparse indexes of one segment: `.index` (offset to file position) and `.timeindex`
//! (timestamp to offset).
//!
//! Both are derived data: they can always be rebuilt from the `.log` file, and are, when one is
//! missing or fails its sanity check. They are kept in memory for every segment (20 bytes per
//! entry, one entry per `index_interval_bytes` of log) and written to disk when a segment is
//! closed, so an open that trusts them (`verify_closed_segments = false`) need not read the log.
//!
//! # `.index` entry (8 bytes, big-endian)
//!
//! | offset | size | field             | meaning                                         |
//! |-------:|-----:|-------------------|-------------------------------------------------|
//! |      0 |    4 | `relative_offset` | base offset of a batch minus the segment's base |
//! |      4 |    4 | `position`        | byte position of that batch in the `.log` file  |
//!
//! # `.timeindex` entry (12 bytes, big-endian), one per `.index` entry
//!
//! | offset | size | field             | meaning                                                   |
//! |-------:|-----:|-------------------|-----------------------------------------------------------|
//! |      0 |    8 | `timestamp`       | largest timestamp of all batches *before* that batch (`i64::MIN` if none) |
//! |      8 |    4 | `relative_offset` | the batch, as in `.index`                                 |
//!
//! An entry is added for the first batch of a segment and then for the first batch that starts
//! `index_interval_bytes` or more after the previous entry. So the rule is a pure function of
//! the batches: a rebuilt index is byte for byte the one that was written.
//!
//! Lookup by offset finds the last entry at or below the offset and walks batch headers from
//! there (at most about `index_interval_bytes` plus one batch). Lookup by timestamp finds the
//! last entry whose "everything before" timestamp is below the target: no record before that
//! batch can match, so the search starts there.

/// Bytes of one `.index` entry.
pub const OFFSET_ENTRY_BYTES: usize = 8;
/// Bytes of one `.timeindex` entry.
pub const TIME_ENTRY_BYTES: usize = 12;

/// One `.index` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetEntry {
    /// Batch base offset minus the segment's base offset.
    pub relative_offset: u32,
    /// Byte position of the batch in the `.log` file.
    pub position: u32,
}

/// The sparse offset and time indexes of one segment, in memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SegmentIndex {
    offsets: Vec<OffsetEntry>,
    /// Parallel to `offsets`: the largest timestamp before each indexed batch.
    times: Vec<i64>,
    /// Bytes of log appended since the last entry.
    bytes_since_entry: u64,
    /// Largest timestamp seen so far in the segment.
    max_timestamp: i64,
}

impl SegmentIndex {
    /// An empty index.
    pub fn new() -> Self {
        SegmentIndex {
            max_timestamp: i64::MIN,
            ..SegmentIndex::default()
        }
    }

    /// Accounts for a batch appended at `position`; adds an entry when the rule says so.
    pub fn observe(
        &mut self,
        relative_offset: u32,
        position: u32,
        size: usize,
        max_timestamp: i64,
        interval: u32,
    ) {
        if self.offsets.is_empty() || self.bytes_since_entry >= u64::from(interval) {
            self.offsets.push(OffsetEntry {
                relative_offset,
                position,
            });
            self.times.push(self.max_timestamp);
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += size as u64;
        self.max_timestamp = self.max_timestamp.max(max_timestamp);
    }

    /// Entries in the index.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// Whether the index has no entry (the segment is empty).
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// The entries, in order.
    pub fn entries(&self) -> &[OffsetEntry] {
        &self.offsets
    }

    /// Position of the last indexed batch whose base offset is at or below `relative_offset`.
    pub fn lookup(&self, relative_offset: u32) -> Option<u32> {
        let after = self
            .offsets
            .partition_point(|entry| entry.relative_offset <= relative_offset);
        after.checked_sub(1).map(|i| self.offsets[i].position)
    }

    /// Position from which to search for the first record with a timestamp at or above
    /// `timestamp`: the last indexed batch before which every timestamp is below it.
    pub fn lookup_time(&self, timestamp: i64) -> Option<u32> {
        let after = self.times.partition_point(|&before| before < timestamp);
        after.checked_sub(1).map(|i| self.offsets[i].position)
    }

    /// The `.index` file contents.
    pub fn encode_offsets(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.offsets.len() * OFFSET_ENTRY_BYTES);
        for entry in &self.offsets {
            out.extend_from_slice(&entry.relative_offset.to_be_bytes());
            out.extend_from_slice(&entry.position.to_be_bytes());
        }
        out
    }

    /// The `.timeindex` file contents.
    pub fn encode_times(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.times.len() * TIME_ENTRY_BYTES);
        for (time, entry) in self.times.iter().zip(&self.offsets) {
            out.extend_from_slice(&time.to_be_bytes());
            out.extend_from_slice(&entry.relative_offset.to_be_bytes());
        }
        out
    }

    /// Reads both files back, with Kafka-style sanity checks: whole entries, strictly growing
    /// offsets and positions below `log_size`, a first entry at position 0, non-decreasing
    /// timestamps, and the two files agreeing entry by entry. The tail state (`bytes_since_entry`,
    /// the last timestamps) is not in the files: the caller finishes it by scanning the batches
    /// after the last entry with [`SegmentIndex::observe_tail`].
    pub fn decode(offsets: &[u8], times: &[u8], log_size: u64) -> Result<Self, &'static str> {
        if !offsets.len().is_multiple_of(OFFSET_ENTRY_BYTES)
            || !times.len().is_multiple_of(TIME_ENTRY_BYTES)
        {
            return Err("a partial entry at the end");
        }
        let count = offsets.len() / OFFSET_ENTRY_BYTES;
        if times.len() / TIME_ENTRY_BYTES != count {
            return Err("the offset and time indexes differ in length");
        }
        if (count == 0) != (log_size == 0) {
            return Err("an empty index for a non-empty log, or the reverse");
        }
        let mut index = SegmentIndex::new();
        for i in 0..count {
            let o = &offsets[i * OFFSET_ENTRY_BYTES..];
            let t = &times[i * TIME_ENTRY_BYTES..];
            let entry = OffsetEntry {
                relative_offset: u32::from_be_bytes(o[0..4].try_into().expect("4 bytes")),
                position: u32::from_be_bytes(o[4..8].try_into().expect("4 bytes")),
            };
            let time = i64::from_be_bytes(t[0..8].try_into().expect("8 bytes"));
            let time_offset = u32::from_be_bytes(t[8..12].try_into().expect("4 bytes"));
            if time_offset != entry.relative_offset {
                return Err("the time index names another batch than the offset index");
            }
            if u64::from(entry.position) >= log_size {
                return Err("a position beyond the end of the log");
            }
            if let (Some(prev), Some(&prev_time)) = (index.offsets.last(), index.times.last()) {
                if entry.relative_offset <= prev.relative_offset || entry.position <= prev.position
                {
                    return Err("offsets or positions do not grow");
                }
                if time < prev_time {
                    return Err("timestamps go backwards");
                }
            } else if entry.position != 0 || time != i64::MIN {
                return Err("the first entry is not the segment's first batch");
            }
            index.offsets.push(entry);
            index.times.push(time);
        }
        if let Some(&last_time) = index.times.last() {
            index.max_timestamp = last_time;
        }
        Ok(index)
    }

    /// Continues a decoded index over a batch after its last entry (positions at or past the
    /// last entry's), so that it ends in the state appends would have left.
    pub fn observe_tail(&mut self, size: usize, max_timestamp: i64) {
        self.bytes_since_entry += size as u64;
        self.max_timestamp = self.max_timestamp.max(max_timestamp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index_of(batches: &[(usize, i64)], interval: u32) -> SegmentIndex {
        let mut index = SegmentIndex::new();
        let mut position = 0;
        for (i, &(size, ts)) in batches.iter().enumerate() {
            index.observe(i as u32 * 10, position as u32, size, ts, interval);
            position += size;
        }
        index
    }

    #[test]
    fn entries_are_sparse_by_bytes() {
        // Batches of 1000 bytes with an interval of 2500: entries at batches 0, 3, 6.
        let index = index_of(&[(1000, 0); 8], 2500);
        let positions: Vec<u32> = index.entries().iter().map(|e| e.position).collect();
        assert_eq!(positions, vec![0, 3000, 6000]);
        assert_eq!(index.lookup(0), Some(0));
        assert_eq!(index.lookup(29), Some(0));
        assert_eq!(index.lookup(30), Some(3000));
        assert_eq!(index.lookup(1000), Some(6000));
        assert_eq!(SegmentIndex::new().lookup(0), None);
    }

    #[test]
    fn time_lookup_starts_where_no_earlier_record_can_match() {
        let index = index_of(&[(100, 5), (100, 50), (100, 20), (100, 70)], 1);
        // Entry i holds the max timestamp before batch i: MIN, 5, 50, 50.
        assert_eq!(index.lookup_time(5), Some(0));
        assert_eq!(index.lookup_time(6), Some(100));
        assert_eq!(index.lookup_time(50), Some(100));
        assert_eq!(index.lookup_time(51), Some(300));
    }

    #[test]
    fn encoded_files_decode_to_the_same_entries() {
        let index = index_of(&[(700, 3), (900, 9), (50, 1), (4000, 12)], 1000);
        let offsets = index.encode_offsets();
        let times = index.encode_times();
        let decoded = SegmentIndex::decode(&offsets, &times, 5650).unwrap();
        assert_eq!(decoded.entries(), index.entries());
        assert_eq!(decoded.times, index.times);
    }

    #[test]
    fn insane_files_are_refused() {
        let index = index_of(&[(700, 3), (900, 9), (50, 1), (4000, 12)], 1000);
        let (offsets, times) = (index.encode_offsets(), index.encode_times());
        assert!(SegmentIndex::decode(&offsets[..offsets.len() - 1], &times, 5650).is_err());
        assert!(SegmentIndex::decode(&offsets, &times[..12], 5650).is_err());
        assert!(
            SegmentIndex::decode(&offsets, &times, 1600).is_err(),
            "position past end"
        );
        let mut swapped = offsets.clone();
        swapped.swap(7, 15);
        assert!(SegmentIndex::decode(&swapped, &times, 5650).is_err());
        assert!(SegmentIndex::decode(&[], &[], 10).is_err());
        assert!(SegmentIndex::decode(&[], &[], 0).unwrap().is_empty());
    }
}
