//! One segment file: a header followed by records with consecutive indexes.
//!
//! A segment is named by the index of its first record, zero-padded to 20 digits (the width of
//! `u64::MAX`) so that the lexical order of names is the numeric order of indexes:
//! `00000000000000000042.wal` holds records 42, 43, ... An empty segment is named by the index
//! its first record will get.
//!
//! Segment header (24 bytes, integers little-endian), then records back to back (see
//! [`crate::record`]):
//!
//! | offset | size | field                                                             |
//! |-------:|-----:|-------------------------------------------------------------------|
//! |      0 |    8 | magic `89 57 41 4C 0D 0A 1A 0A` (`\x89WAL\r\n\x1a\n`)              |
//! |      8 |    4 | format version (u32), currently [`FORMAT_VERSION`]                  |
//! |     12 |    8 | base index: index of the first record, the same as the file name    |
//! |     20 |    4 | CRC-32C of bytes 0..20                                            |
//! |     24 |  ... | records                                                          |
//!
//! The magic borrows PNG's trick: a non-ASCII first byte rejects text files, and the `\r\n` and
//! `\n` pair reveals a file mangled by line-ending conversion. The version sits right after it, at
//! an offset no future format may move, so a newer file is refused with "version N" rather than
//! misread. The base index is repeated inside the file so that a renamed segment is caught.
//!
//! In memory a segment keeps the byte offset of every record (4 bytes per record), so a read is
//! one positioned `pread` of exactly that record.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::directory::LogDir;
use crate::error::{Error, IoContext, Result};
use crate::record::{self, Defect};

/// Suffix of a segment file name.
pub(crate) const SEGMENT_SUFFIX: &str = ".wal";

/// Bytes of the header at the start of every segment.
pub const SEGMENT_HEADER_BYTES: usize = 24;

/// Version of the on-disk format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

const MAGIC: [u8; 8] = *b"\x89WAL\r\n\x1a\n";

/// The file name of the segment whose first record has index `base_index`.
pub(crate) fn file_name(base_index: u64) -> String {
    format!("{base_index:020}{SEGMENT_SUFFIX}")
}

/// The base index named by `name`, `None` if `name` is not a segment name at all, or an error if
/// it claims to be one (ends in `.wal`) but is not 20 digits.
pub(crate) fn parse_file_name(dir: &Path, name: &str) -> Option<Result<u64>> {
    let stem = name.strip_suffix(SEGMENT_SUFFIX)?;
    let parsed = (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()))
        .then(|| stem.parse::<u64>().ok())
        .flatten();
    Some(parsed.ok_or_else(|| Error::ForeignFile {
        path: dir.join(name),
        reason: "a segment is named by a 20-digit index".to_string(),
    }))
}

/// An open segment and the offsets of its records.
pub(crate) struct Segment {
    base_index: u64,
    path: PathBuf,
    /// Shared so that the group-commit writer can fsync it without holding the log's lock.
    file: Arc<File>,
    /// `offsets[i]` is the byte offset of record `base_index + i`.
    offsets: Vec<u32>,
    /// Byte offset just past the last record: where the next append goes.
    end: u64,
}

/// A segment as recovery found it, and what ended its scan early, if anything.
pub(crate) struct Scanned {
    pub segment: Segment,
    /// The first invalid bytes: where they start, how many bytes follow, and why they failed.
    pub defect: Option<(u64, u64, Defect)>,
}

impl Segment {
    /// Creates an empty segment for records starting at `base_index`, durably (see
    /// [`LogDir::write_atomically`]).
    pub fn create(dir: &LogDir, base_index: u64) -> Result<Segment> {
        let name = file_name(base_index);
        dir.write_atomically(&name, &encode_header(base_index))?;
        let path = dir.join(&name);
        let file = open_read_write(&path)?;
        Ok(Segment {
            base_index,
            path,
            file: Arc::new(file),
            offsets: Vec::new(),
            end: SEGMENT_HEADER_BYTES as u64,
        })
    }

    /// Opens the segment at `path`, checks its header and scans its records up to the first
    /// invalid one. Invalid bytes are reported, not removed: the caller decides whether they are
    /// a torn tail or corruption.
    pub fn open(path: PathBuf, base_index: u64) -> Result<Scanned> {
        let file = open_read_write(&path)?;
        let bytes = std::fs::read(&path).at(&path)?;
        check_header(&path, &bytes, base_index)?;
        let mut segment = Segment {
            base_index,
            path,
            file: Arc::new(file),
            offsets: Vec::new(),
            end: SEGMENT_HEADER_BYTES as u64,
        };
        let mut pos = SEGMENT_HEADER_BYTES;
        while pos < bytes.len() {
            let expected = segment.next_index();
            let defect = match record::decode(&bytes[pos..]) {
                Ok(decoded) if decoded.index == expected => {
                    segment.offsets.push(offset_u32(pos as u64));
                    pos += decoded.encoded_len;
                    segment.end = pos as u64;
                    continue;
                }
                Ok(decoded) => Defect::WrongIndex {
                    expected,
                    found: decoded.index,
                },
                Err(defect) => defect,
            };
            let remaining = (bytes.len() - pos) as u64;
            return Ok(Scanned {
                segment,
                defect: Some((pos as u64, remaining, defect)),
            });
        }
        Ok(Scanned {
            segment,
            defect: None,
        })
    }

    pub fn base_index(&self) -> u64 {
        self.base_index
    }

    /// The index the next appended record will get.
    pub fn next_index(&self) -> u64 {
        self.base_index + self.offsets.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    pub fn contains(&self, index: u64) -> bool {
        index >= self.base_index && index < self.next_index()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self) -> &Arc<File> {
        &self.file
    }

    /// Bytes in the file (header included) once the pending appends are written.
    pub fn len_bytes(&self) -> u64 {
        self.end
    }

    /// Writes `payloads` as records `next_index()..`, in one `pwrite`. Not durable until synced.
    ///
    /// The caller has checked every payload against [`record::MAX_PAYLOAD_BYTES`].
    pub fn append<P: AsRef<[u8]>>(&mut self, payloads: &[P], scratch: &mut Vec<u8>) -> Result<()> {
        scratch.clear();
        let first_new = self.offsets.len();
        let first_index = self.next_index();
        for (i, payload) in payloads.iter().enumerate() {
            self.offsets
                .push(offset_u32(self.end + scratch.len() as u64));
            record::encode(first_index + i as u64, payload.as_ref(), scratch);
        }
        if let Err(e) = self.file.write_all_at(scratch, self.end) {
            self.offsets.truncate(first_new);
            return Err(e).at(&self.path);
        }
        self.end += scratch.len() as u64;
        Ok(())
    }

    /// Flushes the file's data to the disk (`fdatasync`: the size is included, timestamps not).
    pub fn sync(&self) -> Result<()> {
        self.file.sync_data().at(&self.path)
    }

    /// Reads record `index`, verifying its checksum again: bit rot after open is reported, not
    /// returned as data.
    pub fn read(&self, index: u64) -> Result<Option<Vec<u8>>> {
        if !self.contains(index) {
            return Ok(None);
        }
        let slot = (index - self.base_index) as usize;
        let start = u64::from(self.offsets[slot]);
        let end = self
            .offsets
            .get(slot + 1)
            .map_or(self.end, |next| u64::from(*next));
        let mut buf = vec![0; (end - start) as usize];
        self.file.read_exact_at(&mut buf, start).at(&self.path)?;
        let corrupt = |defect| Error::Corrupt {
            path: self.path.clone(),
            offset: start,
            defect,
        };
        let decoded = record::decode(&buf).map_err(corrupt)?;
        if decoded.index != index {
            return Err(corrupt(Defect::WrongIndex {
                expected: index,
                found: decoded.index,
            }));
        }
        buf.truncate(decoded.payload.end);
        buf.drain(..decoded.payload.start);
        Ok(Some(buf))
    }

    /// Cuts the file just after the last valid record and makes the new length durable. Used to
    /// drop a torn tail at recovery and records `>= index` in [`Segment::truncate_from`].
    pub fn cut_to_end(&self) -> Result<()> {
        self.file.set_len(self.end).at(&self.path)?;
        self.file.sync_all().at(&self.path)
    }

    /// Drops records `index..`, durably. `index` must lie in `base_index..=next_index()`.
    pub fn truncate_from(&mut self, index: u64) -> Result<()> {
        debug_assert!(index >= self.base_index && index <= self.next_index());
        let keep = (index - self.base_index) as usize;
        if let Some(offset) = self.offsets.get(keep) {
            self.end = u64::from(*offset);
            self.offsets.truncate(keep);
        }
        self.cut_to_end()
    }
}

fn open_read_write(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .at(path)
}

/// Offsets fit in `u32` because a segment never grows past `MAX_SEGMENT_BYTES` plus one record of
/// at most `MAX_PAYLOAD_BYTES` (see [`crate::MAX_SEGMENT_BYTES`]).
fn offset_u32(offset: u64) -> u32 {
    u32::try_from(offset).expect("segment offsets stay below 2^32 by the size limits")
}

fn encode_header(base_index: u64) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut header = [0; SEGMENT_HEADER_BYTES];
    header[0..8].copy_from_slice(&MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[12..20].copy_from_slice(&base_index.to_le_bytes());
    let crc = crc32c::crc32c(&header[0..20]);
    header[20..24].copy_from_slice(&crc.to_le_bytes());
    header
}

fn check_header(path: &Path, bytes: &[u8], base_index: u64) -> Result<()> {
    let foreign = |reason: &str| Error::ForeignFile {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    if bytes.len() < SEGMENT_HEADER_BYTES {
        return Err(foreign("shorter than the 24-byte segment header"));
    }
    if bytes[0..8] != MAGIC {
        return Err(foreign("wrong magic number"));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let stored = u32::from_le_bytes(bytes[20..24].try_into().expect("4 bytes"));
    let computed = crc32c::crc32c(&bytes[0..20]);
    if stored != computed {
        return Err(Error::Corrupt {
            path: path.to_path_buf(),
            offset: 0,
            defect: Defect::Checksum { stored, computed },
        });
    }
    let named = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    if named != base_index {
        return Err(foreign(&format!(
            "its header says it starts at index {named}, its name says {base_index}"
        )));
    }
    Ok(())
}
