//! `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`: a step of a walk over the keys,
//! with Redis's guarantee (a key present throughout is returned at least once); see `Db::scan`.

use bytes::Bytes;

use super::parse::{count, is, syntax_error};
use super::{Ctx, Reply};
use crate::glob;
use crate::resp::Frame;

/// Default `COUNT`, as Redis.
const DEFAULT_COUNT: usize = 10;

pub fn scan(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let cursor: usize = std::str::from_utf8(&args[1])
        .ok()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| Frame::error("ERR invalid cursor"))?;
    let (mut pattern, mut type_name, mut step) = (None, None, DEFAULT_COUNT);
    let mut options = args[2..].chunks(2);
    for pair in options.by_ref() {
        let [option, value] = pair else {
            return Err(syntax_error());
        };
        if is(option, "MATCH") {
            pattern = Some(value.clone());
        } else if is(option, "COUNT") {
            step = count(value)?;
            if step == 0 {
                return Err(syntax_error());
            }
        } else if is(option, "TYPE") {
            type_name = Some(String::from_utf8_lossy(value).to_lowercase());
        } else {
            return Err(syntax_error());
        }
    }
    let now = ctx.now_ms;
    let mut keys = Vec::new();
    let next = ctx.db.scan(cursor, step, |key, entry| {
        let live = entry.expires_at_ms == 0 || entry.expires_at_ms > now;
        let matched = pattern
            .as_ref()
            .is_none_or(|p| glob::matches(p, key, false));
        let typed = type_name
            .as_deref()
            .is_none_or(|t| t == entry.value.type_name());
        if live && matched && typed {
            keys.push(Frame::Bulk(key.clone()));
        }
    });
    Ok(Frame::Array(vec![
        Frame::bulk(next.to_string()),
        Frame::Array(keys),
    ]))
}
