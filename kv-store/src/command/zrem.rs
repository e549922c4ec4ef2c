//! `ZREM key member [member ...]`.

use bytes::Bytes;

use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn zrem(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let Some(zset) = ctx.db.zset_mut(&args[1])? else {
        return Ok(Frame::Integer(0));
    };
    let removed = args[2..]
        .iter()
        .filter(|m| zset.remove(m).is_some())
        .count();
    if removed > 0 {
        ctx.db.remove_if_empty(&args[1]);
        ctx.changed();
    }
    Ok(Frame::Integer(removed as i64))
}
