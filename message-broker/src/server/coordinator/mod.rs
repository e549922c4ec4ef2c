//! The group coordinator: consumer-group membership and committed offsets.
//!
//! | file         | holds                                                             |
//! |--------------|-------------------------------------------------------------------|
//! | `group.rs`   | one group's state machine: join, sync, heartbeat, leave, expiry   |
//! | `offsets.rs` | committed offsets, durable in `__consumer_offsets`                |
//!
//! The API is Kafka's classic group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! OffsetCommit, OffsetFetch) with the same meaning and error codes, so a Kafka front end can
//! later call the same functions. Groups live in memory: after a broker restart members
//! rejoin (their next heartbeat gets `UnknownMemberId`), while committed offsets survive.
//! A timer task ticks every [`TICK`] to expire silent members and end overdue rebalances.

mod group;
mod offsets;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub use group::{Group, GroupState};
pub use offsets::{OFFSETS_TOPIC, OffsetStore};

use super::broker::{Broker, BrokerError};
use super::config::{FlushPolicy, Limits};
use super::connection::Reply;
use crate::protocol::{
    CleanupPolicy, CreateTopicRequest, ErrorCode, GroupDescription, GroupListing, HeartbeatRequest,
    JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchRequest, OffsetFetchResponse, ResponseBody, SyncGroupRequest, SyncGroupResponse,
};

/// How often members are checked for expiry.
pub const TICK: Duration = Duration::from_millis(50);

/// Groups and their offsets.
pub struct Coordinator {
    groups: Mutex<HashMap<String, Group>>,
    offsets: OffsetStore,
    limits: Limits,
}

impl Coordinator {
    /// Opens the offsets topic (creating it on first start) and loads the committed offsets.
    pub fn open(
        broker: &Broker,
        flush: FlushPolicy,
        limits: Limits,
    ) -> Result<Coordinator, BrokerError> {
        if broker.topic(OFFSETS_TOPIC).is_none() {
            let request = CreateTopicRequest {
                name: OFFSETS_TOPIC.into(),
                partitions: 1,
                retention_ms: Some(-1),
                cleanup: Some(CleanupPolicy::Compact),
                ..CreateTopicRequest::default()
            };
            let code = broker.create_topic(&request);
            if !code.is_ok() {
                return Err(BrokerError::BadTopicFile {
                    path: OFFSETS_TOPIC.into(),
                    reason: format!("cannot create the offsets topic: {code}"),
                });
            }
        }
        let partition = broker
            .partition(OFFSETS_TOPIC, 0)
            .expect("the offsets topic exists");
        let offsets =
            OffsetStore::load(partition, flush).map_err(|reason| BrokerError::BadTopicFile {
                path: OFFSETS_TOPIC.into(),
                reason,
            })?;
        Ok(Coordinator {
            groups: Mutex::new(HashMap::new()),
            offsets,
            limits,
        })
    }

    /// The committed offsets.
    pub fn offsets(&self) -> &OffsetStore {
        &self.offsets
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `JoinGroup`: answered when the rebalance completes.
    pub fn join(&self, request: JoinGroupRequest) -> Reply {
        let limits = &self.limits;
        let refuse = |code| {
            Reply::Now(ResponseBody::JoinGroup(
                crate::protocol::JoinGroupResponse {
                    error: code,
                    generation_id: -1,
                    protocol_name: String::new(),
                    leader: String::new(),
                    member_id: String::new(),
                    members: Vec::new(),
                },
            ))
        };
        if !(limits.min_session_timeout_ms..=limits.max_session_timeout_ms)
            .contains(&request.session_timeout_ms)
        {
            return refuse(ErrorCode::InvalidSessionTimeout);
        }
        let mut groups = self.lock();
        if !groups.contains_key(&request.group_id) && groups.len() >= limits.max_groups {
            return refuse(ErrorCode::LimitExceeded);
        }
        let group = groups
            .entry(request.group_id.clone())
            .or_insert_with(|| Group::new(&request.group_id));
        if request.member_id.is_empty() && group.member_count() >= limits.max_members_per_group {
            return refuse(ErrorCode::LimitExceeded);
        }
        let answer = group.join(request, Instant::now());
        Reply::Later(Box::pin(async move {
            match answer.await {
                Ok(response) => ResponseBody::JoinGroup(response),
                Err(_) => unreachable_answer(),
            }
        }))
    }

    /// `SyncGroup`: answered when the leader's assignment is there.
    pub fn sync(&self, request: SyncGroupRequest) -> Reply {
        let answer = {
            let mut groups = self.lock();
            let Some(group) = groups.get_mut(&request.group_id) else {
                return Reply::Now(ResponseBody::SyncGroup(SyncGroupResponse {
                    error: ErrorCode::UnknownMemberId,
                    assignment: Vec::new(),
                }));
            };
            group.sync(
                request.generation_id,
                &request.member_id,
                request.assignments,
                Instant::now(),
            )
        };
        Reply::Later(Box::pin(async move {
            match answer.await {
                Ok(response) => ResponseBody::SyncGroup(response),
                Err(_) => unreachable_answer(),
            }
        }))
    }

    /// `Heartbeat`.
    pub fn heartbeat(&self, request: &HeartbeatRequest) -> ErrorCode {
        let mut groups = self.lock();
        match groups.get_mut(&request.group_id) {
            Some(group) => {
                group.heartbeat(request.generation_id, &request.member_id, Instant::now())
            }
            None => ErrorCode::UnknownMemberId,
        }
    }

    /// `LeaveGroup`.
    pub fn leave(&self, request: &LeaveGroupRequest) -> ErrorCode {
        let mut groups = self.lock();
        match groups.get_mut(&request.group_id) {
            Some(group) => group.leave(&request.member_id, Instant::now()),
            None => ErrorCode::UnknownMemberId,
        }
    }

    /// `OffsetCommit`: refused from a stale generation or an unknown member.
    pub fn commit(self: &Arc<Self>, request: OffsetCommitRequest) -> Reply {
        let allowed = {
            let groups = self.lock();
            match groups.get(&request.group_id) {
                Some(group) => group.may_commit(request.generation_id, &request.member_id),
                None if request.generation_id < 0 => Ok(()),
                None => Err(ErrorCode::UnknownMemberId),
            }
        };
        if let Err(error) = allowed {
            return Reply::Now(ResponseBody::OffsetCommit(OffsetCommitResponse { error }));
        }
        let coordinator = Arc::clone(self);
        Reply::Later(Box::pin(async move {
            let error = match coordinator
                .offsets
                .commit(&request.group_id, &request.offsets)
                .await
            {
                Ok(()) => ErrorCode::None,
                Err(code) => code,
            };
            ResponseBody::OffsetCommit(OffsetCommitResponse { error })
        }))
    }

    /// `OffsetFetch`.
    pub fn fetch_offsets(&self, request: &OffsetFetchRequest) -> OffsetFetchResponse {
        OffsetFetchResponse {
            offsets: self
                .offsets
                .fetch(&request.group_id, request.partitions.as_deref()),
        }
    }

    /// `ListGroups`: groups with members or with committed offsets.
    pub fn list_groups(&self) -> Vec<GroupListing> {
        let groups = self.lock();
        let mut listing: Vec<GroupListing> = groups
            .iter()
            .map(|(id, group)| GroupListing {
                group_id: id.clone(),
                state: format!("{:?}", group.state()),
                members: group.member_count() as u32,
            })
            .collect();
        for id in self.offsets.groups() {
            if !groups.contains_key(&id) {
                listing.push(GroupListing {
                    group_id: id,
                    state: format!("{:?}", GroupState::Empty),
                    members: 0,
                });
            }
        }
        listing.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        listing
    }

    /// `DescribeGroup`.
    pub fn describe(&self, group_id: &str) -> GroupDescription {
        if let Some(group) = self.lock().get(group_id) {
            return group.describe();
        }
        let known = self.offsets.groups().iter().any(|g| g == group_id);
        GroupDescription {
            error: if known {
                ErrorCode::None
            } else {
                ErrorCode::GroupIdNotFound
            },
            group_id: group_id.to_owned(),
            state: format!("{:?}", GroupState::Empty),
            generation_id: 0,
            protocol: String::new(),
            members: Vec::new(),
        }
    }

    /// Expires silent members and overdue rebalances every [`TICK`], until `stop` resolves.
    pub async fn run_timer(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        let mut ticks = tokio::time::interval(TICK);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = &mut stop => return,
            }
            let now = Instant::now();
            let mut groups = self.lock();
            for (id, group) in groups.iter_mut() {
                for member in group.tick(now) {
                    tracing::info!(group = %id, %member, "member expired after its session timeout");
                }
            }
            // Forget empty groups; their committed offsets stay in the offset store.
            groups
                .retain(|_, group| group.state() != GroupState::Empty || group.member_count() > 0);
        }
    }
}

/// A group dropped a waiting request's channel without answering: only possible if the group
/// itself was dropped, which happens only to empty groups, which have no waiting requests.
fn unreachable_answer() -> ResponseBody {
    ResponseBody::Error(crate::protocol::ErrorResponse {
        code: ErrorCode::RebalanceInProgress,
        message: "the group was reset; join again".into(),
    })
}
