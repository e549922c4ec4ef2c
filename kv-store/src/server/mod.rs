//! The network side: the accept loop, connections, and the state they share.
//!
//! ```text
//!  accept ─▶ over maxclients? ─▶ "-ERR max number of clients reached", close
//!     │
//!     └─▶ connection task (one per client, tracked by Shutdown)
//!           read ─▶ parse every complete command in the buffer
//!                ─▶ lock the keyspace once, execute them in order, collect log records
//!                ─▶ unlock ─▶ wait until the log holds the records (per --fsync)
//!                ─▶ one write with every reply of the batch ─▶ read again
//! ```
//!
//! The keyspace is behind a `std::sync::Mutex`, not a tokio one: nothing awaits while holding
//! it, and a batch of pipelined commands takes it once.

mod connection;
mod session;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use service_kit::shutdown::Shutdown;
use tokio::net::TcpListener;

pub use connection::serve_connection;
pub use session::{ClientDetails, ClientInfo, Session};

use crate::clock::Clock;
use crate::config::{Config, Fsync, MaxmemoryPolicy};
use crate::db::Db;
use crate::resp::Limits;
use crate::store::Log;

/// Settings that `CONFIG SET` may change while the server runs. They live under the keyspace
/// lock, which every command holds anyway.
#[derive(Debug, Clone)]
pub struct Settings {
    pub requirepass: Option<Bytes>,
    pub maxmemory: u64,
    pub maxmemory_policy: MaxmemoryPolicy,
    pub maxmemory_samples: usize,
    /// Fixed at start-up; reported by `CONFIG GET appendfsync`.
    pub fsync: Fsync,
    pub hz: u32,
}

impl Settings {
    pub fn from_config(config: &Config) -> Settings {
        Settings {
            requirepass: config
                .requirepass
                .as_ref()
                .map(|p| Bytes::copy_from_slice(p.expose().as_bytes())),
            maxmemory: config.maxmemory,
            maxmemory_policy: config.maxmemory_policy,
            maxmemory_samples: config.maxmemory_samples,
            fsync: config.fsync,
            hz: config.hz,
        }
    }
}

/// What the keyspace lock protects.
#[derive(Debug)]
pub struct State {
    pub db: Db,
    pub settings: Settings,
    pub rng: rand::rngs::StdRng,
}

/// Counters for `INFO stats` and `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    pub connections_received: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub commands_processed: AtomicU64,
    pub expired_keys: AtomicU64,
    pub evicted_keys: AtomicU64,
    pub protocol_errors: AtomicU64,
}

/// Everything the connections of one server share.
#[derive(Debug)]
pub struct Shared {
    state: Mutex<State>,
    pub stats: Stats,
    pub clock: Clock,
    pub limits: Limits,
    /// `maxclients`, changeable with `CONFIG SET`.
    pub maxclients: AtomicUsize,
    /// Port of the client listener, for `INFO server`.
    pub port: AtomicU64,
    pub started: Instant,
    clients: Mutex<BTreeMap<u64, Arc<ClientInfo>>>,
    next_client_id: AtomicU64,
    /// Set once the log has been replayed and its writer started.
    log: OnceLock<Log>,
    /// Index of the last checkpoint of the state machine.
    checkpointed: AtomicU64,
}

impl Shared {
    pub fn new(config: &Config, db: Db, clock: Clock) -> Shared {
        Shared {
            state: Mutex::new(State {
                db,
                settings: Settings::from_config(config),
                rng: seeded_rng(),
            }),
            stats: Stats::default(),
            clock,
            limits: config.limits(),
            maxclients: AtomicUsize::new(config.maxclients),
            port: AtomicU64::new(u64::from(config.server.listen.port())),
            started: Instant::now(),
            clients: Mutex::new(BTreeMap::new()),
            next_client_id: AtomicU64::new(1),
            log: OnceLock::new(),
            checkpointed: AtomicU64::new(0),
        }
    }

    /// Hands the started log to the server; connections may be served from then on.
    pub fn set_log(&self, log: Log) {
        if self.log.set(log).is_err() {
            panic!("the log is set once, at start-up");
        }
    }

    /// The log. Panics before [`Shared::set_log`]: no connection is served before it.
    pub fn log(&self) -> &Log {
        self.log.get().expect("the log is started before serving")
    }

    /// The log, if it has been started (not while the log is replayed at start-up).
    pub fn log_if_started(&self) -> Option<&Log> {
        self.log.get()
    }

    /// Whether writes are still accepted (`Err` once the log has failed).
    pub fn log_check(&self) -> Result<(), crate::store::LogFailed> {
        self.log.get().map_or(Ok(()), Log::check)
    }

    pub fn set_checkpointed(&self, index: u64) {
        self.checkpointed.store(index, Ordering::Relaxed);
    }

    pub fn checkpointed(&self) -> u64 {
        self.checkpointed.load(Ordering::Relaxed)
    }

    /// Takes the keyspace lock. A panic while it was held poisons it; the keyspace is still
    /// consistent command by command (a handler panics before or after a change, not inside
    /// the map), so the lock is taken over rather than failing every later command.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn client_map(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<ClientInfo>>> {
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a new client, or refuses it if `maxclients` are connected.
    pub fn register_client(
        &self,
        addr: Option<std::net::SocketAddr>,
        local: Option<std::net::SocketAddr>,
    ) -> Option<Arc<ClientInfo>> {
        let mut clients = self.client_map();
        if clients.len() >= self.maxclients.load(Ordering::Relaxed) {
            return None;
        }
        let id = self.next_client_id.fetch_add(1, Ordering::Relaxed);
        let info = Arc::new(ClientInfo::new(id, addr, local));
        clients.insert(id, Arc::clone(&info));
        Some(info)
    }

    pub fn unregister_client(&self, id: u64) {
        self.client_map().remove(&id);
    }

    pub fn clients(&self) -> Vec<Arc<ClientInfo>> {
        self.client_map().values().cloned().collect()
    }

    pub fn client_count(&self) -> usize {
        self.client_map().len()
    }
}

/// A generator seeded from the operating system, for commands that choose at random.
fn seeded_rng() -> rand::rngs::StdRng {
    use rand::{SeedableRng, TryRng};
    let seed = rand::rngs::SysRng
        .try_next_u64()
        .unwrap_or(0x9e37_79b9_7f4a_7c15);
    rand::rngs::StdRng::seed_from_u64(seed)
}

/// Accepts clients on `listener` until `shutdown` is triggered; each connection is a task
/// tracked by `shutdown`, which closes it at its next idle moment.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: Shutdown) {
    if let Ok(addr) = listener.local_addr() {
        shared.port.store(u64::from(addr.port()), Ordering::Relaxed);
    }
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.triggered() => return,
        };
        let (stream, addr) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                // Out of file descriptors and the like: wait a moment instead of spinning.
                tracing::warn!(%err, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        shared
            .stats
            .connections_received
            .fetch_add(1, Ordering::Relaxed);
        let shared = Arc::clone(&shared);
        let stop = shutdown.clone();
        shutdown.spawn("connection", async move {
            serve_connection(stream, addr, shared, stop).await;
        });
    }
}
