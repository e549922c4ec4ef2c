//! `LPOP key [count]` and `RPOP key [count]`: one element (or null), or with a count an array
//! (or a null array if the key does not exist).

use bytes::Bytes;

use super::parse::{count, syntax_error};
use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn lpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    pop(ctx, args, true)
}

pub fn rpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    pop(ctx, args, false)
}

fn pop(ctx: &mut Ctx<'_>, args: &[Bytes], front: bool) -> Reply {
    let wanted = match args {
        [_, _] => None,
        [_, _, n] => Some(count(n)?),
        _ => return Err(syntax_error()),
    };
    let Some(list) = ctx.db.list_mut(&args[1])? else {
        return Ok(if wanted.is_some() {
            Frame::NullArray
        } else {
            Frame::Null
        });
    };
    let take = wanted.unwrap_or(1).min(list.len());
    let popped: Vec<Bytes> = (0..take)
        .filter_map(|_| {
            if front {
                list.pop_front()
            } else {
                list.pop_back()
            }
        })
        .collect();
    if !popped.is_empty() {
        ctx.db.remove_if_empty(&args[1]);
        ctx.changed();
    }
    Ok(match wanted {
        None => popped.into_iter().next().map_or(Frame::Null, Frame::Bulk),
        Some(_) => Frame::bulks(popped),
    })
}
