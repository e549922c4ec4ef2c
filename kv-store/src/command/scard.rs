//! `SCARD key`.

use bytes::Bytes;

use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn scard(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    Ok(Frame::Integer(
        ctx.db.set_of(&args[1])?.map_or(0, |s| s.len() as i64),
    ))
}
