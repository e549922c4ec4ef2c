//! `RESET`: the connection back to how it started: RESP2, no name, and, if a password is set,
//! not authenticated.

use bytes::Bytes;

use super::{Ctx, Reply};
use crate::resp::{Frame, Protocol};

pub fn reset(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> Reply {
    ctx.session.set_protocol(Protocol::Resp2);
    ctx.session.info.details().name = None;
    ctx.session.authenticated = ctx.settings.requirepass.is_none();
    Ok(Frame::Simple("RESET"))
}
