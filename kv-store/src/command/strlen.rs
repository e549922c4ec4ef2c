//! `STRLEN key`.

use bytes::Bytes;

use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn strlen(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    Ok(Frame::Integer(
        ctx.db.string(&args[1])?.map_or(0, |v| v.len() as i64),
    ))
}
