//! The simulated application: a state machine that remembers every entry it applied, so that
//! tests can ask what sits at any index, and that can be snapshotted and restored like a real
//! one.
//!
//! Snapshot data layout, one record per applied entry, in index order from 1 (the index is
//! implied by the position):
//!
//! ```text
//!   | term: u64 LE | data length: u32 LE | data |  ...
//! ```

use crate::message::{Entry, Snapshot};

#[derive(Clone, Debug, Default)]
pub(crate) struct StateMachine {
    /// `applied[i]` is the entry at index `i + 1`.
    applied: Vec<Entry>,
}

impl StateMachine {
    /// The state machine a snapshot describes; an error if its data is malformed or does not
    /// cover exactly `1..=snapshot.index`.
    pub(crate) fn restore(snapshot: &Snapshot) -> Result<Self, String> {
        let mut applied = Vec::new();
        let mut rest = &snapshot.data[..];
        while !rest.is_empty() {
            let (term, after_term) = split_u64(rest)?;
            let (length, after_length) = split_u32(after_term)?;
            let length = length as usize;
            if after_length.len() < length {
                return Err("snapshot data ends inside an entry".to_string());
            }
            let index = applied.len() as u64 + 1;
            applied.push(Entry {
                term,
                index,
                data: after_length[..length].to_vec(),
                ..Entry::default()
            });
            rest = &after_length[length..];
        }
        if applied.len() as u64 != snapshot.index {
            return Err(format!(
                "snapshot at {} holds {} entries",
                snapshot.index,
                applied.len()
            ));
        }
        Ok(StateMachine { applied })
    }

    /// Remembers `entry`'s term and command. Its kind is dropped, as in the snapshot format:
    /// membership is Raft's business, tracked by the node itself.
    pub(crate) fn apply(&mut self, entry: Entry) {
        debug_assert_eq!(
            entry.index,
            self.applied.len() as u64 + 1,
            "applied out of order"
        );
        self.applied.push(Entry {
            kind: crate::message::EntryKind::Command,
            ..entry
        });
    }

    pub(crate) fn applied(&self) -> &[Entry] {
        &self.applied
    }

    pub(crate) fn applied_index(&self) -> u64 {
        self.applied.len() as u64
    }

    /// The snapshot data of everything applied so far.
    pub(crate) fn snapshot_data(&self) -> Vec<u8> {
        let mut data = Vec::new();
        for entry in &self.applied {
            data.extend_from_slice(&entry.term.to_le_bytes());
            data.extend_from_slice(&(entry.data.len() as u32).to_le_bytes());
            data.extend_from_slice(&entry.data);
        }
        data
    }
}

fn split_u64(bytes: &[u8]) -> Result<(u64, &[u8]), String> {
    let (head, rest) = bytes
        .split_first_chunk::<8>()
        .ok_or("snapshot data ends inside a term")?;
    Ok((u64::from_le_bytes(*head), rest))
}

fn split_u32(bytes: &[u8]) -> Result<(u32, &[u8]), String> {
    let (head, rest) = bytes
        .split_first_chunk::<4>()
        .ok_or("snapshot data ends inside a length")?;
    Ok((u32::from_le_bytes(*head), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_restores_what_was_applied() {
        let mut machine = StateMachine::default();
        machine.apply(Entry {
            term: 1,
            index: 1,
            ..Entry::default()
        });
        machine.apply(Entry {
            term: 2,
            index: 2,
            data: b"set x".to_vec(),
            ..Entry::default()
        });
        let snapshot = Snapshot {
            index: 2,
            term: 2,
            data: machine.snapshot_data(),
            ..Snapshot::default()
        };
        let restored = StateMachine::restore(&snapshot).unwrap();
        assert_eq!(restored.applied(), machine.applied());
        let truncated = Snapshot {
            data: snapshot.data[..15].to_vec(),
            ..snapshot
        };
        assert!(StateMachine::restore(&truncated).is_err());
    }
}
