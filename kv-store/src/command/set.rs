//! `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]`.
//!
//! Logged as `SET key value` plus `PXAT <unix ms>` or `KEEPTTL`: relative times become
//! absolute, and the conditions, already decided, are dropped.

use bytes::Bytes;

use super::expire::{Unit, deadline_ms};
use super::parse::{int, is, owned, syntax_error};
use super::{Ctx, Reply};
use crate::db::Value;
use crate::resp::Frame;

#[derive(Default)]
struct Options {
    nx: bool,
    xx: bool,
    get: bool,
    keep_ttl: bool,
    /// Absolute expiry in Unix ms.
    expires_at: Option<i64>,
}

fn options(ctx: &Ctx<'_>, args: &[Bytes]) -> Result<Options, Frame> {
    let mut o = Options::default();
    let mut rest = args;
    while let Some((option, tail)) = rest.split_first() {
        rest = tail;
        let unit = match () {
            () if is(option, "NX") && !o.xx => {
                o.nx = true;
                continue;
            }
            () if is(option, "XX") && !o.nx => {
                o.xx = true;
                continue;
            }
            () if is(option, "GET") => {
                o.get = true;
                continue;
            }
            () if is(option, "KEEPTTL") && o.expires_at.is_none() => {
                o.keep_ttl = true;
                continue;
            }
            () if is(option, "EX") => (Unit::Seconds, false),
            () if is(option, "PX") => (Unit::Millis, false),
            () if is(option, "EXAT") => (Unit::Seconds, true),
            () if is(option, "PXAT") => (Unit::Millis, true),
            () => return Err(syntax_error()),
        };
        let (Some((amount, tail)), false, None) = (rest.split_first(), o.keep_ttl, o.expires_at)
        else {
            return Err(syntax_error());
        };
        rest = tail;
        let amount = int(amount)?;
        let when = deadline_ms(amount, unit.0, unit.1, ctx.now_ms).filter(|_| amount > 0);
        let when = when.ok_or_else(|| Frame::error("ERR invalid expire time in 'set' command"))?;
        o.expires_at = Some(when);
    }
    Ok(o)
}

pub fn set(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let (key, value) = (&args[1], &args[2]);
    if args.len() == 3 {
        ctx.db.set(owned(key), Value::Str(owned(value)), 0);
        ctx.changed();
        return Ok(Frame::OK);
    }
    let o = options(ctx, &args[3..])?;
    let old = if o.get {
        ctx.db.string(key)?.cloned()
    } else {
        None
    };
    let existing = ctx.db.get(key);
    let exists = existing.is_some();
    let kept_ttl = existing.map_or(0, |e| e.expires_at_ms);
    let refused = (o.nx && exists) || (o.xx && !exists);
    let answer = if o.get {
        old.map_or(Frame::Null, Frame::Bulk)
    } else {
        Frame::OK
    };
    if refused {
        return Ok(if o.get { answer } else { Frame::Null });
    }
    let expires_at = match (o.keep_ttl, o.expires_at) {
        (true, _) => kept_ttl,
        (false, Some(when)) => when.max(1) as u64,
        (false, None) => 0,
    };
    ctx.db.set(owned(key), Value::Str(owned(value)), expires_at);
    let mut logged = vec![Bytes::from_static(b"SET"), key.clone(), value.clone()];
    if o.keep_ttl {
        logged.push(Bytes::from_static(b"KEEPTTL"));
    } else if expires_at != 0 {
        logged.extend([
            Bytes::from_static(b"PXAT"),
            Bytes::from(expires_at.to_string()),
        ]);
    }
    ctx.propagate(logged);
    Ok(answer)
}
