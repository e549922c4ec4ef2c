//! A deterministic simulation of a Raft group, with faults, and a checker that runs after every
//! event.
//!
//! ```text
//!   mod.rs          Simulation: the clock, message delivery, inputs to nodes, the checks after each
//!   network.rs      delay, loss, duplication, reordering, partitions
//!   ready.rs        the application: persist, send, apply, snapshot (the persistence contract)
//!   faults.rs       crash, restart, disconnect, cut, heal
//!   checker.rs      the safety properties of Figure 3, checked after every event
//!   state_machine.rs, trace.rs, scenario.rs (waiting helpers for scenario tests)
//! ```
//!
//! N [`Node`]s live in one process. Time is counted in steps, [`STEPS_PER_TICK`] to a tick; each
//! node ticks once per tick at its own phase (clocks are not aligned). Every random choice
//! (message delays, loss, duplication, clock phases, node seeds, and whatever the test itself
//! draws from [`Simulation::rng`]) comes from one generator seeded with one `u64`, so a seed
//! replays a run exactly, and a failure prints it.
//!
//! # Persistence is a step of its own
//!
//! After a node handles an input it has a [`crate::Ready`]; the simulation handles it a few steps
//! later ("disk latency"): persist entries and hard state to the node's [`MemStorage`], then send
//! the messages, then apply the committed entries. A node that crashes before that loses
//! everything not yet persisted, and none of those messages ever leave. A restarted node is
//! built from its `MemStorage` alone, with an empty state machine.
//!
//! # Membership
//!
//! The founding voters are [`SimConfig::raft`]'s `voters` (all nodes by default); the other
//! nodes run from the start with an empty configuration and wait to be added with
//! [`Simulation::propose_conf_change`] or [`Simulation::change_membership`]. Election Safety is
//! what a wrong membership change would break (two leaders elected under two configurations
//! whose majorities do not overlap), and the checker watches it on every event as before.
//!
//! # Replaying
//!
//! [`seeds_from_env`] reads `RAFT_SIM_SEED=N` (replay exactly seed N) and `RAFT_SIM_SEEDS=N` (run
//! N seeds instead of the test's default).

mod checker;
mod faults;
mod network;
mod ready;
mod scenario;
mod state_machine;
mod trace;

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use crate::config::Config;
use crate::message::{ConfState, Entry, MembershipChange, Message, MessageBody, NodeId};
use crate::node::{Node, Status};
use crate::read_index::ReadState;
use crate::storage::MemStorage;

use checker::Checker;
use network::{Arrival, Network};
pub use network::{DropReason, NetworkFaults, NetworkStats};
use state_machine::StateMachine;
use trace::Trace;
pub use trace::TraceEvent;

/// Simulation steps per tick: the resolution of message delays.
pub const STEPS_PER_TICK: u64 = 10;
/// Default upper bound of the delay between an input and the handling of its `Ready`, in steps.
pub const DEFAULT_MAX_PERSIST_DELAY_STEPS: u64 = 2;
/// The variable that sets how many seeds a randomized test runs (each test has its default).
pub const SEEDS_ENV: &str = "RAFT_SIM_SEEDS";
/// The variable that replays a single seed.
pub const SEED_ENV: &str = "RAFT_SIM_SEED";

/// The seeds a randomized test should run: only `RAFT_SIM_SEED` if set, else `0..RAFT_SIM_SEEDS`,
/// else `0..default_count`.
///
/// # Panics
///
/// If a variable is set but is not a number.
pub fn seeds_from_env(default_count: u64) -> Vec<u64> {
    let parse = |name: &str| {
        std::env::var(name).ok().map(|value| {
            value
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("{name}={value} is not a u64"))
        })
    };
    if let Some(seed) = parse(SEED_ENV) {
        return vec![seed];
    }
    (0..parse(SEEDS_ENV).unwrap_or(default_count)).collect()
}

/// How to build a simulation.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Group size; nodes get ids `1..=nodes`.
    pub nodes: usize,
    pub seed: u64,
    /// Template for every node: `id` and `seed` are filled in per node. `voters` is the founding
    /// configuration (all nodes, unless a test changes it): nodes outside it start with an
    /// empty configuration, waiting to be added (see [`Simulation::propose_conf_change`]).
    pub raft: Config,
    pub faults: NetworkFaults,
    /// A `Ready` is handled between 0 and this many steps after the input that produced it.
    pub max_persist_delay_steps: u64,
    /// Each node snapshots its state machine and compacts its log every this many applied
    /// entries; `None` never compacts.
    pub snapshot_interval: Option<u64>,
    /// Breaks the persistence contract on purpose: send each `Ready`'s messages before its state
    /// is persisted. Only for showing what the contract prevents; a run with it fails.
    pub send_before_persist: bool,
}

impl SimConfig {
    /// `nodes` nodes with default Raft settings on a reliable network.
    pub fn new(nodes: usize, seed: u64) -> Self {
        let voters: Vec<NodeId> = (1..=nodes as NodeId).collect();
        SimConfig {
            nodes,
            seed,
            raft: Config::new(1, voters),
            faults: NetworkFaults::reliable(),
            max_persist_delay_steps: DEFAULT_MAX_PERSIST_DELAY_STEPS,
            snapshot_interval: None,
            send_before_persist: false,
        }
    }
}

struct SimNode {
    /// `None` while crashed.
    node: Option<Node<MemStorage>>,
    /// The disk while crashed (while running, the node's own storage is the disk).
    disk: MemStorage,
    /// The step at which the pending `Ready` gets handled.
    persist_at: Option<u64>,
    /// With `send_before_persist`: a `Ready` whose messages were sent, and the step at which it
    /// gets persisted.
    unpersisted: Option<(crate::Ready, u64)>,
    /// The step within each tick at which this node's clock ticks.
    tick_phase: u64,
    /// Steps between two of this node's ticks: [`STEPS_PER_TICK`] unless a test makes its clock
    /// run fast or slow ([`Simulation::set_clock_period`]).
    tick_period: u64,
    /// The application: restored from the disk's snapshot on (re)start.
    state_machine: StateMachine,
    /// Reads confirmed on this node, oldest first.
    read_states: Vec<ReadState>,
    /// Role and term after the last input, to trace changes.
    last_role: Option<(crate::raft::Role, u64)>,
}

/// A simulated Raft group. See the module docs.
pub struct Simulation {
    config: SimConfig,
    rng: Xoshiro256PlusPlus,
    now: u64,
    nodes: Vec<SimNode>,
    network: Network,
    checker: Checker,
    trace: Trace,
}

impl Simulation {
    pub fn new(config: SimConfig) -> Self {
        let mut simulation = Simulation {
            rng: Xoshiro256PlusPlus::seed_from_u64(config.seed),
            now: 0,
            nodes: Vec::new(),
            network: Network::new(config.faults.clone()),
            checker: Checker::default(),
            trace: Trace::new(),
            config,
        };
        for _ in 0..simulation.config.nodes {
            let tick_phase = simulation.rng.random_range(0..STEPS_PER_TICK);
            simulation.nodes.push(SimNode {
                node: None,
                disk: MemStorage::new(),
                persist_at: None,
                unpersisted: None,
                tick_phase,
                tick_period: STEPS_PER_TICK,
                state_machine: StateMachine::default(),
                read_states: Vec::new(),
                last_role: None,
            });
        }
        for id in simulation.ids() {
            simulation.start_node(id);
        }
        simulation
    }

    pub fn seed(&self) -> u64 {
        self.config.seed
    }

    /// Node ids, `1..=n`.
    pub fn ids(&self) -> Vec<NodeId> {
        (1..=self.nodes.len() as NodeId).collect()
    }

    /// The simulation's generator, for tests that make random choices of their own (which node
    /// to crash, what to propose), so those too replay from the seed.
    pub fn rng(&mut self) -> &mut Xoshiro256PlusPlus {
        &mut self.rng
    }

    /// Elapsed time in ticks.
    pub fn now_ticks(&self) -> u64 {
        self.now / STEPS_PER_TICK
    }

    /// A hash of every event so far: equal for equal runs.
    pub fn trace_hash(&self) -> u64 {
        self.trace.hash()
    }

    pub fn stats(&self) -> NetworkStats {
        self.network.stats
    }

    pub fn set_faults(&mut self, faults: NetworkFaults) {
        self.network.faults = faults;
    }

    fn slot(&self, id: NodeId) -> usize {
        (id - 1) as usize
    }

    /// Panics with the seed, how to replay it, and the last events.
    pub fn fail(&self, what: &str) -> ! {
        panic!(
            "raft simulation failed: {what}\n  seed {seed} (replay with {SEED_ENV}={seed})\n  at tick {tick}, last events:\n{tail}",
            seed = self.config.seed,
            tick = self.now_ticks(),
            tail = self.trace.render_tail()
        )
    }

    fn record(&mut self, event: TraceEvent) {
        self.trace.record(self.now, event);
    }

    /// The status of a running node.
    pub fn status(&self, id: NodeId) -> Option<Status> {
        self.nodes[self.slot(id)].node.as_ref().map(Node::status)
    }

    /// What a node's state machine holds, in index order from 1 (restored from a snapshot, or
    /// re-applied from the log, after a restart).
    pub fn applied(&self, id: NodeId) -> &[Entry] {
        self.nodes[self.slot(id)].state_machine.applied()
    }

    pub fn is_running(&self, id: NodeId) -> bool {
        self.nodes[self.slot(id)].node.is_some()
    }

    /// Running and not disconnected.
    pub fn is_connected(&self, id: NodeId) -> bool {
        self.is_running(id) && self.network.is_connected(id)
    }

    /// Makes node `id`'s clock tick every `steps` steps instead of [`STEPS_PER_TICK`]: slower
    /// with more, faster with fewer. Real clocks drift; lease reads are only as safe as the
    /// bound on that drift (see [`crate::ReadMode::Lease`]).
    pub fn set_clock_period(&mut self, id: NodeId, steps: u64) {
        assert!(steps > 0, "a clock must tick");
        let slot = self.slot(id);
        self.nodes[slot].tick_period = steps;
    }

    /// Runs the group for `ticks` ticks.
    pub fn run_ticks(&mut self, ticks: u64) {
        for _ in 0..ticks * STEPS_PER_TICK {
            self.run_step();
        }
    }

    /// Runs the group for `steps` steps (a tenth of a tick each).
    pub fn run_steps(&mut self, steps: u64) {
        for _ in 0..steps {
            self.run_step();
        }
    }

    fn run_step(&mut self) {
        self.now += 1;
        while let Some(arrival) = self.network.pop_due(self.now) {
            self.arrive(arrival);
        }
        for id in self.ids() {
            let node = &self.nodes[self.slot(id)];
            let ticks_now = self.now >= node.tick_phase
                && (self.now - node.tick_phase).is_multiple_of(node.tick_period);
            if ticks_now && node.node.is_some() {
                self.with_node(id, Node::tick).ok();
            }
        }
        for id in self.ids() {
            let slot = self.slot(id);
            if self.nodes[slot].persist_at.is_some_and(|at| at <= self.now) {
                self.handle_ready(id);
            }
            if self.nodes[slot]
                .unpersisted
                .as_ref()
                .is_some_and(|(_, at)| *at <= self.now)
            {
                self.persist_late(id);
            }
        }
    }

    fn arrive(&mut self, arrival: Arrival) {
        let message = match arrival {
            Arrival::Dropped(message, reason) => return self.trace_drop(&message, reason),
            Arrival::Deliver(message) => message,
        };
        if !self.is_running(message.to) {
            return self.trace_drop(&message, DropReason::NodeDown);
        }
        self.network.stats.messages_delivered += 1;
        let kind = kind_name(&message.body);
        match kind {
            "AppendRejected" => self.network.stats.append_rejections_delivered += 1,
            "InstallSnapshot" => self.network.stats.snapshots_delivered += 1,
            _ => {}
        }
        let (from, to, term) = (message.from, message.to, message.term);
        self.record(TraceEvent::Deliver {
            from,
            to,
            term,
            kind,
        });
        self.with_node(to, |node| node.step(message)).ok();
    }

    fn trace_drop(&mut self, message: &Message, reason: DropReason) {
        let kind = kind_name(&message.body);
        self.record(TraceEvent::Drop {
            from: message.from,
            to: message.to,
            kind,
            reason,
        });
    }

    /// Gives one input to a running node, then checks the invariants and schedules its `Ready`.
    fn with_node<T>(
        &mut self,
        id: NodeId,
        input: impl FnOnce(&mut Node<MemStorage>) -> crate::Result<T>,
    ) -> crate::Result<T> {
        let slot = self.slot(id);
        let node = self.nodes[slot]
            .node
            .as_mut()
            .expect("input to a crashed node");
        let result = input(node);
        let expected = matches!(
            result,
            Ok(_)
                | Err(crate::Error::NotLeader { .. }
                    | crate::Error::EmptyProposal
                    | crate::Error::TooManyUncommitted { .. }
                    | crate::Error::TooManyPendingReads { .. }
                    | crate::Error::TransferringLeadership { .. }
                    | crate::Error::ConfChange(_)
                    | crate::Error::NotAVoter(_))
        );
        if let (false, Err(error)) = (expected, &result) {
            self.fail(&format!("node {id} failed: {error}"));
        }
        self.after_input(id);
        result
    }

    fn after_input(&mut self, id: NodeId) {
        let slot = self.slot(id);
        let Some(node) = self.nodes[slot].node.as_ref() else {
            return;
        };
        let status = node.status();
        let role_check = self.checker.check_role(node);
        let commit_check = self.checker.check_commit(node);
        if let Err(violation) = role_check.and(commit_check) {
            self.fail(&violation);
        }
        let has_ready = node.has_ready();
        if self.nodes[slot].last_role != Some((status.role, status.term)) {
            self.nodes[slot].last_role = Some((status.role, status.term));
            self.record(TraceEvent::RoleChange {
                node: id,
                role: status.role,
                term: status.term,
            });
        }
        if has_ready && self.nodes[slot].persist_at.is_none() {
            let delay = self
                .rng
                .random_range(0..=self.config.max_persist_delay_steps);
            self.nodes[slot].persist_at = Some(self.now + delay);
        }
    }

    /// Asks node `id` for a linearizable read tagged `context` (which should be unique); returns
    /// whether the node took the request. Its [`ReadState`] shows up in [`Simulation::read_states`]
    /// once confirmed, and the checker verifies that its index covers every write committed
    /// before this call.
    pub fn read_index(&mut self, id: NodeId, context: Vec<u8>) -> bool {
        if !self.is_running(id) {
            return false;
        }
        self.checker.read_issued(id, &context);
        self.with_node(id, |node| node.read_index(context)).is_ok()
    }

    /// Makes node `id` start an election now (with pre-vote, if configured), as if its election
    /// timeout had passed.
    pub fn campaign(&mut self, id: NodeId) {
        if self.is_running(id) {
            self.with_node(id, Node::campaign).ok();
        }
    }

    /// Asks node `id`, if it leads, to hand leadership to `to`; returns whether it took the
    /// request.
    pub fn transfer_leadership(&mut self, id: NodeId, to: NodeId) -> bool {
        self.is_running(id)
            && self
                .with_node(id, |node| node.transfer_leadership(to))
                .is_ok()
    }

    /// Reads confirmed on node `id`, oldest first.
    pub fn read_states(&self, id: NodeId) -> &[ReadState] {
        &self.nodes[self.slot(id)].read_states
    }

    /// Proposes `command` at node `id`; returns its log index if the node is a running leader.
    pub fn propose(&mut self, id: NodeId, command: Vec<u8>) -> Option<u64> {
        if !self.is_running(id) {
            return None;
        }
        let index = self.with_node(id, |node| node.propose(command)).ok()?;
        self.record(TraceEvent::Propose { node: id, index });
        Some(index)
    }

    /// Proposes a membership change at node `id`: the index of its configuration entry, or the
    /// node's refusal (a crashed node refuses as a node that knows no leader).
    pub fn propose_conf_change(
        &mut self,
        id: NodeId,
        change: MembershipChange,
    ) -> crate::Result<u64> {
        if !self.is_running(id) {
            return Err(crate::Error::NotLeader { leader: None });
        }
        let index = self.with_node(id, |node| node.propose_conf_change(change))?;
        self.record(TraceEvent::ConfChange {
            node: id,
            index,
            change,
        });
        Ok(index)
    }

    /// The configuration in force on a running node.
    pub fn conf_state(&self, id: NodeId) -> Option<ConfState> {
        let node = self.nodes[self.slot(id)].node.as_ref()?;
        Some(node.conf_state().clone())
    }

    /// Checks that every running member holds the whole committed log. For the end of a run,
    /// once the group has had time to catch everyone up. Members are those of the configuration
    /// of the latest leader (all nodes if there is none): removed nodes stop receiving the log.
    pub fn check_all_hold_committed(&self) {
        let latest_leader = self.leaders().into_iter().max_by_key(|&(_, term)| term);
        let members = latest_leader
            .and_then(|(leader, _)| self.conf_state(leader))
            .map_or_else(|| self.ids(), |conf| conf.members());
        for id in members {
            let Some(node) = self.nodes[self.slot(id)].node.as_ref() else {
                continue;
            };
            if let Err(violation) = self.checker.check_complete(node) {
                self.fail(&violation);
            }
        }
    }

    /// A node's disk: its storage while running, what it left while crashed.
    pub fn storage(&self, id: NodeId) -> &MemStorage {
        let state = &self.nodes[self.slot(id)];
        state.node.as_ref().map_or(&state.disk, Node::storage)
    }

    /// How many entries are known committed (applied by some node).
    pub fn committed_len(&self) -> u64 {
        self.checker.committed_len()
    }
}

fn kind_name(body: &MessageBody) -> &'static str {
    match body {
        MessageBody::PreVote(_) => "PreVote",
        MessageBody::PreVoteResponse { granted: true } => "PreVoteGranted",
        MessageBody::PreVoteResponse { granted: false } => "PreVoteRefused",
        MessageBody::RequestVote(_) => "RequestVote",
        MessageBody::RequestVoteResponse { granted: true } => "VoteGranted",
        MessageBody::RequestVoteResponse { granted: false } => "VoteRefused",
        MessageBody::AppendEntries(_) => "AppendEntries",
        MessageBody::AppendEntriesResponse(crate::AppendResponse::Accepted { .. }) => {
            "AppendAccepted"
        }
        MessageBody::AppendEntriesResponse(crate::AppendResponse::Rejected(_)) => "AppendRejected",
        MessageBody::Heartbeat { .. } => "Heartbeat",
        MessageBody::HeartbeatResponse { .. } => "HeartbeatResponse",
        MessageBody::ReadIndex { .. } => "ReadIndex",
        MessageBody::ReadIndexResponse { .. } => "ReadIndexResponse",
        MessageBody::TimeoutNow => "TimeoutNow",
        MessageBody::InstallSnapshot(_) => "InstallSnapshot",
    }
}
