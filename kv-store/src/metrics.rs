//! `/metrics`: the server's counters and gauges, copied from its own statistics once a second
//! (`INFO` reads the same statistics directly).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use service_kit::metrics::{IntCounter, IntGauge, MetricsError, Registry};

use crate::memory;
use crate::server::Shared;

/// How often the exported metrics are refreshed.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(1);

struct Counter {
    metric: IntCounter,
    source: fn(&Shared) -> &AtomicU64,
}

/// Registers the metrics and starts the task that refreshes them.
pub fn register(registry: &Registry, shared: &Arc<Shared>) -> Result<(), MetricsError> {
    let counters = vec![
        Counter {
            metric: registry.counter(
                "kv_connections_received_total",
                "Client connections accepted.",
            )?,
            source: |s| &s.stats.connections_received,
        },
        Counter {
            metric: registry.counter(
                "kv_connections_rejected_total",
                "Connections refused at maxclients.",
            )?,
            source: |s| &s.stats.rejected_connections,
        },
        Counter {
            metric: registry.counter("kv_commands_total", "Commands executed.")?,
            source: |s| &s.stats.commands_processed,
        },
        Counter {
            metric: registry.counter(
                "kv_expired_keys_total",
                "Keys removed because their time to live passed.",
            )?,
            source: |s| &s.stats.expired_keys,
        },
        Counter {
            metric: registry.counter("kv_evicted_keys_total", "Keys evicted at maxmemory.")?,
            source: |s| &s.stats.evicted_keys,
        },
        Counter {
            metric: registry.counter(
                "kv_protocol_errors_total",
                "Connections closed for a protocol error.",
            )?,
            source: |s| &s.stats.protocol_errors,
        },
    ];
    let clients = registry.gauge("kv_connected_clients", "Clients connected now.")?;
    let keys = registry.gauge("kv_keys", "Keys in the keyspace.")?;
    let memory_bytes = registry.gauge("kv_memory_used_bytes", "Bytes allocated by the server.")?;
    let log_index = registry.gauge(
        "kv_log_last_index",
        "Index of the last record acknowledged by the write-ahead log.",
    )?;
    let checkpoint_index = registry.gauge(
        "kv_checkpoint_index",
        "Log index covered by the last checkpoint of the state machine.",
    )?;
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        loop {
            for counter in &counters {
                let value = (counter.source)(&shared).load(Ordering::Relaxed);
                let delta = value.saturating_sub(counter.metric.get());
                counter.metric.inc_by(delta);
            }
            set(&clients, shared.client_count() as u64);
            set(&keys, shared.lock().db.len() as u64);
            set(&memory_bytes, memory::allocated_bytes().unwrap_or(0) as u64);
            set(&log_index, shared.log().last_acked());
            set(&checkpoint_index, shared.checkpointed());
            tokio::time::sleep(REFRESH_INTERVAL).await;
        }
    });
    Ok(())
}

fn set(gauge: &IntGauge, value: u64) {
    gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
}
