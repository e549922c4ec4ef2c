//! kv-store: a Redis-compatible key-value node.
//!
//! See `ARCHITECTURE.md` in this crate for the map: how a command travels from the socket
//! through the keyspace and the write-ahead log to the reply.

pub mod resp;
