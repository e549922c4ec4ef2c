//! `LLEN key`.

use bytes::Bytes;

use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn llen(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    Ok(Frame::Integer(
        ctx.db.list(&args[1])?.map_or(0, |l| l.len() as i64),
    ))
}
