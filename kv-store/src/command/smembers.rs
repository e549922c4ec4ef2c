//! `SMEMBERS key`: a set in RESP3, an array in RESP2.

use bytes::Bytes;

use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn smembers(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let members = ctx.db.set_of(&args[1])?.map_or_else(Vec::new, |set| {
        set.iter().cloned().map(Frame::Bulk).collect()
    });
    Ok(Frame::Set(members))
}
