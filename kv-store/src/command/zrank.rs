//! `ZRANK key member [WITHSCORE]` and `ZREVRANK`.

use bytes::Bytes;

use super::parse::{is, syntax_error};
use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn zrank(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    rank(ctx, args, false)
}

pub fn zrevrank(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    rank(ctx, args, true)
}

fn rank(ctx: &mut Ctx<'_>, args: &[Bytes], rev: bool) -> Reply {
    let with_score = match args.get(3) {
        None => false,
        Some(option) if is(option, "WITHSCORE") && args.len() == 4 => true,
        Some(_) => return Err(syntax_error()),
    };
    let Some(zset) = ctx.db.zset(&args[1])? else {
        return Ok(if with_score {
            Frame::NullArray
        } else {
            Frame::Null
        });
    };
    let (Some(rank), Some(score)) = (zset.rank(&args[2]), zset.score(&args[2])) else {
        return Ok(if with_score {
            Frame::NullArray
        } else {
            Frame::Null
        });
    };
    let rank = if rev { zset.len() - 1 - rank } else { rank } as i64;
    Ok(if with_score {
        Frame::Array(vec![Frame::Integer(rank), Frame::Double(score)])
    } else {
        Frame::Integer(rank)
    })
}
