//! `CLIENT ID | SETNAME name | GETNAME | SETINFO LIB-NAME|LIB-VER value | INFO | LIST`.

use bytes::Bytes;

use super::parse::{is, text, unknown_subcommand};
use super::{Ctx, Reply};
use crate::resp::Frame;

pub fn client(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let sub = &args[1];
    let argc = args.len();
    let wrong = |name: &str| {
        Frame::error(format!(
            "ERR wrong number of arguments for 'client|{name}' command"
        ))
    };
    if is(sub, "ID") {
        if argc != 2 {
            return Err(wrong("id"));
        }
        Ok(Frame::Integer(ctx.session.info.id as i64))
    } else if is(sub, "SETNAME") {
        if argc != 3 {
            return Err(wrong("setname"));
        }
        set_name(ctx, &args[2])?;
        Ok(Frame::OK)
    } else if is(sub, "GETNAME") {
        if argc != 2 {
            return Err(wrong("getname"));
        }
        Ok(ctx
            .session
            .info
            .details()
            .name
            .clone()
            .map_or(Frame::Null, Frame::Bulk))
    } else if is(sub, "SETINFO") {
        if argc != 4 {
            return Err(wrong("setinfo"));
        }
        set_info(ctx, &args[2], &args[3])
    } else if is(sub, "INFO") {
        if argc != 2 {
            return Err(wrong("info"));
        }
        Ok(Frame::Verbatim(format!(
            "{}\n",
            ctx.session.info.describe()
        )))
    } else if is(sub, "LIST") {
        if argc != 2 {
            return Err(super::parse::syntax_error());
        }
        let lines: String = ctx
            .shared
            .clients()
            .iter()
            .map(|c| c.describe() + "\n")
            .collect();
        Ok(Frame::Verbatim(lines))
    } else {
        Err(unknown_subcommand(sub, "CLIENT"))
    }
}

/// Whether `value` may be a client name or library field: printable ASCII without spaces.
fn printable(value: &[u8]) -> bool {
    value.iter().all(|&b| (b'!'..=b'~').contains(&b))
}

/// Sets (or, with an empty name, clears) the connection's name.
pub fn set_name(ctx: &mut Ctx<'_>, name: &Bytes) -> Result<(), Frame> {
    if !printable(name) {
        return Err(Frame::error(
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    let name = (!name.is_empty()).then(|| Bytes::copy_from_slice(name));
    ctx.session.info.details().name = name;
    Ok(())
}

fn set_info(ctx: &mut Ctx<'_>, attribute: &[u8], value: &Bytes) -> Reply {
    if !printable(value) {
        return Err(Frame::error(format!(
            "ERR {} cannot contain spaces, newlines or special characters.",
            text(attribute)
        )));
    }
    let value = (!value.is_empty()).then(|| Bytes::copy_from_slice(value));
    let mut details = ctx.session.info.details();
    if is(attribute, "LIB-NAME") {
        details.lib_name = value;
    } else if is(attribute, "LIB-VER") {
        details.lib_ver = value;
    } else {
        return Err(Frame::error(format!(
            "ERR Unrecognized option '{}'",
            text(attribute)
        )));
    }
    Ok(Frame::OK)
}
