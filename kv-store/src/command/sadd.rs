//! `SADD key member [member ...]`: answers how many were new.

use bytes::Bytes;

use super::parse::owned;
use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn sadd(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let set = ctx.db.set_or_new(&args[1])?;
    // Copied for storage only when new: re-adding a member allocates nothing.
    let added = args[2..]
        .iter()
        .filter(|m| !set.contains(&m[..]) && set.insert(owned(m)))
        .count();
    if added > 0 {
        ctx.changed();
    }
    Ok(Frame::Integer(added as i64))
}
