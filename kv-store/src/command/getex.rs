//! `GETEX key [EX s|PX ms|EXAT s|PXAT ms|PERSIST]`: returns the value and changes its expiry,
//! logged as `PEXPIREAT`, `PERSIST` or (for a time already past) `DEL`.

use bytes::Bytes;

use super::expire::{Unit, deadline_ms};
use super::parse::{int, is, syntax_error};
use super::{Ctx, Reply};
use crate::resp::Frame;

enum Change {
    Keep,
    Persist,
    At(i64),
}

fn change(ctx: &Ctx<'_>, options: &[Bytes]) -> Result<Change, Frame> {
    match options {
        [] => Ok(Change::Keep),
        [option] if is(option, "PERSIST") => Ok(Change::Persist),
        [option, amount] => {
            let unit = match () {
                () if is(option, "EX") => (Unit::Seconds, false),
                () if is(option, "PX") => (Unit::Millis, false),
                () if is(option, "EXAT") => (Unit::Seconds, true),
                () if is(option, "PXAT") => (Unit::Millis, true),
                () => return Err(syntax_error()),
            };
            let amount = int(amount)?;
            deadline_ms(amount, unit.0, unit.1, ctx.now_ms)
                .filter(|_| amount > 0)
                .map(Change::At)
                .ok_or_else(|| Frame::error("ERR invalid expire time in 'getex' command"))
        }
        _ => Err(syntax_error()),
    }
}

pub fn getex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let key = &args[1];
    let change = change(ctx, &args[2..])?;
    let Some(value) = ctx.db.string(key)?.cloned() else {
        return Ok(Frame::Null);
    };
    match change {
        Change::Keep => {}
        Change::Persist => {
            if ctx.db.get(key).is_some_and(|e| e.expires_at_ms != 0) {
                ctx.db.set_expiry(key, 0);
                ctx.propagate(vec![Bytes::from_static(b"PERSIST"), key.clone()]);
            }
        }
        Change::At(when) if when <= ctx.now_ms as i64 => {
            ctx.db.remove(key);
            ctx.propagate(vec![Bytes::from_static(b"DEL"), key.clone()]);
        }
        Change::At(when) => {
            ctx.db.set_expiry(key, when as u64);
            let when = Bytes::from(when.to_string());
            ctx.propagate(vec![Bytes::from_static(b"PEXPIREAT"), key.clone(), when]);
        }
    }
    Ok(Frame::Bulk(value))
}
