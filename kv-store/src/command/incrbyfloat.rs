//! `INCRBYFLOAT key increment`, logged as `SET key <result> KEEPTTL` as Redis propagates it,
//! so replay does not depend on float formatting of intermediate values.

use bytes::Bytes;

use super::parse::{float, owned, parse_float};
use super::{Ctx, Reply};
use crate::db::Value;
use crate::resp::Frame;
use crate::resp::format_double;

pub fn incrbyfloat(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let key = &args[1];
    let delta = float(&args[2])?;
    let current = match ctx.db.string(key)? {
        Some(value) => {
            parse_float(value).ok_or_else(|| Frame::error("ERR value is not a valid float"))?
        }
        None => 0.0,
    };
    let next = current + delta;
    if !next.is_finite() {
        return Err(Frame::error("ERR increment would produce NaN or Infinity"));
    }
    let text = Bytes::from(format_double(next));
    match ctx.db.string_mut(key)? {
        Some(value) => *value = text.clone(),
        None => ctx.db.set(owned(key), Value::Str(text.clone()), 0),
    }
    ctx.propagate(vec![
        Bytes::from_static(b"SET"),
        key.clone(),
        text.clone(),
        Bytes::from_static(b"KEEPTTL"),
    ]);
    Ok(Frame::Bulk(text))
}
