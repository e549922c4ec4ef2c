//! `PERSIST key`: removes the key's expiry; 1 if it had one.

use bytes::Bytes;

use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn persist(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let has_ttl = ctx.db.get(&args[1]).is_some_and(|e| e.expires_at_ms != 0);
    if has_ttl {
        ctx.db.set_expiry(&args[1], 0);
        ctx.changed();
    }
    Ok(Frame::Integer(i64::from(has_ttl)))
}
