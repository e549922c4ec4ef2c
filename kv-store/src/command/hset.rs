//! `HSET key field value [field value ...]` (answers how many fields were new) and its older
//! form `HMSET` (answers `+OK`).

use bytes::Bytes;

use super::parse::{owned, wrong_args};
use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn hset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    set_fields(ctx, args, "hset").map(|added| Frame::Integer(added as i64))
}

pub fn hmset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    set_fields(ctx, args, "hmset").map(|_| Frame::OK)
}

fn set_fields(ctx: &mut Ctx<'_>, args: &[Bytes], name: &str) -> Result<usize, Frame> {
    if !args.len().is_multiple_of(2) {
        return Err(wrong_args(name));
    }
    let hash = ctx.db.hash_or_new(&args[1])?;
    let added = args[2..]
        .chunks(2)
        .filter(|pair| hash.insert(owned(&pair[0]), owned(&pair[1])).is_none())
        .count();
    ctx.changed();
    Ok(added)
}
