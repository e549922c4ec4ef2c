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
use std::sync::{Mutex, PoisonError};

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
    #[error("state machine store panicked: {0}")]
    Panicked(String),
}

/// The durable image of the keyspace. Only whole checkpoints are visible: after a crash,
/// [`StateMachine::applied_index`] and the stored keys agree.
pub trait StateMachine: Send + Sync {
    /// Index of the last log record whose effect is stored; 0 if none.
    fn applied_index(&self) -> Result<u64, StateMachineError>;

    /// Calls `visit` with every stored key and entry.
    fn load(&self, visit: &mut dyn FnMut(Bytes, Entry)) -> Result<(), StateMachineError>;

    /// Stores `changes` and `applied_index` atomically, and returns once that is durable.
    fn checkpoint(&self, changes: &[Change], applied_index: u64) -> Result<(), StateMachineError>;
}

/// One key's change since the previous checkpoint.
#[derive(Debug)]
pub struct Change {
    pub key: Bytes,
    /// The key's entry, encoded (`codec::encode`); `None` if the key was removed.
    pub entry: Option<Vec<u8>>,
}

/// [`StateMachine`] in a sled database.
///
/// The database is open only while it is used: from start-up until the image is loaded, and
/// during each checkpoint. sled keeps the tree it has read or written in memory, beyond its
/// `cache_capacity` (values it stores as blobs, as a bucket's leaf usually is, count as a few
/// bytes in its cache accounting): about the image's size again, for a copy nobody reads
/// between checkpoints. Closing it frees that; opening it again costs a recovery scan of the
/// sled directory, in the background task that runs checkpoints. The data directory's own lock
/// (`Node::open`) keeps other processes out meanwhile.
pub struct SledStateMachine {
    config: sled::Config,
    db: Mutex<Option<sled::Db>>,
}

impl SledStateMachine {
    pub fn open(dir: &Path) -> Result<SledStateMachine, StateMachineError> {
        // sled flushes by itself every 500 ms by default; durability points are ours (each
        // checkpoint flushes), so its own timer is turned off.
        let config = sled::Config::new()
            .path(dir)
            .flush_every_ms(None)
            .cache_capacity(SLED_CACHE_BYTES);
        let machine = SledStateMachine {
            config,
            db: Mutex::new(None),
        };
        machine.with_db(|db| {
            if db.get(LAYOUT_KEY)?.as_deref() != Some(LAYOUT_BUCKETS) {
                convert_to_buckets(db)?;
            }
            Ok(())
        })?;
        Ok(machine)
    }

    /// Runs `f` on the database, opened first if it is closed.
    fn with_db<R>(
        &self,
        f: impl FnOnce(&sled::Db) -> Result<R, StateMachineError>,
    ) -> Result<R, StateMachineError> {
        let mut slot = self.db.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(open_sled(&self.config)?);
        }
        f(slot.as_ref().expect("opened above"))
    }

    /// Closes the database and frees what it held (see the type's documentation).
    fn close(&self) {
        let db = self
            .db
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(db);
        collect_garbage();
    }
}

fn open_sled(config: &sled::Config) -> Result<sled::Db, StateMachineError> {
    let deadline = std::time::Instant::now() + REOPEN_WAIT;
    loop {
        match config.open() {
            Ok(db) => return Ok(db),
            // sled releases its directory lock from a background thread after the last
            // handle is dropped, so reopening in the same process (after a checkpoint, or a
            // node restarted in a test) can find it still held for a moment. Another process
            // holding it is still refused, after the wait.
            Err(sled::Error::Io(err))
                if err.to_string().starts_with("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(err) => return Err(err.into()),
        }
    }
}

/// Moves a first-layout image (one entry per key) into buckets, in one batch.
fn convert_to_buckets(db: &sled::Db) -> Result<(), StateMachineError> {
    let mut buckets: HashMap<u16, Vec<u8>> = HashMap::new();
    let mut batch = sled::Batch::default();
    let mut converted = 0usize;
    for item in db.scan_prefix([OLD_DATA_PREFIX]) {
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
    db.apply_batch(batch)?;
    db.flush()?;
    if converted > 0 {
        tracing::info!(keys = converted, "state machine image converted to buckets");
    }
    Ok(())
}

/// The records of one bucket, by key (encoded entries).
fn read_bucket(db: &sled::Db, bucket: u16) -> Result<HashMap<Bytes, Vec<u8>>, StateMachineError> {
    let mut records = HashMap::new();
    if let Some(bytes) = db.get(bucket_key(bucket))? {
        for_each_record(bucket, &bytes, |key, entry| {
            records.insert(Bytes::copy_from_slice(key), entry.to_vec());
        })?;
    }
    Ok(records)
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
        self.with_db(|db| match db.get(APPLIED_INDEX_KEY)? {
            None => Ok(0),
            Some(bytes) => {
                let array: [u8; 8] = bytes
                    .as_ref()
                    .try_into()
                    .map_err(|_| StateMachineError::AppliedIndex(bytes.len()))?;
                Ok(u64::from_le_bytes(array))
            }
        })
    }

    fn load(&self, visit: &mut dyn FnMut(Bytes, Entry)) -> Result<(), StateMachineError> {
        self.with_db(|db| load_buckets(db, visit))?;
        self.close();
        Ok(())
    }

    fn checkpoint(&self, changes: &[Change], applied_index: u64) -> Result<(), StateMachineError> {
        let written = self.with_db(|db| write_checkpoint(db, changes, applied_index));
        // Closed on failure too: the next checkpoint starts from what is on disk.
        self.close();
        written
    }
}

fn load_buckets(
    db: &sled::Db,
    visit: &mut dyn FnMut(Bytes, Entry),
) -> Result<(), StateMachineError> {
    for item in db.scan_prefix(BUCKET_PREFIX) {
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

/// Rewrites the buckets `changes` fall in, with `applied_index`, in one batch, and flushes it.
fn write_checkpoint(
    db: &sled::Db,
    changes: &[Change],
    applied_index: u64,
) -> Result<(), StateMachineError> {
    let mut by_bucket: HashMap<u16, Vec<&Change>> = HashMap::new();
    for change in changes {
        by_bucket
            .entry(bucket_of(&change.key))
            .or_default()
            .push(change);
    }
    let mut batch = sled::Batch::default();
    for (bucket, changes) in by_bucket {
        let mut records = read_bucket(db, bucket)?;
        for change in changes {
            match &change.entry {
                Some(entry) => records.insert(change.key.clone(), entry.clone()),
                None => records.remove(&change.key),
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
    db.apply_batch(batch)?;
    db.flush()?;
    Ok(())
}

/// Frees what sled left for later. sled releases replaced pages, old bucket values, full log
/// buffers and, once the database is closed, its tree, through crossbeam's epoch-based
/// reclamation, which moves only when some thread pins and collects, a few batches of garbage
/// per call; with sled's flusher thread off (`flush_every_ms(None)`) little else does. After a
/// checkpoint that is about twice the image's size, so it is collected at once rather than
/// left to build up.
fn collect_garbage() {
    for _ in 0..GARBAGE_COLLECTIONS {
        crossbeam_epoch::pin().flush();
    }
}

/// Collections after closing: each frees up to 8 bags of 64 deferred frees once the epoch has
/// moved past them; a full rewrite of a million-key image leaves on the order of a hundred
/// bags. Each call takes well under a microsecond when there is nothing to free.
const GARBAGE_COLLECTIONS: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Value;

    fn entry(text: &str) -> Entry {
        Entry::new(Value::Str(Bytes::copy_from_slice(text.as_bytes())), 0)
    }

    fn set(key: &str, text: &str) -> Change {
        Change {
            key: Bytes::copy_from_slice(key.as_bytes()),
            entry: Some(codec::encode(&entry(text))),
        }
    }

    fn removed(key: &str) -> Change {
        Change {
            key: Bytes::copy_from_slice(key.as_bytes()),
            entry: None,
        }
    }

    #[test]
    fn checkpoints_survive_reopening_with_their_index() {
        let dir = tempfile::tempdir().unwrap();
        {
            let sm = SledStateMachine::open(dir.path()).unwrap();
            assert_eq!(sm.applied_index().unwrap(), 0);
            sm.checkpoint(&[set("a", "1"), set("b", "2")], 7).unwrap();
            sm.checkpoint(&[removed("a")], 9).unwrap();
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
            .map(|i| set(&format!("key{i}"), "v"))
            .collect();
        sm.checkpoint(&changes, 6).unwrap();
        sm.checkpoint(&[removed("key7")], 7).unwrap();
        let objects = sm.with_db(|db| Ok(db.iter().count())).unwrap();
        assert!(
            objects <= usize::from(BUCKETS) + 2,
            "{objects} sled objects for 10,099 keys"
        );
        let old = sm.with_db(|db| Ok(db.scan_prefix([OLD_DATA_PREFIX]).count()));
        assert_eq!(old.unwrap(), 0, "converted");
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
        sm.with_db(|db| Ok(db.insert(bucket_key(3), &[9, 0, 0, 0, b'a'][..])?))
            .unwrap();
        let error = sm.load(&mut |_, _| {}).unwrap_err();
        assert!(
            matches!(error, StateMachineError::Bucket { bucket: 3, at: 0 }),
            "{error}"
        );
    }
}
