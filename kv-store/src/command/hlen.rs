//! `HLEN key`.

use bytes::Bytes;

use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn hlen(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    Ok(Frame::Integer(
        ctx.db.hash(&args[1])?.map_or(0, |h| h.len() as i64),
    ))
}
