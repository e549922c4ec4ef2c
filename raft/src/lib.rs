//! A deterministic Raft library.
//!
//! Raft keeps a log of commands identical on a group of servers, so that each can apply the same
//! commands in the same order to its own copy of a state machine, and the group keeps working
//! while a majority of it is up and can talk. The reference throughout is Ongaro and Ousterhout,
//! *In Search of an Understandable Consensus Algorithm (Extended Version)*, 2014 ("paper, section
//! N"), and for what the paper leaves out (membership changes one server at a time, pre-vote,
//! ReadIndex and lease reads, leadership transfer), Ongaro's PhD dissertation, *Consensus:
//! Bridging Theory and Practice*, 2014 ("dissertation, section N"). `ARCHITECTURE.md` in this
//! crate lists every rule with its section and the function that keeps it.
//!
//! # The algorithm in one page
//!
//! Time is divided into **terms** (paper, section 5.1), each beginning with an election; a term
//! has at most one leader. Every message carries the sender's term; a node that sees a later term
//! adopts it and becomes a follower, and requests from an earlier term are refused.
//!
//! **Election** (section 5.2). A follower that hears nothing from a leader for a randomized
//! election timeout becomes a candidate: it increments its term, votes for itself and asks the
//! others. Each node grants one vote per term, and only to a candidate whose log is at least as
//! up to date as its own (section 5.4.1). A majority of votes makes a leader. With **pre-vote**
//! (dissertation, section 9.6) a candidate first asks whether it *could* win, without changing
//! anyone's term; with **check-quorum** a leader that stops hearing from a majority steps down,
//! and followers that hear from their leader ignore vote requests (section 6). Together they
//! keep a node that was cut off from deposing a healthy leader when it returns.
//!
//! **Replication** (section 5.3). The leader appends each command to its log and sends it to the
//! followers with AppendEntries, which carries the index and term of the entry just before the
//! new ones. A follower accepts only if its log holds that entry: by induction, two logs that
//! share an entry (same index and term) are identical up to it (Log Matching). On refusal the
//! leader backs up, a whole term at a time thanks to the follower's conflict hint.
//!
//! **Commitment** (sections 5.3, 5.4.2). An entry is committed once the leader that created it
//! has it on a majority. A leader only counts replicas for entries of its own term (Figure 8
//! shows why counting older ones is unsafe), so each new leader appends an empty no-op entry.
//! A committed entry is in every later leader's log (Leader Completeness), so it is never lost.
//!
//! **Persistence.** Term, vote and log survive crashes; every reply waits until they are on
//! disk. See [`node`] for exactly why.
//!
//! **Compaction** (section 7). The application snapshots its state machine at an applied index
//! and drops the log before it; a follower that needs dropped entries gets the snapshot instead.
//!
//! **Reads** (section 8). A read is linearizable if it reflects every write committed before it
//! began. ReadIndex gets that without writing to the log: the leader notes its commit index, and
//! one round of heartbeats answered by a majority proves it was still the leader then. Lease
//! reads (dissertation, section 6.4.1, opt-in) skip even that round for as long as recent
//! heartbeats prove nobody else can have been elected, which holds only if clocks drift
//! boundedly: see [`ReadMode::Lease`].
//!
//! **Membership changes** (section 6; dissertation, chapter 4). One server at a time: adding or
//! removing a single voter keeps every old majority overlapping every new one, so no joint
//! configuration is needed. A configuration is a log entry and takes effect as soon as it is
//! appended, committed or not; a leader allows one uncommitted change at a time; new servers
//! join as non-voting learners and are promoted once caught up; a removed leader steps down once
//! its removal commits. See `membership.rs`.
//!
//! **Leadership transfer** (dissertation, section 3.10). The leader catches a chosen follower up
//! and tells it to start an election at once, which it wins. See `transfer.rs`.
//!
//! # How to drive it
//!
//! A [`Node`] is a pure state machine: no threads, sockets or clocks. The application calls
//! [`Node::tick`], [`Node::step`], [`Node::propose`] (or [`Node::propose_batch`]),
//! [`Node::propose_conf_change`] and [`Node::read_index`], then takes a
//! [`Ready`], persists, sends and applies what it holds, and calls [`Node::advance`] (see
//! [`node`] for the loop). The same seed ([`Config::seed`]) and the same sequence of calls give
//! the same behaviour, which is what lets [`sim`] replay any run from one `u64`.
//!
//! # Code map
//!
//! - `node.rs`: [`Node`], [`Ready`], the persistence contract.
//! - `raft.rs`: roles, timers, term rules, dispatch; `election.rs`, `follower.rs`, `leader.rs`:
//!   the handlers, by role; `read_index.rs`: linearizable reads ([`ReadState`]);
//!   `transfer.rs`: handing leadership to a chosen node.
//! - `log.rs`: the log as the node sees it: stable storage, then the unstable tail.
//! - `storage.rs`: the [`Storage`] trait and [`MemStorage`]; `wal_storage.rs`: [`WalStorage`],
//!   durable storage on the `wal` crate (the only module that does I/O).
//! - `membership.rs`: single-server membership changes, learners, [`ConfState`].
//! - `progress.rs`: the leader's per-member replication state and flow control.
//! - `quorum.rs`: majorities.
//! - `message.rs`: what travels between nodes; `config.rs`: [`Config`]; `error.rs`: [`Error`].
//! - `sim/`: the deterministic cluster simulation and its safety checker.

mod config;
mod election;
mod error;
mod follower;
mod leader;
mod log;
mod membership;
mod message;
pub mod node;
mod progress;
mod quorum;
mod raft;
mod read_index;
pub mod sim;
mod storage;
mod transfer;
mod wal_storage;

pub use config::{
    Config, ConfigError, DEFAULT_ELECTION_TICK, DEFAULT_HEARTBEAT_TICK,
    DEFAULT_MAX_APPLY_BYTES_PER_READY, DEFAULT_MAX_INFLIGHT_MSGS, DEFAULT_MAX_PENDING_READS,
    DEFAULT_MAX_SIZE_PER_MSG, DEFAULT_MAX_UNCOMMITTED_ENTRIES, ReadMode,
};
pub use error::{Error, Result, StorageError};
pub use membership::ConfChangeError;
pub use message::{
    AppendEntries, AppendResponse, ConfChange, ConfState, Entry, EntryKind, HardState,
    MembershipChange, Message, MessageBody, NodeId, Rejection, Snapshot, VoteRequest,
};
pub use node::{Node, Ready, Status};
pub use raft::Role;
pub use read_index::ReadState;
pub use storage::{MemStorage, Storage};
pub use wal_storage::WalStorage;
