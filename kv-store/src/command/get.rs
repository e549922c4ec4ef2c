//! `GET key`.

use bytes::Bytes;

use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn get(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    Ok(ctx
        .db
        .string(&args[1])?
        .map_or(Frame::Null, |v| Frame::Bulk(v.clone())))
}
