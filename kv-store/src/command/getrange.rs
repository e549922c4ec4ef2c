//! `GETRANGE key start end`: a substring, with negative offsets counted from the end.

use bytes::Bytes;

use super::parse::{index_range, int};
use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn getrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let (start, end) = (int(&args[2])?, int(&args[3])?);
    let value = ctx.db.string(&args[1])?.cloned().unwrap_or_default();
    // Redis: a negative start past a negative end is empty even after clamping.
    if start < 0 && end < 0 && start > end {
        return Ok(Frame::Bulk(Bytes::new()));
    }
    Ok(match index_range(start, end, value.len()) {
        Some((from, to)) => Frame::Bulk(value.slice(from..=to)),
        None => Frame::Bulk(Bytes::new()),
    })
}
