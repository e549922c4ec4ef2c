//! `ZPOPMIN key [count]` and `ZPOPMAX key [count]`: without a count, `[member, score]`; with
//! one, that flattened in RESP2 and as pairs in RESP3.

use bytes::Bytes;

use super::parse::{count, syntax_error};
use super::zrange::reply;
use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn zpopmin(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    pop(ctx, args, false)
}

pub fn zpopmax(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    pop(ctx, args, true)
}

fn pop(ctx: &mut Ctx<'_>, args: &[Bytes], max: bool) -> Reply {
    let wanted = match args {
        [_, _] => None,
        [_, _, n] => Some(count(n)?),
        _ => return Err(syntax_error()),
    };
    let protocol = ctx.session.protocol;
    let Some(zset) = ctx.db.zset_mut(&args[1])? else {
        return Ok(Frame::Array(Vec::new()));
    };
    let popped: Vec<(Bytes, f64)> = (0..wanted.unwrap_or(1))
        .map_while(|_| if max { zset.pop_max() } else { zset.pop_min() })
        .collect();
    if !popped.is_empty() {
        ctx.db.remove_if_empty(&args[1]);
        ctx.changed();
    }
    Ok(match wanted {
        None => reply(popped, true, crate::resp::Protocol::Resp2),
        Some(_) => reply(popped, true, protocol),
    })
}
