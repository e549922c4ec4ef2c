//! The state machine's durable image, behind a small trait, kept in `sled`.
//!
//! The keyspace in memory is the state machine that answers commands. What is stored here is
//! its image as of one log index: a checkpoint writes the keys changed since the previous one,
//! together with that index, in one atomic batch, and makes it durable. After that the log
//! segments up to the index can be deleted. This is etcd's arrangement (bbolt batches committed
//! every so often with the "consistent index" in the same transaction), with sled for bbolt.
//!
//! # Buckets, not one sled entry per key
//!
//! ```text
//!   b:<bucket, u16 BE> ─▶ [ key length u32 LE | key | entry length u32 LE | entry ] ...
//!   m:applied_index    ─▶ u64 LE                 bucket = FNV-1a(key) mod BUCKETS
//!   m:layout           ─▶ 2
//! ```
//!
//! Keys are grouped into [`BUCKETS`] sled values, and a checkpoint rewrites the buckets its
//! changed keys fall in (read, change, write back, all in the one batch). sled's memory grows
//! with the number of objects it holds far beyond its `cache_capacity` (sled issues #986 and
//! #1093): a million 100-byte keys stored one per entry took 4.4 GB, so the image keeps a few
//! thousand objects instead, whatever the number of keys. The price is write amplification: a
//! checkpoint that changes one key rewrites its bucket, about 1/4096 of the image. An image
//! from before the buckets (one entry per key under `k`) is converted when it is opened.

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;

use super::codec;
use crate::db::Entry;

/// Key under which the applied index is stored. Buckets are stored under [`BUCKET_PREFIX`] so
/// the two can never collide.
const APPLIED_INDEX_KEY: &[u8] = b"m:applied_index";
/// Key of the layout version: [`LAYOUT_BUCKETS`] once the image is in buckets.
const LAYOUT_KEY: &[u8] = b"m:layout";
const LAYOUT_BUCKETS: &[u8] = &[2];
const BUCKET_PREFIX: &[u8] = b"b:";
/// The prefix of the first layout's one-entry-per-key records, read only to convert them.
const OLD_DATA_PREFIX: u8 = b'k';

/// Buckets the keys are spread over. At 4096, a million 100-byte keys make buckets of about
/// 35 KB; ten million, 350 KB.
pub const BUCKETS: u16 = 4096;

/// sled's page cache: 64 MiB (sled's default is 1 GiB). The image is read once, at start-up,
/// and written by checkpoints; reads are served from the keyspace in memory.
pub const SLED_CACHE_BYTES: u64 = 64 << 20;

/// How long [`SledStateMachine::open`] waits for sled's directory lock to be released by a
/// handle dropped in the same process.
pub const REOPEN_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum StateMachineError {
    #[error("state machine store: {0}")]
    Engine(#[from] sled::Error),
    #[error("state machine entry for key {key:?}: {source}")]
    Decode {
        key: String,
        source: codec::DecodeError,
    },
    #[error("state machine bucket {bucket} is malformed at byte {at}")]
    Bucket { bucket: u16, at: usize },
    #[error("state machine applied index is malformed ({0} bytes)")]
    AppliedIndex(usize),
}

/// The durable image of the keyspace. Only whole checkpoints are visible: after a crash,
/// [`StateMachine::applied_index`] and the stored keys agree.
pub trait StateMachine: Send + Sync {
    /// Index of the last log record whose effect is stored; 0 if none.
    fn applied_index(&self) -> Result<u64, StateMachineError>;

    /// Calls `visit` with every stored key and entry.
    fn load(&self, visit: &mut dyn FnMut(Bytes, Entry)) -> Result<(), StateMachineError>;

    /// Stores `changes` (`None`: the key was removed) and `applied_index` atomically, and returns
    /// once that is durable.
    fn checkpoint(
        &self,
        changes: &[(Bytes, Option<Entry>)],
        applied_index: u64,
    ) -> Result<(), StateMachineError>;
}

/// [`StateMachine`] in a sled database.
pub struct SledStateMachine {
    db: sled::Db,
}

impl SledStateMachine {
    pub fn open(dir: &Path) -> Result<SledStateMachine, StateMachineError> {
        // sled flushes by itself every 500 ms by default; durability points are ours (each
        // checkpoint flushes), so its own timer is turned off.
        let config = sled::Config::new()
            .path(dir)
            .flush_every_ms(None)
            .cache_capacity(SLED_CACHE_BYTES);
        let deadline = std::time::Instant::now() + REOPEN_WAIT;
        let db = loop {
            match config.open() {
                Ok(db) => break db,
                // sled releases its directory lock from a background thread after the last
                // handle is dropped, so reopening in the same process (a node restarted in a
                // test) can find it still held for a moment. Another process holding it is
                // still refused, after the wait.
                Err(sled::Error::Io(err))
                    if err.to_string().starts_with("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(err) => return Err(err.into()),
            }
        };
        let machine = SledStateMachine { db };
        if machine.db.get(LAYOUT_KEY)?.as_deref() != Some(LAYOUT_BUCKETS) {
            machine.convert_to_buckets()?;
        }
        Ok(machine)
    }

    /// Moves a first-layout image (one entry per key) into buckets, in one batch.
    fn convert_to_buckets(&self) -> Result<(), StateMachineError> {
        let mut buckets: HashMap<u16, Vec<u8>> = HashMap::new();
        let mut batch = sled::Batch::default();
        let mut converted = 0usize;
        for item in self.db.scan_prefix([OLD_DATA_PREFIX]) {
            let (stored, value) = item?;
            let key = &stored[1..];
            push_record(buckets.entry(bucket_of(key)).or_default(), key, &value);
            batch.remove(stored);
            converted += 1;
        }
        for (bucket, records) in buckets {
            batch.insert(bucket_key(bucket), records);
        }
        batch.insert(LAYOUT_KEY, LAYOUT_BUCKETS);
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        if converted > 0 {
            tracing::info!(keys = converted, "state machine image converted to buckets");
        }
        Ok(())
    }

    /// The records of one bucket, by key (encoded entries).
    fn read_bucket(&self, bucket: u16) -> Result<HashMap<Bytes, Vec<u8>>, StateMachineError> {
        let mut records = HashMap::new();
        if let Some(bytes) = self.db.get(bucket_key(bucket))? {
            for_each_record(bucket, &bytes, |key, entry| {
                records.insert(Bytes::copy_from_slice(key), entry.to_vec());
            })?;
        }
        Ok(records)
    }
}

/// FNV-1a, 64 bits: stable across builds and platforms, which a bucket number on disk must be.
fn bucket_of(key: &[u8]) -> u16 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in key {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % u64::from(BUCKETS)) as u16
}

fn bucket_key(bucket: u16) -> Vec<u8> {
    let mut key = BUCKET_PREFIX.to_vec();
    key.extend_from_slice(&bucket.to_be_bytes());
    key
}

fn push_record(out: &mut Vec<u8>, key: &[u8], entry: &[u8]) {
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&(entry.len() as u32).to_le_bytes());
    out.extend_from_slice(entry);
}

/// Calls `each(key, encoded entry)` for every record of a bucket's bytes.
fn for_each_record(
    bucket: u16,
    mut bytes: &[u8],
    mut each: impl FnMut(&[u8], &[u8]),
) -> Result<(), StateMachineError> {
    fn take<'a>(bytes: &mut &'a [u8]) -> Option<&'a [u8]> {
        let (len, rest) = bytes.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        let (field, rest) = rest.split_at_checked(len)?;
        *bytes = rest;
        Some(field)
    }
    let total = bytes.len();
    while !bytes.is_empty() {
        let at = total - bytes.len();
        let malformed = StateMachineError::Bucket { bucket, at };
        let key = take(&mut bytes).ok_or(malformed)?;
        let malformed = StateMachineError::Bucket { bucket, at };
        let entry = take(&mut bytes).ok_or(malformed)?;
        each(key, entry);
    }
    Ok(())
}

impl StateMachine for SledStateMachine {
    fn applied_index(&self) -> Result<u64, StateMachineError> {
        match self.db.get(APPLIED_INDEX_KEY)? {
            None => Ok(0),
            Some(bytes) => {
                let array: [u8; 8] = bytes
                    .as_ref()
                    .try_into()
                    .map_err(|_| StateMachineError::AppliedIndex(bytes.len()))?;
                Ok(u64::from_le_bytes(array))
            }
        }
    }

    fn load(&self, visit: &mut dyn FnMut(Bytes, Entry)) -> Result<(), StateMachineError> {
        for item in self.db.scan_prefix(BUCKET_PREFIX) {
            let (stored, bytes) = item?;
            let bucket = stored
                .get(BUCKET_PREFIX.len()..)
                .and_then(|b| b.try_into().ok())
                .map_or(u16::MAX, u16::from_be_bytes);
            let mut failed = None;
            for_each_record(bucket, &bytes, |key, encoded| {
                if failed.is_some() {
                    return;
                }
                match codec::decode(encoded) {
                    Ok(entry) => visit(Bytes::copy_from_slice(key), entry),
                    Err(source) => {
                        failed = Some(StateMachineError::Decode {
                            key: String::from_utf8_lossy(key).into_owned(),
                            source,
                        })
                    }
                }
            })?;
            if let Some(error) = failed {
                return Err(error);
            }
        }
        Ok(())
    }

    fn checkpoint(
        &self,
        changes: &[(Bytes, Option<Entry>)],
        applied_index: u64,
    ) -> Result<(), StateMachineError> {
        let mut by_bucket: HashMap<u16, Vec<&(Bytes, Option<Entry>)>> = HashMap::new();
        for change in changes {
            by_bucket
                .entry(bucket_of(&change.0))
                .or_default()
                .push(change);
        }
        let mut batch = sled::Batch::default();
        for (bucket, changes) in by_bucket {
            let mut records = self.read_bucket(bucket)?;
            for (key, entry) in changes {
                match entry {
                    Some(entry) => records.insert(key.clone(), codec::encode(entry)),
                    None => records.remove(key),
                };
            }
            if records.is_empty() {
                batch.remove(bucket_key(bucket));
                continue;
            }
            let mut bytes = Vec::new();
            for (key, entry) in &records {
                push_record(&mut bytes, key, entry);
            }
            batch.insert(bucket_key(bucket), bytes);
        }
        batch.insert(APPLIED_INDEX_KEY, &applied_index.to_le_bytes());
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Value;

    fn entry(text: &str) -> Entry {
        Entry {
            value: Value::Str(Bytes::copy_from_slice(text.as_bytes())),
            expires_at_ms: 0,
            access: 0,
        }
    }

    #[test]
    fn checkpoints_survive_reopening_with_their_index() {
        let dir = tempfile::tempdir().unwrap();
        {
            let sm = SledStateMachine::open(dir.path()).unwrap();
            assert_eq!(sm.applied_index().unwrap(), 0);
            let a = Bytes::from_static(b"a");
            let b = Bytes::from_static(b"b");
            sm.checkpoint(&[(a.clone(), Some(entry("1"))), (b, Some(entry("2")))], 7)
                .unwrap();
            sm.checkpoint(&[(a, None)], 9).unwrap();
        }
        let sm = SledStateMachine::open(dir.path()).unwrap();
        assert_eq!(sm.applied_index().unwrap(), 9);
        let mut loaded = Vec::new();
        sm.load(&mut |key, entry| loaded.push((key, entry)))
            .unwrap();
        assert_eq!(loaded, [(Bytes::from_static(b"b"), entry("2"))]);
    }

    #[test]
    fn many_keys_share_few_buckets_and_a_first_layout_image_is_converted() {
        let dir = tempfile::tempdir().unwrap();
        {
            // An image as the first layout wrote it: one sled entry per key under `k`.
            let db = sled::open(dir.path()).unwrap();
            for i in 0..100u32 {
                let mut key = vec![OLD_DATA_PREFIX];
                key.extend_from_slice(format!("old{i}").as_bytes());
                db.insert(key, codec::encode(&entry(&i.to_string())))
                    .unwrap();
            }
            db.insert(APPLIED_INDEX_KEY, &5u64.to_le_bytes()).unwrap();
            db.flush().unwrap();
        }
        let sm = SledStateMachine::open(dir.path()).unwrap();
        assert_eq!(sm.applied_index().unwrap(), 5);
        let changes: Vec<_> = (0..10_000u32)
            .map(|i| (Bytes::from(format!("key{i}")), Some(entry("v"))))
            .collect();
        sm.checkpoint(&changes, 6).unwrap();
        sm.checkpoint(&[(Bytes::from_static(b"key7"), None)], 7)
            .unwrap();
        let objects = sm.db.iter().count();
        assert!(
            objects <= usize::from(BUCKETS) + 2,
            "{objects} sled objects for 10,099 keys"
        );
        assert_eq!(sm.db.scan_prefix([OLD_DATA_PREFIX]).count(), 0, "converted");
        drop(sm);

        let sm = SledStateMachine::open(dir.path()).unwrap();
        let mut loaded = HashMap::new();
        sm.load(&mut |key, entry| {
            loaded.insert(key, entry);
        })
        .unwrap();
        assert_eq!(loaded.len(), 100 + 10_000 - 1);
        assert_eq!(loaded[&Bytes::from_static(b"old42")], entry("42"));
        assert!(!loaded.contains_key(&Bytes::from_static(b"key7")));
        assert_eq!(sm.applied_index().unwrap(), 7);
    }

    #[test]
    fn a_damaged_bucket_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let sm = SledStateMachine::open(dir.path()).unwrap();
        sm.db
            .insert(bucket_key(3), &[9, 0, 0, 0, b'a'][..])
            .unwrap();
        let error = sm.load(&mut |_, _| {}).unwrap_err();
        assert!(
            matches!(error, StateMachineError::Bucket { bucket: 3, at: 0 }),
            "{error}"
        );
    }
}
