//! A Kafka-like partitioned log broker, single node (replication and a Kafka wire-protocol front
//! end come later; the storage and the protocol leave room for both).
//!
//! Where each idea lives, following the path of a record:
//!
//! | module           | what it holds                                                         |
//! |------------------|-----------------------------------------------------------------------|
//! | [`record_batch`] | the RecordBatch v2 byte layout, its CRC-32C, encoding and checking     |
//! | [`log`]          | a partition's log: segments, sparse indexes, roll, retention, recovery |
//! | [`protocol`]     | the binary protocol: requests, responses, API keys and versions, error codes |
//! | [`server`]       | the broker: connections, produce, fetch with long polling, topics, group commit, idempotent producers |
//! | [`client`]       | the async client: a pipelined connection and one typed call per API    |
//!
//! The crate's map, invariants and on-disk layout are in `message-broker/ARCHITECTURE.md`; a
//! quick start and the concept index in `message-broker/README.md`.

pub mod client;
pub mod log;
pub mod protocol;
pub mod record_batch;
pub mod server;
