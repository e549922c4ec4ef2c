//! The async client library: typed calls over one pipelined [`Connection`].
//!
//! | type           | what it does                                                        |
//! |----------------|---------------------------------------------------------------------|
//! | [`Connection`] | correlation ids, pipelining, a bound on requests in flight          |
//! | [`Client`]     | one method per API, answers checked and unwrapped                   |
//! | [`Producer`]   | batching by size and linger, Kafka's partitioner, idempotent stamps |
//! | [`Consumer`]   | a fixed set of partitions from positions it manages                 |
//! | [`GroupConsumer`] | a consumer-group member: join, sync, heartbeat, commit           |
//! | [`assignor`]   | range and round-robin, run by the group's leader member             |
//! | [`ShareConsumer`] | record-by-record delivery with ack / nack (retries, dead letters) |
//! | [`redrive`]    | dead-lettered records back to a topic at a bounded rate             |
//!
//! Every call returns [`ClientError`]: transport failures, whole-request broker errors, and
//! per-partition error codes left in the typed answers for the caller to inspect.

pub mod assignor;
mod connection;
mod consumer;
mod group;
pub mod partitioner;
mod producer;
pub mod redrive;
mod share;

use std::net::SocketAddr;

pub use connection::{AnswerFuture, ClientError, Connection, MAX_IN_FLIGHT_REQUESTS};
pub use consumer::{ConsumedRecord, Consumer, ConsumerConfig, StartFrom};
pub use group::{DEFAULT_SESSION_TIMEOUT_MS, GroupConfig, GroupConsumer};
pub use producer::{
    DEFAULT_BATCH_BYTES, DEFAULT_LINGER_MS, DEFAULT_MAX_IN_FLIGHT, Producer, ProducerConfig,
    ProducerStats,
};
pub use share::{DEFAULT_SHARE_MAX_RECORDS, EMPTY_POLL_PAUSE, ShareConsumer};

use crate::protocol::{
    Acks, CreateTopicRequest, DeleteTopicRequest, ErrorCode, FetchRequest, FetchResponse,
    InitProducerIdResponse, ListOffsetsRequest, MetadataRequest, MetadataResponse, OffsetSpec,
    ProducePartition, ProduceRequest, ProduceResponse, RequestBody, ResponseBody,
};

/// The answer to a produce request already written.
pub type ProduceAnswer = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Option<ProduceResponse>, ClientError>> + Send>,
>;

/// The partition count of `topic`, or `UnknownTopicOrPartition`.
pub async fn partition_count(client: &Client, topic: &str) -> Result<u32, ClientError> {
    let metadata = client.metadata(Some(vec![topic.to_owned()])).await?;
    let Some(found) = metadata.topics.into_iter().next() else {
        return Err(ClientError::UnexpectedResponse { api: "Metadata" });
    };
    if !found.error.is_ok() {
        return Err(ClientError::Broker {
            code: found.error,
            message: format!("topic {topic}"),
        });
    }
    Ok(found.partitions.len() as u32)
}

/// A broker client: typed calls over one connection.
pub struct Client {
    connection: Connection,
}

macro_rules! expect_body {
    ($body:expr, $variant:ident) => {
        match $body {
            ResponseBody::$variant(inner) => Ok(inner),
            _ => Err(ClientError::UnexpectedResponse {
                api: stringify!($variant),
            }),
        }
    };
}

impl Client {
    /// Connects to the broker at `addr`.
    pub async fn connect(addr: SocketAddr) -> Result<Client, ClientError> {
        Ok(Client {
            connection: Connection::connect(addr).await?,
        })
    }

    /// The connection, for raw requests.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Whether the connection has failed; reconnect to go on.
    pub fn is_broken(&self) -> bool {
        self.connection.is_broken()
    }

    /// Creates a topic; the code says whether it was created.
    pub async fn create_topic(
        &self,
        request: CreateTopicRequest,
    ) -> Result<ErrorCode, ClientError> {
        let body = self
            .connection
            .call(RequestBody::CreateTopic(request))
            .await?;
        expect_body!(body, CreateTopic)
    }

    /// Deletes a topic.
    pub async fn delete_topic(&self, name: &str) -> Result<ErrorCode, ClientError> {
        let request = DeleteTopicRequest {
            name: name.to_owned(),
        };
        let body = self
            .connection
            .call(RequestBody::DeleteTopic(request))
            .await?;
        expect_body!(body, DeleteTopic)
    }

    /// Describes the named topics, or every topic.
    pub async fn metadata(
        &self,
        topics: Option<Vec<String>>,
    ) -> Result<MetadataResponse, ClientError> {
        let body = self
            .connection
            .call(RequestBody::Metadata(MetadataRequest { topics }))
            .await?;
        expect_body!(body, Metadata)
    }

    /// A fresh idempotent producer id.
    pub async fn init_producer_id(&self) -> Result<InitProducerIdResponse, ClientError> {
        let body = self.connection.call(RequestBody::InitProducerId).await?;
        expect_body!(body, InitProducerId)
    }

    /// Sends batches; with `acks = none` returns `Ok(None)` without waiting for anything.
    pub async fn produce(
        &self,
        acks: Acks,
        partitions: Vec<ProducePartition>,
    ) -> Result<Option<ProduceResponse>, ClientError> {
        let body = RequestBody::Produce(ProduceRequest { acks, partitions });
        if acks == Acks::None {
            self.connection.send_only(body).await?;
            return Ok(None);
        }
        let body = self.connection.call(body).await?;
        expect_body!(body, Produce).map(Some)
    }

    /// Writes a produce request now; the returned future waits for its answer (`None` with
    /// `acks = none`).
    pub async fn produce_pipelined(
        &self,
        acks: Acks,
        partitions: Vec<ProducePartition>,
    ) -> Result<ProduceAnswer, ClientError> {
        let body = RequestBody::Produce(ProduceRequest { acks, partitions });
        if acks == Acks::None {
            self.connection.send_only(body).await?;
            return Ok(Box::pin(async { Ok(None) }));
        }
        let answer = self.connection.call_pipelined(body).await?;
        Ok(Box::pin(async move {
            let body = answer.await?;
            expect_body!(body, Produce).map(Some)
        }))
    }

    /// Reads batches.
    pub async fn fetch(&self, request: FetchRequest) -> Result<FetchResponse, ClientError> {
        let body = self.connection.call(RequestBody::Fetch(request)).await?;
        expect_body!(body, Fetch)
    }

    /// Every consumer group.
    pub async fn list_groups(&self) -> Result<Vec<crate::protocol::GroupListing>, ClientError> {
        let body = self.connection.call(RequestBody::ListGroups).await?;
        expect_body!(body, ListGroups)
    }

    /// A group's members and assignments.
    pub async fn describe_group(
        &self,
        group_id: &str,
    ) -> Result<crate::protocol::GroupDescription, ClientError> {
        let request = crate::protocol::DescribeGroupRequest {
            group_id: group_id.to_owned(),
        };
        let body = self
            .connection
            .call(RequestBody::DescribeGroup(request))
            .await?;
        expect_body!(body, DescribeGroup)
    }

    /// Every committed offset of a group.
    pub async fn committed_offsets(
        &self,
        group_id: &str,
    ) -> Result<Vec<crate::protocol::CommittedOffset>, ClientError> {
        let request = crate::protocol::OffsetFetchRequest {
            group_id: group_id.to_owned(),
            partitions: None,
        };
        let body = self
            .connection
            .call(RequestBody::OffsetFetch(request))
            .await?;
        expect_body!(body, OffsetFetch).map(|answer| answer.offsets)
    }

    /// The offset `spec` names in a partition.
    pub async fn list_offset(
        &self,
        topic: &str,
        partition: u32,
        spec: OffsetSpec,
    ) -> Result<u64, ClientError> {
        let request = ListOffsetsRequest {
            topic: topic.to_owned(),
            partition,
            spec,
        };
        let body = self
            .connection
            .call(RequestBody::ListOffsets(request))
            .await?;
        let answer = expect_body!(body, ListOffsets)?;
        if !answer.error.is_ok() {
            return Err(ClientError::Broker {
                code: answer.error,
                message: format!("list offsets of {topic}/{partition}"),
            });
        }
        Ok(answer.offset)
    }
}
