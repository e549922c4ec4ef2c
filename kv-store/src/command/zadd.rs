//! `ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member ...]`.

use bytes::Bytes;

use super::parse::{float, is, owned, syntax_error};
use super::{Ctx, Reply};
use crate::resp::Frame;

#[derive(Default)]
struct Flags {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
    ch: bool,
    incr: bool,
}

fn flags(args: &[Bytes]) -> Result<(Flags, &[Bytes]), Frame> {
    let mut f = Flags::default();
    let mut at = 0;
    while let Some(arg) = args.get(at) {
        match () {
            () if is(arg, "NX") => f.nx = true,
            () if is(arg, "XX") => f.xx = true,
            () if is(arg, "GT") => f.gt = true,
            () if is(arg, "LT") => f.lt = true,
            () if is(arg, "CH") => f.ch = true,
            () if is(arg, "INCR") => f.incr = true,
            () => break,
        }
        at += 1;
    }
    let pairs = &args[at..];
    if f.nx && f.xx {
        return Err(Frame::error(
            "ERR XX and NX options at the same time are not compatible",
        ));
    }
    if (f.gt && f.lt) || (f.nx && (f.gt || f.lt)) {
        return Err(Frame::error(
            "ERR GT, LT, and/or NX options at the same time are not compatible",
        ));
    }
    if pairs.is_empty() || !pairs.len().is_multiple_of(2) {
        return Err(syntax_error());
    }
    if f.incr && pairs.len() != 2 {
        return Err(Frame::error(
            "ERR INCR option supports a single increment-element pair",
        ));
    }
    Ok((f, pairs))
}

pub fn zadd(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let key = &args[1];
    let (f, pairs) = flags(&args[2..])?;
    // Every score is checked before anything changes.
    let scores = pairs
        .chunks(2)
        .map(|pair| float(&pair[0]))
        .collect::<Result<Vec<_>, _>>()?;
    if ctx.db.zset(key)?.is_none() && f.xx {
        return Ok(if f.incr {
            Frame::Null
        } else {
            Frame::Integer(0)
        });
    }
    let zset = ctx.db.zset_or_new(key)?;
    let (mut added, mut updated) = (0, 0);
    let mut incr_result = None;
    for (pair, score) in pairs.chunks(2).zip(scores) {
        let member = &pair[1];
        let current = zset.score(member);
        let mut next = score;
        if f.incr {
            next = current.unwrap_or(0.0) + score;
            if next.is_nan() {
                ctx.db.remove_if_empty(key);
                return Err(Frame::error("ERR resulting score is not a number (NaN)"));
            }
        }
        let allowed = match current {
            None => !f.xx,
            Some(old) => !f.nx && (!f.gt || next > old) && (!f.lt || next < old),
        };
        if !allowed {
            continue;
        }
        incr_result = Some(next);
        match current {
            None => added += 1,
            Some(old) if old != next => updated += 1,
            Some(_) => continue,
        }
        zset.insert(owned(member), next);
    }
    ctx.db.remove_if_empty(key);
    if added + updated > 0 {
        ctx.changed();
    }
    if f.incr {
        return Ok(incr_result.map_or(Frame::Null, Frame::Double));
    }
    Ok(Frame::Integer(if f.ch { added + updated } else { added }))
}
