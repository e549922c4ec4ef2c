//! `SREM key member [member ...]`: answers how many were removed.

use bytes::Bytes;

use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn srem(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let Some(set) = ctx.db.set_of_mut(&args[1])? else {
        return Ok(Frame::Integer(0));
    };
    let removed = args[2..].iter().filter(|m| set.remove(*m)).count();
    if removed > 0 {
        ctx.db.remove_if_empty(&args[1]);
        ctx.changed();
    }
    Ok(Frame::Integer(removed as i64))
}
