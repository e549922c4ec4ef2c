//! `HINCRBY key field increment`.

use bytes::Bytes;

use super::parse::{int, owned};
use super::{Ctx, Reply};
use crate::resp::Frame;
use crate::resp::request::parse_i64;

pub fn hincrby(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let delta = int(&args[3])?;
    let current = match ctx.db.hash(&args[1])?.and_then(|h| h.get(&args[2])) {
        Some(value) => {
            parse_i64(value).ok_or_else(|| Frame::error("ERR hash value is not an integer"))?
        }
        None => 0,
    };
    let next = current
        .checked_add(delta)
        .ok_or_else(|| Frame::error("ERR increment or decrement would overflow"))?;
    let hash = ctx.db.hash_or_new(&args[1])?;
    hash.insert(owned(&args[2]), Bytes::from(next.to_string()));
    ctx.changed();
    Ok(Frame::Integer(next))
}
