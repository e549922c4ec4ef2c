//! The broker's configuration: the shared server section, the data directory, the flush policy,
//! topic defaults and every limit, each with its unit and default.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use service_kit::config::{ConfigError, ServerConfig, Validate};

use crate::log::LogConfig;

/// Default `--listen`: Kafka's TLS port, so that a Kafka on 9092 can run beside it.
pub const DEFAULT_LISTEN: ([u8; 4], u16) = ([127, 0, 0, 1], 9093);
/// Default `--admin-listen`.
pub const DEFAULT_ADMIN_LISTEN: ([u8; 4], u16) = ([127, 0, 0, 1], 9193);

/// When appended data is fsynced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FlushPolicy {
    /// A produce with `acks = all` is answered only after an fsync that covers it. Concurrent
    /// producers share fsyncs (group commit). Nothing acknowledged with `acks = all` is lost
    /// in a crash, power loss included.
    Always,
    /// Every `flush_interval_ms` the broker fsyncs each partition with new data; `acks = all`
    /// is answered after the append. A power loss may take up to an interval of acknowledged
    /// data; a process crash loses nothing (the page cache survives it).
    #[default]
    Interval,
    /// Never fsync except when a segment is closed and at shutdown: the kernel writes back
    /// when it likes (about 30 s on Linux). Kafka's default: durability is meant to come from
    /// replication, not from the disk of one machine.
    Os,
}

/// Limits on everything that grows, with documented defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Open client connections; the broker stops accepting at this count. Default 1024.
    pub max_connections: usize,
    /// Requests read from one connection whose responses are not yet written; at this count
    /// the broker stops reading the socket (back-pressure onto the client). Default 64.
    pub max_in_flight_requests: usize,
    /// Largest request frame payload, bytes. Default 8 MiB (the frame codec's default).
    pub max_request_bytes: u32,
    /// Largest fetch answer, bytes; a request's `max_bytes` is capped to it. Default 4 MiB.
    pub max_fetch_bytes: u32,
    /// Longest long-poll wait of a fetch, ms. Default 30 000.
    pub max_fetch_wait_ms: u32,
    /// Topics on the broker. Default 1000.
    pub max_topics: usize,
    /// Partitions of one topic. Default 1024.
    pub max_partitions_per_topic: u32,
    /// Partitions on the broker, all topics together. Default 10 000.
    pub max_partitions: usize,
    /// Idempotent producers remembered per partition; the least recently seen is forgotten
    /// beyond it. Default 10 000.
    pub max_producers_per_partition: usize,
    /// Shortest session timeout a group member may ask for, ms. Default 100 (tests use short
    /// ones; Kafka's default floor is 6000).
    pub min_session_timeout_ms: u32,
    /// Longest session timeout, ms. Default 300 000.
    pub max_session_timeout_ms: u32,
    /// Consumer groups with members. Default 10 000.
    pub max_groups: usize,
    /// Members of one group. Default 1000.
    pub max_members_per_group: usize,
    /// Records of one partition handed out by `ShareFetch` and not yet acknowledged or
    /// dead-lettered, per group; when full, no new records are handed out (only retries).
    /// Default 1000.
    pub max_pending_deliveries_per_partition: usize,
    /// (group, partition) pairs with per-record delivery state (`ShareFetch`); a fetch that
    /// would start one more is refused with `LimitExceeded`. Default 100 000.
    pub max_delivery_trackers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_in_flight_requests: 64,
            max_request_bytes: service_kit::frame::DEFAULT_MAX_FRAME_BYTES,
            max_fetch_bytes: 4 << 20,
            max_fetch_wait_ms: 30_000,
            max_topics: 1000,
            max_partitions_per_topic: 1024,
            max_partitions: 10_000,
            max_producers_per_partition: 10_000,
            min_session_timeout_ms: 100,
            max_session_timeout_ms: 300_000,
            max_groups: 10_000,
            max_members_per_group: 1000,
            max_pending_deliveries_per_partition: 1000,
            max_delivery_trackers: 100_000,
        }
    }
}

/// Bytes a response frame may hold beyond `max_fetch_bytes`: per-partition fields.
pub const RESPONSE_OVERHEAD_BYTES: u32 = 1 << 20;

/// The whole configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listen addresses, logging, shutdown timeout.
    pub server: ServerConfig,
    /// Where topics live (`DATA/topics/<topic>/<partition>/`). Default `./broker-data`.
    pub data_dir: PathBuf,
    /// When data is fsynced. Default `interval`.
    pub flush: FlushPolicy,
    /// Period of the `interval` flush policy, ms. Default 1000.
    pub flush_interval_ms: u64,
    /// How often retention (or, for compacted topics, compaction) runs, ms. Default 30 000.
    pub retention_check_interval_ms: u64,
    /// Storage settings a new topic gets unless its creation overrides them.
    pub topic_defaults: LogConfig,
    /// Limits.
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig::new(
                SocketAddr::from(DEFAULT_LISTEN),
                SocketAddr::from(DEFAULT_ADMIN_LISTEN),
            ),
            data_dir: PathBuf::from("broker-data"),
            flush: FlushPolicy::default(),
            flush_interval_ms: 1000,
            retention_check_interval_ms: 30_000,
            topic_defaults: LogConfig::default(),
            limits: Limits::default(),
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        let at_least_one = |field: &str, value: u64| {
            if value == 0 {
                Err(ConfigError::invalid(field, "must be at least 1"))
            } else {
                Ok(())
            }
        };
        at_least_one("flush_interval_ms", self.flush_interval_ms)?;
        at_least_one(
            "retention_check_interval_ms",
            self.retention_check_interval_ms,
        )?;
        let limits = &self.limits;
        at_least_one("limits.max_connections", limits.max_connections as u64)?;
        at_least_one(
            "limits.max_in_flight_requests",
            limits.max_in_flight_requests as u64,
        )?;
        at_least_one("limits.max_topics", limits.max_topics as u64)?;
        at_least_one(
            "limits.max_partitions_per_topic",
            limits.max_partitions_per_topic.into(),
        )?;
        at_least_one("limits.max_partitions", limits.max_partitions as u64)?;
        at_least_one(
            "limits.max_producers_per_partition",
            limits.max_producers_per_partition as u64,
        )?;
        at_least_one("limits.max_fetch_bytes", limits.max_fetch_bytes.into())?;
        at_least_one("limits.max_groups", limits.max_groups as u64)?;
        at_least_one(
            "limits.max_pending_deliveries_per_partition",
            limits.max_pending_deliveries_per_partition as u64,
        )?;
        at_least_one(
            "limits.max_members_per_group",
            limits.max_members_per_group as u64,
        )?;
        at_least_one(
            "limits.max_delivery_trackers",
            limits.max_delivery_trackers as u64,
        )?;
        if limits.min_session_timeout_ms == 0
            || limits.min_session_timeout_ms > limits.max_session_timeout_ms
        {
            return Err(ConfigError::invalid(
                "limits.min_session_timeout_ms",
                "must be at least 1 and at most limits.max_session_timeout_ms",
            ));
        }
        if limits.max_request_bytes < self.topic_defaults.max_batch_bytes + 4096 {
            return Err(ConfigError::invalid(
                "limits.max_request_bytes",
                "must exceed topic_defaults.max_batch_bytes by at least 4096",
            ));
        }
        self.topic_defaults
            .validate()
            .map_err(|err| ConfigError::invalid("topic_defaults", err.to_string()))
    }
}
