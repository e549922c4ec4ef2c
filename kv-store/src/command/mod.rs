//! Commands: one file per command (or per family sharing one body, such as `INCR`/`DECRBY`),
//! each a function `fn(&mut Ctx, &[Bytes]) -> Reply`, and [`table`] that names them.
//!
//! How one command runs ([`execute`]):
//!
//! ```text
//!  args ─▶ look up the name ─▶ arity ─▶ authenticated? ─▶ memory (evict, or -OOM)
//!       ─▶ expire its keys lazily (each expiry becomes a DEL record for the log)
//!       ─▶ run the handler on the keyspace ─▶ if it changed anything: a record for the log
//! ```
//!
//! A handler that changes the keyspace says so with [`Ctx::changed`]; the command is then
//! logged as it was sent. A handler whose effect depends on something the log cannot replay (the
//! clock, a random choice) logs what it *did* instead, with [`Ctx::propagate`]: `EXPIRE k 10`
//! becomes `PEXPIREAT k <unix ms>`, `SPOP` becomes `SREM`. Replaying the log then gives the same
//! keyspace on any clock, which is what a replica will need.

pub mod parse;
mod table;

mod append;
mod auth;
mod client;
mod command_info;
mod config;
mod dbsize;
mod del;
mod echo;
mod exists;
mod expire;
mod flush;
mod get;
mod getdel;
mod getex;
mod getrange;
mod getset;
mod hdel;
mod hello;
mod hexists;
mod hget;
mod hgetall;
mod hincrby;
mod hlen;
mod hmget;
mod hset;
mod incr;
mod incrbyfloat;
mod info;
mod key_type;
mod keys;
mod lindex;
mod llen;
mod lpop;
mod lpush;
mod lrange;
mod mget;
mod mset;
mod msetnx;
mod persist;
mod ping;
mod quit;
mod rename;
mod reset;
mod sadd;
mod scan;
mod scard;
mod select;
mod set;
mod setex;
mod setnx;
mod setrange;
mod sismember;
mod smembers;
mod spop;
mod srem;
mod strlen;
mod time;
mod ttl;
mod zadd;
mod zcard;
mod zincrby;
mod zpopmin;
mod zrange;
mod zrank;
mod zrem;
mod zscore;

use bytes::{BufMut, Bytes};

pub use table::{Spec, lookup, table};

use crate::db::Db;
use crate::resp::Frame;
use crate::server::{Session, Settings, Shared, State};

/// A handler's answer: `Err` carries an error reply, so handlers can use `?`.
pub type Reply = Result<Frame, Frame>;

/// A command's implementation.
pub type Handler = fn(&mut Ctx<'_>, &[Bytes]) -> Reply;

/// What a handler did to the keyspace, for the log.
#[derive(Debug, Default)]
enum Effect {
    #[default]
    None,
    /// Log the command as sent.
    Changed,
    /// Log these commands instead.
    Rewritten(Vec<Vec<Bytes>>),
}

/// Everything a handler may touch while it runs. The keyspace lock is held throughout.
pub struct Ctx<'a> {
    pub db: &'a mut Db,
    pub settings: &'a mut Settings,
    pub session: &'a mut Session,
    pub shared: &'a Shared,
    /// For commands that choose at random (`SPOP`); their choice is logged, not replayed.
    pub rng: &'a mut rand::rngs::StdRng,
    /// Unix time in milliseconds, read once per batch of commands.
    pub now_ms: u64,
    /// True while the log is replayed at start-up: no clock-based decisions, nothing logged.
    pub replaying: bool,
    effect: Effect,
}

impl<'a> Ctx<'a> {
    pub fn new(
        state: &'a mut State,
        session: &'a mut Session,
        shared: &'a Shared,
        now_ms: u64,
    ) -> Ctx<'a> {
        let State { db, settings, rng } = state;
        Ctx {
            db,
            settings,
            session,
            shared,
            rng,
            now_ms,
            replaying: false,
            effect: Effect::None,
        }
    }

    /// The handler changed the keyspace; log the command as it was sent.
    pub fn changed(&mut self) {
        if matches!(self.effect, Effect::None) {
            self.effect = Effect::Changed;
        }
    }

    /// The handler changed the keyspace; log `args` (one more command) in place of what was sent.
    pub fn propagate(&mut self, args: Vec<Bytes>) {
        match &mut self.effect {
            Effect::Rewritten(list) => list.push(args),
            _ => self.effect = Effect::Rewritten(vec![args]),
        }
    }
}

/// Encodes a command as a log record: the RESP array a client would send.
pub fn encode_record(args: &[Bytes]) -> Vec<u8> {
    let size: usize = args.iter().map(|a| a.len() + 16).sum();
    let mut out = Vec::with_capacity(size + 16);
    put_len(&mut out, b'*', args.len());
    for arg in args {
        put_len(&mut out, b'$', arg.len());
        out.put_slice(arg);
        out.put_slice(b"\r\n");
    }
    out
}

fn put_len(out: &mut Vec<u8>, kind: u8, len: usize) {
    let mut digits = [0u8; 20];
    out.put_u8(kind);
    out.put_slice(crate::resp::format_i64(len as i64, &mut digits));
    out.put_slice(b"\r\n");
}

/// Runs one command and returns its reply; the log records it produced are appended to
/// `records`, in the order they must be applied.
pub fn execute(ctx: &mut Ctx<'_>, args: &[Bytes], records: &mut Vec<Vec<u8>>) -> Frame {
    let Some(spec) = lookup(&args[0]) else {
        return unknown_command(args);
    };
    if !spec.arity_ok(args.len()) {
        return Frame::error(format!(
            "ERR wrong number of arguments for '{}' command",
            spec.name
        ));
    }
    if !ctx.session.authenticated && !spec.no_auth() && ctx.settings.requirepass.is_some() {
        return Frame::error("NOAUTH Authentication required.");
    }
    if !ctx.replaying
        && spec.denies_oom()
        && let Err(oom) = crate::eviction::make_room(ctx, records)
    {
        return oom;
    }
    if !ctx.replaying {
        if spec.is_write()
            && let Err(failed) = ctx.shared.log_check()
        {
            return Frame::error(failed.to_string());
        }
        expire_keys(ctx, spec, args, records);
    }
    ctx.effect = Effect::None;
    let reply = (spec.handler)(ctx, args).unwrap_or_else(|error| error);
    if !ctx.replaying && crate::eviction::tracks_access(ctx.settings.maxmemory_policy) {
        for position in spec.key_positions(args.len()) {
            let policy = ctx.settings.maxmemory_policy;
            crate::eviction::touch(ctx.db, &args[position], policy, ctx.now_ms, ctx.rng);
        }
    }
    match std::mem::take(&mut ctx.effect) {
        Effect::None => {}
        Effect::Changed => records.push(encode_record(args)),
        Effect::Rewritten(commands) => records.extend(commands.iter().map(|c| encode_record(c))),
    }
    reply
}

/// Expires the command's keys whose time has passed, each as a logged `DEL`, before the handler
/// sees them: this is the lazy half of expiry.
fn expire_keys(ctx: &mut Ctx<'_>, spec: &Spec, args: &[Bytes], records: &mut Vec<Vec<u8>>) {
    if ctx.db.volatile_len() == 0 {
        return;
    }
    for position in spec.key_positions(args.len()) {
        let key = &args[position];
        if ctx.db.is_expired(key, ctx.now_ms) {
            crate::expiry::expire_key(ctx.db, ctx.shared, key, records);
        }
    }
}

fn unknown_command(args: &[Bytes]) -> Frame {
    let name: String = parse::text(&args[0]).chars().take(128).collect();
    let mut message = format!("ERR unknown command '{name}', with args beginning with: ");
    for arg in &args[1..] {
        let arg: String = parse::text(arg).chars().take(128).collect();
        message.push_str(&format!("'{arg}' "));
    }
    // Error lines cannot hold CR or LF.
    Frame::Error(message.replace(['\r', '\n'], " "))
}
