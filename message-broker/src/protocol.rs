//! The broker's own binary protocol: request and response messages carried in the service
//! kit's frames (`service_kit::frame::FrameCodec`: 4-byte length, version byte, postcard).
//!
//! ```text
//!  client                                       broker
//!    │ Request { correlation_id: 7, api_version, body: Produce(..) }   ─▶
//!    │ Request { correlation_id: 8, api_version, body: Fetch(..) }     ─▶   (pipelined)
//!    │ ◀─  Response { correlation_id: 8, body: Fetch(..) }                 (may come first:
//!    │ ◀─  Response { correlation_id: 7, body: Produce(..) }                 match by id)
//! ```
//!
//! - **Correlation ids** let a client keep many requests in flight on one connection and match
//!   answers that complete out of order (a produce waiting for an fsync does not hold up a
//!   fetch). The broker answers every request except a produce with `acks = none`.
//! - **API key**: the variant of [`RequestBody`]. Postcard writes a variant as its index, so
//!   the frame payload starts with `correlation_id`, `api_version`, then the API key
//!   ([`ApiKey`] numbers the variants; new APIs are only ever appended).
//! - **API version** per request: the broker answers a version it does not speak with
//!   [`ErrorCode::UnsupportedVersion`] (see [`ApiKey::max_version`]), so clients and brokers can
//!   evolve one API at a time, as Kafka's do.
//! - **Errors** are explicit codes ([`ErrorCode`]) per partition, or a whole-request
//!   [`ResponseBody::Error`] when the request cannot be served at all.
//! - **Record batches** travel as the bytes of Kafka's RecordBatch v2 (see `record_batch`):
//!   the broker appends what it receives and sends what is on disk, without re-encoding.
//!
//! A frame that does not decode (a payload that is not a `Request`) closes the connection: the
//! frame codec cannot trust anything after it. Nothing is written to any log for it.

use serde::{Deserialize, Serialize};

pub use crate::log::CleanupPolicy;
use crate::log::LogConfig;

/// One request frame.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Chosen by the client, echoed in the response.
    pub correlation_id: u32,
    /// Version of the API named by `body`.
    pub api_version: u16,
    /// The API and its arguments.
    pub body: RequestBody,
}

/// One response frame.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The request's id.
    pub correlation_id: u32,
    /// The answer.
    pub body: ResponseBody,
}

/// Every API. The variant index is the [`ApiKey`]; append new variants at the end only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RequestBody {
    /// Which APIs and versions the broker speaks.
    ApiVersions,
    /// Topics, their settings and their partitions' offsets and sizes.
    Metadata(MetadataRequest),
    /// Creates a topic.
    CreateTopic(CreateTopicRequest),
    /// Deletes a topic and its data.
    DeleteTopic(DeleteTopicRequest),
    /// Hands out an idempotent producer id.
    InitProducerId,
    /// Appends record batches.
    Produce(ProduceRequest),
    /// Reads record batches, waiting for data if asked to.
    Fetch(FetchRequest),
    /// The earliest, latest or first-at-a-timestamp offset of a partition.
    ListOffsets(ListOffsetsRequest),
    /// Joins (or rejoins) a consumer group; answered when the group's rebalance completes.
    JoinGroup(JoinGroupRequest),
    /// Hands out the assignment: the leader sends everyone's, every member gets its own.
    SyncGroup(SyncGroupRequest),
    /// Keeps a member alive; tells it when the group rebalances.
    Heartbeat(HeartbeatRequest),
    /// Leaves a group at once (instead of after the session timeout).
    LeaveGroup(LeaveGroupRequest),
    /// Stores a group's consumed positions.
    OffsetCommit(OffsetCommitRequest),
    /// Reads a group's committed positions.
    OffsetFetch(OffsetFetchRequest),
    /// Every group and its state.
    ListGroups,
    /// One group's members and their assignments.
    DescribeGroup(DescribeGroupRequest),
    /// Records to process one by one, each to be acknowledged or rejected (retries and DLQ).
    ShareFetch(ShareFetchRequest),
    /// Acknowledges or rejects records delivered by `ShareFetch`.
    Acknowledge(AcknowledgeRequest),
}

/// Numbers of the APIs, as they appear on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u16)]
pub enum ApiKey {
    /// [`RequestBody::ApiVersions`]
    ApiVersions = 0,
    /// [`RequestBody::Metadata`]
    Metadata = 1,
    /// [`RequestBody::CreateTopic`]
    CreateTopic = 2,
    /// [`RequestBody::DeleteTopic`]
    DeleteTopic = 3,
    /// [`RequestBody::InitProducerId`]
    InitProducerId = 4,
    /// [`RequestBody::Produce`]
    Produce = 5,
    /// [`RequestBody::Fetch`]
    Fetch = 6,
    /// [`RequestBody::ListOffsets`]
    ListOffsets = 7,
    /// [`RequestBody::JoinGroup`]
    JoinGroup = 8,
    /// [`RequestBody::SyncGroup`]
    SyncGroup = 9,
    /// [`RequestBody::Heartbeat`]
    Heartbeat = 10,
    /// [`RequestBody::LeaveGroup`]
    LeaveGroup = 11,
    /// [`RequestBody::OffsetCommit`]
    OffsetCommit = 12,
    /// [`RequestBody::OffsetFetch`]
    OffsetFetch = 13,
    /// [`RequestBody::ListGroups`]
    ListGroups = 14,
    /// [`RequestBody::DescribeGroup`]
    DescribeGroup = 15,
    /// [`RequestBody::ShareFetch`]
    ShareFetch = 16,
    /// [`RequestBody::Acknowledge`]
    Acknowledge = 17,
}

impl ApiKey {
    /// Every API, in key order.
    pub const ALL: [ApiKey; 18] = [
        ApiKey::ApiVersions,
        ApiKey::Metadata,
        ApiKey::CreateTopic,
        ApiKey::DeleteTopic,
        ApiKey::InitProducerId,
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::ListOffsets,
        ApiKey::JoinGroup,
        ApiKey::SyncGroup,
        ApiKey::Heartbeat,
        ApiKey::LeaveGroup,
        ApiKey::OffsetCommit,
        ApiKey::OffsetFetch,
        ApiKey::ListGroups,
        ApiKey::DescribeGroup,
        ApiKey::ShareFetch,
        ApiKey::Acknowledge,
    ];

    /// Newest version of the API this build speaks (all start at 0).
    pub fn max_version(self) -> u16 {
        0
    }
}

impl RequestBody {
    /// The API this request calls.
    pub fn api_key(&self) -> ApiKey {
        match self {
            RequestBody::ApiVersions => ApiKey::ApiVersions,
            RequestBody::Metadata(_) => ApiKey::Metadata,
            RequestBody::CreateTopic(_) => ApiKey::CreateTopic,
            RequestBody::DeleteTopic(_) => ApiKey::DeleteTopic,
            RequestBody::InitProducerId => ApiKey::InitProducerId,
            RequestBody::Produce(_) => ApiKey::Produce,
            RequestBody::Fetch(_) => ApiKey::Fetch,
            RequestBody::ListOffsets(_) => ApiKey::ListOffsets,
            RequestBody::JoinGroup(_) => ApiKey::JoinGroup,
            RequestBody::SyncGroup(_) => ApiKey::SyncGroup,
            RequestBody::Heartbeat(_) => ApiKey::Heartbeat,
            RequestBody::LeaveGroup(_) => ApiKey::LeaveGroup,
            RequestBody::OffsetCommit(_) => ApiKey::OffsetCommit,
            RequestBody::OffsetFetch(_) => ApiKey::OffsetFetch,
            RequestBody::ListGroups => ApiKey::ListGroups,
            RequestBody::DescribeGroup(_) => ApiKey::DescribeGroup,
            RequestBody::ShareFetch(_) => ApiKey::ShareFetch,
            RequestBody::Acknowledge(_) => ApiKey::Acknowledge,
        }
    }
}

/// Every answer; the variant matches the request's, or is [`ResponseBody::Error`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ResponseBody {
    /// The request could not be served at all (unsupported version, a limit, shutdown).
    Error(ErrorResponse),
    /// Answer to [`RequestBody::ApiVersions`].
    ApiVersions(Vec<ApiVersionRange>),
    /// Answer to [`RequestBody::Metadata`].
    Metadata(MetadataResponse),
    /// Answer to [`RequestBody::CreateTopic`].
    CreateTopic(ErrorCode),
    /// Answer to [`RequestBody::DeleteTopic`].
    DeleteTopic(ErrorCode),
    /// Answer to [`RequestBody::InitProducerId`].
    InitProducerId(InitProducerIdResponse),
    /// Answer to [`RequestBody::Produce`].
    Produce(ProduceResponse),
    /// Answer to [`RequestBody::Fetch`].
    Fetch(FetchResponse),
    /// Answer to [`RequestBody::ListOffsets`].
    ListOffsets(ListOffsetsResponse),
    /// Answer to [`RequestBody::JoinGroup`].
    JoinGroup(JoinGroupResponse),
    /// Answer to [`RequestBody::SyncGroup`].
    SyncGroup(SyncGroupResponse),
    /// Answer to [`RequestBody::Heartbeat`].
    Heartbeat(ErrorCode),
    /// Answer to [`RequestBody::LeaveGroup`].
    LeaveGroup(ErrorCode),
    /// Answer to [`RequestBody::OffsetCommit`].
    OffsetCommit(OffsetCommitResponse),
    /// Answer to [`RequestBody::OffsetFetch`].
    OffsetFetch(OffsetFetchResponse),
    /// Answer to [`RequestBody::ListGroups`].
    ListGroups(Vec<GroupListing>),
    /// Answer to [`RequestBody::DescribeGroup`].
    DescribeGroup(GroupDescription),
    /// Answer to [`RequestBody::ShareFetch`].
    ShareFetch(ShareFetchResponse),
    /// Answer to [`RequestBody::Acknowledge`].
    Acknowledge(AcknowledgeResponse),
}

/// A whole-request failure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// What kind of failure.
    pub code: ErrorCode,
    /// For a human.
    pub message: String,
}

/// Versions of one API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiVersionRange {
    /// The API.
    pub api_key: u16,
    /// Oldest version spoken.
    pub min_version: u16,
    /// Newest version spoken.
    pub max_version: u16,
}

/// Outcome codes. On the wire a `u16`; a code this build does not know reads as `Unknown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "u16", into = "u16")]
#[repr(u16)]
pub enum ErrorCode {
    /// Success.
    None = 0,
    /// A code newer than this build, or an unexpected server failure.
    Unknown = 1,
    /// A batch failed its checks (CRC, layout); nothing was written.
    CorruptMessage = 2,
    /// No such topic or partition.
    UnknownTopicOrPartition = 3,
    /// A batch over the topic's `max_batch_bytes`, or a request over the frame limit.
    MessageTooLarge = 4,
    /// A fetch offset outside the partition's range.
    OffsetOutOfRange = 5,
    /// A request that makes no sense (zero partitions, an empty batch list, …).
    InvalidRequest = 6,
    /// An API version the broker does not speak.
    UnsupportedVersion = 7,
    /// Creating a topic that exists.
    TopicAlreadyExists = 8,
    /// A topic name outside the allowed characters or length.
    InvalidTopic = 9,
    /// A partition count of 0 or over the limit.
    InvalidPartitions = 10,
    /// A broker limit was reached (topics, partitions, connections, producers).
    LimitExceeded = 11,
    /// An idempotent batch whose sequence number does not follow the last one.
    OutOfOrderSequence = 12,
    /// An idempotent batch older than the ones the broker remembers.
    DuplicateSequence = 13,
    /// A producer epoch older than the broker has seen.
    InvalidProducerEpoch = 14,
    /// The disk failed; the partition stops taking writes until the broker restarts.
    StorageError = 15,
    /// A topic setting out of range.
    InvalidConfig = 16,
    /// The broker is shutting down.
    BrokerShuttingDown = 17,
    /// A member id the group does not know (expired, or never joined): join again without it.
    UnknownMemberId = 18,
    /// A generation other than the group's current one: the member missed a rebalance.
    IllegalGeneration = 19,
    /// The group is rebalancing: join again.
    RebalanceInProgress = 20,
    /// A session timeout outside the broker's allowed range.
    InvalidSessionTimeout = 21,
    /// A member whose protocol type or assignors do not match the group's.
    InconsistentGroupProtocol = 22,
    /// No such group.
    GroupIdNotFound = 23,
}

impl From<u16> for ErrorCode {
    fn from(code: u16) -> Self {
        use ErrorCode::*;
        const CODES: [ErrorCode; 24] = [
            None,
            Unknown,
            CorruptMessage,
            UnknownTopicOrPartition,
            MessageTooLarge,
            OffsetOutOfRange,
            InvalidRequest,
            UnsupportedVersion,
            TopicAlreadyExists,
            InvalidTopic,
            InvalidPartitions,
            LimitExceeded,
            OutOfOrderSequence,
            DuplicateSequence,
            InvalidProducerEpoch,
            StorageError,
            InvalidConfig,
            BrokerShuttingDown,
            UnknownMemberId,
            IllegalGeneration,
            RebalanceInProgress,
            InvalidSessionTimeout,
            InconsistentGroupProtocol,
            GroupIdNotFound,
        ];
        CODES.get(usize::from(code)).copied().unwrap_or(Unknown)
    }
}

impl From<ErrorCode> for u16 {
    fn from(code: ErrorCode) -> u16 {
        code as u16
    }
}

impl ErrorCode {
    /// Whether this is success.
    pub fn is_ok(self) -> bool {
        self == ErrorCode::None
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?} ({})", *self as u16)
    }
}

/// Request for [`RequestBody::Metadata`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetadataRequest {
    /// Topics to describe; `None` for all.
    pub topics: Option<Vec<String>>,
}

/// Answer to [`RequestBody::Metadata`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetadataResponse {
    /// One entry per topic asked for (or every topic).
    pub topics: Vec<TopicMetadata>,
}

/// One topic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopicMetadata {
    /// Name.
    pub name: String,
    /// `UnknownTopicOrPartition` for a named topic that does not exist.
    pub error: ErrorCode,
    /// Settings (empty defaults when `error` is set).
    pub config: TopicConfig,
    /// Partitions in order.
    pub partitions: Vec<PartitionMetadata>,
}

/// One partition's extent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartitionMetadata {
    /// Index.
    pub partition: u32,
    /// First offset held.
    pub start_offset: u64,
    /// Next offset to be written.
    pub end_offset: u64,
    /// Bytes on disk (segments).
    pub size_bytes: u64,
    /// Segment files.
    pub segments: u32,
}

/// A topic's settings, stored with it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    /// Partition count.
    pub partitions: u32,
    /// Storage settings of every partition, the cleanup policy included.
    pub log: LogConfig,
}

/// Request for [`RequestBody::CreateTopic`]. Unset fields take the broker's defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateTopicRequest {
    /// Topic name: 1 to 249 of `[A-Za-z0-9._-]`, not starting with `.`.
    pub name: String,
    /// Partition count, at least 1.
    pub partitions: u32,
    /// ms; -1 keeps data forever.
    pub retention_ms: Option<i64>,
    /// bytes; -1 for no limit.
    pub retention_bytes: Option<i64>,
    /// Segment size, bytes.
    pub segment_bytes: Option<u64>,
    /// Segment age, ms.
    pub segment_ms: Option<i64>,
    /// Largest batch, bytes.
    pub max_batch_bytes: Option<u32>,
    /// Delete or compact.
    pub cleanup: Option<CleanupPolicy>,
}

/// Request for [`RequestBody::DeleteTopic`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeleteTopicRequest {
    /// The topic.
    pub name: String,
}

/// Answer to [`RequestBody::InitProducerId`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InitProducerIdResponse {
    /// `None` or `LimitExceeded`.
    pub error: ErrorCode,
    /// A producer id never handed out before by this broker.
    pub producer_id: i64,
    /// Its epoch, 0.
    pub producer_epoch: i16,
}

/// How much of an append a producer waits for before it is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Acks {
    /// No response at all: fire and forget.
    None,
    /// Appended to the leader's log (page cache).
    Leader,
    /// Durable: with `--flush always`, fsynced; with replication, on every in-sync replica.
    All,
}

/// Request for [`RequestBody::Produce`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProduceRequest {
    /// What the answer waits for.
    pub acks: Acks,
    /// One batch per entry; at most one entry per partition.
    pub partitions: Vec<ProducePartition>,
}

/// One batch for one partition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProducePartition {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// One RecordBatch v2, `base_offset` ignored (the broker assigns it).
    #[serde(with = "wire_bytes")]
    pub records: Vec<u8>,
}

/// Answer to [`RequestBody::Produce`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProduceResponse {
    /// In the order of the request.
    pub partitions: Vec<ProducePartitionResponse>,
}

/// Outcome of one batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProducePartitionResponse {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Outcome.
    pub error: ErrorCode,
    /// Offset of the batch's first record (for a retried duplicate: where it was first written).
    pub base_offset: u64,
    /// The partition's first offset.
    pub log_start_offset: u64,
}

/// Request for [`RequestBody::Fetch`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FetchRequest {
    /// Longest wait for `min_bytes` to be available, ms (capped by the broker's limit).
    pub max_wait_ms: u32,
    /// Answer as soon as this many bytes are available.
    pub min_bytes: u32,
    /// Most bytes in the answer (capped by the broker's limit).
    pub max_bytes: u32,
    /// What to read.
    pub partitions: Vec<FetchPartition>,
}

/// One partition to read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FetchPartition {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// First offset wanted.
    pub offset: u64,
    /// Most bytes from this partition (at least one whole batch is always returned).
    pub max_bytes: u32,
}

/// Answer to [`RequestBody::Fetch`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FetchResponse {
    /// In the order of the request.
    pub partitions: Vec<FetchPartitionResponse>,
}

/// Data of one partition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FetchPartitionResponse {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Outcome.
    pub error: ErrorCode,
    /// The partition's end offset (single node: every appended record is readable).
    pub high_watermark: u64,
    /// The partition's first offset.
    pub log_start_offset: u64,
    /// Whole batches, the last one possibly cut short by `max_bytes` (skip it and fetch again
    /// from its base offset). The first batch may start before the fetch offset.
    #[serde(with = "wire_bytes")]
    pub records: Vec<u8>,
}

/// Which offset [`RequestBody::ListOffsets`] asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OffsetSpec {
    /// The first offset held.
    Earliest,
    /// The end offset (the next to be written).
    Latest,
    /// The first record with a timestamp at or above this (ms); the end offset if none.
    Timestamp(i64),
}

/// Request for [`RequestBody::ListOffsets`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ListOffsetsRequest {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Which offset.
    pub spec: OffsetSpec,
}

/// Answer to [`RequestBody::ListOffsets`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ListOffsetsResponse {
    /// Outcome.
    pub error: ErrorCode,
    /// The offset.
    pub offset: u64,
}

/// Request for [`RequestBody::JoinGroup`] (Kafka's classic JoinGroup, in our encoding).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JoinGroupRequest {
    /// Group.
    pub group_id: String,
    /// Empty on the first join; the id the broker gave afterwards.
    pub member_id: String,
    /// For humans (`group describe`).
    pub client_id: String,
    /// The member is removed when no heartbeat arrives for this long, ms.
    pub session_timeout_ms: u32,
    /// How long the group waits for members to rejoin in a rebalance, ms.
    pub rebalance_timeout_ms: u32,
    /// Kind of group, `consumer` for consumers; all members must agree.
    pub protocol_type: String,
    /// Assignors the member supports, in preference order, each with its opaque metadata
    /// (for consumers: the subscription).
    pub protocols: Vec<GroupProtocol>,
}

/// An assignor and the member's metadata for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupProtocol {
    /// Assignor name (`range`, `roundrobin`).
    pub name: String,
    /// Opaque to the broker.
    #[serde(with = "wire_bytes")]
    pub metadata: Vec<u8>,
}

/// Answer to [`RequestBody::JoinGroup`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JoinGroupResponse {
    /// Outcome.
    pub error: ErrorCode,
    /// The new generation.
    pub generation_id: i32,
    /// The assignor chosen (one every member supports).
    pub protocol_name: String,
    /// The member that computes the assignment.
    pub leader: String,
    /// This member's id.
    pub member_id: String,
    /// For the leader only: every member with its metadata for the chosen assignor.
    pub members: Vec<JoinedMember>,
}

/// A member as the leader sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JoinedMember {
    /// Id.
    pub member_id: String,
    /// Metadata for the chosen assignor.
    #[serde(with = "wire_bytes")]
    pub metadata: Vec<u8>,
}

/// Request for [`RequestBody::SyncGroup`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyncGroupRequest {
    /// Group.
    pub group_id: String,
    /// The generation the assignment is for.
    pub generation_id: i32,
    /// This member.
    pub member_id: String,
    /// From the leader: every member's assignment; from the others: empty.
    pub assignments: Vec<MemberAssignment>,
}

/// One member's assignment, opaque to the broker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberAssignment {
    /// Member.
    pub member_id: String,
    /// Its assignment.
    #[serde(with = "wire_bytes")]
    pub assignment: Vec<u8>,
}

/// Answer to [`RequestBody::SyncGroup`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyncGroupResponse {
    /// Outcome.
    pub error: ErrorCode,
    /// This member's assignment.
    #[serde(with = "wire_bytes")]
    pub assignment: Vec<u8>,
}

/// Request for [`RequestBody::Heartbeat`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    /// Group.
    pub group_id: String,
    /// The member's generation.
    pub generation_id: i32,
    /// Member.
    pub member_id: String,
}

/// Request for [`RequestBody::LeaveGroup`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaveGroupRequest {
    /// Group.
    pub group_id: String,
    /// Member.
    pub member_id: String,
}

/// Request for [`RequestBody::OffsetCommit`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OffsetCommitRequest {
    /// Group.
    pub group_id: String,
    /// The member's generation; -1 (with an empty member id) for a consumer that manages its
    /// partitions itself, accepted only while the group has no members.
    pub generation_id: i32,
    /// Member.
    pub member_id: String,
    /// Positions: the next offset to consume, per partition.
    pub offsets: Vec<CommitOffset>,
}

/// One position to commit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommitOffset {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// The next offset to consume.
    pub offset: u64,
    /// Free text kept with it.
    pub metadata: String,
}

/// Answer to [`RequestBody::OffsetCommit`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OffsetCommitResponse {
    /// Whole-request outcome (a stale generation rejects every partition).
    pub error: ErrorCode,
}

/// A topic and partition.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TopicPartition {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
}

/// Request for [`RequestBody::OffsetFetch`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OffsetFetchRequest {
    /// Group.
    pub group_id: String,
    /// Partitions to read; `None` for every partition the group has committed.
    pub partitions: Option<Vec<TopicPartition>>,
}

/// Answer to [`RequestBody::OffsetFetch`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OffsetFetchResponse {
    /// Committed positions; `offset` is `None` where nothing was committed.
    pub offsets: Vec<CommittedOffset>,
}

/// A committed position.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommittedOffset {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// The next offset to consume, if committed.
    pub offset: Option<u64>,
    /// Its metadata.
    pub metadata: String,
}

/// A group in [`RequestBody::ListGroups`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupListing {
    /// Group.
    pub group_id: String,
    /// `Empty`, `PreparingRebalance`, `CompletingRebalance` or `Stable`.
    pub state: String,
    /// Members.
    pub members: u32,
}

/// Request for [`RequestBody::DescribeGroup`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DescribeGroupRequest {
    /// Group.
    pub group_id: String,
}

/// Answer to [`RequestBody::DescribeGroup`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupDescription {
    /// `GroupIdNotFound` for a group with neither members nor commits.
    pub error: ErrorCode,
    /// Group.
    pub group_id: String,
    /// State name.
    pub state: String,
    /// Generation.
    pub generation_id: i32,
    /// Chosen assignor.
    pub protocol: String,
    /// Members.
    pub members: Vec<MemberDescription>,
}

/// A member in [`GroupDescription`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberDescription {
    /// Id.
    pub member_id: String,
    /// Client id.
    pub client_id: String,
    /// Its assignment (opaque to the broker; consumers decode it).
    #[serde(with = "wire_bytes")]
    pub assignment: Vec<u8>,
}

/// Default `max_delivery_attempts`: deliveries of a record before it is dead-lettered.
pub const DEFAULT_MAX_DELIVERY_ATTEMPTS: u32 = 5;
/// Default `ack_timeout_ms`: a delivery neither acknowledged nor rejected this long fails.
pub const DEFAULT_ACK_TIMEOUT_MS: u32 = 30_000;
/// Default `backoff_initial_ms`: the wait before the first redelivery (before jitter).
pub const DEFAULT_BACKOFF_INITIAL_MS: u32 = 500;
/// Default `backoff_max_ms`: the longest wait between deliveries.
pub const DEFAULT_BACKOFF_MAX_MS: u32 = 60_000;

/// A group's retry policy for one partition, fixed by the first `ShareFetch` after the broker
/// starts (later requests' settings are ignored until then).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetrySettings {
    /// Deliveries before the record goes to the dead-letter topic, at least 1.
    pub max_delivery_attempts: u32,
    /// A delivery neither acknowledged nor rejected within this many ms has failed.
    pub ack_timeout_ms: u32,
    /// Wait before the first redelivery, ms; it doubles with each failure.
    pub backoff_initial_ms: u32,
    /// Longest wait, ms.
    pub backoff_max_ms: u32,
    /// Dead-letter topic; empty for the default `<topic>.<group>.dlq`.
    pub dead_letter_topic: String,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            max_delivery_attempts: DEFAULT_MAX_DELIVERY_ATTEMPTS,
            ack_timeout_ms: DEFAULT_ACK_TIMEOUT_MS,
            backoff_initial_ms: DEFAULT_BACKOFF_INITIAL_MS,
            backoff_max_ms: DEFAULT_BACKOFF_MAX_MS,
            dead_letter_topic: String::new(),
        }
    }
}

/// Request for [`RequestBody::ShareFetch`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShareFetchRequest {
    /// Group whose deliveries these are.
    pub group_id: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Most records in the answer.
    pub max_records: u32,
    /// The group's retry policy (see [`RetrySettings`]).
    pub settings: RetrySettings,
}

/// Answer to [`RequestBody::ShareFetch`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShareFetchResponse {
    /// Outcome.
    pub error: ErrorCode,
    /// Records due for delivery: redeliveries whose backoff ended, then new records.
    pub records: Vec<DeliveredRecord>,
}

/// One record handed out for processing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveredRecord {
    /// Offset.
    pub offset: u64,
    /// 1 for the first delivery.
    pub attempt: u32,
    /// ms since the epoch.
    pub timestamp: i64,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value.
    pub value: Option<Vec<u8>>,
    /// Headers.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Request for [`RequestBody::Acknowledge`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AcknowledgeRequest {
    /// Group.
    pub group_id: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Offsets processed successfully.
    pub acks: Vec<u64>,
    /// Offsets whose processing failed, with why.
    pub nacks: Vec<Nack>,
}

/// A rejected delivery.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Nack {
    /// Offset.
    pub offset: u64,
    /// Why, kept as the dead-letter record's `last error`.
    pub reason: String,
}

/// Answer to [`RequestBody::Acknowledge`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AcknowledgeResponse {
    /// Outcome.
    pub error: ErrorCode,
    /// Every offset below this is acknowledged or dead-lettered (and committed).
    pub committed: u64,
}

/// Serde for byte buffers as one length-prefixed run (postcard: varint length, then the bytes)
/// instead of a sequence of `u8` values decoded one by one.
pub mod wire_bytes {
    use serde::de::{Error, Visitor};
    use serde::{Deserializer, Serializer};

    /// Serializes `bytes` as a byte string.
    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    /// Deserializes a byte string.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        struct BytesVisitor;
        impl<'de> Visitor<'de> for BytesVisitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
                Ok(bytes.to_vec())
            }
            fn visit_byte_buf<E: Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(bytes)
            }
        }
        deserializer.deserialize_byte_buf(BytesVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_starts_with_correlation_id_version_and_api_key() {
        for key in ApiKey::ALL {
            let body = match key {
                ApiKey::ApiVersions => RequestBody::ApiVersions,
                ApiKey::Metadata => RequestBody::Metadata(MetadataRequest { topics: None }),
                ApiKey::CreateTopic => RequestBody::CreateTopic(CreateTopicRequest::default()),
                ApiKey::DeleteTopic => RequestBody::DeleteTopic(DeleteTopicRequest {
                    name: String::new(),
                }),
                ApiKey::InitProducerId => RequestBody::InitProducerId,
                ApiKey::Produce => RequestBody::Produce(ProduceRequest {
                    acks: Acks::All,
                    partitions: vec![],
                }),
                ApiKey::Fetch => RequestBody::Fetch(FetchRequest {
                    max_wait_ms: 0,
                    min_bytes: 0,
                    max_bytes: 0,
                    partitions: vec![],
                }),
                ApiKey::ListOffsets => RequestBody::ListOffsets(ListOffsetsRequest {
                    topic: String::new(),
                    partition: 0,
                    spec: OffsetSpec::Latest,
                }),
                ApiKey::JoinGroup => RequestBody::JoinGroup(JoinGroupRequest {
                    group_id: "g".into(),
                    member_id: String::new(),
                    client_id: String::new(),
                    session_timeout_ms: 1,
                    rebalance_timeout_ms: 1,
                    protocol_type: "consumer".into(),
                    protocols: vec![],
                }),
                ApiKey::SyncGroup => RequestBody::SyncGroup(SyncGroupRequest {
                    group_id: "g".into(),
                    generation_id: 1,
                    member_id: String::new(),
                    assignments: vec![],
                }),
                ApiKey::Heartbeat => RequestBody::Heartbeat(HeartbeatRequest {
                    group_id: "g".into(),
                    generation_id: 1,
                    member_id: String::new(),
                }),
                ApiKey::LeaveGroup => RequestBody::LeaveGroup(LeaveGroupRequest {
                    group_id: "g".into(),
                    member_id: String::new(),
                }),
                ApiKey::OffsetCommit => RequestBody::OffsetCommit(OffsetCommitRequest {
                    group_id: "g".into(),
                    generation_id: 1,
                    member_id: String::new(),
                    offsets: vec![],
                }),
                ApiKey::OffsetFetch => RequestBody::OffsetFetch(OffsetFetchRequest {
                    group_id: "g".into(),
                    partitions: None,
                }),
                ApiKey::ListGroups => RequestBody::ListGroups,
                ApiKey::DescribeGroup => RequestBody::DescribeGroup(DescribeGroupRequest {
                    group_id: "g".into(),
                }),
                ApiKey::ShareFetch => RequestBody::ShareFetch(ShareFetchRequest {
                    group_id: "g".into(),
                    topic: "t".into(),
                    partition: 0,
                    max_records: 1,
                    settings: RetrySettings::default(),
                }),
                ApiKey::Acknowledge => RequestBody::Acknowledge(AcknowledgeRequest {
                    group_id: "g".into(),
                    topic: "t".into(),
                    partition: 0,
                    acks: vec![],
                    nacks: vec![],
                }),
            };
            assert_eq!(body.api_key(), key);
            let request = Request {
                correlation_id: 5,
                api_version: 1,
                body,
            };
            let bytes = postcard::to_stdvec(&request).unwrap();
            assert_eq!(&bytes[..3], &[5, 1, key as u8], "{key:?}");
            assert_eq!(postcard::from_bytes::<Request>(&bytes).unwrap(), request);
        }
    }

    #[test]
    fn record_bytes_travel_as_one_run() {
        let partition = ProducePartition {
            topic: "t".into(),
            partition: 0,
            records: vec![7; 300],
        };
        let bytes = postcard::to_stdvec(&partition).unwrap();
        // topic (2) + partition (1) + varint 300 (2) + the bytes.
        assert_eq!(bytes.len(), 2 + 1 + 2 + 300);
        assert_eq!(
            postcard::from_bytes::<ProducePartition>(&bytes).unwrap(),
            partition
        );
    }

    #[test]
    fn error_codes_survive_the_wire_and_unknown_ones_read_as_unknown() {
        for code in 0..24u16 {
            assert_eq!(u16::from(ErrorCode::from(code)), code);
        }
        let bytes = postcard::to_stdvec(&999u16).unwrap();
        assert_eq!(
            postcard::from_bytes::<ErrorCode>(&bytes).unwrap(),
            ErrorCode::Unknown
        );
    }
}
