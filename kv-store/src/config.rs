//! The server's configuration: flags, the TOML file and their defaults, checked once at start-up.
//!
//! Defaults are Redis's where Redis has one. Every limit here is named in Redis's terms where
//! Redis has the same limit (`proto_max_bulk_len`, `client_query_buffer_limit`, `maxclients`).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use service_kit::config::{ConfigError, Secret, ServerConfig, Validate};

use crate::resp::request::{self, Limits};

/// Default `maxclients`: 10,000, as Redis.
pub const DEFAULT_MAXCLIENTS: usize = 10_000;
/// Largest accepted `maxclients`: each client holds a socket and two buffers.
pub const MAX_MAXCLIENTS: usize = 1_000_000;
/// Default `maxmemory_samples`: keys sampled per eviction, as Redis.
pub const DEFAULT_MAXMEMORY_SAMPLES: usize = 5;
/// Default `hz`: active expiry cycles per second, as Redis.
pub const DEFAULT_HZ: u32 = 10;
/// Largest accepted `hz`, as Redis.
pub const MAX_HZ: u32 = 500;
/// Most worker threads.
pub const MAX_WORKERS: usize = 256;

/// `--fsync`: Redis's `appendfsync`, mapped onto the log's [`wal::SyncPolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    /// Acknowledge a write only after the fsync that covers it.
    Always,
    /// fsync about once a second; an OS crash loses at most about a second of writes.
    #[default]
    Everysec,
    /// Leave flushing to the operating system.
    No,
}

impl Fsync {
    pub fn name(self) -> &'static str {
        match self {
            Fsync::Always => "always",
            Fsync::Everysec => "everysec",
            Fsync::No => "no",
        }
    }
}

/// `--maxmemory-policy`: what to do when a write would exceed `maxmemory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum MaxmemoryPolicy {
    /// Refuse writes that may grow memory, with `-OOM`.
    #[default]
    Noeviction,
    /// Evict the least recently used of a sample of all keys.
    AllkeysLru,
    /// Evict the least recently used of a sample of keys with a TTL.
    VolatileLru,
    /// Evict the least frequently used of a sample of all keys.
    AllkeysLfu,
    /// Evict the key with the nearest expiry of a sample of keys with a TTL.
    VolatileTtl,
}

impl MaxmemoryPolicy {
    pub const ALL: [MaxmemoryPolicy; 5] = [
        MaxmemoryPolicy::Noeviction,
        MaxmemoryPolicy::AllkeysLru,
        MaxmemoryPolicy::VolatileLru,
        MaxmemoryPolicy::AllkeysLfu,
        MaxmemoryPolicy::VolatileTtl,
    ];

    pub fn name(self) -> &'static str {
        match self {
            MaxmemoryPolicy::Noeviction => "noeviction",
            MaxmemoryPolicy::AllkeysLru => "allkeys-lru",
            MaxmemoryPolicy::VolatileLru => "volatile-lru",
            MaxmemoryPolicy::AllkeysLfu => "allkeys-lfu",
            MaxmemoryPolicy::VolatileTtl => "volatile-ttl",
        }
    }

    pub fn from_name(name: &str) -> Option<MaxmemoryPolicy> {
        Self::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
    }
}

/// Everything the server can be told, from flags, the file or defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    /// Directory of the write-ahead log and the state machine; created if missing.
    /// Default `kv-store-data`.
    pub data_dir: PathBuf,
    /// When writes are acknowledged relative to their fsync. Default `everysec`, as Redis.
    pub fsync: Fsync,
    /// Password clients must give with `AUTH` or `HELLO ... AUTH`. Default: none.
    pub requirepass: Option<Secret>,
    /// Bytes of memory for data before the `maxmemory_policy` applies; 0 for no limit
    /// (the default, as Redis on 64-bit systems).
    pub maxmemory: u64,
    /// Default `noeviction`, as Redis.
    pub maxmemory_policy: MaxmemoryPolicy,
    /// Keys sampled to choose each eviction, 1 to 64. Default [`DEFAULT_MAXMEMORY_SAMPLES`].
    pub maxmemory_samples: usize,
    /// Most connected clients; one more gets `-ERR max number of clients reached` and is
    /// closed. Default [`DEFAULT_MAXCLIENTS`].
    pub maxclients: usize,
    /// Largest bulk string in a request, bytes. Default 512 MiB, as Redis.
    pub proto_max_bulk_len: usize,
    /// Most arguments in one command. Default 1,048,576.
    pub max_array_len: usize,
    /// Longest inline command, bytes. Default 64 KiB, as Redis.
    pub max_inline_len: usize,
    /// Most unparsed request bytes buffered per connection. Default 1 GiB, as Redis.
    pub client_query_buffer_limit: usize,
    /// Active expiry cycles per second, 1 to [`MAX_HZ`]. Default [`DEFAULT_HZ`].
    pub hz: u32,
    /// Runtime worker threads, 0 to [`MAX_WORKERS`]. Default 1: one thread serves every
    /// connection, as Redis's does, on a single-threaded runtime; the keyspace lock is then
    /// never contended. 0 means one per CPU.
    pub workers: usize,
    /// Size at which the log starts a new segment, bytes. Default 64 MiB.
    pub wal_segment_bytes: u64,
    /// Longest time between checkpoints of the state machine while anything changed (after a
    /// checkpoint the log segments it covers are deleted), 10 to 3,600,000 ms. Default 60,000.
    pub checkpoint_interval_ms: u64,
    /// Log bytes written that trigger a checkpoint before the interval is up, at least 4096.
    /// Default 64 MiB.
    pub checkpoint_log_bytes: u64,
    /// Changes (keys changed or removed) that trigger a checkpoint, at least 1. Default 100,000.
    pub checkpoint_dirty_keys: usize,
}

impl Default for Config {
    fn default() -> Self {
        let listen = SocketAddr::from(([127, 0, 0, 1], 6379));
        let admin = SocketAddr::from(([127, 0, 0, 1], 9379));
        Config {
            server: ServerConfig::new(listen, admin),
            data_dir: PathBuf::from("kv-store-data"),
            fsync: Fsync::default(),
            requirepass: None,
            maxmemory: 0,
            maxmemory_policy: MaxmemoryPolicy::default(),
            maxmemory_samples: DEFAULT_MAXMEMORY_SAMPLES,
            maxclients: DEFAULT_MAXCLIENTS,
            proto_max_bulk_len: request::DEFAULT_MAX_BULK_BYTES,
            max_array_len: request::DEFAULT_MAX_ARRAY_LEN,
            max_inline_len: request::DEFAULT_MAX_INLINE_BYTES,
            client_query_buffer_limit: request::DEFAULT_QUERY_BUFFER_BYTES,
            hz: DEFAULT_HZ,
            workers: 1,
            wal_segment_bytes: wal::options::DEFAULT_SEGMENT_BYTES,
            checkpoint_interval_ms: crate::store::DEFAULT_CHECKPOINT_INTERVAL_MS,
            checkpoint_log_bytes: crate::store::DEFAULT_CHECKPOINT_LOG_BYTES,
            checkpoint_dirty_keys: crate::store::DEFAULT_CHECKPOINT_DIRTY_KEYS,
        }
    }
}

impl Config {
    /// The request parser's limits.
    pub fn limits(&self) -> Limits {
        Limits {
            max_bulk_bytes: self.proto_max_bulk_len,
            max_array_len: self.max_array_len,
            max_inline_bytes: self.max_inline_len,
            query_buffer_bytes: self.client_query_buffer_limit,
        }
    }
}

fn check(ok: bool, field: &str, reason: impl Into<String>) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::invalid(field, reason))
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        check(
            (1..=MAX_MAXCLIENTS).contains(&self.maxclients),
            "maxclients",
            format!("must be between 1 and {MAX_MAXCLIENTS}"),
        )?;
        check(
            (1..=64).contains(&self.maxmemory_samples),
            "maxmemory_samples",
            "must be between 1 and 64",
        )?;
        check(
            self.proto_max_bulk_len >= 1024,
            "proto_max_bulk_len",
            "must be at least 1024",
        )?;
        check(
            self.max_array_len >= 16,
            "max_array_len",
            "must be at least 16",
        )?;
        check(
            self.max_inline_len >= 1024,
            "max_inline_len",
            "must be at least 1024",
        )?;
        check(
            self.client_query_buffer_limit >= 1024 * 1024,
            "client_query_buffer_limit",
            "must be at least 1048576 (1 MiB)",
        )?;
        check(
            (1..=MAX_HZ).contains(&self.hz),
            "hz",
            format!("must be between 1 and {MAX_HZ}"),
        )?;
        check(
            self.workers <= MAX_WORKERS,
            "workers",
            format!("must be at most {MAX_WORKERS} (0: one per CPU)"),
        )?;
        check(
            (wal::MIN_SEGMENT_BYTES..=wal::MAX_SEGMENT_BYTES).contains(&self.wal_segment_bytes),
            "wal_segment_bytes",
            format!(
                "must be between {} and {}",
                wal::MIN_SEGMENT_BYTES,
                wal::MAX_SEGMENT_BYTES
            ),
        )?;
        check(
            (10..=3_600_000).contains(&self.checkpoint_interval_ms),
            "checkpoint_interval_ms",
            "must be between 10 and 3600000",
        )?;
        check(
            self.checkpoint_log_bytes >= 4096,
            "checkpoint_log_bytes",
            "must be at least 4096",
        )?;
        if let Some(password) = &self.requirepass {
            check(
                !password.expose().is_empty(),
                "requirepass",
                "must not be empty",
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        assert!(Config::default().validate().is_ok());
        let config = Config {
            maxclients: 0,
            ..Config::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("`maxclients`"), "{err}");
        let config = Config {
            hz: 0,
            ..Config::default()
        };
        assert!(config.validate().unwrap_err().to_string().contains("`hz`"));
    }

    #[test]
    fn policy_names_round_trip() {
        for policy in MaxmemoryPolicy::ALL {
            assert_eq!(MaxmemoryPolicy::from_name(policy.name()), Some(policy));
        }
        assert_eq!(MaxmemoryPolicy::from_name("allkeys-random"), None);
    }
}
