//! `FLUSHDB [ASYNC|SYNC]` and `FLUSHALL [ASYNC|SYNC]`: with one database they are the same.

use bytes::Bytes;

use super::parse::{is, syntax_error};
use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn flushdb(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    flush(ctx, args)
}

pub fn flushall(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    flush(ctx, args)
}

fn flush(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    match args {
        [_] => {}
        [_, mode] if is(mode, "ASYNC") || is(mode, "SYNC") => {}
        _ => return Err(syntax_error()),
    }
    ctx.db.clear();
    ctx.propagate(vec![Bytes::from_static(b"FLUSHALL")]);
    Ok(Frame::OK)
}
