//! `LRANGE key start stop`: inclusive, negative indexes from the end.

use bytes::Bytes;

use super::parse::{index_range, int};
use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn lrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let (start, stop) = (int(&args[2])?, int(&args[3])?);
    let Some(list) = ctx.db.list(&args[1])? else {
        return Ok(Frame::Array(Vec::new()));
    };
    Ok(match index_range(start, stop, list.len()) {
        Some((from, to)) => Frame::bulks(list.range(from..=to).cloned()),
        None => Frame::Array(Vec::new()),
    })
}
