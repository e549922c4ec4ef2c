//! `SETEX key seconds value` and `PSETEX key milliseconds value`, logged as `SET ... PXAT`.

use bytes::Bytes;

use super::expire::{Unit, deadline_ms};
use super::parse::{int, owned};
use super::{Ctx, Reply};
use crate::db::Value;
use crate::resp::Frame;

pub fn setex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    set_with_ttl(ctx, args, Unit::Seconds, "setex")
}

pub fn psetex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    set_with_ttl(ctx, args, Unit::Millis, "psetex")
}

fn set_with_ttl(ctx: &mut Ctx<'_>, args: &[Bytes], unit: Unit, name: &str) -> Reply {
    let (key, amount, value) = (&args[1], int(&args[2])?, &args[3]);
    let when = deadline_ms(amount, unit, false, ctx.now_ms).filter(|_| amount > 0);
    let when =
        when.ok_or_else(|| Frame::error(format!("ERR invalid expire time in '{name}' command")))?;
    ctx.db
        .set(owned(key), Value::Str(owned(value)), when as u64);
    ctx.propagate(vec![
        Bytes::from_static(b"SET"),
        key.clone(),
        value.clone(),
        Bytes::from_static(b"PXAT"),
        Bytes::from(when.to_string()),
    ]);
    Ok(Frame::OK)
}
