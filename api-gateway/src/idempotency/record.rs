//! The record kept for one key, and its byte layout in the kv-store.
//!
//! A record is either a claim (the first request is running) or a completed response. Both
//! carry the request's fingerprint, so that a different request reusing the key is told apart
//! whatever state the first one is in. Big-endian throughout:
//!
//! ```text
//!  offset  size  field
//!  0       1     version = 1 (a reader refuses any other, it does not guess)
//!  1       1     kind: 1 = claim, 2 = completed
//!  2       32    request fingerprint
//!  claim:
//!  34      16    claim token
//!  completed:
//!  34      2     status
//!  36      1     flags: bit 0 = body omitted
//!  37      4     header count n
//!  41      ..    n x { 4 name length, name (UTF-8), 4 value length, value }
//!  ..      4     body length, then the body
//! ```
//!
//! Every length is checked against what is left before anything is read: a record is data from
//! the network, and a corrupt one is an error, never a panic.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{BufMut, Bytes, BytesMut};
use rand::TryRng;
use rand::rngs::SysRng;
use sha2::{Digest, Sha256};

use super::{StoreError, StoredResponse};

const VERSION: u8 = 1;
const KIND_CLAIM: u8 = 1;
const KIND_COMPLETED: u8 = 2;
const FLAG_BODY_OMITTED: u8 = 1;

/// Identifies one claim among every claim of every gateway on the same key.
pub(crate) type Token = [u8; 16];

/// A record as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    Claim {
        fingerprint: [u8; 32],
        token: Token,
    },
    Completed {
        fingerprint: [u8; 32],
        response: StoredResponse,
    },
}

impl Record {
    pub(crate) fn fingerprint(&self) -> &[u8; 32] {
        match self {
            Record::Claim { fingerprint, .. } | Record::Completed { fingerprint, .. } => {
                fingerprint
            }
        }
    }

    pub(crate) fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(64);
        out.put_u8(VERSION);
        match self {
            Record::Claim { fingerprint, token } => {
                out.put_u8(KIND_CLAIM);
                out.put_slice(fingerprint);
                out.put_slice(token);
            }
            Record::Completed {
                fingerprint,
                response,
            } => {
                out.put_u8(KIND_COMPLETED);
                out.put_slice(fingerprint);
                encode_response(&mut out, response);
            }
        }
        out.freeze()
    }

    pub(crate) fn decode(bytes: &Bytes) -> Result<Record, StoreError> {
        let mut reader = Reader { bytes, at: 0 };
        if reader.u8()? != VERSION {
            return Err(StoreError::Corrupt("unknown record version"));
        }
        let kind = reader.u8()?;
        let fingerprint = reader.array::<32>()?;
        let record = match kind {
            KIND_CLAIM => Record::Claim {
                fingerprint,
                token: reader.array::<16>()?,
            },
            KIND_COMPLETED => Record::Completed {
                fingerprint,
                response: decode_response(&mut reader)?,
            },
            _ => return Err(StoreError::Corrupt("unknown record kind")),
        };
        if reader.at != bytes.len() {
            return Err(StoreError::Corrupt("bytes after the record"));
        }
        Ok(record)
    }
}

fn encode_response(out: &mut BytesMut, response: &StoredResponse) {
    out.put_u16(response.status);
    out.put_u8(if response.body_omitted {
        FLAG_BODY_OMITTED
    } else {
        0
    });
    // Lengths are u32: a response head and a stored body are bounded far below 4 GiB by the
    // HTTP layer's limits and `max_body_bytes`.
    out.put_u32(response.headers.len() as u32);
    for (name, value) in &response.headers {
        out.put_u32(name.len() as u32);
        out.put_slice(name.as_bytes());
        out.put_u32(value.len() as u32);
        out.put_slice(value);
    }
    out.put_u32(response.body.len() as u32);
    out.put_slice(&response.body);
}

fn decode_response(reader: &mut Reader<'_>) -> Result<StoredResponse, StoreError> {
    let status = reader.u16()?;
    let flags = reader.u8()?;
    let count = reader.u32()? as usize;
    // Each header takes at least 8 bytes: a count beyond that is corrupt, and checking it
    // first keeps a bad count from reserving memory.
    if count > reader.remaining() / 8 {
        return Err(StoreError::Corrupt("header count beyond the record"));
    }
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        let name = reader.sized()?;
        let name = std::str::from_utf8(&name)
            .map_err(|_| StoreError::Corrupt("header name is not UTF-8"))?
            .to_owned();
        headers.push((name, reader.sized()?));
    }
    Ok(StoredResponse {
        status,
        headers,
        body: reader.sized()?,
        body_omitted: flags & FLAG_BODY_OMITTED != 0,
    })
}

/// A bounds-checked cursor over a record.
struct Reader<'a> {
    bytes: &'a Bytes,
    at: usize,
}

impl Reader<'_> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, len: usize) -> Result<Bytes, StoreError> {
        if len > self.remaining() {
            return Err(StoreError::Corrupt("record is truncated"));
        }
        let part = self.bytes.slice(self.at..self.at + len);
        self.at += len;
        Ok(part)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let mut out = [0; N];
        out.copy_from_slice(&self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, StoreError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, StoreError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// A u32 length, then that many bytes.
    fn sized(&mut self) -> Result<Bytes, StoreError> {
        let len = self.u32()? as usize;
        self.take(len)
    }
}

/// A fresh claim token: 128 random bits, so claims by different gateways (which share no
/// counter) do not collide. If the OS has no randomness to give, a digest of the process id,
/// a process-wide counter and the time is unique enough for a lock that lives a minute.
pub(crate) fn new_token(now_ns: u64) -> Token {
    let mut token = [0; 16];
    if SysRng.try_fill_bytes(&mut token).is_ok() {
        return token;
    }
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = Sha256::new();
    hasher.update(std::process::id().to_be_bytes());
    hasher.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    hasher.update(now_ns.to_be_bytes());
    let digest = hasher.finalize();
    token.copy_from_slice(&digest[..16]);
    token
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completed() -> Record {
        Record::Completed {
            fingerprint: [7; 32],
            response: StoredResponse {
                status: 201,
                headers: vec![
                    (
                        "content-type".to_owned(),
                        Bytes::from_static(b"application/json"),
                    ),
                    ("x-empty".to_owned(), Bytes::new()),
                ],
                body: Bytes::from_static(b"{\"id\":1}"),
                body_omitted: false,
            },
        }
    }

    #[test]
    fn records_survive_encoding() {
        let claim = Record::Claim {
            fingerprint: [1; 32],
            token: [2; 16],
        };
        for record in [claim, completed()] {
            assert_eq!(Record::decode(&record.encode()).expect("decodes"), record);
        }
    }

    #[test]
    fn a_claim_is_laid_out_as_documented() {
        let bytes = Record::Claim {
            fingerprint: [0xaa; 32],
            token: [0xbb; 16],
        }
        .encode();
        assert_eq!(bytes.len(), 50);
        assert_eq!(&bytes[..2], &[VERSION, KIND_CLAIM]);
        assert_eq!(&bytes[2..34], &[0xaa; 32]);
        assert_eq!(&bytes[34..], &[0xbb; 16]);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = completed().encode();
        for len in 0..bytes.len() {
            assert!(
                Record::decode(&bytes.slice(..len)).is_err(),
                "prefix of {len} bytes"
            );
        }
        let mut longer = BytesMut::from(&bytes[..]);
        longer.put_u8(0);
        assert!(Record::decode(&longer.freeze()).is_err(), "a trailing byte");
    }

    #[test]
    fn another_version_or_kind_is_refused() {
        let mut bytes = BytesMut::from(&completed().encode()[..]);
        bytes[0] = 2;
        assert!(matches!(
            Record::decode(&bytes.clone().freeze()),
            Err(StoreError::Corrupt("unknown record version"))
        ));
        bytes[0] = VERSION;
        bytes[1] = 9;
        assert!(Record::decode(&bytes.freeze()).is_err());
    }

    #[test]
    fn a_huge_header_count_is_refused_before_allocating() {
        let mut bytes = BytesMut::from(&completed().encode()[..37]);
        bytes.put_u32(u32::MAX);
        assert!(matches!(
            Record::decode(&bytes.freeze()),
            Err(StoreError::Corrupt("header count beyond the record"))
        ));
    }

    #[test]
    fn tokens_differ() {
        assert_ne!(new_token(1), new_token(1));
    }
}
