//! The simulated network: every message gets a delivery time drawn from the seeded generator,
//! which yields delay and reordering; it may also be lost or duplicated, and links can be cut.
//!
//! A message must find its link open both when it is sent and when it arrives: cutting a link
//! also loses what was in flight on it, as a real partition does.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeSet, BinaryHeap};

use rand::RngExt;
use rand::rngs::Xoshiro256PlusPlus;

use crate::message::{Message, NodeId};

/// How unreliable the network is. Delays are in simulation steps (see
/// [`super::STEPS_PER_TICK`]).
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkFaults {
    /// Probability that a message is lost.
    pub loss: f64,
    /// Probability that a message is delivered twice (each copy with its own delay).
    pub duplicate: f64,
    /// Usual delay, uniform in `[min, max]` steps.
    pub delay_steps: (u64, u64),
    /// Probability of a long delay instead, which reorders messages across many ticks.
    pub long_delay: f64,
    /// Long delay, uniform in `[min, max]` steps.
    pub long_delay_steps: (u64, u64),
}

impl NetworkFaults {
    /// No loss, no duplication, a short delay (a few steps; messages may still overtake each
    /// other within a tick).
    pub fn reliable() -> Self {
        NetworkFaults {
            loss: 0.0,
            duplicate: 0.0,
            delay_steps: (1, 3),
            long_delay: 0.0,
            long_delay_steps: (0, 0),
        }
    }

    /// Reliable and in order: every message takes the same delay, so messages arrive in the
    /// order they were sent, as over one TCP connection per pair of nodes. For the tests that
    /// count messages or bytes: over a reordering network, an empty AppendEntries can overtake
    /// the one carrying entries and be refused, and the resulting probe resends entries.
    pub fn in_order() -> Self {
        NetworkFaults {
            delay_steps: (2, 2),
            ..Self::reliable()
        }
    }

    /// 10% loss and 5% duplication, in the spirit of the 6.5840 lab's unreliable network.
    pub fn unreliable() -> Self {
        NetworkFaults {
            loss: 0.1,
            duplicate: 0.05,
            delay_steps: (1, 6),
            ..Self::reliable()
        }
    }

    /// `unreliable`, plus a third of messages held back for 2 to 22 ticks.
    pub fn unreliable_with_long_reordering() -> Self {
        NetworkFaults {
            long_delay: 0.3,
            long_delay_steps: (20, 220),
            ..Self::unreliable()
        }
    }
}

/// Traffic counters, for the tests that bound message counts and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetworkStats {
    /// Messages nodes handed to the network (including ones then lost).
    pub messages_sent: u64,
    /// Command bytes inside the AppendEntries sent.
    pub payload_bytes_sent: u64,
    pub messages_delivered: u64,
    pub messages_dropped: u64,
    /// AppendEntries rejections that reached the leader: round trips spent finding where logs
    /// match.
    pub append_rejections_delivered: u64,
    /// InstallSnapshot messages that reached a follower.
    pub snapshots_delivered: u64,
}

/// A message waiting for its delivery step; `seq` breaks ties in send order.
#[derive(Debug)]
struct InFlight {
    deliver_at: u64,
    seq: u64,
    message: Message,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for InFlight {}

impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.deliver_at, self.seq).cmp(&(other.deliver_at, other.seq))
    }
}

/// Why a message did not arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    Lost,
    Partitioned,
    NodeDown,
}

pub(crate) enum Arrival {
    Deliver(Message),
    Dropped(Message, DropReason),
}

pub(crate) struct Network {
    pub(crate) faults: NetworkFaults,
    queue: BinaryHeap<Reverse<InFlight>>,
    next_seq: u64,
    disconnected: BTreeSet<NodeId>,
    /// Directed links that are cut: `(from, to)`.
    cut_links: BTreeSet<(NodeId, NodeId)>,
    pub(crate) stats: NetworkStats,
}

impl Network {
    pub(crate) fn new(faults: NetworkFaults) -> Self {
        Network {
            faults,
            queue: BinaryHeap::new(),
            next_seq: 0,
            disconnected: BTreeSet::new(),
            cut_links: BTreeSet::new(),
            stats: NetworkStats::default(),
        }
    }

    pub(crate) fn is_connected(&self, id: NodeId) -> bool {
        !self.disconnected.contains(&id)
    }

    pub(crate) fn disconnect(&mut self, id: NodeId) {
        self.disconnected.insert(id);
    }

    pub(crate) fn connect(&mut self, id: NodeId) {
        self.disconnected.remove(&id);
    }

    pub(crate) fn cut(&mut self, a: NodeId, b: NodeId) {
        self.cut_links.insert((a, b));
        self.cut_links.insert((b, a));
    }

    pub(crate) fn heal_all(&mut self) {
        self.disconnected.clear();
        self.cut_links.clear();
    }

    fn link_open(&self, from: NodeId, to: NodeId) -> bool {
        self.is_connected(from) && self.is_connected(to) && !self.cut_links.contains(&(from, to))
    }

    /// Queues `message` (maybe twice), or returns why it is dropped at once.
    pub(crate) fn send(
        &mut self,
        message: Message,
        now: u64,
        rng: &mut Xoshiro256PlusPlus,
    ) -> Option<DropReason> {
        self.stats.messages_sent += 1;
        self.stats.payload_bytes_sent += message.body.payload_bytes();
        let dropped = if !self.link_open(message.from, message.to) {
            Some(DropReason::Partitioned)
        } else if rng.random_bool(self.faults.loss) {
            Some(DropReason::Lost)
        } else {
            None
        };
        if dropped.is_some() {
            self.stats.messages_dropped += 1;
            return dropped;
        }
        if rng.random_bool(self.faults.duplicate) {
            self.enqueue(message.clone(), now, rng);
        }
        self.enqueue(message, now, rng);
        None
    }

    fn enqueue(&mut self, message: Message, now: u64, rng: &mut Xoshiro256PlusPlus) {
        let (min, max) = if rng.random_bool(self.faults.long_delay) {
            self.faults.long_delay_steps
        } else {
            self.faults.delay_steps
        };
        let deliver_at = now + rng.random_range(min..=max);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push(Reverse(InFlight {
            deliver_at,
            seq,
            message,
        }));
    }

    /// The next message due at or before `now`, if any.
    pub(crate) fn pop_due(&mut self, now: u64) -> Option<Arrival> {
        if self.queue.peek()?.0.deliver_at > now {
            return None;
        }
        let message = self.queue.pop()?.0.message;
        if !self.link_open(message.from, message.to) {
            self.stats.messages_dropped += 1;
            return Some(Arrival::Dropped(message, DropReason::Partitioned));
        }
        Some(Arrival::Deliver(message))
    }
}
