//! kv-store: a Redis-compatible key-value node.
//!
//! See `ARCHITECTURE.md` in this crate for the map: how a command travels from the socket
//! through the keyspace and the write-ahead log to the reply.

pub mod client;
pub mod clock;
pub mod command;
pub mod config;
pub mod db;
pub mod eviction;
pub mod expiry;
pub mod glob;
pub mod memory;
pub mod metrics;
pub mod node;
pub mod resp;
pub mod server;
pub mod store;
