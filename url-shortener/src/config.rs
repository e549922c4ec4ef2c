//! The url-shortener's configuration: defaults, then the TOML file, then flags.
//!
//! ```toml
//! data_dir = "/var/lib/url-shortener"
//! store = "kv://127.0.0.1:6379"            # or "embedded" (sled in data_dir, the default)
//! broker = "127.0.0.1:9093"                # clicks through the message broker's topic `clicks`
//! public_url = "https://sho.rt"            # prefix of every short_url the API returns
//! url_blocklist = ["evil.example"]         # hosts (and their subdomains) links may not target
//! # SHA-256 of each API key, lower-case hex (`printf %s "$KEY" | sha256sum`). When any is set,
//! # POST, PATCH and DELETE need `Authorization: Bearer KEY` or `X-Api-Key: KEY`.
//! api_key_sha256 = ["5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"]
//!
//! [server]
//! listen = "127.0.0.1:8088"
//! ```

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use service_kit::config::{ConfigError, Secret, ServerConfig, Validate};

use crate::cache::{self, CacheLimits};
use crate::clicks::broker::BrokerSettings;
use crate::clicks::{self, ClickLimits};
use crate::id::lease::{DEFAULT_BLOCK_SIZE, MAX_BLOCK_SIZE};
use crate::store::DEFAULT_CACHE_BYTES;

/// Largest accepted `max_body_bytes`: a link request is a few hundred bytes.
pub const MAX_BODY_BYTES_CEILING: u64 = 1024 * 1024;

/// Most entries in `url_blocklist` (checked on every create, linearly).
pub const MAX_BLOCKLIST_ENTRIES: usize = 10_000;

/// Largest `click_queue_capacity`.
pub const MAX_CLICK_QUEUE_CAPACITY: usize = 1 << 24;

/// Largest `click_max_pending_codes`.
pub const MAX_PENDING_CODES_CEILING: usize = 10_000_000;

/// Most worker threads.
pub const MAX_WORKERS: usize = 256;

/// Most API keys.
pub const MAX_API_KEYS: usize = 1000;

/// Most partitions of the click topic.
pub const MAX_CLICK_PARTITIONS: u32 = 1024;

/// Largest `store_timeout_ms`: a minute. A store slower than that is down.
pub const MAX_STORE_TIMEOUT_MS: u64 = 60_000;

/// Which store `store` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// sled in `data_dir`.
    Embedded,
    /// The kv-store at this address.
    Kv(SocketAddr),
}

/// Every setting. Field docs give units and defaults.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    /// Worker threads of the runtime, 1 to [`MAX_WORKERS`]; 1 runs a single-threaded runtime
    /// (nginx's `worker_processes 1`). Default: the number of CPUs.
    pub workers: usize,
    /// Directory of the embedded store. Default `url-shortener-data`.
    pub data_dir: PathBuf,
    /// Where links live: `embedded` (sled in `data_dir`, one instance) or `kv://HOST:PORT`, the
    /// workspace's kv-store, shared by every instance pointed at it. Default `embedded`.
    pub store: String,
    /// The kv-store's password (its `requirepass`). Default none.
    pub store_password: Option<Secret>,
    /// Longest one kv-store call may take, in milliseconds, 1 to [`MAX_STORE_TIMEOUT_MS`];
    /// a slower store counts as down and the request is answered 503. Default 1000.
    pub store_timeout_ms: u64,
    /// Scheme, host and optional path prefix that short URLs are written with, without a
    /// trailing `/`. Default: `http://` and the listen address.
    pub public_url: Option<String>,
    /// Page cache of the embedded store, in bytes. Default [`DEFAULT_CACHE_BYTES`].
    pub store_cache_bytes: u64,
    /// Ids leased from the store's counter at a time, 1 to [`MAX_BLOCK_SIZE`]. Default
    /// [`DEFAULT_BLOCK_SIZE`].
    pub id_block_size: u64,
    /// Largest JSON request body, in bytes, at most [`MAX_BODY_BYTES_CEILING`]. Default 16 KiB.
    pub max_body_bytes: u64,
    /// How long browsers may cache a 301 redirect, in seconds (never beyond the link's
    /// expiry). Default 3600.
    pub permanent_redirect_max_age_seconds: u64,
    /// How long an expired link is kept (answering 410) before the sweep deletes it, in
    /// seconds. Default 7 days.
    pub expired_retention_seconds: u64,
    /// Milliseconds between expiry sweeps, at least 100. Default 60 000.
    pub sweep_interval_ms: u64,
    /// Host names links may not point to; each blocks its subdomains too. At most
    /// [`MAX_BLOCKLIST_ENTRIES`]. Default empty.
    pub url_blocklist: Vec<String>,
    /// SHA-256 digests (64 hex digits) of the API keys that may write; empty: writes are open.
    /// At most [`MAX_API_KEYS`]. Default empty.
    pub api_key_sha256: Vec<String>,
    /// Byte bound of the in-process link cache (code, URL and a fixed overhead per entry); 0
    /// turns the cache off. Default 64 MiB.
    pub cache_max_bytes: u64,
    /// How long a found link stays cached, in milliseconds; also the longest another instance
    /// on a shared store serves a link after it changed. Default 60 000.
    pub cache_ttl_ms: u64,
    /// How long an unknown code stays cached as unknown, in milliseconds, at most
    /// `cache_ttl_ms`. Default 5000.
    pub cache_negative_ttl_ms: u64,
    /// Clicks waiting for the aggregator, 1 to [`MAX_CLICK_QUEUE_CAPACITY`]; beyond it clicks
    /// are dropped and counted. Default 65 536.
    pub click_queue_capacity: usize,
    /// Milliseconds between writes of aggregated click counts to the store, at least 10.
    /// Default 1000.
    pub click_flush_interval_ms: u64,
    /// Most distinct codes aggregated between two writes, 1 to [`MAX_PENDING_CODES_CEILING`];
    /// reaching it writes early. Default 100 000.
    pub click_max_pending_codes: usize,
    /// The message broker that click events go through, `HOST:PORT` (a name is resolved at
    /// start-up); none: clicks are aggregated in this process. Default none.
    pub broker: Option<String>,
    /// Topic of click events. Default `clicks`.
    pub click_topic: String,
    /// Partitions of the topic when an instance creates it, 1 to [`MAX_CLICK_PARTITIONS`].
    /// Default 4.
    pub click_topic_partitions: u32,
    /// Consumer group of the instances counting the topic. Default `url-shortener-clicks`.
    pub click_group: String,
    /// Click events kept for publishing while the broker is away, 1 to
    /// [`MAX_CLICK_QUEUE_CAPACITY`]; beyond it clicks are dropped and counted. Default 100 000.
    pub click_max_unsent: usize,
}

impl Default for Config {
    fn default() -> Self {
        let listen = SocketAddr::from(([127, 0, 0, 1], 8088));
        let admin = SocketAddr::from(([127, 0, 0, 1], 9088));
        Config {
            server: ServerConfig::new(listen, admin),
            workers: std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_WORKERS)),
            data_dir: PathBuf::from("url-shortener-data"),
            store: "embedded".to_owned(),
            store_password: None,
            store_timeout_ms: 1000,
            public_url: None,
            store_cache_bytes: DEFAULT_CACHE_BYTES,
            id_block_size: DEFAULT_BLOCK_SIZE,
            max_body_bytes: 16 * 1024,
            permanent_redirect_max_age_seconds: 3600,
            expired_retention_seconds: 7 * 24 * 3600,
            sweep_interval_ms: 60_000,
            url_blocklist: Vec::new(),
            api_key_sha256: Vec::new(),
            cache_max_bytes: cache::DEFAULT_MAX_BYTES,
            cache_ttl_ms: 60_000,
            cache_negative_ttl_ms: 5_000,
            click_queue_capacity: clicks::DEFAULT_QUEUE_CAPACITY,
            click_flush_interval_ms: clicks::DEFAULT_FLUSH_INTERVAL.as_millis() as u64,
            click_max_pending_codes: clicks::DEFAULT_MAX_PENDING_CODES,
            broker: None,
            click_topic: clicks::broker::DEFAULT_TOPIC.to_owned(),
            click_topic_partitions: clicks::broker::DEFAULT_PARTITIONS,
            click_group: clicks::broker::DEFAULT_GROUP.to_owned(),
            click_max_unsent: clicks::broker::DEFAULT_MAX_UNSENT,
        }
    }
}

/// `IP:PORT`, or `HOST:PORT` with the name resolved now (its first address). Once, at
/// start-up: a name that later moves needs a restart, as with most clients of a fixed store.
fn resolve(field: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let invalid = |reason: String| ConfigError::invalid(field, reason);
    let mut addrs = text
        .to_socket_addrs()
        .map_err(|e| invalid(format!("`{text}` is not an address (HOST:PORT): {e}")))?;
    addrs
        .next()
        .ok_or_else(|| invalid(format!("`{text}` resolves to no address")))
}

impl Config {
    /// The store `store` names, or why it names none.
    pub fn backend(&self) -> Result<Backend, ConfigError> {
        let invalid = |reason: String| ConfigError::invalid("store", reason);
        if self.store == "embedded" {
            return Ok(Backend::Embedded);
        }
        let Some(address) = self.store.strip_prefix("kv://") else {
            return Err(invalid(format!(
                "`{}` is neither `embedded` nor `kv://HOST:PORT`",
                self.store
            )));
        };
        if address.contains(',') {
            return Err(invalid(
                "takes one kv-store address: the kv-store is a single node for now".into(),
            ));
        }
        resolve("store", address).map(Backend::Kv)
    }

    /// The broker's address, `broker` resolved, when there is one.
    pub fn broker_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        self.broker
            .as_deref()
            .map(|broker| resolve("broker", broker))
            .transpose()
    }

    /// The kv-store client's settings, for `Backend::Kv(addr)`.
    pub fn kv_client(&self, addr: SocketAddr) -> kv_store::client::ClientConfig {
        let timeout = Duration::from_millis(self.store_timeout_ms);
        kv_store::client::ClientConfig {
            password: self.store_password.as_ref().map(|p| p.expose().to_owned()),
            connect_timeout: timeout,
            io_timeout: timeout,
            ..kv_store::client::ClientConfig::new(addr)
        }
    }

    /// The prefix of short URLs: `public_url`, or `http://` and the listen address.
    pub fn public_url(&self, listen: SocketAddr) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{listen}"),
        }
    }

    pub fn cache_limits(&self) -> CacheLimits {
        CacheLimits {
            max_bytes: self.cache_max_bytes,
            ttl: Duration::from_millis(self.cache_ttl_ms),
            negative_ttl: Duration::from_millis(self.cache_negative_ttl_ms),
        }
    }

    /// Where clicks go when `broker` is set (and resolves, which validation checked).
    pub fn broker_settings(&self) -> Option<BrokerSettings> {
        Some(BrokerSettings {
            addr: self.broker_addr().ok()??,
            topic: self.click_topic.clone(),
            partitions: self.click_topic_partitions,
            group: self.click_group.clone(),
            flush_interval: Duration::from_millis(self.click_flush_interval_ms),
            max_unsent: self.click_max_unsent,
            max_pending_codes: self.click_max_pending_codes,
        })
    }

    pub fn click_limits(&self) -> ClickLimits {
        ClickLimits {
            queue_capacity: self.click_queue_capacity,
            flush_interval: Duration::from_millis(self.click_flush_interval_ms),
            max_pending_codes: self.click_max_pending_codes,
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        if !(1..=MAX_WORKERS).contains(&self.workers) {
            let reason = format!("must be between 1 and {MAX_WORKERS}");
            return Err(ConfigError::invalid("workers", reason));
        }
        if let Some(url) = &self.public_url {
            let lower = url.to_ascii_lowercase();
            if !(lower.starts_with("http://") || lower.starts_with("https://")) {
                return Err(ConfigError::invalid(
                    "public_url",
                    format!("`{url}` must start with http:// or https://"),
                ));
            }
        }
        if !(1..=MAX_BLOCK_SIZE).contains(&self.id_block_size) {
            let reason = format!("must be between 1 and {MAX_BLOCK_SIZE}");
            return Err(ConfigError::invalid("id_block_size", reason));
        }
        if !(256..=MAX_BODY_BYTES_CEILING).contains(&self.max_body_bytes) {
            let reason = format!("must be between 256 and {MAX_BODY_BYTES_CEILING}");
            return Err(ConfigError::invalid("max_body_bytes", reason));
        }
        if self.sweep_interval_ms < 100 {
            return Err(ConfigError::invalid(
                "sweep_interval_ms",
                "must be at least 100",
            ));
        }
        if self.store_cache_bytes < 1024 * 1024 {
            return Err(ConfigError::invalid(
                "store_cache_bytes",
                "must be at least 1048576 (1 MiB)",
            ));
        }
        self.backend()?;
        self.broker_addr()?;
        if !(1..=MAX_STORE_TIMEOUT_MS).contains(&self.store_timeout_ms) {
            let reason = format!("must be between 1 and {MAX_STORE_TIMEOUT_MS}");
            return Err(ConfigError::invalid("store_timeout_ms", reason));
        }
        self.validate_cache_and_clicks()?;
        self.validate_lists()
    }
}

impl Config {
    fn validate_cache_and_clicks(&self) -> Result<(), ConfigError> {
        if self.cache_negative_ttl_ms > self.cache_ttl_ms {
            let reason = format!(
                "{} is over cache_ttl_ms ({})",
                self.cache_negative_ttl_ms, self.cache_ttl_ms
            );
            return Err(ConfigError::invalid("cache_negative_ttl_ms", reason));
        }
        if !(1..=MAX_CLICK_QUEUE_CAPACITY).contains(&self.click_queue_capacity) {
            let reason = format!("must be between 1 and {MAX_CLICK_QUEUE_CAPACITY}");
            return Err(ConfigError::invalid("click_queue_capacity", reason));
        }
        if self.click_flush_interval_ms < 10 {
            return Err(ConfigError::invalid(
                "click_flush_interval_ms",
                "must be at least 10",
            ));
        }
        if !(1..=MAX_PENDING_CODES_CEILING).contains(&self.click_max_pending_codes) {
            let reason = format!("must be between 1 and {MAX_PENDING_CODES_CEILING}");
            return Err(ConfigError::invalid("click_max_pending_codes", reason));
        }
        if !(1..=MAX_CLICK_PARTITIONS).contains(&self.click_topic_partitions) {
            let reason = format!("must be between 1 and {MAX_CLICK_PARTITIONS}");
            return Err(ConfigError::invalid("click_topic_partitions", reason));
        }
        if !(1..=MAX_CLICK_QUEUE_CAPACITY).contains(&self.click_max_unsent) {
            let reason = format!("must be between 1 and {MAX_CLICK_QUEUE_CAPACITY}");
            return Err(ConfigError::invalid("click_max_unsent", reason));
        }
        let valid_name = |name: &str| {
            (1..=249).contains(&name.len())
                && !name.starts_with('.')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        };
        if !valid_name(&self.click_topic) {
            return Err(ConfigError::invalid(
                "click_topic",
                "must be 1 to 249 of A-Z a-z 0-9 . _ -, not starting with `.`",
            ));
        }
        if self.click_group.is_empty() {
            return Err(ConfigError::invalid("click_group", "must not be empty"));
        }
        Ok(())
    }

    fn validate_lists(&self) -> Result<(), ConfigError> {
        if self.url_blocklist.len() > MAX_BLOCKLIST_ENTRIES {
            let reason = format!("has more than {MAX_BLOCKLIST_ENTRIES} entries");
            return Err(ConfigError::invalid("url_blocklist", reason));
        }
        if let Some(bad) = self
            .url_blocklist
            .iter()
            .find(|h| h.is_empty() || h.contains(['/', ':', ' ']))
        {
            let reason = format!("`{bad}` is not a host name (write `example.com`, not a URL)");
            return Err(ConfigError::invalid("url_blocklist", reason));
        }
        if self.api_key_sha256.len() > MAX_API_KEYS {
            let reason = format!("has more than {MAX_API_KEYS} entries");
            return Err(ConfigError::invalid("api_key_sha256", reason));
        }
        if let Some(bad) = self
            .api_key_sha256
            .iter()
            .find(|d| crate::api::auth::parse_digest(d).is_none())
        {
            let reason = format!(
                "`{bad}` is not a SHA-256 digest in hex (64 characters; make one with `printf %s KEY | sha256sum`)"
            );
            return Err(ConfigError::invalid("api_key_sha256", reason));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid_field(config: &Config) -> String {
        match config.validate() {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn each_bad_value_is_named() {
        let mut config = Config {
            id_block_size: 0,
            ..Config::default()
        };
        assert_eq!(invalid_field(&config), "id_block_size");
        config = Config {
            public_url: Some("sho.rt".into()),
            ..Config::default()
        };
        assert_eq!(invalid_field(&config), "public_url");
        config = Config {
            url_blocklist: vec!["https://evil.example/".into()],
            ..Config::default()
        };
        assert_eq!(invalid_field(&config), "url_blocklist");
        config = Config {
            api_key_sha256: vec!["secret".into()],
            ..Config::default()
        };
        assert_eq!(invalid_field(&config), "api_key_sha256");
        config = Config {
            max_body_bytes: 10,
            ..Config::default()
        };
        assert_eq!(invalid_field(&config), "max_body_bytes");
        for store in ["sled", "kv://127.0.0.1", "kv://127.0.0.1:1,127.0.0.1:2"] {
            config = Config {
                store: store.into(),
                ..Config::default()
            };
            assert_eq!(invalid_field(&config), "store", "{store}");
        }
        config = Config {
            broker: Some("127.0.0.1".into()),
            ..Config::default()
        };
        assert_eq!(invalid_field(&config), "broker");
    }

    #[test]
    fn the_store_is_embedded_or_one_kv_store() {
        assert_eq!(Config::default().backend().unwrap(), Backend::Embedded);
        let config = Config {
            store: "kv://127.0.0.1:6379".into(),
            ..Config::default()
        };
        assert_eq!(
            config.backend().unwrap(),
            Backend::Kv(SocketAddr::from(([127, 0, 0, 1], 6379)))
        );
        // A name is resolved (here from the hosts file, no DNS needed).
        let named = Config {
            store: "kv://localhost:6379".into(),
            broker: Some("localhost:9093".into()),
            ..Config::default()
        };
        let Backend::Kv(store) = named.backend().unwrap() else {
            panic!("a kv-store backend");
        };
        assert!(store.ip().is_loopback() && store.port() == 6379);
        let broker = named.broker_addr().unwrap().unwrap();
        assert!(broker.ip().is_loopback() && broker.port() == 9093);
    }

    #[test]
    fn short_urls_use_the_public_url_without_its_trailing_slash() {
        let listen = SocketAddr::from(([127, 0, 0, 1], 8088));
        assert_eq!(
            Config::default().public_url(listen),
            "http://127.0.0.1:8088"
        );
        let config = Config {
            public_url: Some("https://sho.rt/".into()),
            ..Config::default()
        };
        assert_eq!(config.public_url(listen), "https://sho.rt");
    }
}
