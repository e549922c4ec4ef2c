//! One segment: a `.log` file of batches back to back, and its sparse indexes.
//!
//! # Files
//!
//! | file                           | contents                                                  |
//! |--------------------------------|-----------------------------------------------------------|
//! | `00000000000000001000.log`       | record batches, RecordBatch v2, no file header; the name is the base offset, 20 digits, so names sort as offsets |
//! | `00000000000000001000.index`     | sparse offset index, written when the segment is closed (see `index.rs`) |
//! | `00000000000000001000.timeindex` | sparse time index, written with it                        |
//!
//! The `.log` has no header of its own: a batch carries its offsets, length, magic and CRC, and
//! the file name carries the segment's base offset. That keeps the file a plain concatenation
//! of what a fetch returns.
//!
//! # Writes
//!
//! A batch is appended with one positioned write (`pwrite`) at the segment's end; no
//! per-record system call, no copy. Only the partition's writer appends, under its lock;
//! readers `pread` ranges below the size they saw, so they never see a half-written batch.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::config::{CleanupPolicy, LogConfig};
use super::error::{IoContext, LogError, Result};
use super::index::SegmentIndex;
use crate::record_batch::{self, BatchHeader, Defect, LOG_OVERHEAD};

/// Digits of the base offset in a segment's file names (`u64::MAX` has 20).
const NAME_DIGITS: usize = 20;
/// Bytes of a batch header a reader needs to step over batches: up to `last_offset_delta`.
const STEP_HEADER_BYTES: usize = 27;
/// Read buffer of the scan at open.
const SCAN_BUFFER_BYTES: usize = 1 << 20;

/// File name of segment `base_offset` with `extension` (`log`, `index`, `timeindex`).
pub fn file_name(base_offset: u64, extension: &str) -> String {
    format!("{base_offset:0NAME_DIGITS$}.{extension}")
}

/// The base offset named by `name` if it is a segment's `.log` file.
pub fn parse_log_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A byte range of a segment file holding whole batches (the last one possibly cut by the
/// byte limit of a fetch): what a fetch sends, as it is on disk.
#[derive(Clone, Debug)]
pub struct FileRange {
    /// The open `.log` file. Holding it keeps the data readable even if retention deletes the
    /// segment meanwhile (an unlinked file lives until its last descriptor closes).
    pub file: Arc<File>,
    /// The file, for errors.
    pub path: PathBuf,
    /// First byte.
    pub position: u64,
    /// Bytes.
    pub len: usize,
}

impl FileRange {
    /// Reads the range with one `pread`.
    pub fn read(&self) -> Result<Vec<u8>> {
        let mut buf = vec![0; self.len];
        self.file
            .read_exact_at(&mut buf, self.position)
            .at(&self.path)?;
        Ok(buf)
    }
}

/// A batch at which a scan stopped, and why.
#[derive(Debug)]
pub struct ScanStop {
    /// Byte position of the batch.
    pub position: u64,
    /// What is wrong there.
    pub error: LogError,
}

/// One segment of a partition log.
#[derive(Debug)]
pub struct Segment {
    base_offset: u64,
    path: PathBuf,
    file: Arc<File>,
    /// Bytes of valid batches; the next append goes here.
    size: u64,
    /// Offset after the last batch (`base_offset` when empty).
    next_offset: u64,
    /// Largest record timestamp, `i64::MIN` when empty.
    max_timestamp: i64,
    /// Wall-clock ms of the first append by this process (or of the open, for a segment that
    /// already held data): the segment's age for rolling. Not record timestamps, which a
    /// producer chooses: a producer stamping 1970 must not make every append roll.
    age_start_ms: Option<i64>,
    index: SegmentIndex,
}

impl Segment {
    /// Creates the empty segment `base_offset` in `dir`. Fails if it exists.
    pub fn create(dir: &Path, base_offset: u64) -> Result<Segment> {
        let path = dir.join(file_name(base_offset, "log"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .at(&path)?;
        Ok(Segment::empty(base_offset, path, file))
    }

    fn empty(base_offset: u64, path: PathBuf, file: File) -> Segment {
        Segment {
            base_offset,
            path,
            file: Arc::new(file),
            size: 0,
            next_offset: base_offset,
            max_timestamp: i64::MIN,
            age_start_ms: None,
            index: SegmentIndex::new(),
        }
    }

    /// Opens an existing segment by reading and checking every batch, rebuilding the indexes
    /// in memory. Returns the segment holding the valid prefix and, if the scan stopped before
    /// the end of the file, where and why.
    pub fn open_scanned(
        dir: &Path,
        base_offset: u64,
        config: &LogConfig,
    ) -> Result<(Segment, Option<ScanStop>)> {
        let path = dir.join(file_name(base_offset, "log"));
        let file = open_read_write(&path)?;
        let file_len = file.metadata().at(&path)?.len();
        let mut segment = Segment::empty(base_offset, path, file);
        let stop = segment.scan_from(0, file_len, config, ScanMode::Rebuild)?;
        Ok((segment, stop))
    }

    /// Opens a closed segment from its index files, if they exist and pass the sanity checks;
    /// only the batches after the last index entry are read (to learn the segment's end offset
    /// and timestamps). `Ok(None)` means the indexes are missing or bad: scan instead.
    pub fn open_indexed(
        dir: &Path,
        base_offset: u64,
        config: &LogConfig,
    ) -> Result<Option<Segment>> {
        let path = dir.join(file_name(base_offset, "log"));
        let file = open_read_write(&path)?;
        let file_len = file.metadata().at(&path)?.len();
        let read = |ext: &str| std::fs::read(dir.join(file_name(base_offset, ext)));
        let (Ok(offsets), Ok(times)) = (read("index"), read("timeindex")) else {
            return Ok(None);
        };
        let Ok(index) = SegmentIndex::decode(&offsets, &times, file_len) else {
            return Ok(None);
        };
        let mut segment = Segment::empty(base_offset, path, file);
        let Some(last) = index.entries().last().copied() else {
            return Ok(Some(segment));
        };
        segment.next_offset = base_offset + u64::from(last.relative_offset);
        segment.size = u64::from(last.position);
        segment.index = index;
        match segment.scan_from(u64::from(last.position), file_len, config, ScanMode::Tail)? {
            None => Ok(Some(segment)),
            Some(_) => Ok(None),
        }
    }

    /// Reads batches from `position` to `file_len`, checking each one, and advances the
    /// segment's end over every valid one. Stops at the first invalid batch.
    fn scan_from(
        &mut self,
        position: u64,
        file_len: u64,
        config: &LogConfig,
        mode: ScanMode,
    ) -> Result<Option<ScanStop>> {
        let file = Arc::clone(&self.file);
        let path = self.path.clone();
        let mut reader = BufReader::with_capacity(SCAN_BUFFER_BYTES, &*file);
        std::io::Seek::seek(&mut reader, std::io::SeekFrom::Start(position)).at(&path)?;
        let mut buf = Vec::new();
        let mut position = position;
        while position < file_len {
            let stop = |defect| ScanStop {
                position,
                error: LogError::Corrupt {
                    path: path.clone(),
                    position,
                    defect,
                },
            };
            let available = (file_len - position) as usize;
            buf.resize(LOG_OVERHEAD.min(available), 0);
            reader.read_exact(&mut buf).at(&path)?;
            let size = match record_batch::batch_size(&buf, config.max_batch_bytes as usize) {
                Ok(size) if size <= available => size,
                Ok(size) => {
                    return Ok(Some(stop(Defect::Incomplete {
                        needed: size,
                        available,
                    })));
                }
                Err(defect) => return Ok(Some(stop(defect))),
            };
            buf.resize(size, 0);
            reader.read_exact(&mut buf[LOG_OVERHEAD..]).at(&path)?;
            let header = match record_batch::check_stored(&buf, config.max_batch_bytes as usize) {
                Ok(header) => header,
                Err(defect) => return Ok(Some(stop(defect))),
            };
            // Offsets continue exactly, except that compaction may leave gaps where it removed
            // whole batches.
            let gap_allowed = config.cleanup == CleanupPolicy::Compact;
            if header.base_offset < self.next_offset
                || (header.base_offset > self.next_offset && !gap_allowed)
            {
                let error = LogError::OffsetsOutOfOrder {
                    path: path.clone(),
                    position,
                    expected: self.next_offset,
                    found: header.base_offset,
                };
                return Ok(Some(ScanStop { position, error }));
            }
            self.account(&header, position, config, mode);
            position += size as u64;
        }
        Ok(None)
    }

    /// Advances the in-memory state over a batch just written or scanned at `position`.
    fn account(&mut self, header: &BatchHeader, position: u64, config: &LogConfig, mode: ScanMode) {
        let relative = (header.base_offset - self.base_offset) as u32;
        match mode {
            ScanMode::Rebuild => self.index.observe(
                relative,
                position as u32,
                header.size,
                header.max_timestamp,
                config.index_interval_bytes,
            ),
            ScanMode::Tail => self.index.observe_tail(header.size, header.max_timestamp),
        }
        self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
        self.next_offset = header.next_offset();
        self.size = position + header.size as u64;
    }

    /// Appends a checked batch whose base offset is already this segment's `next_offset`.
    pub fn append(
        &mut self,
        batch: &[u8],
        header: &BatchHeader,
        config: &LogConfig,
        now_ms: i64,
    ) -> Result<()> {
        debug_assert_eq!(header.base_offset, self.next_offset);
        self.age_start_ms.get_or_insert(now_ms);
        self.file.write_all_at(batch, self.size).at(&self.path)?;
        self.account(header, self.size, config, ScanMode::Rebuild);
        Ok(())
    }

    /// Cuts the file back to the valid prefix found by a scan and makes the cut durable.
    pub fn truncate_to_valid(&self) -> Result<()> {
        self.file.set_len(self.size).at(&self.path)?;
        self.file.sync_all().at(&self.path)
    }

    /// Reads the header of the batch at `position`.
    fn read_header(&self, position: u64, config: &LogConfig) -> Result<BatchHeader> {
        let mut buf = [0; record_batch::BATCH_HEADER_BYTES];
        self.file.read_exact_at(&mut buf, position).at(&self.path)?;
        record_batch::parse_header(&buf, config.max_batch_bytes as usize).map_err(|defect| {
            LogError::Corrupt {
                path: self.path.clone(),
                position,
                defect,
            }
        })
    }

    /// The headers of every batch, in order (one `pread` per batch; records are not read).
    pub fn headers(&self, config: &LogConfig) -> Result<Vec<BatchHeader>> {
        let mut headers = Vec::new();
        let mut position = 0;
        while position < self.size {
            let header = self.read_header(position, config)?;
            position += header.size as u64;
            headers.push(header);
        }
        Ok(headers)
    }

    /// Reads just enough of the batch at `position` to step over it: (last offset, size).
    fn step(&self, position: u64) -> Result<(u64, u64)> {
        let mut buf = [0; STEP_HEADER_BYTES];
        self.file.read_exact_at(&mut buf, position).at(&self.path)?;
        let base = u64::from_be_bytes(buf[0..8].try_into().expect("8 bytes"));
        let length = u32::from_be_bytes(buf[8..12].try_into().expect("4 bytes"));
        let delta = u32::from_be_bytes(buf[23..27].try_into().expect("4 bytes"));
        Ok((
            base + u64::from(delta),
            LOG_OVERHEAD as u64 + u64::from(length),
        ))
    }

    /// Position and size of the batch holding `offset`, or `None` if the segment ends before it.
    pub fn locate(&self, offset: u64) -> Result<Option<(u64, u64)>> {
        if offset >= self.next_offset {
            return Ok(None);
        }
        let relative = offset.saturating_sub(self.base_offset) as u32;
        let mut position = u64::from(self.index.lookup(relative).unwrap_or(0));
        while position < self.size {
            let (last_offset, size) = self.step(position)?;
            if last_offset >= offset {
                return Ok(Some((position, size)));
            }
            position += size;
        }
        Ok(None)
    }

    /// Batches from the one holding `offset`, up to `max_bytes` but always the whole first
    /// batch (so a consumer makes progress whatever its limit, as in Kafka's KIP-74).
    pub fn read(&self, offset: u64, max_bytes: usize) -> Result<Option<FileRange>> {
        let Some((position, first_size)) = self.locate(offset)? else {
            return Ok(None);
        };
        let available = self.size - position;
        let len = available.min((max_bytes as u64).max(first_size));
        Ok(Some(FileRange {
            file: Arc::clone(&self.file),
            path: self.path.clone(),
            position,
            len: len as usize,
        }))
    }

    /// The first offset at or after `offset` whose record has a timestamp at or above
    /// `timestamp`, or `None` if no record in this segment has.
    pub fn offset_for_timestamp(&self, timestamp: i64, config: &LogConfig) -> Result<Option<u64>> {
        if self.max_timestamp < timestamp {
            return Ok(None);
        }
        let mut position = u64::from(self.index.lookup_time(timestamp).unwrap_or(0));
        let mut buf = Vec::new();
        while position < self.size {
            let header = self.read_header(position, config)?;
            if header.max_timestamp >= timestamp {
                buf.resize(header.size, 0);
                self.file.read_exact_at(&mut buf, position).at(&self.path)?;
                for record in record_batch::records(&buf, header) {
                    let record = record.map_err(|defect| LogError::Corrupt {
                        path: self.path.clone(),
                        position,
                        defect,
                    })?;
                    if record.timestamp >= timestamp {
                        return Ok(Some(record.offset));
                    }
                }
            }
            position += header.size as u64;
        }
        Ok(None)
    }

    /// Writes both index files and fsyncs them. Called when the segment is closed.
    pub fn write_index_files(&self, dir: &Path) -> Result<()> {
        let write = |ext: &str, bytes: Vec<u8>| -> Result<()> {
            let path = dir.join(file_name(self.base_offset, ext));
            let mut file = File::create(&path).at(&path)?;
            std::io::Write::write_all(&mut file, &bytes).at(&path)?;
            file.sync_all().at(&path)
        };
        write("index", self.index.encode_offsets())?;
        write("timeindex", self.index.encode_times())
    }

    /// Makes every byte appended so far durable.
    pub fn sync(&self) -> Result<()> {
        self.file.sync_data().at(&self.path)
    }

    /// Deletes the segment's files: the `.log` first, so that a crash part-way leaves at most
    /// orphaned index files, which the next open removes.
    pub fn delete(&self, dir: &Path) -> Result<()> {
        std::fs::remove_file(&self.path).at(&self.path)?;
        for ext in ["index", "timeindex"] {
            let path = dir.join(file_name(self.base_offset, ext));
            match std::fs::remove_file(&path) {
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                other => other.at(&path)?,
            }
        }
        Ok(())
    }

    /// The segment's base offset (its name).
    pub fn base_offset(&self) -> u64 {
        self.base_offset
    }

    /// Offset after the last batch.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// Bytes of batches.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Largest record timestamp, `i64::MIN` when empty.
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    /// When the segment started aging (see the field), `None` while empty.
    pub fn age_start_ms(&self) -> Option<i64> {
        self.age_start_ms
    }

    /// Starts the age clock of a segment found non-empty at open.
    pub fn start_aging(&mut self, now_ms: i64) {
        if self.size > 0 {
            self.age_start_ms.get_or_insert(now_ms);
        }
    }

    /// The `.log` file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open `.log` file, for a sync outside the partition's lock.
    pub fn file(&self) -> &Arc<File> {
        &self.file
    }

    /// The in-memory indexes.
    pub fn index(&self) -> &SegmentIndex {
        &self.index
    }
}

/// Whether a scan builds index entries (from the start of a segment) or only follows the tail
/// after a decoded index's last entry.
#[derive(Clone, Copy)]
enum ScanMode {
    Rebuild,
    Tail,
}

fn open_read_write(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .at(path)
}
