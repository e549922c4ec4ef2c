//! Faults the tests inject: crashes, restarts, disconnected nodes, cut links. Message loss,
//! duplication and delay are the network's own (see [`super::NetworkFaults`]).

use rand::RngExt;

use crate::message::NodeId;
use crate::node::Node;
use crate::storage::Storage;

use super::Simulation;
use super::state_machine::StateMachine;
use super::trace::TraceEvent;

impl Simulation {
    /// Crashes a node: its volatile state, unpersisted entries and unsent messages are gone.
    pub fn crash(&mut self, id: NodeId) {
        let slot = self.slot(id);
        let Some(node) = self.nodes[slot].node.take() else {
            return;
        };
        let state = &mut self.nodes[slot];
        state.disk = node.storage().clone();
        state.persist_at = None;
        state.unpersisted = None;
        state.state_machine = StateMachine::default();
        state.last_role = None;
        self.record(TraceEvent::Crash { node: id });
    }

    /// Restarts a crashed node from its disk (a running node is crashed first).
    pub fn restart(&mut self, id: NodeId) {
        self.crash(id);
        self.start_node(id);
        self.record(TraceEvent::Restart { node: id });
    }

    pub(super) fn start_node(&mut self, id: NodeId) {
        let mut config = self.config.raft.clone();
        config.id = id;
        // Founding members start with the founding voters; the others join later, with an
        // empty configuration that the leader's log or snapshot fills in.
        if !config.voters.contains(&id) {
            config.voters = Vec::new();
        }
        config.seed = self.rng.random();
        let slot = self.slot(id);
        let disk = self.nodes[slot].disk.clone();
        let snapshot = disk.snapshot().unwrap_or_default();
        if snapshot.index > 0 {
            let term = disk.hard_state().term;
            self.install_snapshot(id, term, &snapshot);
        }
        match Node::new(config, disk) {
            Ok(node) => self.nodes[slot].node = Some(node),
            Err(error) => self.fail(&format!("node {id} failed to start: {error}")),
        }
        self.after_input(id);
    }

    /// Cuts a node off from everyone (it keeps running).
    pub fn disconnect(&mut self, id: NodeId) {
        self.network.disconnect(id);
        self.record(TraceEvent::Disconnect { node: id });
    }

    pub fn connect(&mut self, id: NodeId) {
        self.network.connect(id);
        self.record(TraceEvent::Connect { node: id });
    }

    /// Cuts the link between two nodes, both ways.
    pub fn cut(&mut self, a: NodeId, b: NodeId) {
        self.network.cut(a, b);
        self.record(TraceEvent::Cut { a, b });
    }

    /// Reconnects every node and link.
    pub fn heal_all(&mut self) {
        self.network.heal_all();
        self.record(TraceEvent::HealAll);
    }
}
