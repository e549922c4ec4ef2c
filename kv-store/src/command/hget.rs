//! `HGET key field`.

use bytes::Bytes;

use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn hget(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let value = ctx.db.hash(&args[1])?.and_then(|h| h.get(&args[2]));
    Ok(value.map_or(Frame::Null, |v| Frame::Bulk(v.clone())))
}
