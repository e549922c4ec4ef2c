//! What a leader knows about each follower's log (voters and learners alike), and how fast it may
//! send to it.
//!
//! The paper keeps two numbers per follower (Figure 2, "Volatile state on leaders"): `nextIndex`,
//! the next entry to send, and `matchIndex`, the highest entry known to be replicated. Sending one
//! AppendEntries per round trip is correct but slow, so, as etcd does, a follower is in one of two
//! states:
//!
//! ```text
//!            a rejection, or the leader just took over
//!        +----------------------------------------------+
//!        v                                              |
//!    [ Probe ] --- an AppendEntries is accepted ---> [ Replicate ]
//!    one message in flight, then wait:               pipeline: `next` moves on as soon as a
//!    we do not yet know where the logs match         message is sent, up to `max_inflight_msgs`
//!                                                    unacknowledged messages
//! ```
//!
//! A follower whose `next` entry the leader has compacted away (paper, section 7) is sent the
//! snapshot instead and waits in a third state:
//!
//! ```text
//!    [ Probe / Replicate ] --next is compacted--> [ Snapshot ] --snapshot accepted--> [ Replicate ]
//!                                                 nothing else is sent; after
//!                                                 SNAPSHOT_RESEND_HEARTBEATS heartbeat
//!                                                 replies without an answer, back to Probe
//! ```

use std::collections::VecDeque;

/// Heartbeat replies a leader waits, in `Snapshot`, for the snapshot to be acknowledged before
/// deciding it was lost and probing again (which sends it anew). The follower answers heartbeats,
/// so it is reachable; ten heartbeat intervals leave ample time to install a snapshot.
const SNAPSHOT_RESEND_HEARTBEATS: u32 = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ProgressState {
    /// Find where the follower's log matches ours, one AppendEntries at a time.
    Probe,
    /// The logs match up to `matched`: stream entries optimistically.
    Replicate,
    /// A snapshot up to `pending_snapshot` is on its way: send nothing else.
    Snapshot,
}

#[derive(Clone, Debug)]
pub(crate) struct Progress {
    /// Highest index known to be replicated on the follower (paper: matchIndex).
    pub(crate) matched: u64,
    /// Next index to send (paper: nextIndex). Invariant: `matched < next`.
    pub(crate) next: u64,
    pub(crate) state: ProgressState,
    /// In `Probe`, a probe is out and unanswered: wait for its reply or the next heartbeat reply.
    probe_sent: bool,
    /// Heard from since the leader last checked for a quorum (see `Config::check_quorum`).
    pub(crate) recent_active: bool,
    inflights: Inflights,
    /// In `Snapshot`, the index of the snapshot sent.
    pub(crate) pending_snapshot: u64,
    /// In `Snapshot`, heartbeat replies received since it was sent.
    heartbeats_since_snapshot: u32,
}

impl Progress {
    pub(crate) fn new(next: u64, max_inflight_msgs: usize) -> Self {
        Progress {
            matched: 0,
            next,
            state: ProgressState::Probe,
            probe_sent: false,
            recent_active: true,
            inflights: Inflights::new(max_inflight_msgs),
            pending_snapshot: 0,
            heartbeats_since_snapshot: 0,
        }
    }

    /// Whether the leader must hold back new AppendEntries to this follower.
    pub(crate) fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.is_full(),
            ProgressState::Snapshot => true,
        }
    }

    pub(crate) fn become_probe(&mut self) {
        self.state = ProgressState::Probe;
        self.next = self.matched + 1;
        self.probe_sent = false;
        self.inflights.clear();
    }

    pub(crate) fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next = self.matched + 1;
        self.inflights.clear();
    }

    pub(crate) fn become_snapshot(&mut self, snapshot_index: u64) {
        self.state = ProgressState::Snapshot;
        self.pending_snapshot = snapshot_index;
        self.heartbeats_since_snapshot = 0;
        self.inflights.clear();
    }

    /// Records that an AppendEntries ending at `last_index` is on its way.
    pub(crate) fn on_sent(&mut self, last_index: Option<u64>) {
        match self.state {
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Replicate => {
                if let Some(last_index) = last_index {
                    self.next = last_index + 1;
                    self.inflights.add(last_index);
                }
            }
            ProgressState::Snapshot => unreachable!("nothing is sent while a snapshot is pending"),
        }
    }

    /// The follower holds our log up to `index`. Returns false for a stale or duplicate reply.
    pub(crate) fn on_accepted(&mut self, index: u64) -> bool {
        if index <= self.matched {
            return false;
        }
        self.matched = index;
        self.next = self.next.max(index + 1);
        self.probe_sent = false;
        self.inflights.free_to(index);
        true
    }

    /// The follower refused an AppendEntries whose `prev_log_index` was `rejected_index`; the
    /// leader computed `hinted_next` from the follower's conflict hint. Returns false for a stale
    /// rejection (one about a message older than the latest probe, or below `matched`).
    pub(crate) fn on_rejected(&mut self, rejected_index: u64, hinted_next: u64) -> bool {
        let stale = match self.state {
            ProgressState::Replicate => rejected_index <= self.matched,
            ProgressState::Probe => rejected_index != self.next - 1,
            // About an AppendEntries sent before the snapshot; the snapshot's answer decides.
            ProgressState::Snapshot => true,
        };
        if stale {
            return false;
        }
        if self.state == ProgressState::Replicate {
            self.become_probe();
        }
        // Go back at least one entry, and never below what the follower is known to hold.
        self.next = hinted_next.min(rejected_index).max(self.matched + 1);
        self.probe_sent = false;
        true
    }

    /// A heartbeat reply shows the follower is reachable again: allow one more message. In
    /// `Replicate` a full window whose messages were lost would otherwise stay full forever.
    pub(crate) fn on_heartbeat_response(&mut self) {
        self.recent_active = true;
        self.probe_sent = false;
        match self.state {
            ProgressState::Replicate if self.inflights.is_full() => self.inflights.free_first(),
            ProgressState::Snapshot => {
                self.heartbeats_since_snapshot += 1;
                if self.heartbeats_since_snapshot >= SNAPSHOT_RESEND_HEARTBEATS {
                    self.become_probe();
                }
            }
            _ => {}
        }
    }
}

/// The last index of each unacknowledged AppendEntries, oldest first, up to a fixed capacity.
#[derive(Clone, Debug)]
struct Inflights {
    last_indexes: VecDeque<u64>,
    capacity: usize,
}

impl Inflights {
    fn new(capacity: usize) -> Self {
        Inflights {
            last_indexes: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    fn is_full(&self) -> bool {
        self.last_indexes.len() >= self.capacity
    }

    fn add(&mut self, last_index: u64) {
        debug_assert!(!self.is_full(), "sent past the in-flight window");
        self.last_indexes.push_back(last_index);
    }

    /// An acknowledgement up to `index` covers every message that ended at or before it.
    fn free_to(&mut self, index: u64) {
        while self.last_indexes.front().is_some_and(|&last| last <= index) {
            self.last_indexes.pop_front();
        }
    }

    fn free_first(&mut self) {
        self.last_indexes.pop_front();
    }

    fn clear(&mut self) {
        self.last_indexes.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_sends_one_message_then_waits() {
        let mut progress = Progress::new(5, 4);
        assert!(!progress.is_paused());
        progress.on_sent(Some(6));
        assert!(progress.is_paused());
        assert_eq!(progress.next, 5, "a probe does not move next");
    }

    #[test]
    fn replicate_pipelines_up_to_the_window_and_an_ack_reopens_it() {
        let mut progress = Progress::new(1, 2);
        progress.become_replicate();
        progress.on_sent(Some(3));
        progress.on_sent(Some(6));
        assert!(progress.is_paused());
        assert_eq!(progress.next, 7);
        assert!(progress.on_accepted(3));
        assert!(!progress.is_paused());
    }

    #[test]
    fn a_rejection_of_an_old_probe_is_ignored() {
        let mut progress = Progress::new(10, 4);
        progress.on_sent(Some(12));
        assert!(!progress.on_rejected(7, 3), "not the outstanding probe");
        assert!(progress.on_rejected(9, 3));
        assert_eq!(progress.next, 3);
        assert!(!progress.on_rejected(9, 3), "the same rejection twice");
    }

    #[test]
    fn a_rejection_in_replicate_falls_back_to_probe_above_match() {
        let mut progress = Progress::new(1, 4);
        assert!(progress.on_accepted(5));
        progress.become_replicate();
        progress.on_sent(Some(9));
        assert!(progress.on_rejected(7, 2));
        assert_eq!(progress.state, ProgressState::Probe);
        assert_eq!(progress.next, 6);
    }

    #[test]
    fn a_snapshot_pauses_the_follower_until_answered_or_presumed_lost() {
        let mut progress = Progress::new(3, 4);
        progress.become_snapshot(9);
        assert!(progress.is_paused());
        for _ in 0..SNAPSHOT_RESEND_HEARTBEATS - 1 {
            progress.on_heartbeat_response();
        }
        assert_eq!(progress.state, ProgressState::Snapshot);
        progress.on_heartbeat_response();
        assert_eq!(progress.state, ProgressState::Probe);
    }

    #[test]
    fn a_heartbeat_reply_frees_a_slot_in_a_full_window() {
        let mut progress = Progress::new(1, 1);
        progress.become_replicate();
        progress.on_sent(Some(1));
        assert!(progress.is_paused());
        progress.on_heartbeat_response();
        assert!(!progress.is_paused());
    }
}
