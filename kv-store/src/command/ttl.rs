//! `TTL key` and `PTTL key`: time left, -1 for no expiry, -2 for no key.

use bytes::Bytes;

use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn ttl(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    // Rounded to the nearest second, as Redis does.
    Ok(Frame::Integer(
        remaining(ctx, &args[1]).map_or_else(|code| code, |ms| (ms + 500) / 1000),
    ))
}

pub fn pttl(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    Ok(Frame::Integer(
        remaining(ctx, &args[1]).unwrap_or_else(|code| code),
    ))
}

/// Milliseconds left, or `Err(-2)` (no key) / `Err(-1)` (no expiry).
fn remaining(ctx: &Ctx<'_>, key: &[u8]) -> Result<i64, i64> {
    let entry = ctx.db.get(key).ok_or(-2)?;
    if entry.expires_at_ms == 0 {
        return Err(-1);
    }
    Ok(entry.expires_at_ms.saturating_sub(ctx.now_ms) as i64)
}
