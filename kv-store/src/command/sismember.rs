//! `SISMEMBER key member`.

use bytes::Bytes;

use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn sismember(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let member = ctx
        .db
        .set_of(&args[1])?
        .is_some_and(|s| s.contains(&args[2]));
    Ok(Frame::Integer(i64::from(member)))
}
