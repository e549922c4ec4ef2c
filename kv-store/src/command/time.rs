//! `TIME`: the server's clock as `[seconds, microseconds]`.

use bytes::Bytes;

use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn time(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> Reply {
    let now_ms = ctx.shared.clock.now_ms();
    Ok(Frame::Array(vec![
        Frame::bulk((now_ms / 1000).to_string()),
        Frame::bulk(((now_ms % 1000) * 1000).to_string()),
    ]))
}
