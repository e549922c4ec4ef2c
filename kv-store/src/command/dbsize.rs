//! `DBSIZE`: the number of keys, counting those whose time has passed but that have not been
//! expired yet (as Redis does).

use bytes::Bytes;

use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn dbsize(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> Reply {
    Ok(Frame::Integer(ctx.db.len() as i64))
}
