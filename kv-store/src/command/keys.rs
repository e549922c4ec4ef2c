//! `KEYS pattern`: every live key matching the pattern. O(keys): meant for debugging, as in
//! Redis; `SCAN` is the tool for production.

use bytes::Bytes;

use super::{Ctx, Reply};
use crate::glob;
use crate::resp::Frame;

pub fn keys(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let now = ctx.now_ms;
    let pattern = &args[1];
    let keys = ctx
        .db
        .iter()
        .filter(|(_, e)| e.expires_at_ms == 0 || e.expires_at_ms > now)
        .filter(|(key, _)| glob::matches(pattern, key, false))
        .map(|(key, _)| Frame::Bulk(key.clone()))
        .collect();
    Ok(Frame::Array(keys))
}
