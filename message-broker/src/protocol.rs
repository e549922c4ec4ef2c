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
}

impl ApiKey {
    /// Every API, in key order.
    pub const ALL: [ApiKey; 8] = [
        ApiKey::ApiVersions,
        ApiKey::Metadata,
        ApiKey::CreateTopic,
        ApiKey::DeleteTopic,
        ApiKey::InitProducerId,
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::ListOffsets,
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
}

impl From<u16> for ErrorCode {
    fn from(code: u16) -> Self {
        use ErrorCode::*;
        const CODES: [ErrorCode; 18] = [
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

/// What happens to old data of a topic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CleanupPolicy {
    /// Whole segments are deleted by retention time and size.
    #[default]
    Delete,
    /// Only the newest record per key is kept (tombstones expire).
    Compact,
}

/// A topic's settings, stored with it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    /// Partition count.
    pub partitions: u32,
    /// Delete or compact.
    pub cleanup: CleanupPolicy,
    /// Storage settings of every partition.
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
        for code in 0..18u16 {
            assert_eq!(u16::from(ErrorCode::from(code)), code);
        }
        let bytes = postcard::to_stdvec(&999u16).unwrap();
        assert_eq!(
            postcard::from_bytes::<ErrorCode>(&bytes).unwrap(),
            ErrorCode::Unknown
        );
    }
}
