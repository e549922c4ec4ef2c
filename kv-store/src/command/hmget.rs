//! `HMGET key field [field ...]`.

use bytes::Bytes;

use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn hmget(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let hash = ctx.db.hash(&args[1])?;
    let values = args[2..]
        .iter()
        .map(|field| {
            hash.and_then(|h| h.get(field))
                .map_or(Frame::Null, |v| Frame::Bulk(v.clone()))
        })
        .collect();
    Ok(Frame::Array(values))
}
