//! The simulated application's side of the persistence contract (see [`crate::node`]): handling
//! a node's `Ready` in order (persist, send, apply, advance), installing snapshots into the
//! state machine, and taking snapshots to compact the log.
//!
//! The simulation calls [`Simulation::handle_ready`] a few steps after the input that produced
//! the `Ready`; a crash in between loses it, exactly as a crash before an fsync would.
//!
//! [`super::SimConfig::send_before_persist`] breaks the contract on purpose, for the test that
//! shows what the contract prevents: messages go out at once, and the persist happens a few
//! steps later, so a crash in between loses state that the messages already promised.

use rand::RngExt;

use crate::message::{Entry, NodeId, Snapshot};
use crate::node::{Node, Ready};
use crate::read_index::ReadState;
use crate::storage::{MemStorage, Storage};

use super::Simulation;
use super::state_machine::StateMachine;
use super::trace::TraceEvent;

impl Simulation {
    /// Persist, send, apply, advance: the order of the persistence contract (see [`crate::node`]).
    pub(super) fn handle_ready(&mut self, id: NodeId) {
        let slot = self.slot(id);
        self.nodes[slot].persist_at = None;
        let mut node = self.nodes[slot]
            .node
            .take()
            .expect("a pending Ready on a crashed node");
        let mut ready = node
            .ready()
            .unwrap_or_else(|error| self.fail(&format!("node {id}: {error}")));
        if self.config.send_before_persist {
            self.send(std::mem::take(&mut ready.messages));
            let delay = self
                .rng
                .random_range(1..=self.config.max_persist_delay_steps.max(1));
            self.nodes[slot].unpersisted = Some((ready, self.now + delay));
            self.nodes[slot].node = Some(node);
            return;
        }
        self.persist(id, &mut node, &ready);
        self.send(std::mem::take(&mut ready.messages));
        self.finish_ready(id, node, ready);
    }

    /// The contract broken: persist, apply and advance a `Ready` whose messages already left.
    pub(super) fn persist_late(&mut self, id: NodeId) {
        let slot = self.slot(id);
        let (ready, _) = self.nodes[slot]
            .unpersisted
            .take()
            .expect("a Ready to persist");
        let mut node = self.nodes[slot].node.take().expect("running");
        self.persist(id, &mut node, &ready);
        self.finish_ready(id, node, ready);
    }

    fn send(&mut self, messages: Vec<crate::Message>) {
        for message in messages {
            if let Some(reason) = self.network.send(message.clone(), self.now, &mut self.rng) {
                self.trace_drop(&message, reason);
            }
        }
    }

    /// Install, apply, advance, maybe compact: everything after persisting and sending.
    fn finish_ready(&mut self, id: NodeId, mut node: Node<MemStorage>, ready: Ready) {
        let slot = self.slot(id);
        if let Some(snapshot) = &ready.snapshot {
            self.install_snapshot(id, node.status().term, snapshot);
        }
        self.apply(id, node.status().term, ready.committed_entries);
        self.complete_reads(id, ready.read_states);
        node.advance();
        self.maybe_compact(id, &mut node);
        self.nodes[slot].node = Some(node);
        self.after_input(id);
    }

    /// Confirmed reads: check them for linearizability and keep them for the tests.
    fn complete_reads(&mut self, id: NodeId, read_states: Vec<ReadState>) {
        let slot = self.slot(id);
        for read in read_states {
            if let Err(violation) = self.checker.check_read(id, &read) {
                self.fail(&violation);
            }
            self.record(TraceEvent::ReadConfirmed {
                node: id,
                index: read.index,
            });
            self.nodes[slot].read_states.push(read);
        }
    }

    /// Replaces a node's state machine with the one a snapshot describes, after checking it
    /// against the committed log.
    pub(super) fn install_snapshot(&mut self, id: NodeId, node_term: u64, snapshot: &Snapshot) {
        let machine = StateMachine::restore(snapshot)
            .unwrap_or_else(|error| self.fail(&format!("node {id} snapshot: {error}")));
        for entry in machine.applied() {
            if let Err(violation) = self.checker.check_applied(id, node_term, entry) {
                self.fail(&format!("in a snapshot: {violation}"));
            }
        }
        let (index, slot) = (snapshot.index, self.slot(id));
        self.nodes[slot].state_machine = machine;
        self.record(TraceEvent::InstallSnapshot { node: id, index });
    }

    /// The application's side of compaction (paper, section 7): every `snapshot_interval`
    /// applied entries, snapshot the state machine and drop the log it covers.
    fn maybe_compact(&mut self, id: NodeId, node: &mut Node<MemStorage>) {
        let Some(interval) = self.config.snapshot_interval else {
            return;
        };
        let machine = &self.nodes[self.slot(id)].state_machine;
        let index = machine.applied_index();
        let snapshot_index = node
            .storage()
            .snapshot()
            .map_or(0, |snapshot| snapshot.index);
        if index < snapshot_index + interval {
            return;
        }
        let data = machine.snapshot_data();
        // Every log starts with the founding configuration (the first leader's no-op), so every
        // node, joiners included, knows the membership at every index it can snapshot.
        let conf_state = match node.conf_state_at(index) {
            Some(conf) if !conf.voters.is_empty() => conf.clone(),
            other => self.fail(&format!(
                "node {id} would snapshot index {index} with membership {other:?}"
            )),
        };
        let storage = node.storage_mut();
        let compacted = storage
            .create_snapshot(index, conf_state, data)
            .and_then(|()| storage.compact(index));
        if let Err(error) = compacted {
            self.fail(&format!("node {id} compaction: {error}"));
        }
        self.record(TraceEvent::Compact { node: id, index });
    }

    fn persist(&mut self, id: NodeId, node: &mut Node<MemStorage>, ready: &Ready) {
        let storage = node.storage_mut();
        if let Some(snapshot) = &ready.snapshot
            && let Err(error) = storage.apply_snapshot(snapshot.clone())
        {
            self.fail(&format!("node {id} persist snapshot: {error}"));
        }
        if let Err(error) = storage.append(&ready.entries) {
            self.fail(&format!("node {id} persist: {error}"));
        }
        if let Some(hard_state) = ready.hard_state {
            storage.set_hard_state(hard_state);
        }
        if let Err(violation) = self.checker.check_persisted(id, &ready.entries, storage) {
            self.fail(&violation);
        }
        if ready.entries.is_empty() && ready.hard_state.is_none() && ready.snapshot.is_none() {
            return;
        }
        self.record(TraceEvent::Persist {
            node: id,
            entries: ready.entries.len(),
            last_index: ready.entries.last().map_or(0, |entry| entry.index),
            commit: storage.hard_state().commit,
        });
    }

    fn apply(&mut self, id: NodeId, node_term: u64, entries: Vec<Entry>) {
        let slot = self.slot(id);
        for entry in entries {
            if let Err(violation) = self.checker.check_applied(id, node_term, &entry) {
                self.fail(&violation);
            }
            self.record(TraceEvent::Apply {
                node: id,
                index: entry.index,
                term: entry.term,
            });
            self.nodes[slot].state_machine.apply(entry);
        }
    }
}
