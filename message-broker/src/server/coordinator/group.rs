//! One consumer group's membership state machine (Kafka's classic rebalance protocol).
//!
//! ```text
//!            join (first member)           every member rejoined, or the
//!   Empty ───────────────────▶ Preparing ── rebalance timeout passed ──▶ Completing
//!     ▲                        Rebalance    (generation + 1, a leader     Rebalance
//!     │ last member leaves/       ▲  ▲       chosen, joins answered)         │
//!     │ expires                   │  │                                       │ the leader's
//!     │                           │  └──── join, leave or expiry ───────────┤ SyncGroup
//!     │                           │                                          ▼
//!     └───────────────────────────┴────── join, leave or expiry ──────── Stable
//! ```
//!
//! The broker never looks inside the members' metadata or assignments: the leader member runs
//! the assignor (range, round-robin) on the client side, as in Kafka, so the same coordinator
//! can serve Kafka's JoinGroup/SyncGroup/Heartbeat later.
//!
//! A member is removed when no heartbeat (or join or sync) arrives within its session
//! timeout; the others learn of the rebalance from their next heartbeat
//! (`RebalanceInProgress`) and rejoin. A commit is accepted only from a current member with
//! the current generation: a consumer that missed a rebalance cannot overwrite the positions
//! of the partitions' new owner.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::protocol::{
    ErrorCode, GroupDescription, JoinGroupRequest, JoinGroupResponse, JoinedMember,
    MemberAssignment, MemberDescription, SyncGroupResponse,
};

/// Where a group is in its rebalance cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    /// No members (committed offsets may remain).
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
}

struct Member {
    client_id: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Vec<u8>)>,
    last_seen: Instant,
    /// Rejoined in the current rebalance.
    joined: bool,
    pending_join: Option<oneshot::Sender<JoinGroupResponse>>,
    pending_sync: Option<oneshot::Sender<SyncGroupResponse>>,
    assignment: Vec<u8>,
}

/// One group.
pub struct Group {
    id: String,
    state: GroupState,
    generation: i32,
    protocol_type: String,
    protocol: String,
    leader: String,
    members: BTreeMap<String, Member>,
    rebalance_deadline: Option<Instant>,
    next_member: u64,
}

impl Group {
    /// A new, empty group.
    pub fn new(id: &str) -> Group {
        Group {
            id: id.to_owned(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: String::new(),
            protocol: String::new(),
            leader: String::new(),
            members: BTreeMap::new(),
            rebalance_deadline: None,
            next_member: 0,
        }
    }

    /// The state.
    pub fn state(&self) -> GroupState {
        self.state
    }

    /// Members.
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Handles a join; the answer comes on the returned channel when the rebalance completes
    /// (at once for an error).
    pub fn join(
        &mut self,
        request: JoinGroupRequest,
        now: Instant,
    ) -> oneshot::Receiver<JoinGroupResponse> {
        let (sender, receiver) = oneshot::channel();
        if let Some(code) = self.refuse_join(&request) {
            let _ = sender.send(join_error(code, &request.member_id));
            return receiver;
        }
        let member_id = if request.member_id.is_empty() {
            self.next_member += 1;
            format!("{}-{}", request.client_id, self.next_member)
        } else {
            request.member_id.clone()
        };
        if self.members.is_empty() {
            self.protocol_type.clone_from(&request.protocol_type);
        }
        let member = self.members.entry(member_id).or_insert_with(|| Member {
            client_id: request.client_id.clone(),
            session_timeout: Duration::ZERO,
            rebalance_timeout: Duration::ZERO,
            protocols: Vec::new(),
            last_seen: now,
            joined: false,
            pending_join: None,
            pending_sync: None,
            assignment: Vec::new(),
        });
        member.session_timeout = Duration::from_millis(request.session_timeout_ms.into());
        member.rebalance_timeout = Duration::from_millis(request.rebalance_timeout_ms.into());
        member.protocols = request
            .protocols
            .into_iter()
            .map(|p| (p.name, p.metadata))
            .collect();
        member.last_seen = now;
        member.joined = true;
        member.pending_join = Some(sender);
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(now);
        }
        self.try_complete_join();
        receiver
    }

    fn refuse_join(&self, request: &JoinGroupRequest) -> Option<ErrorCode> {
        if !request.member_id.is_empty() && !self.members.contains_key(&request.member_id) {
            return Some(ErrorCode::UnknownMemberId);
        }
        if request.protocols.is_empty() {
            return Some(ErrorCode::InconsistentGroupProtocol);
        }
        if !self.members.is_empty() {
            if request.protocol_type != self.protocol_type {
                return Some(ErrorCode::InconsistentGroupProtocol);
            }
            let shared = request.protocols.iter().any(|p| {
                self.members
                    .iter()
                    .filter(|(id, _)| **id != request.member_id)
                    .all(|(_, m)| m.protocols.iter().any(|(name, _)| *name == p.name))
            });
            if !shared {
                return Some(ErrorCode::InconsistentGroupProtocol);
            }
        }
        None
    }

    /// Starts a rebalance: members must rejoin; waiting syncs learn it.
    fn prepare_rebalance(&mut self, now: Instant) {
        self.state = GroupState::PreparingRebalance;
        let longest = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.rebalance_deadline = Some(now + longest);
        for member in self.members.values_mut() {
            if member.pending_join.is_none() {
                member.joined = false;
            }
            if let Some(sync) = member.pending_sync.take() {
                let _ = sync.send(sync_error(ErrorCode::RebalanceInProgress));
            }
        }
    }

    /// Completes the join phase once every member has rejoined.
    fn try_complete_join(&mut self) {
        if self.state == GroupState::PreparingRebalance && self.members.values().all(|m| m.joined) {
            self.complete_join();
        }
    }

    /// Drops members that did not rejoin, opens a new generation and answers the joins.
    fn complete_join(&mut self) {
        self.members.retain(|_, m| m.joined);
        self.rebalance_deadline = None;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.generation += 1;
            return;
        }
        self.generation += 1;
        if !self.members.contains_key(&self.leader) {
            self.leader = self.members.keys().next().expect("not empty").clone();
        }
        self.protocol = self.choose_protocol();
        self.state = GroupState::CompletingRebalance;
        let everyone: Vec<JoinedMember> = self
            .members
            .iter()
            .map(|(id, m)| JoinedMember {
                member_id: id.clone(),
                metadata: m
                    .protocols
                    .iter()
                    .find(|(name, _)| *name == self.protocol)
                    .map(|(_, metadata)| metadata.clone())
                    .unwrap_or_default(),
            })
            .collect();
        for (id, member) in &mut self.members {
            member.joined = false;
            let Some(join) = member.pending_join.take() else {
                continue;
            };
            let members = if *id == self.leader {
                everyone.clone()
            } else {
                Vec::new()
            };
            let _ = join.send(JoinGroupResponse {
                error: ErrorCode::None,
                generation_id: self.generation,
                protocol_name: self.protocol.clone(),
                leader: self.leader.clone(),
                member_id: id.clone(),
                members,
            });
        }
    }

    /// The leader's most preferred assignor that every member supports.
    fn choose_protocol(&self) -> String {
        let leader = &self.members[&self.leader];
        leader
            .protocols
            .iter()
            .map(|(name, _)| name)
            .find(|name| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == *name))
            })
            .cloned()
            .unwrap_or_default()
    }

    /// Handles a sync; the answer comes when the leader's assignment is there.
    pub fn sync(
        &mut self,
        generation: i32,
        member_id: &str,
        assignments: Vec<MemberAssignment>,
        now: Instant,
    ) -> oneshot::Receiver<SyncGroupResponse> {
        let (sender, receiver) = oneshot::channel();
        if let Err(code) = self.check_member(generation, member_id) {
            let _ = sender.send(sync_error(code));
            return receiver;
        }
        let member = self.members.get_mut(member_id).expect("checked");
        member.last_seen = now;
        match self.state {
            GroupState::Empty | GroupState::PreparingRebalance => {
                let _ = sender.send(sync_error(ErrorCode::RebalanceInProgress));
            }
            GroupState::Stable => {
                let _ = sender.send(SyncGroupResponse {
                    error: ErrorCode::None,
                    assignment: member.assignment.clone(),
                });
            }
            GroupState::CompletingRebalance => {
                member.pending_sync = Some(sender);
                if member_id == self.leader {
                    self.complete_sync(assignments);
                }
            }
        }
        receiver
    }

    fn complete_sync(&mut self, assignments: Vec<MemberAssignment>) {
        let mut by_member: BTreeMap<String, Vec<u8>> = assignments
            .into_iter()
            .map(|a| (a.member_id, a.assignment))
            .collect();
        for (id, member) in &mut self.members {
            member.assignment = by_member.remove(id).unwrap_or_default();
            if let Some(sync) = member.pending_sync.take() {
                let _ = sync.send(SyncGroupResponse {
                    error: ErrorCode::None,
                    assignment: member.assignment.clone(),
                });
            }
        }
        self.state = GroupState::Stable;
    }

    /// Handles a heartbeat.
    pub fn heartbeat(&mut self, generation: i32, member_id: &str, now: Instant) -> ErrorCode {
        if let Err(code) = self.check_member(generation, member_id) {
            // A member that missed the rebalance is told to rejoin, not that it is unknown.
            if code == ErrorCode::IllegalGeneration && self.state == GroupState::PreparingRebalance
            {
                return ErrorCode::RebalanceInProgress;
            }
            return code;
        }
        self.members.get_mut(member_id).expect("checked").last_seen = now;
        match self.state {
            GroupState::PreparingRebalance => ErrorCode::RebalanceInProgress,
            _ => ErrorCode::None,
        }
    }

    /// Removes a member at its request.
    pub fn leave(&mut self, member_id: &str, now: Instant) -> ErrorCode {
        if self.members.remove(member_id).is_none() {
            return ErrorCode::UnknownMemberId;
        }
        self.after_removal(now);
        ErrorCode::None
    }

    /// Whether `member_id` with `generation` may commit offsets now.
    pub fn may_commit(&self, generation: i32, member_id: &str) -> Result<(), ErrorCode> {
        if generation < 0 && member_id.is_empty() {
            return if self.members.is_empty() {
                Ok(())
            } else {
                Err(ErrorCode::IllegalGeneration)
            };
        }
        self.check_member(generation, member_id)?;
        if self.state == GroupState::CompletingRebalance {
            return Err(ErrorCode::RebalanceInProgress);
        }
        Ok(())
    }

    fn check_member(&self, generation: i32, member_id: &str) -> Result<(), ErrorCode> {
        if !self.members.contains_key(member_id) {
            return Err(ErrorCode::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(ErrorCode::IllegalGeneration);
        }
        Ok(())
    }

    /// Expires members past their session timeout and ends rebalances past their deadline.
    /// Returns the ids of expired members.
    pub fn tick(&mut self, now: Instant) -> Vec<String> {
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.pending_join.is_none() && now >= m.last_seen + m.session_timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            self.members.remove(id);
        }
        if !expired.is_empty() {
            self.after_removal(now);
        }
        if self.state == GroupState::PreparingRebalance
            && self
                .rebalance_deadline
                .is_some_and(|deadline| now >= deadline)
        {
            self.complete_join();
        }
        expired
    }

    fn after_removal(&mut self, now: Instant) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                if self.members.is_empty() {
                    self.state = GroupState::Empty;
                    self.generation += 1;
                } else {
                    self.prepare_rebalance(now);
                }
            }
            GroupState::PreparingRebalance => self.try_complete_join(),
            GroupState::Empty => {}
        }
    }

    /// For `DescribeGroup`.
    pub fn describe(&self) -> GroupDescription {
        GroupDescription {
            error: ErrorCode::None,
            group_id: self.id.clone(),
            state: format!("{:?}", self.state),
            generation_id: self.generation,
            protocol: self.protocol.clone(),
            members: self
                .members
                .iter()
                .map(|(id, m)| MemberDescription {
                    member_id: id.clone(),
                    client_id: m.client_id.clone(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }
}

fn join_error(code: ErrorCode, member_id: &str) -> JoinGroupResponse {
    JoinGroupResponse {
        error: code,
        generation_id: -1,
        protocol_name: String::new(),
        leader: String::new(),
        member_id: member_id.to_owned(),
        members: Vec::new(),
    }
}

fn sync_error(code: ErrorCode) -> SyncGroupResponse {
    SyncGroupResponse {
        error: code,
        assignment: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::GroupProtocol;

    fn join_request(member_id: &str, session_ms: u32) -> JoinGroupRequest {
        JoinGroupRequest {
            group_id: "g".into(),
            member_id: member_id.into(),
            client_id: "c".into(),
            session_timeout_ms: session_ms,
            rebalance_timeout_ms: 1_000,
            protocol_type: "consumer".into(),
            protocols: vec![GroupProtocol {
                name: "range".into(),
                metadata: member_id.as_bytes().to_vec(),
            }],
        }
    }

    fn answer<T>(mut receiver: oneshot::Receiver<T>) -> Option<T> {
        receiver.try_recv().ok()
    }

    #[test]
    fn two_members_join_sync_and_a_silent_one_is_expired() {
        let t0 = Instant::now();
        let mut group = Group::new("g");
        let a = answer(group.join(join_request("", 500), t0)).expect("alone: at once");
        assert_eq!(
            (a.error, a.generation_id, a.leader == a.member_id),
            (ErrorCode::None, 1, true)
        );
        let synced = group.sync(
            1,
            &a.member_id,
            vec![MemberAssignment {
                member_id: a.member_id.clone(),
                assignment: vec![1],
            }],
            t0,
        );
        assert_eq!(answer(synced).unwrap().assignment, vec![1]);
        assert_eq!(group.state(), GroupState::Stable);

        // A second member starts a rebalance; the first learns it from its heartbeat.
        let mut b_join = group.join(join_request("", 500), t0);
        assert!(b_join.try_recv().is_err(), "waits for the first to rejoin");
        assert_eq!(
            group.heartbeat(1, &a.member_id, t0),
            ErrorCode::RebalanceInProgress
        );
        let a2 = answer(group.join(join_request(&a.member_id, 500), t0)).unwrap();
        let b = b_join.try_recv().unwrap();
        assert_eq!((a2.generation_id, b.generation_id), (2, 2));
        assert_eq!(a2.members.len(), 2, "the leader sees every member");
        assert!(b.members.is_empty());

        // A commit from the old generation is refused.
        assert_eq!(
            group.may_commit(1, &a.member_id),
            Err(ErrorCode::IllegalGeneration)
        );
        let b_sync = group.sync(2, &b.member_id, vec![], t0);
        let a_sync = group.sync(
            2,
            &a.member_id,
            vec![
                MemberAssignment {
                    member_id: a.member_id.clone(),
                    assignment: vec![1],
                },
                MemberAssignment {
                    member_id: b.member_id.clone(),
                    assignment: vec![2],
                },
            ],
            t0,
        );
        assert_eq!(answer(b_sync).unwrap().assignment, vec![2]);
        assert_eq!(answer(a_sync).unwrap().assignment, vec![1]);
        assert_eq!(group.may_commit(2, &b.member_id), Ok(()));

        // b goes silent: after its session timeout it is removed and a must rejoin.
        let later = t0 + Duration::from_millis(400);
        assert_eq!(group.heartbeat(2, &a.member_id, later), ErrorCode::None);
        assert_eq!(
            group.tick(t0 + Duration::from_millis(600)),
            vec![b.member_id.clone()]
        );
        assert_eq!(
            group.heartbeat(2, &a.member_id, later),
            ErrorCode::RebalanceInProgress
        );
        let a3 = answer(group.join(join_request(&a.member_id, 500), later)).unwrap();
        assert_eq!((a3.generation_id, a3.members.len()), (3, 1));
        assert_eq!(
            group.may_commit(2, &b.member_id),
            Err(ErrorCode::UnknownMemberId)
        );
    }

    #[test]
    fn a_member_that_does_not_rejoin_is_dropped_at_the_rebalance_deadline() {
        let t0 = Instant::now();
        let mut group = Group::new("g");
        let a = answer(group.join(join_request("", 60_000), t0)).unwrap();
        group.sync(1, &a.member_id, vec![], t0);
        let mut b_join = group.join(join_request("", 60_000), t0);
        // a keeps heartbeating but never rejoins; the rebalance timeout is 1 s.
        group.tick(t0 + Duration::from_millis(1_001));
        let b = b_join.try_recv().unwrap();
        assert_eq!((b.generation_id, b.leader == b.member_id), (2, true));
        assert_eq!(group.member_count(), 1);
        assert_eq!(group.leave(&b.member_id, t0), ErrorCode::None);
        assert_eq!(group.state(), GroupState::Empty);
        assert_eq!(group.may_commit(-1, ""), Ok(()));
    }

    #[test]
    fn mismatched_protocols_and_unknown_members_are_refused() {
        let t0 = Instant::now();
        let mut group = Group::new("g");
        answer(group.join(join_request("", 500), t0)).unwrap();
        let mut other = join_request("", 500);
        other.protocols[0].name = "roundrobin".into();
        assert_eq!(
            answer(group.join(other, t0)).unwrap().error,
            ErrorCode::InconsistentGroupProtocol
        );
        assert_eq!(
            answer(group.join(join_request("ghost", 500), t0))
                .unwrap()
                .error,
            ErrorCode::UnknownMemberId
        );
        assert_eq!(group.heartbeat(1, "ghost", t0), ErrorCode::UnknownMemberId);
    }
}
