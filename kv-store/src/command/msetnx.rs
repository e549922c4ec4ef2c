//! `MSETNX key value [key value ...]`: sets every pair only if none of the keys exists.

use bytes::Bytes;

use super::parse::{owned, wrong_args};
use super::{Ctx, Reply};
use crate::db::Value;
use crate::resp::Frame;

pub fn msetnx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    if args.len().is_multiple_of(2) {
        return Err(wrong_args("msetnx"));
    }
    if args[1..].chunks(2).any(|pair| ctx.db.contains(&pair[0])) {
        return Ok(Frame::Integer(0));
    }
    for pair in args[1..].chunks(2) {
        ctx.db.set(owned(&pair[0]), Value::Str(owned(&pair[1])), 0);
    }
    ctx.changed();
    Ok(Frame::Integer(1))
}
