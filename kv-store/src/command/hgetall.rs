//! `HGETALL key`: a map in RESP3, alternating fields and values in RESP2.

use bytes::Bytes;

use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn hgetall(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let pairs = ctx.db.hash(&args[1])?.map_or_else(Vec::new, |hash| {
        hash.iter()
            .map(|(f, v)| (Frame::Bulk(f.clone()), Frame::Bulk(v.clone())))
            .collect()
    });
    Ok(Frame::Map(pairs))
}
