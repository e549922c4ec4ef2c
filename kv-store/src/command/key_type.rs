//! `TYPE key`: `string`, `list`, `hash`, `set`, `zset`, or `none`.

use bytes::Bytes;

use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn key_type(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let name = ctx
        .db
        .get(&args[1])
        .map_or("none", |entry| entry.value.type_name());
    Ok(Frame::Simple(name))
}
