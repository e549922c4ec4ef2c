//! `GETSET key value`: sets the value (clearing any TTL) and returns the old one.

use bytes::Bytes;

use super::parse::owned;
use super::{Ctx, Reply};
use crate::db::Value;
use crate::resp::Frame;

pub fn getset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let old = ctx.db.string(&args[1])?.cloned();
    ctx.db.set(owned(&args[1]), Value::Str(owned(&args[2])), 0);
    ctx.changed();
    Ok(old.map_or(Frame::Null, Frame::Bulk))
}
