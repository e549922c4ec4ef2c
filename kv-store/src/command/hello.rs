//! `HELLO [protover [AUTH username password] [SETNAME clientname]]`: chooses RESP2 or RESP3,
//! optionally authenticates and names the connection, and answers with the server's
//! description (a map of seven fields that client libraries read).

use bytes::Bytes;

use super::auth::check_password;
use super::client::set_name;
use super::parse::{is, text};
use super::{Ctx, Reply};
use crate::resp::{Frame, Protocol};

/// The Redis version we answer with. Clients choose features by it; these commands behave as
/// Redis 7.2's do.
pub const REDIS_VERSION: &str = "7.2.4";

pub fn hello(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let mut protocol = ctx.session.protocol;
    if let Some(version) = args.get(1) {
        protocol = match super::parse::int(version) {
            Ok(2) => Protocol::Resp2,
            Ok(3) => Protocol::Resp3,
            Ok(_) => return Err(Frame::error("NOPROTO unsupported protocol version")),
            Err(_) => {
                return Err(Frame::error(
                    "ERR Protocol version is not an integer or out of range",
                ));
            }
        };
    }
    let mut name = None;
    let mut rest = args.get(2..).unwrap_or_default();
    while let Some((option, tail)) = rest.split_first() {
        if is(option, "AUTH") && tail.len() >= 2 {
            check_password(ctx, Some(&tail[0]), &tail[1])?;
            rest = &tail[2..];
        } else if is(option, "SETNAME") && !tail.is_empty() {
            name = Some(tail[0].clone());
            rest = &tail[1..];
        } else {
            return Err(Frame::error(format!(
                "ERR Syntax error in HELLO option '{}'",
                text(option)
            )));
        }
    }
    if ctx.settings.requirepass.is_some() && !ctx.session.authenticated {
        return Err(Frame::error(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the \
             HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and \
             select the RESP protocol version at the same time",
        ));
    }
    if let Some(name) = name {
        set_name(ctx, &name)?;
    }
    ctx.session.set_protocol(protocol);
    Ok(server_description(ctx, protocol))
}

fn server_description(ctx: &Ctx<'_>, protocol: Protocol) -> Frame {
    let field = |name: &'static str, value: Frame| (Frame::Simple(name), value);
    Frame::Map(vec![
        field("server", Frame::bulk("redis")),
        field("version", Frame::bulk(REDIS_VERSION)),
        field(
            "proto",
            Frame::Integer(if protocol == Protocol::Resp3 { 3 } else { 2 }),
        ),
        field("id", Frame::Integer(ctx.session.info.id as i64)),
        field("mode", Frame::bulk("standalone")),
        field("role", Frame::bulk("master")),
        field("modules", Frame::Array(Vec::new())),
    ])
}
