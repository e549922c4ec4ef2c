//! `SETRANGE key offset value`: overwrites from `offset`, padding with zero bytes.

use bytes::Bytes;

use super::parse::{int, owned};
use super::{Ctx, Reply};
use crate::db::Value;
use crate::resp::Frame;

pub fn setrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let (key, value) = (&args[1], &args[3]);
    let offset = int(&args[2])?;
    if offset < 0 {
        return Err(Frame::error("ERR offset is out of range"));
    }
    let offset = offset as usize;
    let current = ctx.db.string(key)?.cloned();
    if value.is_empty() {
        return Ok(Frame::Integer(current.map_or(0, |v| v.len() as i64)));
    }
    if offset + value.len() > ctx.shared.limits.max_bulk_bytes {
        return Err(Frame::error(
            "ERR string exceeds maximum allowed size (proto-max-bulk-len)",
        ));
    }
    let mut bytes = current.map(|v| v.to_vec()).unwrap_or_default();
    if bytes.len() < offset + value.len() {
        bytes.resize(offset + value.len(), 0);
    }
    bytes[offset..offset + value.len()].copy_from_slice(value);
    let length = bytes.len();
    match ctx.db.string_mut(key)? {
        Some(stored) => *stored = Bytes::from(bytes),
        None => ctx.db.set(owned(key), Value::Str(Bytes::from(bytes)), 0),
    }
    ctx.changed();
    Ok(Frame::Integer(length as i64))
}
