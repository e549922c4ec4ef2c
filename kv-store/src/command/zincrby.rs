//! `ZINCRBY key increment member`.

use bytes::Bytes;

use super::parse::{float, owned};
use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn zincrby(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let delta = float(&args[2])?;
    let current = ctx.db.zset(&args[1])?.and_then(|z| z.score(&args[3]));
    let next = current.unwrap_or(0.0) + delta;
    if next.is_nan() {
        return Err(Frame::error("ERR resulting score is not a number (NaN)"));
    }
    ctx.db.zset_or_new(&args[1])?.insert(owned(&args[3]), next);
    ctx.changed();
    Ok(Frame::Double(next))
}
