//! `SPOP key [count]`: removes random members, logged as the `SREM` of the members chosen, so
//! that the random choice is made once, here, and never again at replay.
//!
//! Choosing a member walks the set to a random position (O(n)); Redis's dict picks a random
//! bucket in O(1).

use bytes::Bytes;
use rand::RngExt;

use super::parse::{count, syntax_error};
use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn spop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let wanted = match args {
        [_, _] => None,
        [_, _, n] => Some(count(n)?),
        _ => return Err(syntax_error()),
    };
    let key = &args[1];
    let Some(set) = ctx.db.set_of_mut(key)? else {
        return Ok(if wanted.is_some() {
            Frame::Set(Vec::new())
        } else {
            Frame::Null
        });
    };
    let mut popped = Vec::new();
    for _ in 0..wanted.unwrap_or(1).min(set.len()) {
        let position = ctx.rng.random_range(0..set.len());
        let member = set
            .iter()
            .nth(position)
            .cloned()
            .expect("position below len");
        set.remove(&member);
        popped.push(member);
    }
    if !popped.is_empty() {
        ctx.db.remove_if_empty(key);
        let mut logged = vec![Bytes::from_static(b"SREM"), key.clone()];
        logged.extend(popped.iter().cloned());
        ctx.propagate(logged);
    }
    Ok(match wanted {
        None => popped.into_iter().next().map_or(Frame::Null, Frame::Bulk),
        Some(_) => Frame::Set(popped.into_iter().map(Frame::Bulk).collect()),
    })
}
