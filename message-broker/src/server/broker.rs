//! The broker's state: its topics and their partitions on disk, and producer ids.
//!
//! ```text
//!  DATA/
//!    producer-ids                 next unallocated producer id (a block is reserved at a time)
//!    topics/
//!      orders/
//!        topic.toml               partition count, cleanup policy, storage settings
//!        0/  00000000000000000000.log .index .timeindex …
//!        1/  …
//! ```
//!
//! A topic is created by making its partition directories and then writing `topic.toml`
//! atomically (temporary file, fsync, rename, fsync of the directory): a directory without
//! `topic.toml` is a creation cut short and is removed at start-up. A topic is deleted by
//! renaming its directory to `.deleted-<name>-<nanos>` (one atomic step, fsynced) and then
//! removing it; leftovers are removed at start-up.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use super::config::{Config, Limits};
use super::partition::Partition;
use crate::log::LogError;
use crate::protocol::{
    CreateTopicRequest, ErrorCode, MetadataResponse, TopicConfig, TopicMetadata,
};

/// Longest topic name (Kafka's limit).
pub const MAX_TOPIC_NAME_BYTES: usize = 249;
/// Producer ids reserved durably at a time.
pub const PRODUCER_ID_BLOCK: i64 = 1000;
/// Name of a topic's settings file.
const TOPIC_FILE: &str = "topic.toml";
/// Prefix of a topic directory being deleted.
const DELETED_PREFIX: &str = ".deleted-";

/// Why the broker's state could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// A partition's log failed to open (corruption is named by file and byte).
    #[error("topic {topic} partition {partition}: {source}")]
    Log {
        /// Topic.
        topic: String,
        /// Partition.
        partition: u32,
        /// The log's error.
        #[source]
        source: LogError,
    },
    /// A file or directory of the broker's own could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The reason.
        #[source]
        source: std::io::Error,
    },
    /// A `topic.toml` that does not parse.
    #[error("{}: {reason}", path.display())]
    BadTopicFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> BrokerError + '_ {
    move |source| BrokerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A topic and its open partitions.
pub struct Topic {
    /// Name.
    pub name: String,
    /// Settings.
    pub config: TopicConfig,
    /// Partitions, by index.
    pub partitions: Vec<Arc<Partition>>,
}

/// Producer ids, handed out from a block reserved on disk so none is ever reused.
struct ProducerIds {
    next: i64,
    reserved_to: i64,
}

/// Topics and producer ids.
pub struct Broker {
    data_dir: PathBuf,
    topics_dir: PathBuf,
    defaults: crate::log::LogConfig,
    limits: Limits,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serializes topic creation and deletion (file-system work), not reads.
    admin: Mutex<()>,
    producer_ids: Mutex<ProducerIds>,
}

impl Broker {
    /// Opens every topic under `config.data_dir`, recovering each partition.
    pub fn open(config: &Config) -> Result<Broker, BrokerError> {
        let topics_dir = config.data_dir.join("topics");
        fs::create_dir_all(&topics_dir).map_err(io_at(&topics_dir))?;
        let mut topics = BTreeMap::new();
        let mut entries: Vec<_> = fs::read_dir(&topics_dir)
            .map_err(io_at(&topics_dir))?
            .filter_map(Result::ok)
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.starts_with(DELETED_PREFIX) || !path.join(TOPIC_FILE).exists() {
                tracing::warn!(path = %path.display(), "removing an unfinished topic creation or deletion");
                fs::remove_dir_all(&path).map_err(io_at(&path))?;
                continue;
            }
            let topic = open_topic(&path, &name, config.limits.max_producers_per_partition)?;
            topics.insert(name, Arc::new(topic));
        }
        let producer_ids = ProducerIds::load(&config.data_dir)?;
        Ok(Broker {
            data_dir: config.data_dir.clone(),
            topics_dir,
            defaults: config.topic_defaults.clone(),
            limits: config.limits.clone(),
            topics: RwLock::new(topics),
            admin: Mutex::new(()),
            producer_ids: Mutex::new(producer_ids),
        })
    }

    /// The topic called `name`.
    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        let topics = self.topics.read().unwrap_or_else(PoisonError::into_inner);
        topics.get(name).cloned()
    }

    /// Partition `index` of topic `name`.
    pub fn partition(&self, name: &str, index: u32) -> Option<Arc<Partition>> {
        let topic = self.topic(name)?;
        topic.partitions.get(index as usize).cloned()
    }

    /// Every partition of every topic.
    pub fn all_partitions(&self) -> Vec<Arc<Partition>> {
        let topics = self.topics.read().unwrap_or_else(PoisonError::into_inner);
        topics
            .values()
            .flat_map(|t| t.partitions.iter().cloned())
            .collect()
    }

    /// Creates a topic. Blocking: makes directories and fsyncs.
    pub fn create_topic(&self, request: &CreateTopicRequest) -> ErrorCode {
        let _admin = self.admin.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(code) = self.check_new_topic(request) {
            return code;
        }
        let config = match self.topic_config(request) {
            Ok(config) => config,
            Err(code) => return code,
        };
        match self.create_on_disk(&request.name, config) {
            Ok(topic) => {
                let mut topics = self.topics.write().unwrap_or_else(PoisonError::into_inner);
                topics.insert(request.name.clone(), Arc::new(topic));
                ErrorCode::None
            }
            Err(err) => {
                tracing::error!(topic = %request.name, %err, "cannot create topic");
                ErrorCode::StorageError
            }
        }
    }

    fn check_new_topic(&self, request: &CreateTopicRequest) -> Result<(), ErrorCode> {
        if !valid_topic_name(&request.name) {
            return Err(ErrorCode::InvalidTopic);
        }
        if request.partitions == 0 || request.partitions > self.limits.max_partitions_per_topic {
            return Err(ErrorCode::InvalidPartitions);
        }
        let topics = self.topics.read().unwrap_or_else(PoisonError::into_inner);
        if topics.contains_key(&request.name) {
            return Err(ErrorCode::TopicAlreadyExists);
        }
        let partitions: usize = topics.values().map(|t| t.partitions.len()).sum();
        if topics.len() >= self.limits.max_topics
            || partitions + request.partitions as usize > self.limits.max_partitions
        {
            return Err(ErrorCode::LimitExceeded);
        }
        Ok(())
    }

    fn topic_config(&self, request: &CreateTopicRequest) -> Result<TopicConfig, ErrorCode> {
        let mut log = self.defaults.clone();
        if let Some(v) = request.retention_ms {
            log.retention_ms = v;
        }
        if let Some(v) = request.retention_bytes {
            log.retention_bytes = v;
        }
        if let Some(v) = request.segment_bytes {
            log.segment_bytes = v;
        }
        if let Some(v) = request.segment_ms {
            log.segment_ms = v;
        }
        if let Some(v) = request.max_batch_bytes {
            log.max_batch_bytes = v;
        }
        if let Some(v) = request.cleanup {
            log.cleanup = v;
        }
        if log.validate().is_err() || log.max_batch_bytes > self.limits.max_fetch_bytes {
            return Err(ErrorCode::InvalidConfig);
        }
        Ok(TopicConfig {
            partitions: request.partitions,
            log,
        })
    }

    fn create_on_disk(&self, name: &str, config: TopicConfig) -> Result<Topic, BrokerError> {
        let dir = self.topics_dir.join(name);
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(io_at(&dir))?;
        }
        fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        let mut partitions = Vec::with_capacity(config.partitions as usize);
        for index in 0..config.partitions {
            let partition = Partition::open(
                index,
                &dir.join(index.to_string()),
                config.log.clone(),
                self.limits.max_producers_per_partition,
            )
            .map_err(|source| BrokerError::Log {
                topic: name.to_owned(),
                partition: index,
                source,
            })?;
            partitions.push(Arc::new(partition));
        }
        let text = toml::to_string(&config).expect("a topic config serializes");
        write_atomically(&dir, TOPIC_FILE, text.as_bytes())?;
        sync_dir(&self.topics_dir)?;
        Ok(Topic {
            name: name.to_owned(),
            config,
            partitions,
        })
    }

    /// Deletes a topic and its data. Blocking.
    pub fn delete_topic(&self, name: &str) -> ErrorCode {
        let _admin = self.admin.lock().unwrap_or_else(PoisonError::into_inner);
        let removed = {
            let mut topics = self.topics.write().unwrap_or_else(PoisonError::into_inner);
            topics.remove(name)
        };
        if removed.is_none() {
            return ErrorCode::UnknownTopicOrPartition;
        }
        let dir = self.topics_dir.join(name);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let doomed = self
            .topics_dir
            .join(format!("{DELETED_PREFIX}{name}-{nanos}"));
        let result = fs::rename(&dir, &doomed)
            .map_err(io_at(&dir))
            .and_then(|()| sync_dir(&self.topics_dir))
            .and_then(|()| fs::remove_dir_all(&doomed).map_err(io_at(&doomed)));
        match result {
            Ok(()) => ErrorCode::None,
            Err(err) => {
                tracing::error!(topic = name, %err, "cannot delete topic files");
                ErrorCode::StorageError
            }
        }
    }

    /// Describes the named topics, or all.
    pub fn metadata(&self, names: Option<&[String]>) -> MetadataResponse {
        let topics = self.topics.read().unwrap_or_else(PoisonError::into_inner);
        let describe = |topic: &Topic| TopicMetadata {
            name: topic.name.clone(),
            error: ErrorCode::None,
            config: topic.config.clone(),
            partitions: topic.partitions.iter().map(|p| p.metadata()).collect(),
        };
        let topics = match names {
            None => topics.values().map(|t| describe(t)).collect(),
            Some(names) => names
                .iter()
                .map(|name| match topics.get(name) {
                    Some(topic) => describe(topic),
                    None => TopicMetadata {
                        name: name.clone(),
                        error: ErrorCode::UnknownTopicOrPartition,
                        config: TopicConfig {
                            partitions: 0,
                            log: self.defaults.clone(),
                        },
                        partitions: Vec::new(),
                    },
                })
                .collect(),
        };
        MetadataResponse { topics }
    }

    /// A producer id never handed out before. Blocking when a new block must be reserved.
    pub fn next_producer_id(&self) -> Result<i64, BrokerError> {
        let mut ids = self
            .producer_ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if ids.next >= ids.reserved_to {
            let reserved_to = ids.reserved_to + PRODUCER_ID_BLOCK;
            write_atomically(
                &self.data_dir,
                "producer-ids",
                reserved_to.to_string().as_bytes(),
            )?;
            ids.reserved_to = reserved_to;
        }
        let id = ids.next;
        ids.next += 1;
        Ok(id)
    }
}

impl ProducerIds {
    /// Starts after the last reserved block: ids of a block cut short by a crash are skipped.
    fn load(data_dir: &Path) -> Result<ProducerIds, BrokerError> {
        let path = data_dir.join("producer-ids");
        let reserved = match fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse::<i64>()
                .map_err(|err| BrokerError::BadTopicFile {
                    path: path.clone(),
                    reason: err.to_string(),
                })?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => 0,
            Err(err) => return Err(io_at(&path)(err)),
        };
        Ok(ProducerIds {
            next: reserved,
            reserved_to: reserved,
        })
    }
}

fn open_topic(dir: &Path, name: &str, max_producers: usize) -> Result<Topic, BrokerError> {
    let file = dir.join(TOPIC_FILE);
    let text = fs::read_to_string(&file).map_err(io_at(&file))?;
    let config: TopicConfig = toml::from_str(&text).map_err(|err| BrokerError::BadTopicFile {
        path: file.clone(),
        reason: err.message().to_owned(),
    })?;
    let mut partitions = Vec::with_capacity(config.partitions as usize);
    for index in 0..config.partitions {
        let partition = Partition::open(
            index,
            &dir.join(index.to_string()),
            config.log.clone(),
            max_producers,
        )
        .map_err(|source| BrokerError::Log {
            topic: name.to_owned(),
            partition: index,
            source,
        })?;
        partitions.push(Arc::new(partition));
    }
    Ok(Topic {
        name: name.to_owned(),
        config,
        partitions,
    })
}

/// Topic names: 1 to [`MAX_TOPIC_NAME_BYTES`] of `[A-Za-z0-9._-]`, not starting with `.`
/// (which would reach `.deleted-*` directories, `.` and `..`).
pub fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TOPIC_NAME_BYTES
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn write_atomically(dir: &Path, name: &str, contents: &[u8]) -> Result<(), BrokerError> {
    let temp = dir.join(format!("{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut file = fs::File::create(&temp)?;
        std::io::Write::write_all(&mut file, contents)?;
        file.sync_all()
    };
    write().map_err(io_at(&temp))?;
    let target = dir.join(name);
    fs::rename(&temp, &target).map_err(io_at(&target))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), BrokerError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_are_checked() {
        for good in ["orders", "a.b_c-D9", "__consumer_offsets", &"x".repeat(249)] {
            assert!(valid_topic_name(good), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".deleted-x",
            "a/b",
            "a b",
            "ü",
            &"x".repeat(250),
        ] {
            assert!(!valid_topic_name(bad), "{bad}");
        }
    }

    #[test]
    fn topics_and_producer_ids_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let broker = Broker::open(&config).unwrap();
        let request = CreateTopicRequest {
            name: "orders".into(),
            partitions: 3,
            retention_ms: Some(60_000),
            ..CreateTopicRequest::default()
        };
        assert_eq!(broker.create_topic(&request), ErrorCode::None);
        assert_eq!(broker.create_topic(&request), ErrorCode::TopicAlreadyExists);
        let first = broker.next_producer_id().unwrap();
        let second = broker.next_producer_id().unwrap();
        assert_eq!(second, first + 1);
        drop(broker);

        // A leftover of an interrupted creation is cleaned up.
        fs::create_dir_all(dir.path().join("topics/half/0")).unwrap();
        let broker = Broker::open(&config).unwrap();
        let topic = broker.topic("orders").unwrap();
        assert_eq!(topic.partitions.len(), 3);
        assert_eq!(topic.config.log.retention_ms, 60_000);
        assert!(broker.topic("half").is_none());
        assert!(!dir.path().join("topics/half").exists());
        assert!(broker.next_producer_id().unwrap() > second);

        assert_eq!(broker.delete_topic("orders"), ErrorCode::None);
        assert_eq!(
            broker.delete_topic("orders"),
            ErrorCode::UnknownTopicOrPartition
        );
        assert!(!dir.path().join("topics/orders").exists());
    }

    #[test]
    fn limits_and_bad_settings_are_refused_with_their_codes() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        config.limits.max_topics = 1;
        let broker = Broker::open(&config).unwrap();
        let create = |name: &str, partitions| CreateTopicRequest {
            name: name.into(),
            partitions,
            ..CreateTopicRequest::default()
        };
        assert_eq!(
            broker.create_topic(&create("bad name", 1)),
            ErrorCode::InvalidTopic
        );
        assert_eq!(
            broker.create_topic(&create("zero", 0)),
            ErrorCode::InvalidPartitions
        );
        let mut bad_retention = create("r", 1);
        bad_retention.retention_ms = Some(-5);
        assert_eq!(
            broker.create_topic(&bad_retention),
            ErrorCode::InvalidConfig
        );
        assert_eq!(broker.create_topic(&create("one", 1)), ErrorCode::None);
        assert_eq!(
            broker.create_topic(&create("two", 1)),
            ErrorCode::LimitExceeded
        );
    }
}
