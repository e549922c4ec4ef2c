//! `ZRANGE key start stop [BYSCORE | BYLEX] [REV] [LIMIT offset count] [WITHSCORES]`.
//!
//! By rank (the default) `start`/`stop` are indexes; with `BYSCORE` they are score bounds,
//! `(` marking an exclusive one and `-inf`/`+inf` allowed; with `BYLEX` they are member
//! bounds, `[m` inclusive, `(m` exclusive, `-` and `+` the ends, over a set whose members
//! all have one score (a sorted set used as an ordered index, as Redis assumes). With `REV`
//! the order is descending and, for `BYSCORE` and `BYLEX`, the bounds are given high first.

use std::ops::Bound;

use bytes::Bytes;

use super::parse::{index_range, int, is, parse_float, syntax_error};
use super::{Ctx, Reply};
use crate::db::ZSet;
use crate::resp::{Frame, Protocol};

struct Query {
    by_score: bool,
    by_lex: bool,
    rev: bool,
    limit: Option<(i64, i64)>,
    with_scores: bool,
}

fn query(args: &[Bytes]) -> Result<Query, Frame> {
    let mut q = Query {
        by_score: false,
        by_lex: false,
        rev: false,
        limit: None,
        with_scores: false,
    };
    let mut at = 0;
    while let Some(arg) = args.get(at) {
        if is(arg, "BYSCORE") {
            q.by_score = true;
        } else if is(arg, "REV") {
            q.rev = true;
        } else if is(arg, "WITHSCORES") {
            q.with_scores = true;
        } else if is(arg, "LIMIT") && at + 2 < args.len() {
            q.limit = Some((int(&args[at + 1])?, int(&args[at + 2])?));
            at += 2;
        } else if is(arg, "BYLEX") {
            q.by_lex = true;
        } else {
            return Err(syntax_error());
        }
        at += 1;
    }
    if q.by_score && q.by_lex {
        return Err(syntax_error());
    }
    if q.by_lex && q.with_scores {
        return Err(Frame::error(
            "ERR syntax error, WITHSCORES not supported in combination with BYLEX",
        ));
    }
    if q.limit.is_some() && !q.by_score && !q.by_lex {
        return Err(Frame::error(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        ));
    }
    Ok(q)
}

/// A score bound: value and whether it is exclusive.
fn bound(arg: &[u8]) -> Result<(f64, bool), Frame> {
    let error = || Frame::error("ERR min or max is not a float");
    match arg.split_first() {
        Some((b'(', rest)) => parse_float(rest).map(|v| (v, true)).ok_or_else(error),
        _ => parse_float(arg).map(|v| (v, false)).ok_or_else(error),
    }
}

pub fn zrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let q = query(&args[4..])?;
    let protocol = ctx.session.protocol;
    let Some(zset) = ctx.db.zset(&args[1])? else {
        return Ok(Frame::Array(Vec::new()));
    };
    let members = if q.by_score {
        by_score(zset, &args[2], &args[3], &q)?
    } else if q.by_lex {
        by_lex(zset, &args[2], &args[3], &q)?
    } else {
        by_rank(zset, int(&args[2])?, int(&args[3])?, q.rev)
    };
    Ok(reply(members, q.with_scores, protocol))
}

fn by_rank(zset: &ZSet, start: i64, stop: i64, rev: bool) -> Vec<(Bytes, f64)> {
    let Some((from, to)) = index_range(start, stop, zset.len()) else {
        return Vec::new();
    };
    let take = to - from + 1;
    let pick = |(m, s): (&Bytes, f64)| (m.clone(), s);
    if rev {
        zset.iter().rev().skip(from).take(take).map(pick).collect()
    } else {
        zset.iter().skip(from).take(take).map(pick).collect()
    }
}

fn by_score(
    zset: &ZSet,
    first: &[u8],
    second: &[u8],
    q: &Query,
) -> Result<Vec<(Bytes, f64)>, Frame> {
    let (min, max) = if q.rev {
        (bound(second)?, bound(first)?)
    } else {
        (bound(first)?, bound(second)?)
    };
    let above_min = |s: f64| if min.1 { s > min.0 } else { s >= min.0 };
    let below_max = |s: f64| if max.1 { s < max.0 } else { s <= max.0 };
    let (offset, count) = q.limit.unwrap_or((0, -1));
    if offset < 0 {
        return Ok(Vec::new());
    }
    let count = if count < 0 {
        usize::MAX
    } else {
        count as usize
    };
    let in_range = |(_, s): &(&Bytes, f64)| above_min(*s) && below_max(*s);
    let pick = |(m, s): (&Bytes, f64)| (m.clone(), s);
    let members = if q.rev {
        zset.iter()
            .rev()
            .filter(in_range)
            .skip(offset as usize)
            .take(count)
            .map(pick)
            .collect()
    } else {
        zset.iter()
            .filter(in_range)
            .skip(offset as usize)
            .take(count)
            .map(pick)
            .collect()
    };
    Ok(members)
}

/// A member bound of `BYLEX`: `-`, `+`, `[member` or `(member`.
fn lex_bound(arg: &[u8]) -> Result<Bound<&[u8]>, Frame> {
    match arg.split_first() {
        Some((b'-', [])) => Ok(Bound::Unbounded),
        Some((b'+', [])) => Ok(Bound::Unbounded),
        Some((b'[', rest)) => Ok(Bound::Included(rest)),
        Some((b'(', rest)) => Ok(Bound::Excluded(rest)),
        _ => Err(Frame::error("ERR min or max not valid string range item")),
    }
}

fn by_lex(zset: &ZSet, first: &[u8], second: &[u8], q: &Query) -> Result<Vec<(Bytes, f64)>, Frame> {
    let (min, max) = if q.rev {
        (second, first)
    } else {
        (first, second)
    };
    // `+` as a minimum or `-` as a maximum is an empty range, not the whole set.
    if min == b"+" || max == b"-" {
        return Ok(Vec::new());
    }
    let (min, max) = (lex_bound(min)?, lex_bound(max)?);
    let (offset, count) = q.limit.unwrap_or((0, -1));
    if offset < 0 {
        return Ok(Vec::new());
    }
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    let pick = |(m, s): (&Bytes, f64)| (m.clone(), s);
    let range = zset.range_lex(min, max);
    let members = if q.rev {
        range
            .rev()
            .skip(offset as usize)
            .take(count)
            .map(pick)
            .collect()
    } else {
        range.skip(offset as usize).take(count).map(pick).collect()
    };
    Ok(members)
}

/// Members, and with scores: `[m, s, m, s]` in RESP2, `[[m, s], [m, s]]` in RESP3 (Redis 7).
pub fn reply(members: Vec<(Bytes, f64)>, with_scores: bool, protocol: Protocol) -> Frame {
    if !with_scores {
        return Frame::bulks(members.into_iter().map(|(m, _)| m));
    }
    if protocol == Protocol::Resp3 {
        return Frame::Array(
            members
                .into_iter()
                .map(|(m, s)| Frame::Array(vec![Frame::Bulk(m), Frame::Double(s)]))
                .collect(),
        );
    }
    Frame::Array(
        members
            .into_iter()
            .flat_map(|(m, s)| [Frame::Bulk(m), Frame::Double(s)])
            .collect(),
    )
}
