//! `COMMAND [COUNT | LIST | INFO [name ...] | DOCS [name ...] | GETKEYS command arg ...]`.
//!
//! The reply shape per command is Redis 7's: name, arity, flags, first key, last key, step,
//! ACL categories, tips, key specifications, subcommands. Cluster clients read the key
//! positions; `redis-cli` reads `DOCS` for its hints.

use bytes::Bytes;

use super::parse::{is, unknown_subcommand};
use super::{Ctx, Reply, Spec, lookup, table};
use crate::resp::Frame;

pub fn command(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let _ = ctx;
    let Some(sub) = args.get(1) else {
        return Ok(Frame::Array(table().iter().map(describe).collect()));
    };
    if is(sub, "COUNT") && args.len() == 2 {
        Ok(Frame::Integer(table().len() as i64))
    } else if is(sub, "LIST") && args.len() == 2 {
        Ok(Frame::Array(
            table().iter().map(|s| Frame::bulk(s.name)).collect(),
        ))
    } else if is(sub, "INFO") {
        let specs: Vec<Frame> = if args.len() == 2 {
            table().iter().map(describe).collect()
        } else {
            args[2..]
                .iter()
                .map(|name| lookup(name).map_or(Frame::NullArray, describe))
                .collect()
        };
        Ok(Frame::Array(specs))
    } else if is(sub, "DOCS") {
        let specs: Vec<&Spec> = if args.len() == 2 {
            table().iter().collect()
        } else {
            args[2..].iter().filter_map(|name| lookup(name)).collect()
        };
        Ok(Frame::Map(
            specs
                .into_iter()
                .map(|s| (Frame::bulk(s.name), docs(s)))
                .collect(),
        ))
    } else if is(sub, "GETKEYS") && args.len() >= 3 {
        get_keys(&args[2..])
    } else {
        Err(unknown_subcommand(sub, "COMMAND"))
    }
}

fn describe(spec: &Spec) -> Frame {
    let mut categories = vec![Frame::Simple(category(spec.group))];
    categories.push(Frame::Simple(if spec.is_write() {
        "@write"
    } else {
        "@read"
    }));
    Frame::Array(vec![
        Frame::bulk(spec.name),
        Frame::Integer(i64::from(spec.arity)),
        Frame::Set(spec.flag_names().map(Frame::Simple).collect()),
        Frame::Integer(i64::from(spec.first_key)),
        Frame::Integer(i64::from(spec.last_key)),
        Frame::Integer(i64::from(spec.step)),
        Frame::Set(categories),
        Frame::Array(Vec::new()),
        Frame::Array(Vec::new()),
        Frame::Array(Vec::new()),
    ])
}

fn category(group: &str) -> &'static str {
    match group {
        "string" => "@string",
        "hash" => "@hash",
        "list" => "@list",
        "set" => "@set",
        "sorted-set" => "@sortedset",
        "generic" => "@keyspace",
        "connection" => "@connection",
        _ => "@admin",
    }
}

fn docs(spec: &Spec) -> Frame {
    Frame::Map(vec![
        (Frame::bulk("summary"), Frame::bulk(spec.summary)),
        (Frame::bulk("since"), Frame::bulk("1.0.0")),
        (Frame::bulk("group"), Frame::bulk(spec.group)),
    ])
}

fn get_keys(call: &[Bytes]) -> Reply {
    let Some(spec) = lookup(&call[0]) else {
        return Err(Frame::error("ERR Invalid command specified"));
    };
    if !spec.arity_ok(call.len()) {
        return Err(Frame::error(
            "ERR Invalid number of arguments specified for command",
        ));
    }
    let keys: Vec<Frame> = spec
        .key_positions(call.len())
        .map(|i| Frame::Bulk(call[i].clone()))
        .collect();
    if keys.is_empty() {
        return Err(Frame::error("ERR The command has no key arguments"));
    }
    Ok(Frame::Array(keys))
}
