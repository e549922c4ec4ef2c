//! How an [`Entry`] is stored in the state machine: a small binary layout, versioned.
//!
//! ```text
//!  offset  size  field
//!  0       1     format version (1)
//!  1       1     type: 0 string, 1 list, 2 hash, 3 set, 4 sorted set
//!  2       8     expiry, Unix ms, little-endian (0: none)
//!  10      ...   payload
//!
//!  string      the bytes
//!  list, set   count u32, then per element: length u32, bytes
//!  hash        count u32, then per field: length u32, field, length u32, value
//!  sorted set  count u32, then per member: score f64 (IEEE bits, LE), length u32, member
//! ```
//!
//! The access record (LRU/LFU) is not stored: it describes this process's use of the key.

use std::collections::{HashMap, HashSet, VecDeque};

use bytes::Bytes;

use crate::db::{Entry, Value, ZSet};

const VERSION: u8 = 1;

/// Why stored bytes are not an entry: a bug or damage in the state machine's files.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("stored entry is malformed: {0}")]
pub struct DecodeError(&'static str);

pub fn encode(entry: &Entry) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.push(VERSION);
    let kind = match &entry.value {
        Value::Str(_) => 0,
        Value::List(_) => 1,
        Value::Hash(_) => 2,
        Value::Set(_) => 3,
        Value::ZSet(_) => 4,
    };
    out.push(kind);
    out.extend_from_slice(&entry.expires_at_ms.to_le_bytes());
    match &entry.value {
        Value::Str(bytes) => out.extend_from_slice(bytes),
        Value::List(list) => put_all(&mut out, list.len(), list.iter().map(|e| (None, e))),
        Value::Set(set) => put_all(&mut out, set.len(), set.iter().map(|e| (None, e))),
        Value::Hash(hash) => {
            put_u32(&mut out, hash.len());
            for (field, value) in hash.iter() {
                put_bytes(&mut out, field);
                put_bytes(&mut out, value);
            }
        }
        Value::ZSet(zset) => put_all(&mut out, zset.len(), zset.iter().map(|(m, s)| (Some(s), m))),
    }
    out
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u32).to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn put_all<'a>(
    out: &mut Vec<u8>,
    count: usize,
    items: impl Iterator<Item = (Option<f64>, &'a Bytes)>,
) {
    put_u32(out, count);
    for (score, bytes) in items {
        if let Some(score) = score {
            out.extend_from_slice(&score.to_bits().to_le_bytes());
        }
        put_bytes(out, bytes);
    }
}

/// A cursor over stored bytes.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(DecodeError("truncated"));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn u32(&mut self) -> Result<usize, DecodeError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u32()?;
        Ok(Bytes::copy_from_slice(self.take(len)?))
    }

    /// A count, checked against the bytes left so that a damaged count cannot make us allocate.
    fn count(&mut self, min_item_bytes: usize) -> Result<usize, DecodeError> {
        let count = self.u32()?;
        if count.saturating_mul(min_item_bytes) > self.bytes.len() {
            return Err(DecodeError("count larger than the data"));
        }
        Ok(count)
    }
}

pub fn decode(bytes: &[u8]) -> Result<Entry, DecodeError> {
    let mut r = Reader { bytes };
    if r.take(1)? != [VERSION] {
        return Err(DecodeError("unknown format version"));
    }
    let kind = r.take(1)?[0];
    let expires_at_ms = r.u64()?;
    let value = match kind {
        0 => Value::Str(Bytes::copy_from_slice(r.take(r.bytes.len())?)),
        1 => {
            let n = r.count(4)?;
            Value::List(
                (0..n)
                    .map(|_| r.bytes())
                    .collect::<Result<VecDeque<_>, _>>()?,
            )
        }
        2 => {
            let n = r.count(8)?;
            let mut hash = HashMap::with_capacity(n);
            for _ in 0..n {
                hash.insert(r.bytes()?, r.bytes()?);
            }
            Value::Hash(Box::new(hash))
        }
        3 => {
            let n = r.count(4)?;
            Value::Set(Box::new(
                (0..n)
                    .map(|_| r.bytes())
                    .collect::<Result<HashSet<_>, _>>()?,
            ))
        }
        4 => {
            let n = r.count(12)?;
            let mut zset = ZSet::default();
            for _ in 0..n {
                let score = f64::from_bits(r.u64()?);
                zset.insert(r.bytes()?, score);
            }
            Value::ZSet(Box::new(zset))
        }
        _ => return Err(DecodeError("unknown type")),
    };
    if !r.bytes.is_empty() {
        return Err(DecodeError("trailing bytes"));
    }
    Ok(Entry::new(value, expires_at_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn every_type_round_trips() {
        let mut zset = ZSet::default();
        zset.insert(b("m"), -1.5);
        zset.insert(b("n"), f64::INFINITY);
        let values = [
            Value::Str(b("hello")),
            Value::Str(Bytes::new()),
            Value::List([b("a"), b("")].into_iter().collect()),
            Value::Hash(Box::new([(b("f"), b("v"))].into_iter().collect())),
            Value::Set(Box::new([b("x"), b("y")].into_iter().collect())),
            Value::ZSet(Box::new(zset)),
        ];
        for (i, value) in values.into_iter().enumerate() {
            let entry = Entry::new(value, i as u64 * 1000);
            assert_eq!(decode(&encode(&entry)), Ok(entry));
        }
    }

    #[test]
    fn damage_is_an_error_not_a_panic() {
        let entry = Entry::new(Value::List([b("abc")].into_iter().collect()), 0);
        let bytes = encode(&entry);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut huge_count = bytes.clone();
        huge_count[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge_count).is_err());
    }
}
