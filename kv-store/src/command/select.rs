//! `SELECT index`: only database 0 exists, as in Redis Cluster.

use bytes::Bytes;

use super::{Ctx, Reply, parse};
use crate::resp::Frame;

pub fn select(_ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    match parse::int(&args[1])? {
        0 => Ok(Frame::OK),
        _ => Err(Frame::error("ERR DB index is out of range")),
    }
}
