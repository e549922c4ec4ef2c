//! `ECHO message`.

use bytes::Bytes;

use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn echo(_ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    Ok(Frame::Bulk(args[1].clone()))
}
