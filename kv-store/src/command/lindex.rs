//! `LINDEX key index`: negative indexes count from the end.

use bytes::Bytes;

use super::parse::int;
use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn lindex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let index = int(&args[2])?;
    let Some(list) = ctx.db.list(&args[1])? else {
        return Ok(Frame::Null);
    };
    let position = if index < 0 {
        list.len() as i64 + index
    } else {
        index
    };
    let element = usize::try_from(position).ok().and_then(|p| list.get(p));
    Ok(element.map_or(Frame::Null, |e| Frame::Bulk(e.clone())))
}
