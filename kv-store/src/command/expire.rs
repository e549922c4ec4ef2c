//! `EXPIRE`, `PEXPIRE`, `EXPIREAT`, `PEXPIREAT key time [NX|XX|GT|LT]`: one body, four units.
//!
//! Every form is logged as `PEXPIREAT key <unix ms>` (or as `DEL` when the time has already
//! passed), so replaying the log never depends on when it is replayed.

use bytes::Bytes;

use super::parse::{int, is, text};
use super::{Ctx, Reply};
use crate::resp::Frame;

/// How a command's time argument is to be read.
#[derive(Clone, Copy)]
pub(crate) enum Unit {
    Seconds,
    Millis,
}

pub fn expire(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    set_expiry(ctx, args, Unit::Seconds, false, "expire")
}

pub fn pexpire(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    set_expiry(ctx, args, Unit::Millis, false, "pexpire")
}

pub fn expireat(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    set_expiry(ctx, args, Unit::Seconds, true, "expireat")
}

pub fn pexpireat(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    set_expiry(ctx, args, Unit::Millis, true, "pexpireat")
}

/// Converts a time argument to an absolute Unix time in ms; `None` on overflow.
pub(crate) fn deadline_ms(amount: i64, unit: Unit, absolute: bool, now_ms: u64) -> Option<i64> {
    let ms = match unit {
        Unit::Seconds => amount.checked_mul(1000)?,
        Unit::Millis => amount,
    };
    if absolute {
        Some(ms)
    } else {
        ms.checked_add(now_ms as i64)
    }
}

#[derive(Default)]
struct Conditions {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
}

fn conditions(options: &[Bytes]) -> Result<Conditions, Frame> {
    let mut c = Conditions::default();
    for option in options {
        match () {
            () if is(option, "NX") => c.nx = true,
            () if is(option, "XX") => c.xx = true,
            () if is(option, "GT") => c.gt = true,
            () if is(option, "LT") => c.lt = true,
            () => {
                return Err(Frame::error(format!(
                    "ERR Unsupported option {}",
                    text(option)
                )));
            }
        }
    }
    if c.nx && (c.xx || c.gt || c.lt) {
        return Err(Frame::error(
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if c.gt && c.lt {
        return Err(Frame::error(
            "ERR GT and LT options at the same time are not compatible",
        ));
    }
    Ok(c)
}

fn set_expiry(ctx: &mut Ctx<'_>, args: &[Bytes], unit: Unit, absolute: bool, name: &str) -> Reply {
    let key = &args[1];
    let amount = int(&args[2])?;
    let conditions = conditions(&args[3..])?;
    let Some(when) = deadline_ms(amount, unit, absolute, ctx.now_ms) else {
        return Err(Frame::error(format!(
            "ERR invalid expire time in '{name}' command"
        )));
    };
    let Some(entry) = ctx.db.get(key) else {
        return Ok(Frame::Integer(0));
    };
    // A key without a TTL counts as expiring at infinity for GT and LT.
    let current = (entry.expires_at_ms != 0).then_some(entry.expires_at_ms as i64);
    let allowed = (!conditions.nx || current.is_none())
        && (!conditions.xx || current.is_some())
        && (!conditions.gt || current.is_some_and(|c| when > c))
        && (!conditions.lt || current.is_none_or(|c| when < c));
    if !allowed {
        return Ok(Frame::Integer(0));
    }
    if when <= ctx.now_ms as i64 && !ctx.replaying {
        ctx.db.remove(key);
        ctx.propagate(vec![Bytes::from_static(b"DEL"), key.clone()]);
        return Ok(Frame::Integer(1));
    }
    ctx.db.set_expiry(key, when.max(1) as u64);
    ctx.propagate(vec![
        Bytes::from_static(b"PEXPIREAT"),
        key.clone(),
        Bytes::from(when.to_string()),
    ]);
    Ok(Frame::Integer(1))
}
