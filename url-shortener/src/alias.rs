//! Custom aliases: codes the user chooses (`/launch-2026` instead of `/x7Kq9Zb`).
//!
//! Aliases and generated codes share one namespace, the store's key space, and both are
//! created only if absent, so whichever comes first owns a code. An alias is:
//!
//! ```text
//!   alias = 3*64( ALPHA / DIGIT / "-" / "_" )     and not a reserved word
//! ```
//!
//! Only characters that need no percent-encoding in a path, so the short URL prints as typed.
//! Reserved words are the first path segments the server, or a likely future version of it,
//! answers itself: an alias `api` would be shadowed by `/api/...` or would shadow it. They are
//! compared without regard to case, because people read them that way.

use thiserror::Error;

/// Shortest alias, in characters: shorter ones are too easy to squat.
pub const MIN_ALIAS_LEN: usize = 3;

/// Longest alias, in characters.
pub const MAX_ALIAS_LEN: usize = 64;

/// First path segments an alias may not take.
pub const RESERVED: &[&str] = &[
    "api", "admin", "healthz", "readyz", "livez", "metrics", "openapi", "docs", "static", "assets",
    "login", "logout", "signup", "account", "settings", "status", "www",
];

/// Why an alias was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AliasError {
    #[error("alias must be {MIN_ALIAS_LEN} to {MAX_ALIAS_LEN} characters long, not {len}")]
    Length { len: usize },
    #[error("alias may hold only letters A-Z a-z, digits, `-` and `_`; `{found}` is not allowed")]
    Charset { found: char },
    #[error("alias `{alias}` is reserved by the server; choose another")]
    Reserved { alias: String },
}

/// Checks a requested alias.
pub fn check(alias: &str) -> Result<(), AliasError> {
    if let Some(found) = alias
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    {
        return Err(AliasError::Charset { found });
    }
    if !(MIN_ALIAS_LEN..=MAX_ALIAS_LEN).contains(&alias.len()) {
        return Err(AliasError::Length { len: alias.len() });
    }
    if RESERVED.iter().any(|word| word.eq_ignore_ascii_case(alias)) {
        return Err(AliasError::Reserved {
            alias: alias.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_aliases_are_accepted() {
        for alias in [
            "abc",
            "launch-2026",
            "Summer_Sale",
            &"x".repeat(MAX_ALIAS_LEN),
        ] {
            assert_eq!(check(alias), Ok(()), "{alias}");
        }
    }

    #[test]
    fn refusals_name_the_reason() {
        assert_eq!(check("ab"), Err(AliasError::Length { len: 2 }));
        assert_eq!(check(""), Err(AliasError::Length { len: 0 }));
        let long = "x".repeat(MAX_ALIAS_LEN + 1);
        assert_eq!(
            check(&long),
            Err(AliasError::Length {
                len: MAX_ALIAS_LEN + 1
            })
        );
        assert_eq!(check("a/b"), Err(AliasError::Charset { found: '/' }));
        assert_eq!(check("café"), Err(AliasError::Charset { found: 'é' }));
        assert_eq!(check("a.b"), Err(AliasError::Charset { found: '.' }));
        assert_eq!(check("a%20"), Err(AliasError::Charset { found: '%' }));
    }

    #[test]
    fn reserved_words_are_refused_in_any_case() {
        for alias in ["api", "API", "Admin", "healthz", "metrics"] {
            assert_eq!(
                check(alias),
                Err(AliasError::Reserved {
                    alias: alias.into()
                }),
                "{alias}"
            );
        }
        assert_eq!(check("apis"), Ok(()));
    }
}
