//! `ZCARD key`.

use bytes::Bytes;

use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn zcard(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    Ok(Frame::Integer(
        ctx.db.zset(&args[1])?.map_or(0, |z| z.len() as i64),
    ))
}
