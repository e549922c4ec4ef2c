//! `GETDEL key`: returns the value and deletes the key.

use bytes::Bytes;

use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn getdel(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let Some(value) = ctx.db.string(&args[1])?.cloned() else {
        return Ok(Frame::Null);
    };
    ctx.db.remove(&args[1]);
    ctx.changed();
    Ok(Frame::Bulk(value))
}
