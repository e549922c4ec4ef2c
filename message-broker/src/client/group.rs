//! A consumer-group member: shares a topic's partitions with the other members and commits its
//! positions so that a partition's next owner continues where it stopped.
//!
//! ```text
//!  poll ─▶ not a member, or told to rejoin? ─▶ JoinGroup ─▶ (leader: run the assignor)
//!        │                                     ─▶ SyncGroup ─▶ assignment
//!        │                                     ─▶ OffsetFetch: committed positions (or `from`)
//!        ├─▶ heartbeat due? ─▶ Heartbeat (RebalanceInProgress / IllegalGeneration ─▶ rejoin)
//!        └─▶ Fetch the assigned partitions ─▶ records to the caller
//!  commit ─▶ OffsetCommit of the positions handed out so far (stale generation: refused,
//!            the member rejoins and the records since its last commit are delivered again)
//! ```
//!
//! Delivery is at least once: records handed out after the last successful commit are handed
//! out again, by this member or the partition's next owner, if the member dies or loses the
//! partition before committing. Heartbeats are sent from `poll`, so a caller must poll more
//! often than the session timeout (the fetch wait is kept below the heartbeat interval).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::assignor::{Assignment, Assignor, Subscription};
use super::consumer::{StartFrom, deliver};
use super::{Client, ClientError};
use crate::protocol::{
    CommitOffset, ErrorCode, FetchPartition, FetchRequest, GroupProtocol, HeartbeatRequest,
    JoinGroupRequest, LeaveGroupRequest, MemberAssignment, OffsetCommitRequest, OffsetFetchRequest,
    OffsetSpec, RequestBody, ResponseBody, SyncGroupRequest, TopicPartition,
};
use crate::record_batch::RecordView;

/// Largest batch accepted when parsing fetched data: the broker's upper bound for any topic.
const MAX_BATCH_BYTES: usize = crate::log::MAX_MAX_BATCH_BYTES as usize;

/// Default session timeout: a member silent this long is removed. 10 s.
pub const DEFAULT_SESSION_TIMEOUT_MS: u32 = 10_000;

/// How a group member behaves.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// Group id.
    pub group: String,
    /// Topics to consume.
    pub topics: Vec<String>,
    /// Assignors offered, in preference order.
    pub assignors: Vec<Assignor>,
    /// Session timeout, ms.
    pub session_timeout_ms: u32,
    /// How long a rebalance waits for members to rejoin, ms.
    pub rebalance_timeout_ms: u32,
    /// Where to start in a partition the group never committed.
    pub from: StartFrom,
    /// Client id shown by `group describe`.
    pub client_id: String,
    /// Bytes per fetch.
    pub max_bytes: u32,
}

impl GroupConfig {
    /// A config with the defaults for `group` consuming `topics`.
    pub fn new(group: &str, topics: Vec<String>) -> GroupConfig {
        GroupConfig {
            group: group.to_owned(),
            topics,
            assignors: vec![Assignor::Range, Assignor::RoundRobin],
            session_timeout_ms: DEFAULT_SESSION_TIMEOUT_MS,
            rebalance_timeout_ms: DEFAULT_SESSION_TIMEOUT_MS,
            from: StartFrom::Earliest,
            client_id: "broker-client".into(),
            max_bytes: 4 << 20,
        }
    }

    fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(u64::from(self.session_timeout_ms) / 3)
    }
}

/// A member of a consumer group (see the module doc).
pub struct GroupConsumer {
    client: Arc<Client>,
    config: GroupConfig,
    member_id: String,
    generation: i32,
    joined: bool,
    /// Assigned partitions with the next offset to hand out.
    positions: BTreeMap<(String, u32), u64>,
    last_heartbeat: Instant,
}

impl GroupConsumer {
    /// A member that joins on its first poll.
    pub fn new(client: Arc<Client>, config: GroupConfig) -> GroupConsumer {
        GroupConsumer {
            client,
            config,
            member_id: String::new(),
            generation: -1,
            joined: false,
            positions: BTreeMap::new(),
            last_heartbeat: Instant::now(),
        }
    }

    /// The assigned partitions and their positions.
    pub fn positions(&self) -> &BTreeMap<(String, u32), u64> {
        &self.positions
    }

    /// The generation of the current assignment (-1 before the first).
    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// The member id the group gave.
    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// Whether the member holds an assignment now; `false` before the first join and while
    /// it rejoins after a rebalance.
    pub fn is_joined(&self) -> bool {
        self.joined
    }

    /// Rejoins if needed, heartbeats if due, fetches once, and calls `each(topic, partition,
    /// record)` for every new record. Returns how many records there were.
    pub async fn poll_with(
        &mut self,
        mut each: impl FnMut(&str, u32, &RecordView<'_>),
    ) -> Result<usize, ClientError> {
        if !self.joined {
            self.join().await?;
        } else if self.last_heartbeat.elapsed() >= self.config.heartbeat_interval() {
            self.heartbeat().await?;
            if !self.joined {
                self.join().await?;
            }
        }
        if self.positions.is_empty() {
            tokio::time::sleep(
                self.config
                    .heartbeat_interval()
                    .min(Duration::from_millis(200)),
            )
            .await;
            return Ok(0);
        }
        let wait = self
            .config
            .heartbeat_interval()
            .min(Duration::from_millis(500));
        let request = FetchRequest {
            max_wait_ms: wait.as_millis() as u32,
            min_bytes: 1,
            max_bytes: self.config.max_bytes,
            partitions: self
                .positions
                .iter()
                .map(|((topic, partition), &offset)| FetchPartition {
                    topic: topic.clone(),
                    partition: *partition,
                    offset,
                    max_bytes: self.config.max_bytes,
                })
                .collect(),
        };
        let response = self.client.fetch(request).await?;
        let mut delivered = 0;
        for answer in &response.partitions {
            let key = (answer.topic.clone(), answer.partition);
            let Some(position) = self.positions.get_mut(&key) else {
                continue;
            };
            if answer.error == ErrorCode::OffsetOutOfRange {
                // Retention removed the position's records: continue at the first one kept.
                *position = answer.log_start_offset;
                continue;
            }
            if !answer.error.is_ok() {
                return Err(ClientError::Broker {
                    code: answer.error,
                    message: format!("fetch {}/{}", answer.topic, answer.partition),
                });
            }
            let topic = &answer.topic;
            delivered += deliver(&answer.records, position, MAX_BATCH_BYTES, |record| {
                each(topic, answer.partition, record)
            })
            .map_err(|defect| ClientError::CorruptData {
                topic: topic.clone(),
                partition: answer.partition,
                offset: *position,
                defect,
            })?;
        }
        Ok(delivered)
    }

    /// Commits the positions handed out so far. A refusal because the group moved on
    /// (stale generation, unknown member, rebalance) makes the member rejoin on its next
    /// poll and returns the code; the records since the last commit will be delivered again.
    pub async fn commit(&mut self) -> Result<ErrorCode, ClientError> {
        if !self.joined || self.positions.is_empty() {
            return Ok(ErrorCode::None);
        }
        let request = OffsetCommitRequest {
            group_id: self.config.group.clone(),
            generation_id: self.generation,
            member_id: self.member_id.clone(),
            offsets: self
                .positions
                .iter()
                .map(|((topic, partition), &offset)| CommitOffset {
                    topic: topic.clone(),
                    partition: *partition,
                    offset,
                    metadata: String::new(),
                })
                .collect(),
        };
        let body = self
            .client
            .connection()
            .call(RequestBody::OffsetCommit(request))
            .await?;
        let ResponseBody::OffsetCommit(answer) = body else {
            return Err(ClientError::UnexpectedResponse {
                api: "OffsetCommit",
            });
        };
        if self.must_rejoin(answer.error) {
            return Ok(answer.error);
        }
        if !answer.error.is_ok() {
            return Err(ClientError::Broker {
                code: answer.error,
                message: "offset commit".into(),
            });
        }
        Ok(ErrorCode::None)
    }

    /// Leaves the group at once, so its partitions move without waiting for the session
    /// timeout.
    pub async fn leave(&mut self) -> Result<(), ClientError> {
        if self.member_id.is_empty() {
            return Ok(());
        }
        let request = LeaveGroupRequest {
            group_id: self.config.group.clone(),
            member_id: std::mem::take(&mut self.member_id),
        };
        self.joined = false;
        self.positions.clear();
        self.client
            .connection()
            .call(RequestBody::LeaveGroup(request))
            .await?;
        Ok(())
    }

    fn must_rejoin(&mut self, code: ErrorCode) -> bool {
        match code {
            ErrorCode::UnknownMemberId => {
                self.member_id.clear();
                self.joined = false;
                true
            }
            ErrorCode::IllegalGeneration | ErrorCode::RebalanceInProgress => {
                self.joined = false;
                true
            }
            _ => false,
        }
    }

    async fn heartbeat(&mut self) -> Result<(), ClientError> {
        let request = HeartbeatRequest {
            group_id: self.config.group.clone(),
            generation_id: self.generation,
            member_id: self.member_id.clone(),
        };
        let body = self
            .client
            .connection()
            .call(RequestBody::Heartbeat(request))
            .await?;
        let ResponseBody::Heartbeat(code) = body else {
            return Err(ClientError::UnexpectedResponse { api: "Heartbeat" });
        };
        self.last_heartbeat = Instant::now();
        if !code.is_ok() && !self.must_rejoin(code) {
            return Err(ClientError::Broker {
                code,
                message: "heartbeat".into(),
            });
        }
        Ok(())
    }

    /// Joins (or rejoins) until this member has an assignment for the current generation.
    async fn join(&mut self) -> Result<(), ClientError> {
        let deadline =
            Instant::now() + Duration::from_millis(u64::from(self.config.rebalance_timeout_ms) * 3);
        loop {
            if Instant::now() > deadline {
                return Err(ClientError::Broker {
                    code: ErrorCode::RebalanceInProgress,
                    message: format!("could not join group {}", self.config.group),
                });
            }
            let joined = self.join_once().await?;
            let Some(assignment) = joined else { continue };
            self.last_heartbeat = Instant::now();
            self.joined = true;
            self.positions = self.starting_positions(&assignment).await?;
            return Ok(());
        }
    }

    /// One JoinGroup + SyncGroup round; `None` if the group asks to start over.
    async fn join_once(&mut self) -> Result<Option<Assignment>, ClientError> {
        let subscription = Subscription {
            topics: self.config.topics.clone(),
        };
        let metadata = postcard::to_stdvec(&subscription).expect("serializes");
        let request = JoinGroupRequest {
            group_id: self.config.group.clone(),
            member_id: self.member_id.clone(),
            client_id: self.config.client_id.clone(),
            session_timeout_ms: self.config.session_timeout_ms,
            rebalance_timeout_ms: self.config.rebalance_timeout_ms,
            protocol_type: "consumer".into(),
            protocols: self
                .config
                .assignors
                .iter()
                .map(|a| GroupProtocol {
                    name: a.name().into(),
                    metadata: metadata.clone(),
                })
                .collect(),
        };
        let body = self
            .client
            .connection()
            .call(RequestBody::JoinGroup(request))
            .await?;
        let ResponseBody::JoinGroup(joined) = body else {
            return Err(ClientError::UnexpectedResponse { api: "JoinGroup" });
        };
        if self.must_rejoin(joined.error) {
            return Ok(None);
        }
        if !joined.error.is_ok() {
            return Err(ClientError::Broker {
                code: joined.error,
                message: format!("join group {}", self.config.group),
            });
        }
        self.member_id = joined.member_id.clone();
        self.generation = joined.generation_id;
        let assignments = if joined.leader == joined.member_id {
            self.assign(&joined.protocol_name, &joined.members).await?
        } else {
            Vec::new()
        };
        let request = SyncGroupRequest {
            group_id: self.config.group.clone(),
            generation_id: self.generation,
            member_id: self.member_id.clone(),
            assignments,
        };
        let body = self
            .client
            .connection()
            .call(RequestBody::SyncGroup(request))
            .await?;
        let ResponseBody::SyncGroup(synced) = body else {
            return Err(ClientError::UnexpectedResponse { api: "SyncGroup" });
        };
        if self.must_rejoin(synced.error) {
            return Ok(None);
        }
        if !synced.error.is_ok() {
            return Err(ClientError::Broker {
                code: synced.error,
                message: "sync group".into(),
            });
        }
        Ok(Assignment::decode(&synced.assignment))
    }

    /// As the leader: every member's assignment by the chosen assignor.
    async fn assign(
        &self,
        protocol: &str,
        members: &[crate::protocol::JoinedMember],
    ) -> Result<Vec<MemberAssignment>, ClientError> {
        let assignor = Assignor::from_name(protocol).unwrap_or(Assignor::Range);
        let subscriptions: BTreeMap<String, Subscription> = members
            .iter()
            .map(|m| {
                let subscription = postcard::from_bytes(&m.metadata).unwrap_or_default();
                (m.member_id.clone(), subscription)
            })
            .collect();
        let mut counts = BTreeMap::new();
        for topic in subscriptions.values().flat_map(|s| s.topics.iter()) {
            if !counts.contains_key(topic) {
                counts.insert(
                    topic.clone(),
                    super::partition_count(&self.client, topic).await?,
                );
            }
        }
        Ok(assignor
            .assign(&subscriptions, &counts)
            .into_iter()
            .map(|(member_id, assignment)| MemberAssignment {
                member_id,
                assignment: postcard::to_stdvec(&assignment).expect("serializes"),
            })
            .collect())
    }

    /// Committed positions of the assigned partitions, or `from` where none was committed.
    async fn starting_positions(
        &self,
        assignment: &Assignment,
    ) -> Result<BTreeMap<(String, u32), u64>, ClientError> {
        let request = OffsetFetchRequest {
            group_id: self.config.group.clone(),
            partitions: Some(
                assignment
                    .partitions
                    .iter()
                    .map(|(topic, partition)| TopicPartition {
                        topic: topic.clone(),
                        partition: *partition,
                    })
                    .collect(),
            ),
        };
        let body = self
            .client
            .connection()
            .call(RequestBody::OffsetFetch(request))
            .await?;
        let ResponseBody::OffsetFetch(fetched) = body else {
            return Err(ClientError::UnexpectedResponse { api: "OffsetFetch" });
        };
        let mut positions = BTreeMap::new();
        for committed in fetched.offsets {
            let offset = match (committed.offset, self.config.from) {
                (Some(offset), _) => offset,
                (None, StartFrom::Offset(offset)) => offset,
                (None, StartFrom::Earliest) => {
                    self.client
                        .list_offset(&committed.topic, committed.partition, OffsetSpec::Earliest)
                        .await?
                }
                (None, StartFrom::Latest) => {
                    self.client
                        .list_offset(&committed.topic, committed.partition, OffsetSpec::Latest)
                        .await?
                }
            };
            positions.insert((committed.topic, committed.partition), offset);
        }
        Ok(positions)
    }
}
