//! `LPUSH key element [element ...]` and `RPUSH`: answer the new length.

use bytes::Bytes;

use super::parse::owned;
use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn lpush(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let list = ctx.db.list_or_new(&args[1])?;
    for element in &args[2..] {
        list.push_front(owned(element));
    }
    let len = list.len();
    ctx.changed();
    Ok(Frame::Integer(len as i64))
}

pub fn rpush(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let list = ctx.db.list_or_new(&args[1])?;
    for element in &args[2..] {
        list.push_back(owned(element));
    }
    let len = list.len();
    ctx.changed();
    Ok(Frame::Integer(len as i64))
}
