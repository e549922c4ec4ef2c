//! The broker server: accept loop, connections, request handlers, background maintenance.
//!
//! ```text
//!  TcpListener ─▶ accept (a slot of max_connections taken first) ─▶ connection.rs
//!     connection: FramedRead<Request> ─▶ dispatch ─▶ produce.rs / fetch.rs / topics (broker.rs)
//!                                                      │
//!                                          partition.rs (log + producers + group commit)
//!                                                      │
//!                                               log/ (segments on disk)
//!     groups: coordinator/ (membership, committed offsets); delivery.rs (acks, retries, DLQ)
//!  maintenance: every flush_interval_ms fsync (flush = interval); every
//!               retention_check_interval_ms apply retention or compaction
//!  shutdown: stop accepting ─▶ connections finish what they read ─▶ fsync every partition
//! ```

pub mod broker;
pub mod config;
pub mod connection;
pub mod coordinator;
pub mod delivery;
mod fetch;
pub mod partition;
mod produce;
pub mod producer_state;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::Instrument;

pub use broker::{Broker, BrokerError};
pub use config::{Config, FlushPolicy, Limits};
pub use connection::{Metrics, State};

/// Milliseconds since the Unix epoch, the unit of record timestamps.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Accepts connections on `listener` and serves them until `state.shutdown` triggers; the
/// connections are tracked by the shutdown handle, whose `drain` waits for them.
pub async fn run(listener: TcpListener, state: Arc<State>) {
    let slots = Arc::new(Semaphore::new(state.limits.max_connections));
    let shutdown = state.shutdown.clone();
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("never closed"),
            () = shutdown.triggered() => return,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.triggered() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors, mostly: wait a little rather than spin.
                tracing::warn!(%err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        let span = tracing::info_span!("connection", %peer);
        shutdown.spawn(
            "connection",
            async move {
                let _slot = slot;
                connection::serve_connection(stream, state).await;
            }
            .instrument(span),
        );
    }
}

/// Background work: periodic fsync under `flush = interval`, and retention. Ends at shutdown.
pub async fn maintain(state: Arc<State>, flush_interval: Duration, retention_interval: Duration) {
    let mut flush = tokio::time::interval(flush_interval);
    let mut retention = tokio::time::interval(retention_interval);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    retention.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = flush.tick(), if state.flush == FlushPolicy::Interval => {
                let broker = Arc::clone(&state.broker);
                let _ = tokio::task::spawn_blocking(move || flush_all(&broker)).await;
            }
            _ = retention.tick() => {
                let broker = Arc::clone(&state.broker);
                let _ = tokio::task::spawn_blocking(move || apply_retention(&broker)).await;
            }
            () = state.shutdown.triggered() => return,
        }
    }
}

/// Fsyncs every partition with unsynced appends. Blocking.
pub fn flush_all(broker: &Broker) {
    for partition in broker.all_partitions() {
        if let Err(err) = partition.flush() {
            tracing::error!(%err, "flush failed; the partition stops taking writes");
        }
    }
}

fn apply_retention(broker: &Broker) {
    let now = now_ms();
    for partition in broker.all_partitions() {
        match partition.clean(now) {
            Ok(partition::Cleaned::Deleted(outcome)) if outcome.segments > 0 => {
                tracing::info!(
                    partition = partition.index,
                    segments = outcome.segments,
                    bytes = outcome.bytes,
                    "retention deleted segments"
                );
            }
            Ok(partition::Cleaned::Compacted(outcome)) if outcome.segments_rewritten > 0 => {
                tracing::info!(
                    partition = partition.index,
                    segments = outcome.segments_rewritten,
                    records = outcome.records_removed,
                    "compaction rewrote segments"
                );
            }
            Ok(_) => {}
            Err(err) => tracing::error!(%err, "cleanup failed"),
        }
    }
}
