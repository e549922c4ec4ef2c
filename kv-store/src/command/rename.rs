//! `RENAME key newkey`: moves the value and its TTL, replacing whatever `newkey` held.

use bytes::Bytes;

use super::parse::owned;
use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn rename(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let (from, to) = (&args[1], &args[2]);
    if !ctx.db.contains(from) {
        return Err(Frame::error("ERR no such key"));
    }
    if from != to {
        let entry = ctx.db.remove(from).expect("checked above");
        ctx.db.set(owned(to), entry.value, entry.expires_at_ms);
        ctx.changed();
    }
    Ok(Frame::OK)
}
