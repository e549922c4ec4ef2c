//! `HEXISTS key field`.

use bytes::Bytes;

use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn hexists(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let exists = ctx
        .db
        .hash(&args[1])?
        .is_some_and(|h| h.contains_key(&args[2]));
    Ok(Frame::Integer(i64::from(exists)))
}
