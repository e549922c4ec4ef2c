//! `INCR`, `DECR`, `INCRBY`, `DECRBY`: integer arithmetic on a string value, keeping its TTL.

use bytes::Bytes;

use super::parse::{NOT_AN_INTEGER, int, owned};
use super::{Ctx, Reply};
use crate::db::Value;
use crate::resp::Frame;
use crate::resp::request::parse_i64;

pub fn incr(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    add(ctx, &args[1], 1)
}

pub fn decr(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    add(ctx, &args[1], -1)
}

pub fn incrby(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    add(ctx, &args[1], int(&args[2])?)
}

pub fn decrby(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let delta = int(&args[2])?;
    let delta = delta
        .checked_neg()
        .ok_or_else(|| Frame::error("ERR decrement would overflow"))?;
    add(ctx, &args[1], delta)
}

fn add(ctx: &mut Ctx<'_>, key: &Bytes, delta: i64) -> Reply {
    let current = match ctx.db.string(key)? {
        Some(value) => parse_i64(value).ok_or_else(|| Frame::error(NOT_AN_INTEGER))?,
        None => 0,
    };
    let next = current
        .checked_add(delta)
        .ok_or_else(|| Frame::error("ERR increment or decrement would overflow"))?;
    let text = Bytes::from(next.to_string());
    match ctx.db.string_mut(key)? {
        Some(value) => *value = text,
        None => ctx.db.set(owned(key), Value::Str(text), 0),
    }
    ctx.changed();
    Ok(Frame::Integer(next))
}
