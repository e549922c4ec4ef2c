//! `CONFIG GET pattern [pattern ...]`, `CONFIG SET parameter value [parameter value ...]`,
//! `CONFIG RESETSTAT`.
//!
//! `GET` reports every parameter the server has, under Redis's names; `SET` changes those that
//! can change while running (`maxmemory`, `maxmemory-policy`, `maxmemory-samples`,
//! `requirepass`, `maxclients`, `hz`). The rest are fixed at start-up, and `SET` says so.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::parse::{is, text, unknown_subcommand, wrong_args};
use super::{Ctx, Reply};
use crate::config::{MAX_HZ, MAX_MAXCLIENTS, MaxmemoryPolicy};
use crate::glob;
use crate::memory::parse_memory;
use crate::resp::Frame;

pub fn config(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let sub = &args[1];
    if is(sub, "GET") {
        if args.len() < 3 {
            return Err(wrong_args("config|get"));
        }
        Ok(get(ctx, &args[2..]))
    } else if is(sub, "SET") {
        if args.len() < 4 || !args.len().is_multiple_of(2) {
            return Err(wrong_args("config|set"));
        }
        set(ctx, &args[2..])
    } else if is(sub, "RESETSTAT") {
        for counter in [
            &ctx.shared.stats.commands_processed,
            &ctx.shared.stats.expired_keys,
            &ctx.shared.stats.evicted_keys,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
        Ok(Frame::OK)
    } else {
        Err(unknown_subcommand(sub, "CONFIG"))
    }
}

fn parameters(ctx: &Ctx<'_>) -> Vec<(&'static str, String)> {
    let settings = &*ctx.settings;
    let limits = &ctx.shared.limits;
    vec![
        ("maxmemory", settings.maxmemory.to_string()),
        (
            "maxmemory-policy",
            settings.maxmemory_policy.name().to_string(),
        ),
        ("maxmemory-samples", settings.maxmemory_samples.to_string()),
        (
            "requirepass",
            settings
                .requirepass
                .as_deref()
                .map(text)
                .unwrap_or_default(),
        ),
        (
            "maxclients",
            ctx.shared.maxclients.load(Ordering::Relaxed).to_string(),
        ),
        ("appendonly", "yes".to_string()),
        ("appendfsync", settings.fsync.name().to_string()),
        ("save", String::new()),
        ("databases", "1".to_string()),
        ("hz", settings.hz.to_string()),
        ("port", ctx.shared.port.load(Ordering::Relaxed).to_string()),
        ("proto-max-bulk-len", limits.max_bulk_bytes.to_string()),
        (
            "client-query-buffer-limit",
            limits.query_buffer_bytes.to_string(),
        ),
    ]
}

fn get(ctx: &Ctx<'_>, patterns: &[Bytes]) -> Frame {
    let pairs = parameters(ctx)
        .into_iter()
        .filter(|(name, _)| {
            patterns
                .iter()
                .any(|p| glob::matches(p, name.as_bytes(), true))
        })
        .map(|(name, value)| (Frame::bulk(name), Frame::bulk(value)))
        .collect();
    Frame::Map(pairs)
}

fn set(ctx: &mut Ctx<'_>, pairs: &[Bytes]) -> Reply {
    // Check every pair before applying any, so a bad one changes nothing.
    let mut changes = Vec::new();
    for pair in pairs.chunks(2) {
        changes.push(parse_change(&pair[0], &pair[1])?);
    }
    for change in changes {
        apply(ctx, change);
    }
    Ok(Frame::OK)
}

enum Change {
    Maxmemory(u64),
    Policy(MaxmemoryPolicy),
    Samples(usize),
    Requirepass(Option<Bytes>),
    Maxclients(usize),
    Hz(u32),
}

fn parse_change(name: &[u8], value: &[u8]) -> Result<Change, Frame> {
    let value_text = text(value);
    let invalid = |why: &str| {
        Frame::error(format!(
            "ERR CONFIG SET failed (possibly related to argument '{}') - {why}",
            text(name).to_lowercase()
        ))
    };
    let number = |max: u64| {
        value_text
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=max).contains(n))
    };
    let change = if is(name, "maxmemory") {
        Change::Maxmemory(
            parse_memory(&value_text).ok_or_else(|| invalid("argument must be a memory value"))?,
        )
    } else if is(name, "maxmemory-policy") {
        Change::Policy(MaxmemoryPolicy::from_name(&value_text).ok_or_else(|| invalid("argument(s) must be one of the following: noeviction, allkeys-lru, volatile-lru, allkeys-lfu, volatile-ttl"))?)
    } else if is(name, "maxmemory-samples") {
        Change::Samples(
            number(64).ok_or_else(|| invalid("argument must be between 1 and 64 inclusive"))?
                as usize,
        )
    } else if is(name, "requirepass") {
        Change::Requirepass((!value.is_empty()).then(|| Bytes::copy_from_slice(value)))
    } else if is(name, "maxclients") {
        Change::Maxclients(
            number(MAX_MAXCLIENTS as u64)
                .ok_or_else(|| invalid("argument must be between 1 and 1000000 inclusive"))?
                as usize,
        )
    } else if is(name, "hz") {
        Change::Hz(
            number(u64::from(MAX_HZ))
                .ok_or_else(|| invalid("argument must be between 1 and 500 inclusive"))?
                as u32,
        )
    } else {
        return Err(Frame::error(format!(
            "ERR Unknown option or number of arguments for CONFIG SET - '{}'",
            text(name)
        )));
    };
    Ok(change)
}

fn apply(ctx: &mut Ctx<'_>, change: Change) {
    let settings = &mut *ctx.settings;
    match change {
        Change::Maxmemory(bytes) => settings.maxmemory = bytes,
        Change::Policy(policy) => settings.maxmemory_policy = policy,
        Change::Samples(samples) => settings.maxmemory_samples = samples,
        Change::Requirepass(password) => settings.requirepass = password,
        Change::Maxclients(max) => ctx.shared.maxclients.store(max, Ordering::Relaxed),
        Change::Hz(hz) => settings.hz = hz,
    }
}
