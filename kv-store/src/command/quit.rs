//! `QUIT`: answers `+OK`, and the connection closes after writing it.

use bytes::Bytes;

use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn quit(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> Reply {
    ctx.session.closing = true;
    Ok(Frame::OK)
}
