//! `ZSCORE key member`.

use bytes::Bytes;

use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn zscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let score = ctx.db.zset(&args[1])?.and_then(|z| z.score(&args[2]));
    Ok(score.map_or(Frame::Null, Frame::Double))
}
