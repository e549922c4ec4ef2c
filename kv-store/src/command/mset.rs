//! `MSET key value [key value ...]`: sets every pair, clearing their TTLs.

use bytes::Bytes;

use super::parse::{owned, wrong_args};
use super::{Ctx, Reply};
use crate::db::Value;
use crate::resp::Frame;

pub fn mset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    if args.len().is_multiple_of(2) {
        return Err(wrong_args("mset"));
    }
    for pair in args[1..].chunks(2) {
        ctx.db.set(owned(&pair[0]), Value::Str(owned(&pair[1])), 0);
    }
    ctx.changed();
    Ok(Frame::OK)
}
