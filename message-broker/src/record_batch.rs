//! Record batches in Kafka's RecordBatch v2 layout ("magic 2"), the unit the broker stores,
//! checksums, replicates and serves.
//!
//! A producer encodes records into a batch once; the broker checks it, writes its own base
//! offset into the first eight bytes and appends it to a segment unchanged; a fetch returns a
//! byte range of the segment file, batches back to back. No record is ever re-encoded on the
//! broker, and a Kafka-protocol front end can later hand the same bytes to a Kafka client.
//!
//! # Batch layout
//!
//! Integers are big-endian, as in every Kafka format.
//!
//! | offset | size | field                  | meaning                                                    |
//! |-------:|-----:|------------------------|------------------------------------------------------------|
//! |      0 |    8 | `base_offset`          | offset of the first record; set by the broker on append    |
//! |      8 |    4 | `batch_length`         | bytes after this field (the whole batch is 12 + this)      |
//! |     12 |    4 | `partition_leader_epoch` | leader epoch at append (0 until replication exists)      |
//! |     16 |    1 | `magic`                | format version, always [`MAGIC`] = 2                        |
//! |     17 |    4 | `crc`                  | CRC-32C of bytes 21 to the end                              |
//! |     21 |    2 | `attributes`           | bits 0-2 compression (0 = none, the only one accepted), bit 3 timestamp type, bit 4 transactional, bit 5 control |
//! |     23 |    4 | `last_offset_delta`    | offset of the last record minus `base_offset`              |
//! |     27 |    8 | `base_timestamp`       | timestamp of the first record, ms since the epoch          |
//! |     35 |    8 | `max_timestamp`        | largest record timestamp in the batch                      |
//! |     43 |    8 | `producer_id`          | idempotent producer id, -1 for none                        |
//! |     51 |    2 | `producer_epoch`       | that producer's epoch, -1 for none                         |
//! |     53 |    4 | `base_sequence`        | sequence number of the first record, -1 for none           |
//! |     57 |    4 | `record_count`         | number of records that follow                              |
//! |     61 |    … | `records`              | the records, each in the layout below                       |
//!
//! The checksum leaves out the first 21 bytes on purpose: the broker rewrites `base_offset`
//! (and, with replication, the leader epoch) without touching the CRC, so the producer's
//! checksum protects the batch from the producer's memory all the way to the consumer's.
//!
//! # Record layout
//!
//! Inside a batch each record is a run of variable-length integers (zig-zag encoded, 7 bits a
//! byte, as in Protocol Buffers), which keeps a 100-byte record about 8 bytes over its payload:
//!
//! ```text
//! length          varint   bytes of the record after this field
//! attributes      int8     unused, 0
//! timestamp_delta varlong  timestamp minus the batch's base_timestamp
//! offset_delta    varint   offset minus the batch's base_offset
//! key_length      varint   -1 for a null key
//! key             bytes
//! value_length    varint   -1 for a null value (a tombstone, for compaction)
//! value           bytes
//! header_count    varint
//!   header_key_length varint, header_key bytes (UTF-8),
//!   header_value_length varint (-1 for null), header_value bytes
//! ```
//!
//! # What is checked
//!
//! [`check`] is the broker's whole validation of a produced or recovered batch: the length
//! fields agree with the buffer, the magic is 2, the CRC matches, there is no compression, and
//! the records parse and number exactly `record_count` with offset deltas 0, 1, 2, ….
//! It touches every record once and allocates nothing.

use std::fmt;

/// The batch format version this module reads and writes.
pub const MAGIC: u8 = 2;

/// Bytes of `base_offset` and `batch_length`: the part of a batch outside `batch_length`.
pub const LOG_OVERHEAD: usize = 12;

/// Bytes of the fixed batch header, up to the first record.
pub const BATCH_HEADER_BYTES: usize = 61;

/// Smallest possible `batch_length`: a header with no records.
pub const MIN_BATCH_LENGTH: usize = BATCH_HEADER_BYTES - LOG_OVERHEAD;

/// `producer_id`, `producer_epoch` and `base_sequence` of a batch from a producer that is not
/// idempotent.
pub const NO_PRODUCER_ID: i64 = -1;
/// See [`NO_PRODUCER_ID`].
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// See [`NO_PRODUCER_ID`].
pub const NO_SEQUENCE: i32 = -1;

const OFFSET_LENGTH: usize = 8;
const OFFSET_MAGIC: usize = 16;
const OFFSET_CRC: usize = 17;
const OFFSET_ATTRIBUTES: usize = 21;
const OFFSET_LAST_OFFSET_DELTA: usize = 23;
const OFFSET_BASE_TIMESTAMP: usize = 27;
const OFFSET_MAX_TIMESTAMP: usize = 35;
const OFFSET_PRODUCER_ID: usize = 43;
const OFFSET_PRODUCER_EPOCH: usize = 51;
const OFFSET_BASE_SEQUENCE: usize = 53;
const OFFSET_RECORD_COUNT: usize = 57;

/// Attribute bits 0-2: the compression codec.
const COMPRESSION_MASK: i16 = 0x07;
/// Attribute bit 5: a control batch (transaction markers; never produced in this part).
const CONTROL_FLAG: i16 = 0x20;

/// Why bytes are not a valid batch. `Display` says what an operator needs to see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Defect {
    /// The bytes end before the batch does: a torn write, or a short buffer.
    #[error("batch cut short: {needed} bytes needed, {available} present")]
    Incomplete {
        /// Bytes the batch header says it occupies (or the header, if even that is missing).
        needed: usize,
        /// Bytes there are.
        available: usize,
    },
    /// `batch_length` is below the header size or above the caller's limit.
    #[error("batch length {length} is outside {min}..={max}")]
    BadLength {
        /// The field's value.
        length: i64,
        /// [`MIN_BATCH_LENGTH`].
        min: usize,
        /// The caller's limit.
        max: usize,
    },
    /// Not a version 2 batch.
    #[error("magic byte {0}, expected {MAGIC}")]
    BadMagic(u8),
    /// The stored checksum does not match the bytes.
    #[error("CRC-32C mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc {
        /// From the header.
        stored: u32,
        /// Over the batch.
        computed: u32,
    },
    /// A compression codec other than none; this part of the broker stores plain batches only.
    #[error("compression codec {0} is not supported (only 0, none)")]
    Compressed(i16),
    /// The records do not parse, or disagree with the header.
    #[error("malformed records: {0}")]
    Records(&'static str),
}

/// The fixed fields of a batch header, read without looking at the records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: u64,
    /// Bytes of the whole batch, [`LOG_OVERHEAD`] included.
    pub size: usize,
    /// Offset of the last record minus `base_offset`.
    pub last_offset_delta: u32,
    /// Timestamp of the first record, ms.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch, ms.
    pub max_timestamp: i64,
    /// Idempotent producer id, or [`NO_PRODUCER_ID`].
    pub producer_id: i64,
    /// The producer's epoch, or [`NO_PRODUCER_EPOCH`].
    pub producer_epoch: i16,
    /// Sequence number of the first record, or [`NO_SEQUENCE`].
    pub base_sequence: i32,
    /// Records in the batch.
    pub record_count: u32,
    /// The attribute bits.
    pub attributes: i16,
}

impl BatchHeader {
    /// Offset of the last record in the batch.
    pub fn last_offset(&self) -> u64 {
        self.base_offset + u64::from(self.last_offset_delta)
    }

    /// The offset right after the batch.
    pub fn next_offset(&self) -> u64 {
        self.last_offset() + 1
    }

    /// Sequence number of the last record (sequences wrap at `i32::MAX`, as in Kafka).
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence == NO_SEQUENCE {
            return NO_SEQUENCE;
        }
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        (last % (i64::from(i32::MAX) + 1)) as i32
    }

    /// Whether the batch carries transaction markers rather than data.
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_FLAG != 0
    }
}

/// Reads the size of the batch starting at `buf`, from its first [`LOG_OVERHEAD`] bytes, and
/// checks it against `max_batch_bytes`. This is all a scanner needs to step to the next batch.
pub fn batch_size(buf: &[u8], max_batch_bytes: usize) -> Result<usize, Defect> {
    let Some(length) = buf.get(OFFSET_LENGTH..LOG_OVERHEAD) else {
        return Err(Defect::Incomplete {
            needed: LOG_OVERHEAD,
            available: buf.len(),
        });
    };
    let length = i64::from(i32::from_be_bytes(length.try_into().expect("4 bytes")));
    let max = max_batch_bytes
        .saturating_sub(LOG_OVERHEAD)
        .min(i32::MAX as usize);
    if length < MIN_BATCH_LENGTH as i64 || length > max as i64 {
        return Err(Defect::BadLength {
            length,
            min: MIN_BATCH_LENGTH,
            max,
        });
    }
    Ok(LOG_OVERHEAD + length as usize)
}

/// Parses the fixed header of the batch at the start of `buf` (which must hold at least
/// [`BATCH_HEADER_BYTES`]); the records and the CRC are not looked at.
pub fn parse_header(buf: &[u8], max_batch_bytes: usize) -> Result<BatchHeader, Defect> {
    let size = batch_size(buf, max_batch_bytes)?;
    if buf.len() < BATCH_HEADER_BYTES {
        return Err(Defect::Incomplete {
            needed: BATCH_HEADER_BYTES,
            available: buf.len(),
        });
    }
    if buf[OFFSET_MAGIC] != MAGIC {
        return Err(Defect::BadMagic(buf[OFFSET_MAGIC]));
    }
    let last_offset_delta = be_i32(buf, OFFSET_LAST_OFFSET_DELTA);
    let record_count = be_i32(buf, OFFSET_RECORD_COUNT);
    if last_offset_delta < 0 || record_count < 0 {
        return Err(Defect::Records(
            "negative last offset delta or record count",
        ));
    }
    Ok(BatchHeader {
        base_offset: be_u64(buf, 0),
        size,
        last_offset_delta: last_offset_delta as u32,
        base_timestamp: be_u64(buf, OFFSET_BASE_TIMESTAMP) as i64,
        max_timestamp: be_u64(buf, OFFSET_MAX_TIMESTAMP) as i64,
        producer_id: be_u64(buf, OFFSET_PRODUCER_ID) as i64,
        producer_epoch: i16::from_be_bytes([
            buf[OFFSET_PRODUCER_EPOCH],
            buf[OFFSET_PRODUCER_EPOCH + 1],
        ]),
        base_sequence: be_i32(buf, OFFSET_BASE_SEQUENCE),
        record_count: record_count as u32,
        attributes: i16::from_be_bytes([buf[OFFSET_ATTRIBUTES], buf[OFFSET_ATTRIBUTES + 1]]),
    })
}

/// Fully validates the batch at the start of `buf` (see the module doc) and returns its header.
/// Bytes after the batch are ignored; `header.size` says where the next one starts. This is the
/// check of a produced batch: its offset deltas must be exactly 0, 1, 2, ….
pub fn check(buf: &[u8], max_batch_bytes: usize) -> Result<BatchHeader, Defect> {
    check_with(buf, max_batch_bytes, Density::Dense)
}

/// Like [`check`], for a batch read back from a log: a compacted batch keeps its base offset
/// and last offset delta but may have lost records, so its deltas need only grow and stay
/// within `last_offset_delta`.
pub fn check_stored(buf: &[u8], max_batch_bytes: usize) -> Result<BatchHeader, Defect> {
    check_with(buf, max_batch_bytes, Density::Sparse)
}

/// Whether a batch's offset deltas must be dense (as produced) or may have gaps (compacted).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Density {
    Dense,
    Sparse,
}

fn check_with(buf: &[u8], max_batch_bytes: usize, density: Density) -> Result<BatchHeader, Defect> {
    let header = parse_header(buf, max_batch_bytes)?;
    if buf.len() < header.size {
        return Err(Defect::Incomplete {
            needed: header.size,
            available: buf.len(),
        });
    }
    let batch = &buf[..header.size];
    let stored = be_i32(batch, OFFSET_CRC) as u32;
    let computed = crc32c::crc32c(&batch[OFFSET_ATTRIBUTES..]);
    if stored != computed {
        return Err(Defect::Crc { stored, computed });
    }
    let compression = header.attributes & COMPRESSION_MASK;
    if compression != 0 {
        return Err(Defect::Compressed(compression));
    }
    if header.record_count == 0 {
        return Err(Defect::Records("a batch must hold at least one record"));
    }
    let dense = density == Density::Dense;
    if (dense && header.last_offset_delta != header.record_count - 1)
        || header.last_offset_delta < header.record_count - 1
    {
        return Err(Defect::Records(
            "last offset delta does not fit the record count",
        ));
    }
    let mut records = Records::new(&batch[BATCH_HEADER_BYTES..], header);
    let mut count = 0u32;
    let mut previous: Option<u32> = None;
    for record in &mut records {
        let delta = record?.offset_delta;
        let in_order = match (density, previous) {
            (Density::Dense, _) => delta == count,
            (Density::Sparse, None) => delta <= header.last_offset_delta,
            (Density::Sparse, Some(p)) => delta > p && delta <= header.last_offset_delta,
        };
        if !in_order {
            return Err(Defect::Records("offset deltas out of order"));
        }
        previous = Some(delta);
        count += 1;
    }
    if count != header.record_count {
        return Err(Defect::Records("fewer records than the header counts"));
    }
    Ok(header)
}

/// A copy of the stored `batch` holding only the records `keep` accepts, byte for byte, with
/// the same base offset, last offset delta, timestamps and producer fields (so offsets and
/// the end of the batch do not move); `None` if it keeps none. Used by compaction.
pub fn retain(
    batch: &[u8],
    header: BatchHeader,
    mut keep: impl FnMut(&RecordView<'_>) -> bool,
) -> Result<Option<Vec<u8>>, Defect> {
    let mut out = batch[..BATCH_HEADER_BYTES].to_vec();
    let mut count = 0u32;
    for record in records(batch, header) {
        let record = record?;
        if keep(&record) {
            out.extend_from_slice(record.raw);
            count += 1;
        }
    }
    if count == 0 {
        return Ok(None);
    }
    let length = (out.len() - LOG_OVERHEAD) as u32;
    out[OFFSET_LENGTH..OFFSET_LENGTH + 4].copy_from_slice(&length.to_be_bytes());
    out[OFFSET_RECORD_COUNT..OFFSET_RECORD_COUNT + 4].copy_from_slice(&count.to_be_bytes());
    let crc = crc32c::crc32c(&out[OFFSET_ATTRIBUTES..]);
    out[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(Some(out))
}

/// Writes `base_offset` into the batch at the start of `batch`; the CRC does not cover it.
pub fn set_base_offset(batch: &mut [u8], base_offset: u64) {
    batch[..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// The records of one checked batch, in order.
pub fn records(batch: &[u8], header: BatchHeader) -> Records<'_> {
    Records::new(&batch[BATCH_HEADER_BYTES..header.size], header)
}

/// One record inside a batch, borrowed from the batch's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// Offset of the record in its partition.
    pub offset: u64,
    /// Position of the record in its batch.
    pub offset_delta: u32,
    /// Timestamp, ms since the epoch.
    pub timestamp: i64,
    /// `None` for a null key.
    pub key: Option<&'a [u8]>,
    /// `None` for a null value (a tombstone).
    pub value: Option<&'a [u8]>,
    headers: &'a [u8],
    header_count: u32,
    /// The record's bytes, its length prefix included.
    raw: &'a [u8],
}

impl<'a> RecordView<'a> {
    /// The record's headers: (key, value) pairs, values possibly null.
    pub fn headers(&self) -> Headers<'a> {
        Headers {
            buf: self.headers,
            left: self.header_count,
        }
    }
}

/// Iterator over the headers of a record. Only yields what [`check`] already validated.
pub struct Headers<'a> {
    buf: &'a [u8],
    left: u32,
}

impl<'a> Iterator for Headers<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let mut cursor = Cursor { buf: self.buf };
        let key = cursor.bytes().ok()??;
        let value = cursor.bytes().ok()?;
        self.buf = cursor.buf;
        Some((key, value))
    }
}

/// Iterator over the records of a batch; yields a [`Defect`] (once, then stops) on bad bytes.
pub struct Records<'a> {
    cursor: Cursor<'a>,
    header: BatchHeader,
    left: u32,
}

impl<'a> Records<'a> {
    fn new(buf: &'a [u8], header: BatchHeader) -> Self {
        Records {
            cursor: Cursor { buf },
            header,
            left: header.record_count,
        }
    }

    fn parse_one(&mut self) -> Result<RecordView<'a>, Defect> {
        let start = self.cursor.buf;
        let length = self.cursor.varint()?;
        if length < 0 || length as usize > self.cursor.buf.len() {
            return Err(Defect::Records("record length beyond the batch"));
        }
        let (body, rest) = self.cursor.buf.split_at(length as usize);
        self.cursor.buf = rest;
        let raw = &start[..start.len() - rest.len()];
        let mut record = Cursor { buf: body };
        record.take(1)?; // attributes
        let timestamp_delta = record.varlong()?;
        let offset_delta = record.varint()?;
        if offset_delta < 0 {
            return Err(Defect::Records("negative offset delta"));
        }
        let key = record.bytes()?;
        let value = record.bytes()?;
        let header_count = record.varint()?;
        if header_count < 0 {
            return Err(Defect::Records("negative header count"));
        }
        let headers = record.buf;
        for _ in 0..header_count {
            if record.bytes()?.is_none() {
                return Err(Defect::Records("null header key"));
            }
            record.bytes()?;
        }
        if !record.buf.is_empty() {
            return Err(Defect::Records("bytes left after a record's headers"));
        }
        Ok(RecordView {
            offset: self.header.base_offset + offset_delta as u64,
            offset_delta: offset_delta as u32,
            timestamp: self.header.base_timestamp.wrapping_add(timestamp_delta),
            key,
            value,
            headers,
            header_count: header_count as u32,
            raw,
        })
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<RecordView<'a>, Defect>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            if !self.cursor.buf.is_empty() {
                self.cursor.buf = &[];
                return Some(Err(Defect::Records("bytes after the last record")));
            }
            return None;
        }
        self.left -= 1;
        let parsed = self.parse_one();
        if parsed.is_err() {
            self.left = 0;
            self.cursor.buf = &[];
        }
        Some(parsed)
    }
}

/// A record to encode: what a producer hands to a [`BatchBuilder`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Record<'a> {
    /// `None` for a null key (the partitioner then spreads records itself).
    pub key: Option<&'a [u8]>,
    /// `None` for a tombstone.
    pub value: Option<&'a [u8]>,
    /// (key, value) pairs.
    pub headers: &'a [(&'a str, &'a [u8])],
    /// ms since the epoch.
    pub timestamp: i64,
}

/// Identity of an idempotent producer, stamped on every batch it sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProducerStamp {
    /// Id handed out by the broker.
    pub producer_id: i64,
    /// Epoch of that id.
    pub producer_epoch: i16,
    /// Sequence number of the batch's first record in its partition.
    pub base_sequence: i32,
}

impl ProducerStamp {
    /// The stamp of a producer that is not idempotent.
    pub const NONE: ProducerStamp = ProducerStamp {
        producer_id: NO_PRODUCER_ID,
        producer_epoch: NO_PRODUCER_EPOCH,
        base_sequence: NO_SEQUENCE,
    };
}

/// Encodes records into one batch, reusing its buffer from batch to batch.
///
/// `push` appends a record's bytes; `finish` fills in the header fields that depend on all
/// records (count, deltas, max timestamp, length) and then the CRC, the last field computed.
#[derive(Debug, Default)]
pub struct BatchBuilder {
    buf: Vec<u8>,
    count: u32,
    base_timestamp: i64,
    max_timestamp: i64,
}

impl BatchBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        let mut builder = BatchBuilder::default();
        builder.clear();
        builder
    }

    /// Forgets the records, keeps the allocation.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.buf.resize(BATCH_HEADER_BYTES, 0);
        self.count = 0;
        self.base_timestamp = 0;
        self.max_timestamp = i64::MIN;
    }

    /// Records pushed since the last `clear`.
    pub fn len(&self) -> u32 {
        self.count
    }

    /// Whether no record was pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes the batch would take if finished now.
    pub fn size(&self) -> usize {
        self.buf.len()
    }

    /// Bytes `record` would add to the batch.
    pub fn record_size(&self, record: &Record<'_>) -> usize {
        let body = self.body_size(record);
        varint_len(body as i64) + body
    }

    fn body_size(&self, record: &Record<'_>) -> usize {
        let delta = self.timestamp_delta(record.timestamp);
        let mut size = 1 + varint_len(delta) + varint_len(i64::from(self.count));
        size += bytes_len(record.key) + bytes_len(record.value);
        size += varint_len(record.headers.len() as i64);
        for (key, value) in record.headers {
            size += bytes_len(Some(key.as_bytes())) + bytes_len(Some(value));
        }
        size
    }

    fn timestamp_delta(&self, timestamp: i64) -> i64 {
        if self.count == 0 {
            0
        } else {
            timestamp.wrapping_sub(self.base_timestamp)
        }
    }

    /// Appends one record.
    pub fn push(&mut self, record: &Record<'_>) {
        if self.count == 0 {
            self.base_timestamp = record.timestamp;
        }
        let body = self.body_size(record);
        put_varint(&mut self.buf, body as i64);
        self.buf.push(0);
        let timestamp_delta = self.timestamp_delta(record.timestamp);
        put_varint(&mut self.buf, timestamp_delta);
        put_varint(&mut self.buf, i64::from(self.count));
        put_bytes(&mut self.buf, record.key);
        put_bytes(&mut self.buf, record.value);
        put_varint(&mut self.buf, record.headers.len() as i64);
        for (key, value) in record.headers {
            put_bytes(&mut self.buf, Some(key.as_bytes()));
            put_bytes(&mut self.buf, Some(value));
        }
        self.max_timestamp = self.max_timestamp.max(record.timestamp);
        self.count += 1;
    }

    /// Completes the header and returns the batch, `base_offset` 0 (the broker sets it).
    ///
    /// # Panics
    /// If no record was pushed: an empty batch is not valid.
    pub fn finish(&mut self, stamp: ProducerStamp) -> &[u8] {
        assert!(self.count > 0, "a batch needs at least one record");
        let length = (self.buf.len() - LOG_OVERHEAD) as u32;
        let buf = &mut self.buf;
        buf[..8].fill(0);
        buf[OFFSET_LENGTH..OFFSET_LENGTH + 4].copy_from_slice(&length.to_be_bytes());
        buf[12..16].fill(0);
        buf[OFFSET_MAGIC] = MAGIC;
        buf[OFFSET_ATTRIBUTES..OFFSET_ATTRIBUTES + 2].fill(0);
        let last_delta = self.count - 1;
        buf[OFFSET_LAST_OFFSET_DELTA..OFFSET_LAST_OFFSET_DELTA + 4]
            .copy_from_slice(&last_delta.to_be_bytes());
        buf[OFFSET_BASE_TIMESTAMP..OFFSET_BASE_TIMESTAMP + 8]
            .copy_from_slice(&self.base_timestamp.to_be_bytes());
        buf[OFFSET_MAX_TIMESTAMP..OFFSET_MAX_TIMESTAMP + 8]
            .copy_from_slice(&self.max_timestamp.to_be_bytes());
        buf[OFFSET_PRODUCER_ID..OFFSET_PRODUCER_ID + 8]
            .copy_from_slice(&stamp.producer_id.to_be_bytes());
        buf[OFFSET_PRODUCER_EPOCH..OFFSET_PRODUCER_EPOCH + 2]
            .copy_from_slice(&stamp.producer_epoch.to_be_bytes());
        buf[OFFSET_BASE_SEQUENCE..OFFSET_BASE_SEQUENCE + 4]
            .copy_from_slice(&stamp.base_sequence.to_be_bytes());
        buf[OFFSET_RECORD_COUNT..OFFSET_RECORD_COUNT + 4]
            .copy_from_slice(&self.count.to_be_bytes());
        let crc = crc32c::crc32c(&buf[OFFSET_ATTRIBUTES..]);
        buf[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        &self.buf
    }
}

/// A cursor over the bytes of one record.
struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Defect> {
        if self.buf.len() < n {
            return Err(Defect::Records("field runs past the record"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// A zig-zag varint of at most 64 bits.
    fn varlong(&mut self) -> Result<i64, Defect> {
        let mut raw = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .buf
                .first()
                .ok_or(Defect::Records("varint runs past the record"))?;
            self.buf = &self.buf[1..];
            raw |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
            }
        }
        Err(Defect::Records("varint longer than 10 bytes"))
    }

    /// A zig-zag varint that must fit 32 bits.
    fn varint(&mut self) -> Result<i32, Defect> {
        i32::try_from(self.varlong()?).map_err(|_| Defect::Records("varint out of 32-bit range"))
    }

    /// A length-prefixed byte string; length -1 is null.
    fn bytes(&mut self) -> Result<Option<&'a [u8]>, Defect> {
        match self.varint()? {
            -1 => Ok(None),
            len if len < 0 => Err(Defect::Records("negative length")),
            len => self.take(len as usize).map(Some),
        }
    }
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn varint_len(value: i64) -> usize {
    let bits = 64 - (zigzag(value) | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

fn put_varint(buf: &mut Vec<u8>, value: i64) {
    let mut raw = zigzag(value);
    while raw >= 0x80 {
        buf.push((raw as u8 & 0x7f) | 0x80);
        raw >>= 7;
    }
    buf.push(raw as u8);
}

fn bytes_len(bytes: Option<&[u8]>) -> usize {
    match bytes {
        None => varint_len(-1),
        Some(bytes) => varint_len(bytes.len() as i64) + bytes.len(),
    }
}

fn put_bytes(buf: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varint(buf, -1),
        Some(bytes) => {
            put_varint(buf, bytes.len() as i64);
            buf.extend_from_slice(bytes);
        }
    }
}

fn be_u64(buf: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

fn be_i32(buf: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

impl fmt::Display for BatchHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "batch {}..={} ({} bytes, {} records)",
            self.base_offset,
            self.last_offset(),
            self.size,
            self.record_count
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    fn build(values: &[&[u8]]) -> Vec<u8> {
        let mut builder = BatchBuilder::new();
        for (i, value) in values.iter().enumerate() {
            builder.push(&Record {
                key: Some(b"k"),
                value: Some(value),
                headers: &[("h", b"v")],
                timestamp: 1_000 + i as i64,
            });
        }
        builder.finish(ProducerStamp::NONE).to_vec()
    }

    #[test]
    fn a_built_batch_checks_and_its_records_read_back() {
        let mut batch = build(&[b"one", b"two", b""]);
        set_base_offset(&mut batch, 40);
        let header = check(&batch, MAX).unwrap();
        assert_eq!((header.base_offset, header.last_offset()), (40, 42));
        assert_eq!(
            (header.base_timestamp, header.max_timestamp),
            (1_000, 1_002)
        );
        assert_eq!(header.size, batch.len());
        let read: Vec<_> = records(&batch, header).map(Result::unwrap).collect();
        assert_eq!(read[1].offset, 41);
        assert_eq!(read[1].value, Some(&b"two"[..]));
        assert_eq!(read[2].timestamp, 1_002);
        assert_eq!(read[2].value, Some(&b""[..]));
        let headers: Vec<_> = read[0].headers().collect();
        assert_eq!(headers, vec![(&b"h"[..], Some(&b"v"[..]))]);
    }

    #[test]
    fn null_key_and_tombstone_round_trip() {
        let mut builder = BatchBuilder::new();
        let record = Record::default();
        let predicted = builder.size() + builder.record_size(&record);
        builder.push(&record);
        assert_eq!(builder.size(), predicted);
        let batch = builder.finish(ProducerStamp::NONE).to_vec();
        let header = check(&batch, MAX).unwrap();
        let read = records(&batch, header).next().unwrap().unwrap();
        assert_eq!((read.key, read.value), (None, None));
    }

    #[test]
    fn the_layout_matches_kafkas_field_positions() {
        let stamp = ProducerStamp {
            producer_id: 7,
            producer_epoch: 3,
            base_sequence: 11,
        };
        let mut builder = BatchBuilder::new();
        builder.push(&Record {
            value: Some(b"x"),
            timestamp: 5,
            ..Record::default()
        });
        let batch = builder.finish(stamp).to_vec();
        assert_eq!(batch[16], 2, "magic at byte 16");
        assert_eq!(&batch[43..51], &7i64.to_be_bytes(), "producer id at 43");
        assert_eq!(&batch[53..57], &11i32.to_be_bytes(), "base sequence at 53");
        assert_eq!(&batch[57..61], &1i32.to_be_bytes(), "record count at 57");
        // One record of a null key and a 1-byte value: length, attributes, two zero deltas,
        // key -1, value length 1, the value, no headers.
        assert_eq!(&batch[61..], &[14, 0, 0, 0, 1, 2, b'x', 0]);
        let header = check(&batch, MAX).unwrap();
        assert_eq!(header.last_sequence(), 11);
    }

    #[test]
    fn every_single_bit_flip_after_the_offset_fields_is_caught() {
        let batch = build(&[b"alpha", b"beta"]);
        for byte in 12..batch.len() {
            for bit in 0..8 {
                let mut damaged = batch.clone();
                damaged[byte] ^= 1 << bit;
                // Bytes 12..16 are the leader epoch, outside the CRC and not validated.
                if (12..16).contains(&byte) {
                    continue;
                }
                assert!(
                    check(&damaged, MAX).is_err(),
                    "flip of bit {bit} in byte {byte} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn short_and_oversized_buffers_are_defects_not_panics() {
        let batch = build(&[b"value"]);
        for len in 0..batch.len() {
            let err = check(&batch[..len], MAX).unwrap_err();
            assert!(matches!(err, Defect::Incomplete { .. }), "{len}: {err}");
        }
        assert!(matches!(
            check(&batch, batch.len() - 1),
            Err(Defect::BadLength { .. })
        ));
        // A limit beyond what the length field can hold means "no limit", not "nothing".
        assert!(check(&batch, usize::MAX).is_ok());
    }

    #[test]
    fn a_retained_subset_keeps_offsets_and_passes_only_the_stored_check() {
        let mut batch = build(&[b"a", b"b", b"c", b"d"]);
        set_base_offset(&mut batch, 100);
        let header = check(&batch, MAX).unwrap();
        let kept = retain(&batch, header, |r| r.offset == 101 || r.offset == 103)
            .unwrap()
            .unwrap();
        assert!(
            check(&kept, MAX).is_err(),
            "a sparse batch is not a valid produced batch"
        );
        let stored = check_stored(&kept, MAX).unwrap();
        assert_eq!(
            (
                stored.base_offset,
                stored.next_offset(),
                stored.record_count
            ),
            (100, 104, 2)
        );
        let offsets: Vec<u64> = records(&kept, stored).map(|r| r.unwrap().offset).collect();
        assert_eq!(offsets, vec![101, 103]);
        assert_eq!(retain(&batch, header, |_| false).unwrap(), None);
    }

    #[test]
    fn a_compressed_batch_is_refused_by_name() {
        let mut batch = build(&[b"value"]);
        batch[22] |= 1; // gzip
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(check(&batch, MAX), Err(Defect::Compressed(1)));
    }

    #[test]
    fn varints_match_the_zigzag_encoding() {
        let cases: &[(i64, &[u8])] = &[
            (0, &[0]),
            (-1, &[1]),
            (1, &[2]),
            (63, &[126]),
            (64, &[128, 1]),
            (-65, &[129, 1]),
            (i64::MAX, &[254, 255, 255, 255, 255, 255, 255, 255, 255, 1]),
        ];
        for &(value, encoded) in cases {
            let mut buf = Vec::new();
            put_varint(&mut buf, value);
            assert_eq!(buf, encoded, "{value}");
            assert_eq!(varint_len(value), encoded.len(), "{value}");
            let mut cursor = Cursor { buf: &buf };
            assert_eq!(cursor.varlong().unwrap(), value);
        }
    }
}
