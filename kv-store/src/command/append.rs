//! `APPEND key value`: appends, creating the key if needed; answers the new length.
//! (Each append copies the value: O(length), where Redis's preallocated strings are amortized
//! O(1).)

use bytes::Bytes;

use super::parse::owned;
use super::{Ctx, Reply};
use crate::db::Value;
use crate::resp::Frame;

pub fn append(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let (key, tail) = (&args[1], &args[2]);
    let length = match ctx.db.string_mut(key)? {
        Some(value) => {
            let mut joined = Vec::with_capacity(value.len() + tail.len());
            joined.extend_from_slice(value);
            joined.extend_from_slice(tail);
            *value = Bytes::from(joined);
            value.len()
        }
        None => {
            ctx.db.set(owned(key), Value::Str(owned(tail)), 0);
            tail.len()
        }
    };
    ctx.changed();
    Ok(Frame::Integer(length as i64))
}
