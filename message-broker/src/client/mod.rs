//! The async client library: typed calls over one pipelined [`Connection`].
//!
//! | type           | what it does                                                        |
//! |----------------|---------------------------------------------------------------------|
//! | [`Connection`] | correlation ids, pipelining, a bound on requests in flight          |
//! | [`Client`]     | one method per API, answers checked and unwrapped                   |
//!
//! Every call returns [`ClientError`]: transport failures, whole-request broker errors, and
//! per-partition error codes left in the typed answers for the caller to inspect.

mod connection;

use std::net::SocketAddr;

pub use connection::{ClientError, Connection, MAX_IN_FLIGHT_REQUESTS};

use crate::protocol::{
    Acks, CreateTopicRequest, DeleteTopicRequest, ErrorCode, FetchRequest, FetchResponse,
    InitProducerIdResponse, ListOffsetsRequest, MetadataRequest, MetadataResponse, OffsetSpec,
    ProducePartition, ProduceRequest, ProduceResponse, RequestBody, ResponseBody,
};

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

    /// Reads batches.
    pub async fn fetch(&self, request: FetchRequest) -> Result<FetchResponse, ClientError> {
        let body = self.connection.call(RequestBody::Fetch(request)).await?;
        expect_body!(body, Fetch)
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
