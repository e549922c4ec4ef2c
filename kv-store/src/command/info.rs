//! `INFO [section ...]`: `server`, `clients`, `memory`, `persistence`, `stats`, `keyspace`,
//! as `field:value` lines under `# Section` headers, the format tools parse.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::hello::REDIS_VERSION;
use super::{Ctx, Reply};
use crate::memory;
use crate::resp::Frame;

type Section = (&'static str, Vec<(&'static str, String)>);

pub fn info(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let wanted: Vec<String> = args[1..]
        .iter()
        .map(|a| String::from_utf8_lossy(a).to_lowercase())
        .collect();
    let all = wanted.is_empty()
        || wanted
            .iter()
            .any(|w| matches!(w.as_str(), "all" | "default" | "everything"));
    let mut text = String::new();
    for (name, fields) in sections(ctx) {
        if !all && !wanted.iter().any(|w| w == &name.to_lowercase()) {
            continue;
        }
        if !text.is_empty() {
            text.push_str("\r\n");
        }
        let _ = write!(text, "# {name}\r\n");
        for (key, value) in fields {
            let _ = write!(text, "{key}:{value}\r\n");
        }
    }
    Ok(Frame::Verbatim(text))
}

fn sections(ctx: &Ctx<'_>) -> Vec<Section> {
    vec![
        server(ctx),
        clients(ctx),
        memory_section(ctx),
        persistence(ctx),
        stats(ctx),
        keyspace(ctx),
    ]
}

fn server(ctx: &Ctx<'_>) -> Section {
    let uptime = ctx.shared.started.elapsed().as_secs();
    let fields = vec![
        ("redis_version", REDIS_VERSION.to_string()),
        ("redis_mode", "standalone".to_string()),
        ("server_name", "kv-store".to_string()),
        ("server_version", env!("CARGO_PKG_VERSION").to_string()),
        ("os", std::env::consts::OS.to_string()),
        ("arch_bits", (usize::BITS).to_string()),
        ("process_id", std::process::id().to_string()),
        (
            "tcp_port",
            ctx.shared.port.load(Ordering::Relaxed).to_string(),
        ),
        ("uptime_in_seconds", uptime.to_string()),
        ("uptime_in_days", (uptime / 86_400).to_string()),
        ("hz", ctx.settings.hz.to_string()),
    ];
    ("Server", fields)
}

fn clients(ctx: &Ctx<'_>) -> Section {
    let fields = vec![
        ("connected_clients", ctx.shared.client_count().to_string()),
        (
            "maxclients",
            ctx.shared.maxclients.load(Ordering::Relaxed).to_string(),
        ),
        ("blocked_clients", "0".to_string()),
    ];
    ("Clients", fields)
}

fn memory_section(ctx: &Ctx<'_>) -> Section {
    let used = memory::allocated_bytes().unwrap_or(0) as u64;
    let rss = memory::resident_bytes().unwrap_or(0);
    let fields = vec![
        ("used_memory", used.to_string()),
        ("used_memory_human", memory::human(used)),
        ("used_memory_rss", rss.to_string()),
        ("used_memory_rss_human", memory::human(rss)),
        ("maxmemory", ctx.settings.maxmemory.to_string()),
        ("maxmemory_human", memory::human(ctx.settings.maxmemory)),
        (
            "maxmemory_policy",
            ctx.settings.maxmemory_policy.name().to_string(),
        ),
    ];
    ("Memory", fields)
}

fn persistence(ctx: &Ctx<'_>) -> Section {
    let log = ctx.shared.log_if_started();
    let fields = vec![
        ("loading", "0".to_string()),
        ("aof_enabled", "1".to_string()),
        ("appendfsync", ctx.settings.fsync.name().to_string()),
        (
            "wal_last_index",
            log.map_or(0, |l| l.last_acked()).to_string(),
        ),
        (
            "wal_segments",
            log.map_or(0, |l| l.segment_count()).to_string(),
        ),
        (
            "wal_written_bytes",
            log.map_or(0, |l| l.written_bytes()).to_string(),
        ),
        ("checkpoint_index", ctx.shared.checkpointed().to_string()),
        ("changes_since_checkpoint", ctx.db.dirty_len().to_string()),
    ];
    ("Persistence", fields)
}

fn stats(ctx: &Ctx<'_>) -> Section {
    let stats = &ctx.shared.stats;
    let get = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed).to_string();
    let fields = vec![
        (
            "total_connections_received",
            get(&stats.connections_received),
        ),
        ("total_commands_processed", get(&stats.commands_processed)),
        ("rejected_connections", get(&stats.rejected_connections)),
        ("expired_keys", get(&stats.expired_keys)),
        ("evicted_keys", get(&stats.evicted_keys)),
        ("protocol_errors", get(&stats.protocol_errors)),
    ];
    ("Stats", fields)
}

fn keyspace(ctx: &Ctx<'_>) -> Section {
    let mut fields = Vec::new();
    if !ctx.db.is_empty() {
        let value = format!(
            "keys={},expires={},avg_ttl=0",
            ctx.db.len(),
            ctx.db.volatile_len()
        );
        fields.push(("db0", value));
    }
    ("Keyspace", fields)
}
