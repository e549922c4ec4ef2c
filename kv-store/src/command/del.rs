//! `DEL key [key ...]` and `UNLINK key [key ...]`: remove keys, answer how many existed.
//! (Redis's UNLINK frees memory in the background; here freeing is the same either way.)

use bytes::Bytes;

use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn del(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let removed = args[1..]
        .iter()
        .filter(|key| ctx.db.remove(key).is_some())
        .count();
    if removed > 0 {
        ctx.changed();
    }
    Ok(Frame::Integer(removed as i64))
}

pub fn unlink(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    del(ctx, args)
}
