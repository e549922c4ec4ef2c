//! One log record: the unit that is appended, checksummed and read back.
//!
//! A record is a fixed 16-byte header followed by the payload. All integers are little-endian.
//!
//! | offset | size | field                                                        |
//! |-------:|-----:|--------------------------------------------------------------|
//! |      0 |    4 | `len`: payload length in bytes (u32)                         |
//! |      4 |    4 | `crc`: CRC-32C of bytes 0..4, then bytes 8..16+len           |
//! |      8 |    8 | `index`: position of the record in the log (u64)             |
//! |     16 |  len | `payload`: opaque bytes, at most [`MAX_PAYLOAD_BYTES`]       |
//!
//! The checksum covers everything except itself: the length, the index and the payload. A torn
//! write (the machine lost power part-way through a record) leaves a record whose bytes are cut
//! short or whose checksum does not match; either way the reader sees a [`Defect`] and stops.
//!
//! The index is stored even though it could be derived from the position, because it turns a
//! class of silent bugs into loud ones: a record copied to the wrong place, a stale record left
//! behind by a truncation that did not reach the disk, or two segments spliced together by hand
//! all fail the "index is the one expected here" check.
//!
//! CRC-32C (Castagnoli) rather than the zlib CRC-32: it detects more error patterns at the
//! lengths a log uses, and x86 (SSE 4.2) and ARMv8 compute it in hardware. Kafka's record batches,
//! ext4 metadata and iSCSI use it for the same reasons.

use std::ops::Range;

/// Bytes in a record before its payload.
pub const RECORD_HEADER_BYTES: usize = 16;

/// Largest payload a record may carry: 64 MiB.
///
/// Far above any Raft entry or KV command the servers produce (their request limits are lower),
/// and low enough that a corrupted length field cannot make recovery allocate gigabytes. Together
/// with [`crate::MAX_SEGMENT_BYTES`] it keeps every byte offset inside a segment below 2^32, so the
/// in-memory index of a segment stores offsets as `u32`.
pub const MAX_PAYLOAD_BYTES: usize = 64 << 20;

/// Why the bytes at some offset are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Defect {
    /// The file ends inside the record: the typical torn write.
    #[error("record cut short: {needed} bytes needed, {available} present")]
    Incomplete { needed: u64, available: u64 },

    /// The length field exceeds [`MAX_PAYLOAD_BYTES`], so it is damage, not data.
    #[error("length field {len} exceeds the payload limit")]
    ImpossibleLength { len: u32 },

    /// The stored checksum does not match the bytes.
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },

    /// A well-formed record that carries a different index than its position requires.
    #[error("record carries index {found}, expected {expected}")]
    WrongIndex { expected: u64, found: u64 },
}

/// A record located inside a buffer by [`decode`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Decoded {
    pub index: u64,
    /// Where the payload lies in the buffer given to [`decode`].
    pub payload: Range<usize>,
    /// Bytes the whole record occupies, header included.
    pub encoded_len: usize,
}

/// Bytes a record with a payload of `payload_len` bytes occupies on disk.
pub(crate) fn encoded_len(payload_len: usize) -> usize {
    RECORD_HEADER_BYTES + payload_len
}

/// Appends the encoding of one record to `out`.
///
/// The caller has checked `payload.len() <= MAX_PAYLOAD_BYTES`.
pub(crate) fn encode(index: u64, payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).expect("payload length checked against the limit");
    let len_bytes = len.to_le_bytes();
    let index_bytes = index.to_le_bytes();
    let crc = checksum(&len_bytes, &index_bytes, payload);
    out.reserve(encoded_len(payload.len()));
    out.extend_from_slice(&len_bytes);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&index_bytes);
    out.extend_from_slice(payload);
}

/// Reads the record at the start of `buf` (which may hold more after it).
pub(crate) fn decode(buf: &[u8]) -> Result<Decoded, Defect> {
    if buf.len() < RECORD_HEADER_BYTES {
        return Err(Defect::Incomplete {
            needed: RECORD_HEADER_BYTES as u64,
            available: buf.len() as u64,
        });
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes"));
    if len as usize > MAX_PAYLOAD_BYTES {
        return Err(Defect::ImpossibleLength { len });
    }
    let total = encoded_len(len as usize);
    if buf.len() < total {
        return Err(Defect::Incomplete {
            needed: total as u64,
            available: buf.len() as u64,
        });
    }
    let stored = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    let payload = RECORD_HEADER_BYTES..total;
    let computed = checksum(&buf[0..4], &buf[8..16], &buf[payload.clone()]);
    if stored != computed {
        return Err(Defect::Checksum { stored, computed });
    }
    Ok(Decoded {
        index: u64::from_le_bytes(buf[8..16].try_into().expect("8 bytes")),
        payload,
        encoded_len: total,
    })
}

fn checksum(len: &[u8], index: &[u8], payload: &[u8]) -> u32 {
    let crc = crc32c::crc32c(len);
    let crc = crc32c::crc32c_append(crc, index);
    crc32c::crc32c_append(crc, payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(index: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(index, payload, &mut out);
        out
    }

    #[test]
    fn a_record_decodes_to_what_was_encoded() {
        let bytes = encoded(42, b"hello");
        let decoded = decode(&bytes).unwrap();
        assert_eq!(decoded.index, 42);
        assert_eq!(&bytes[decoded.payload], b"hello");
        assert_eq!(decoded.encoded_len, RECORD_HEADER_BYTES + 5);
    }

    #[test]
    fn every_cut_of_a_record_is_incomplete() {
        let bytes = encoded(7, b"payload");
        for cut in 0..bytes.len() {
            assert!(
                matches!(decode(&bytes[..cut]), Err(Defect::Incomplete { .. })),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let bytes = encoded(7, b"payload");
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode(&damaged).is_err(),
                "flip of bit {bit} went unnoticed"
            );
        }
    }

    #[test]
    fn an_absurd_length_is_rejected_before_reading_the_payload() {
        let mut bytes = encoded(1, b"x");
        bytes[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode(&bytes),
            Err(Defect::ImpossibleLength { len: u32::MAX })
        );
    }

    #[test]
    fn zeroed_bytes_are_not_a_record() {
        // Some file systems expose zeros after a crash where a write had extended the file.
        assert!(matches!(decode(&[0; 64]), Err(Defect::Checksum { .. })));
    }
}
