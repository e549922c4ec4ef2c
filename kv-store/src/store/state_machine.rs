//! The state machine's durable image, behind a small trait, kept in `sled`.
//!
//! The keyspace in memory is the state machine that answers commands. What is stored here is
//! its image as of one log index: a checkpoint writes the keys changed since the previous one,
//! together with that index, in one atomic batch, and makes it durable. After that the log
//! segments up to the index can be deleted. This is etcd's arrangement (bbolt batches committed
//! every so often with the "consistent index" in the same transaction), with sled for bbolt.

use std::path::Path;

use bytes::Bytes;

use super::codec;
use crate::db::Entry;

/// Key under which the applied index is stored. Data keys are stored under [`DATA_PREFIX`] so
/// the two can never collide.
const APPLIED_INDEX_KEY: &[u8] = b"m:applied_index";
const DATA_PREFIX: u8 = b'k';

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
        loop {
            match config.open() {
                Ok(db) => return Ok(SledStateMachine { db }),
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
        }
    }
}

fn data_key(key: &[u8]) -> Vec<u8> {
    let mut stored = Vec::with_capacity(key.len() + 1);
    stored.push(DATA_PREFIX);
    stored.extend_from_slice(key);
    stored
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
        for item in self.db.scan_prefix([DATA_PREFIX]) {
            let (key, value) = item?;
            let key = Bytes::copy_from_slice(&key[1..]);
            let entry = codec::decode(&value).map_err(|source| StateMachineError::Decode {
                key: String::from_utf8_lossy(&key).into_owned(),
                source,
            })?;
            visit(key, entry);
        }
        Ok(())
    }

    fn checkpoint(
        &self,
        changes: &[(Bytes, Option<Entry>)],
        applied_index: u64,
    ) -> Result<(), StateMachineError> {
        let mut batch = sled::Batch::default();
        for (key, entry) in changes {
            match entry {
                Some(entry) => batch.insert(data_key(key), codec::encode(entry)),
                None => batch.remove(data_key(key)),
            }
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
}
