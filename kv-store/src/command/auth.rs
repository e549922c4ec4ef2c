//! `AUTH [username] password`. There is one user, `default`, whose password is `requirepass`.

use bytes::Bytes;

use super::parse::wrong_args;
use super::{Ctx, Reply};
use crate::resp::Frame;

pub const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

pub fn auth(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let (user, password) = match args {
        [_, password] => (None, password),
        [_, user, password] => (Some(user), password),
        _ => return Err(wrong_args("auth")),
    };
    if ctx.settings.requirepass.is_none() && user.is_none() {
        return Err(Frame::error(
            "ERR AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?",
        ));
    }
    check_password(ctx, user.map(|u| &u[..]), password)?;
    Ok(Frame::OK)
}

/// Authenticates the session if `user` (default `default`) and `password` are right.
pub fn check_password(
    ctx: &mut Ctx<'_>,
    user: Option<&[u8]>,
    password: &[u8],
) -> Result<(), Frame> {
    let user_ok = user.is_none_or(|u| u == b"default");
    let password_ok = match &ctx.settings.requirepass {
        // The default user without a password accepts any ("nopass").
        None => true,
        Some(expected) => constant_time_eq(expected, password),
    };
    if user_ok && password_ok {
        ctx.session.authenticated = true;
        Ok(())
    } else {
        Err(Frame::error(WRONGPASS))
    }
}

/// Compares without stopping at the first difference, so the time taken does not reveal how
/// much of a guessed password was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
