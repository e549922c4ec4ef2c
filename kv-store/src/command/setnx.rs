//! `SETNX key value`: sets only if the key does not exist; 1 if it did set.

use bytes::Bytes;

use super::parse::owned;
use super::{Ctx, Reply};
use crate::db::Value;
use crate::resp::Frame;

pub fn setnx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    if ctx.db.contains(&args[1]) {
        return Ok(Frame::Integer(0));
    }
    ctx.db.set(owned(&args[1]), Value::Str(owned(&args[2])), 0);
    ctx.changed();
    Ok(Frame::Integer(1))
}
