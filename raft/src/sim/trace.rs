//! The record of a run: a running hash of every event, to prove two runs identical, and the last
//! few events, to show what led to a failure.

use std::collections::VecDeque;
use std::fmt::Write;
use std::hash::{Hash, Hasher};

use crate::message::{MembershipChange, NodeId};
use crate::raft::Role;
use crate::sim::network::DropReason;

/// Events kept for the failure report.
const TRACE_TAIL_LEN: usize = 60;

/// Something that happened in the simulation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TraceEvent {
    Deliver {
        from: NodeId,
        to: NodeId,
        term: u64,
        kind: &'static str,
    },
    Drop {
        from: NodeId,
        to: NodeId,
        kind: &'static str,
        reason: DropReason,
    },
    Persist {
        node: NodeId,
        entries: usize,
        last_index: u64,
        commit: u64,
    },
    Apply {
        node: NodeId,
        index: u64,
        term: u64,
    },
    Propose {
        node: NodeId,
        index: u64,
    },
    ConfChange {
        node: NodeId,
        index: u64,
        change: MembershipChange,
    },
    RoleChange {
        node: NodeId,
        role: Role,
        term: u64,
    },
    ReadConfirmed {
        node: NodeId,
        index: u64,
    },
    InstallSnapshot {
        node: NodeId,
        index: u64,
    },
    Compact {
        node: NodeId,
        index: u64,
    },
    Crash {
        node: NodeId,
    },
    Restart {
        node: NodeId,
    },
    Disconnect {
        node: NodeId,
    },
    Connect {
        node: NodeId,
    },
    Cut {
        a: NodeId,
        b: NodeId,
    },
    HealAll,
}

/// FNV-1a, 64-bit: tiny, and fixed by its specification, unlike std's default hasher, whose
/// algorithm may change between Rust releases.
pub(crate) struct Fnv64(u64);

impl Fnv64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    pub(crate) fn new() -> Self {
        Fnv64(Self::OFFSET_BASIS)
    }
}

impl Hasher for Fnv64 {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The FNV-1a hash of a byte string, used to compare commands without keeping them.
pub(crate) fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut hasher = Fnv64::new();
    hasher.write(bytes);
    hasher.finish()
}

pub(crate) struct Trace {
    hasher: Fnv64,
    tail: VecDeque<(u64, TraceEvent)>,
}

impl Trace {
    pub(crate) fn new() -> Self {
        Trace {
            hasher: Fnv64::new(),
            tail: VecDeque::with_capacity(TRACE_TAIL_LEN),
        }
    }

    pub(crate) fn record(&mut self, step: u64, event: TraceEvent) {
        step.hash(&mut self.hasher);
        event.hash(&mut self.hasher);
        if self.tail.len() == TRACE_TAIL_LEN {
            self.tail.pop_front();
        }
        self.tail.push_back((step, event));
    }

    pub(crate) fn hash(&self) -> u64 {
        self.hasher.finish()
    }

    pub(crate) fn render_tail(&self) -> String {
        let mut text = String::new();
        for (step, event) in &self.tail {
            let _ = writeln!(text, "  step {step:>7}: {event:?}");
        }
        text
    }
}
