//! `MGET key [key ...]`: values in order; null for a missing key or one that is not a string.

use bytes::Bytes;

use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn mget(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let values = args[1..]
        .iter()
        .map(|key| match ctx.db.string(key) {
            Ok(Some(value)) => Frame::Bulk(value.clone()),
            _ => Frame::Null,
        })
        .collect();
    Ok(Frame::Array(values))
}
