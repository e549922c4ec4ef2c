//! `EXISTS key [key ...]`: how many of the keys exist (a key named twice counts twice).

use bytes::Bytes;

use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn exists(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let count = args[1..].iter().filter(|key| ctx.db.contains(key)).count();
    Ok(Frame::Integer(count as i64))
}
