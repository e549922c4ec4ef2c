//! The safety properties of Raft (paper, Figure 3), checked after every step of a simulation.
//!
//! Each check is incremental, so that it costs little enough to run after every event:
//!
//! - **Election Safety**: at most one leader per term. A map from term to the first node seen
//!   leading it.
//! - **Log Matching**: two logs with an entry of the same index and term hold the same command
//!   there and agree on everything before. Each persisted entry is filed under (index, term) with
//!   its command and the term of the entry before it; a second node persisting that (index, term)
//!   must agree on both. By induction on the index, that is the whole property.
//! - **Leader Completeness**: a leader's log holds every entry committed in an earlier term. When
//!   a node first leads a term, its log must hold the highest such entry (and so, by Log
//!   Matching, all the ones before). Only earlier terms count: a candidate whose votes were
//!   delayed can still become leader of an old term after a later leader has committed entries
//!   it lacks; that is allowed, and harmless, because it can commit nothing (every majority
//!   includes a node of the later term). The checker does not see in which term an entry was
//!   committed, so it uses an upper bound: the term of the first node to apply it.
//! - **State Machine Safety**: no two nodes apply different entries at one index. The first
//!   application of an index records it in the global committed log; every later application
//!   must match.
//! - **No committed entry is lost**: a node's log must agree with the global committed log at
//!   the node's commit index, including right after a restart from what it persisted.
//!
//! - **Linearizable reads**: a confirmed read's index covers every entry committed (applied
//!   anywhere) before the read was asked for.
//!
//! Snapshots are held to the same standard: every entry a snapshot restores into a state machine
//! must match the committed log, so compacted entries need no further checks.

use std::collections::HashMap;

use crate::message::{Entry, NodeId};
use crate::node::Node;
use crate::raft::Role;
use crate::read_index::ReadState;
use crate::storage::{MemStorage, Storage};

use super::trace::hash_bytes;

/// An entry known to be committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Committed {
    term: u64,
    command_hash: u64,
    /// A term by which the entry was certainly committed. Kept non-decreasing along the log (an
    /// entry is committed no later than the ones after it), so a binary search finds the entries
    /// committed before a given term.
    committed_by_term: u64,
}

#[derive(Default)]
pub(crate) struct Checker {
    leader_of_term: HashMap<u64, NodeId>,
    /// (index, term) -> (command hash, term of the previous entry).
    persisted: HashMap<(u64, u64), (u64, u64)>,
    /// `committed[i]` is the entry at index `i + 1`, as first applied.
    committed: Vec<Committed>,
    /// (node, read context) -> how many entries were committed when the read was asked for.
    reads: HashMap<(NodeId, Vec<u8>), u64>,
}

impl Checker {
    /// Election Safety and Leader Completeness, for a node that just handled an input.
    pub(crate) fn check_role(&mut self, node: &Node<MemStorage>) -> Result<(), String> {
        let status = node.status();
        if status.role != Role::Leader {
            return Ok(());
        }
        match self.leader_of_term.get(&status.term) {
            Some(&leader) if leader != status.id => Err(format!(
                "election safety: nodes {leader} and {} both lead term {}",
                status.id, status.term
            )),
            Some(_) => Ok(()),
            None => {
                self.leader_of_term.insert(status.term, status.id);
                let before_term = self
                    .committed
                    .partition_point(|entry| entry.committed_by_term < status.term);
                self.check_holds_committed(node, before_term as u64, "leader completeness")
            }
        }
    }

    /// The node's log holds committed entries `1..=index`.
    fn check_holds_committed(
        &self,
        node: &Node<MemStorage>,
        index: u64,
        property: &str,
    ) -> Result<(), String> {
        if index == 0 {
            return Ok(());
        }
        let expected = self.committed[index as usize - 1].term;
        if index < node.first_log_index() - 1 {
            // Compacted into a snapshot, whose every entry was checked when it was installed.
            return Ok(());
        }
        match node.log_term(index) {
            Some(term) if term == expected => Ok(()),
            found => Err(format!(
                "{property}: node {} lacks committed entry {index} (term {expected}); its log has {found:?}",
                node.status().id
            )),
        }
    }

    /// Log Matching, for entries a node just persisted.
    pub(crate) fn check_persisted(
        &mut self,
        id: NodeId,
        entries: &[Entry],
        storage: &MemStorage,
    ) -> Result<(), String> {
        for entry in entries {
            let previous_term = storage
                .term(entry.index - 1)
                .map_err(|error| error.to_string())?;
            let record = (hash_bytes(&entry.data), previous_term);
            let key = (entry.index, entry.term);
            match self.persisted.get(&key) {
                Some(&known) if known != record => {
                    return Err(format!(
                        "log matching: node {id} holds a different entry or history at index {} term {}",
                        entry.index, entry.term
                    ));
                }
                Some(_) => {}
                None => {
                    self.persisted.insert(key, record);
                }
            }
        }
        Ok(())
    }

    /// State Machine Safety, for an entry node `id`, now in `node_term`, is applying. Nodes apply
    /// in index order from 1 (a restarted node starts over), so the committed log grows without
    /// gaps.
    pub(crate) fn check_applied(
        &mut self,
        id: NodeId,
        node_term: u64,
        entry: &Entry,
    ) -> Result<(), String> {
        let (term, command_hash) = (entry.term, hash_bytes(&entry.data));
        let position = (entry.index - 1) as usize;
        match self.committed.get(position) {
            Some(known) if (known.term, known.command_hash) != (term, command_hash) => {
                Err(format!(
                    "state machine safety: node {id} applies term {term} at index {}, another applied term {}",
                    entry.index, known.term
                ))
            }
            Some(_) => Ok(()),
            None if position == self.committed.len() => {
                self.record_committed(term, command_hash, node_term);
                Ok(())
            }
            None => Err(format!(
                "node {id} applied index {} out of order",
                entry.index
            )),
        }
    }

    fn record_committed(&mut self, term: u64, command_hash: u64, committed_by_term: u64) {
        for earlier in self.committed.iter_mut().rev() {
            if earlier.committed_by_term <= committed_by_term {
                break;
            }
            earlier.committed_by_term = committed_by_term;
        }
        self.committed.push(Committed {
            term,
            command_hash,
            committed_by_term,
        });
    }

    /// No committed entry is lost: the node's log agrees with the committed log at its commit
    /// index.
    pub(crate) fn check_commit(&self, node: &Node<MemStorage>) -> Result<(), String> {
        let status = node.status();
        let Some(expected) = self.committed.get(status.commit.wrapping_sub(1) as usize) else {
            return Ok(());
        };
        let expected = expected.term;
        if status.commit < node.first_log_index() - 1 {
            return Ok(());
        }
        match node.log_term(status.commit) {
            Some(term) if term == expected => Ok(()),
            found => Err(format!(
                "committed entry lost: node {} has commit {} but term {found:?} there, committed term {expected}",
                status.id, status.commit
            )),
        }
    }

    pub(crate) fn read_issued(&mut self, id: NodeId, context: &[u8]) {
        self.reads
            .insert((id, context.to_vec()), self.committed_len());
    }

    /// Linearizability of a read confirmed on node `id`. The network may duplicate a forwarded
    /// read or its answer, so one read can be confirmed twice; each confirmation must qualify.
    pub(crate) fn check_read(&self, id: NodeId, read: &ReadState) -> Result<(), String> {
        let Some(&committed) = self.reads.get(&(id, read.context.clone())) else {
            return Err(format!("node {id} confirmed a read nobody asked it for"));
        };
        if read.index < committed {
            return Err(format!(
                "linearizability: node {id} confirmed a read at index {} but {committed} entries were committed before it was asked",
                read.index
            ));
        }
        Ok(())
    }

    /// How many entries are known committed (applied somewhere).
    pub(crate) fn committed_len(&self) -> u64 {
        self.committed.len() as u64
    }

    /// At the end of a run: every listed node holds the whole committed log.
    pub(crate) fn check_complete(&self, node: &Node<MemStorage>) -> Result<(), String> {
        self.check_holds_committed(node, self.committed_len(), "committed entry lost")
    }
}
