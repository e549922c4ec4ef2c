//! `PING [message]`: `+PONG`, or the message as a bulk string.

use bytes::Bytes;

use super::parse::wrong_args;
use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn ping(_ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    match args {
        [_] => Ok(Frame::Simple("PONG")),
        [_, message] => Ok(Frame::Bulk(message.clone())),
        _ => Err(wrong_args("ping")),
    }
}
