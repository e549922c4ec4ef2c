//! A kv-store node: recovery at start-up, serving, and shutdown, in that order.
//!
//! ```text
//!  Node::open   image (sled) ─▶ keyspace ─▶ WAL ─▶ replay ─▶ log writer started
//!  Node::run    accept loop + checkpoints + active expiry, until shutdown is triggered
//!               ─▶ drain connections (shutdown_timeout_ms) ─▶ final checkpoint ─▶ log closed
//! ```

use std::sync::Arc;
use std::time::Duration;

use service_kit::shutdown::Shutdown;
use tokio::net::TcpListener;

use crate::clock::Clock;
use crate::config::Config;
use crate::server::{self, Shared};
use crate::store::{self, Log, Recovered, SledStateMachine, StateMachine, StoreError};

/// A recovered node, ready to serve.
pub struct Node {
    shared: Arc<Shared>,
    state_machine: Arc<dyn StateMachine>,
    config: Config,
    recovered: Recovered,
    /// The data directory's lock, held while the node exists. Last, so that it is released
    /// after everything else the node owns has been dropped.
    _lock: std::fs::File,
}

impl Node {
    /// Recovers the keyspace from `config.data_dir` and starts the log writer.
    pub fn open(config: &Config, clock: Clock) -> Result<Node, StoreError> {
        if config.maxmemory > 0 && crate::memory::allocated_bytes().is_none() {
            return Err(StoreError::NoMemoryAccounting);
        }
        let data_dir = &config.data_dir;
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.clone(),
            source,
        })?;
        let lock = store::lock_data_dir(data_dir)?;
        let state_machine: Arc<dyn StateMachine> =
            Arc::new(SledStateMachine::open(&store::state_dir(data_dir))?);
        let (db, applied) = store::load_image(state_machine.as_ref())?;
        let loaded_keys = db.len();
        let wal = store::open_wal(&store::wal_dir(data_dir), config.wal_segment_bytes, applied)?;
        let shared = Arc::new(Shared::new(config, db, clock));
        let replayed = store::replay(&shared, &wal, applied)?;
        shared.set_checkpointed(applied);
        shared.set_log(Log::start(wal, config.fsync).map_err(StoreError::Thread)?);
        let recovered = Recovered {
            applied_index: applied,
            loaded_keys,
            replayed_records: replayed,
        };
        tracing::info!(?recovered, data_dir = %data_dir.display(), "recovered");
        Ok(Node {
            shared,
            state_machine,
            config: config.clone(),
            recovered,
            _lock: lock,
        })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn recovered(&self) -> Recovered {
        self.recovered
    }

    /// Serves `listener` until `shutdown` is triggered, then drains connections, writes a final
    /// checkpoint and closes the log.
    pub async fn run(self, listener: TcpListener, shutdown: Shutdown) -> Result<(), StoreError> {
        let interval = Duration::from_millis(self.config.checkpoint_interval_ms);
        let checkpoints = tokio::spawn(store::checkpoint_loop(
            Arc::clone(&self.shared),
            Arc::clone(&self.state_machine),
            interval,
            self.config.checkpoint_log_bytes,
            self.config.checkpoint_dirty_keys,
            {
                let stop = shutdown.clone();
                async move { stop.triggered().await }
            },
        ));
        let sweeper = tokio::spawn(crate::expiry::sweep_loop(Arc::clone(&self.shared), {
            let stop = shutdown.clone();
            async move { stop.triggered().await }
        }));
        server::serve(listener, Arc::clone(&self.shared), shutdown.clone()).await;
        let drained = shutdown.drain(self.config.server.shutdown_timeout()).await;
        if !drained.is_complete() {
            tracing::warn!(?drained, "connections cut off at the shutdown deadline");
        }
        let _ = checkpoints.await;
        let _ = sweeper.await;
        self.close().await
    }

    /// Final checkpoint, then the log's last fsync.
    pub async fn close(self) -> Result<(), StoreError> {
        let result = store::checkpoint(&self.shared, &self.state_machine).await;
        self.shared.log().close();
        result.map(drop)
    }
}
