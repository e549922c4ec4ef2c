//! Checking the URL a link points to, before it is stored.
//!
//! A shortener hides where a link goes, so it is a favourite tool of phishing and of script
//! injection through `javascript:` links. What is accepted:
//!
//! ```text
//!   http[s]://host[:port][/path][?query][#fragment]        at most MAX_URL_BYTES bytes
//!   host = DNS name (ASCII; IDNs in their xn-- form) | IPv4 | [IPv6]
//! ```
//!
//! Refused, each with its own message: other schemes (`javascript:`, `data:` and the rest),
//! a missing host, user information before the host (`http://bank.example@evil.example/` is
//! the classic disguise), whitespace and control characters, a port outside 1..=65535, and
//! hosts on the operator's blocklist (a blocked name blocks its subdomains too).

use thiserror::Error;

/// Longest accepted URL, in bytes: the de facto limit of browsers, sitemaps and CDNs.
pub const MAX_URL_BYTES: usize = 2048;

/// Why a URL was refused. The message tells the person what to change.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UrlError {
    #[error("url is empty")]
    Empty,
    #[error("url is {len} bytes long; at most {MAX_URL_BYTES} are accepted")]
    TooLong { len: usize },
    #[error("`{scheme}:` URLs are refused: they run code or embed content instead of linking")]
    Dangerous { scheme: String },
    #[error("url must start with http:// or https://")]
    Scheme,
    #[error("url contains whitespace or a control character; percent-encode it")]
    Unencoded,
    #[error("url has no host; write it as http(s)://host/path")]
    NoHost,
    #[error("url carries user information before the host (`user@`); remove it")]
    UserInfo,
    #[error(
        "url host `{host}` is not a valid host name, IPv4 or [IPv6] address (write IDNs in xn-- form)"
    )]
    BadHost { host: String },
    #[error("url port `{port}` is not a number between 1 and 65535")]
    BadPort { port: String },
    #[error("links to `{host}` are not accepted by this server")]
    Blocked { host: String },
}

/// `url` with every non-ASCII byte percent-encoded (RFC 3986 section 2.1), so that it can be
/// sent in a `Location` header as it is. ASCII is left alone: `%` sequences the client wrote
/// stay as written.
pub fn normalize(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    for &byte in url.as_bytes() {
        if byte.is_ascii() {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Checks `url`; `blocklist` holds lower-case host names whose links are refused. Pass the
/// [`normalize`]d form: the length limit counts its bytes.
pub fn check(url: &str, blocklist: &[String]) -> Result<(), UrlError> {
    if url.is_empty() {
        return Err(UrlError::Empty);
    }
    if url.len() > MAX_URL_BYTES {
        return Err(UrlError::TooLong { len: url.len() });
    }
    let rest = strip_scheme(url)?;
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(UrlError::Unencoded);
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    if authority.contains('@') {
        return Err(UrlError::UserInfo);
    }
    let host = check_authority(authority)?.to_ascii_lowercase();
    let host = host.trim_end_matches('.');
    if blocklist
        .iter()
        .any(|blocked| is_same_or_subdomain(host, blocked))
    {
        return Err(UrlError::Blocked {
            host: host.to_owned(),
        });
    }
    Ok(())
}

/// The part after `http://` or `https://` (scheme matched without regard to case).
fn strip_scheme(url: &str) -> Result<&str, UrlError> {
    let Some((scheme, rest)) = url.split_once(':') else {
        return Err(UrlError::Scheme);
    };
    let lower = scheme.trim().to_ascii_lowercase();
    if lower == "javascript" || lower == "data" || lower == "vbscript" {
        return Err(UrlError::Dangerous { scheme: lower });
    }
    if lower != "http" && lower != "https" {
        return Err(UrlError::Scheme);
    }
    rest.strip_prefix("//").ok_or(UrlError::Scheme)
}

/// Checks `host[:port]` and returns the host.
fn check_authority(authority: &str) -> Result<&str, UrlError> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((inside, after)) = bracketed.split_once(']') else {
            return Err(bad_host(authority));
        };
        if !inside.contains(':')
            || !inside
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(bad_host(authority));
        }
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(|| bad_host(authority))?),
        };
        (&authority[..inside.len() + 2], port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(UrlError::NoHost);
    }
    if !host.starts_with('[') && !is_host_name(host) {
        return Err(bad_host(host));
    }
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(1..) if port.bytes().all(|b| b.is_ascii_digit()) => {}
            _ => {
                return Err(UrlError::BadPort {
                    port: port.to_owned(),
                });
            }
        }
    }
    Ok(host)
}

/// A DNS name or dotted IPv4 address: labels of letters, digits and inner hyphens.
fn is_host_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn bad_host(host: &str) -> UrlError {
    UrlError::BadHost {
        host: host.to_owned(),
    }
}

fn is_same_or_subdomain(host: &str, blocked: &str) -> bool {
    host == blocked
        || host
            .strip_suffix(blocked)
            .is_some_and(|prefix| prefix.ends_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str) {
        assert_eq!(check(url, &[]), Ok(()), "{url}");
    }

    #[test]
    fn ordinary_web_urls_are_accepted() {
        ok("https://example.com");
        ok("http://example.com/");
        ok("HTTPS://Example.COM:8443/a/b?c=d&e=%20f#frag");
        ok("https://127.0.0.1:8080/x");
        ok("https://[2001:db8::1]:443/x");
        ok("https://xn--bcher-kva.example/");
        ok("https://example.com.");
    }

    #[test]
    fn each_refusal_says_what_is_wrong() {
        let cases: &[(&str, UrlError)] = &[
            ("", UrlError::Empty),
            (
                "javascript:alert(1)",
                UrlError::Dangerous {
                    scheme: "javascript".into(),
                },
            ),
            (
                "JavaScript:alert(1)",
                UrlError::Dangerous {
                    scheme: "javascript".into(),
                },
            ),
            (
                "data:text/html,<b>x</b>",
                UrlError::Dangerous {
                    scheme: "data".into(),
                },
            ),
            ("ftp://example.com/", UrlError::Scheme),
            ("example.com/path", UrlError::Scheme),
            ("https:example.com", UrlError::Scheme),
            ("https:///path", UrlError::NoHost),
            ("https://:80/", UrlError::NoHost),
            ("https://user:pw@example.com/", UrlError::UserInfo),
            ("https://bank.example@evil.example/", UrlError::UserInfo),
            ("https://exa mple.com/", UrlError::Unencoded),
            ("https://example.com/\n", UrlError::Unencoded),
            (
                "https://ex_ample.com/",
                UrlError::BadHost {
                    host: "ex_ample.com".into(),
                },
            ),
            (
                "https://bücher.example/",
                UrlError::BadHost {
                    host: "bücher.example".into(),
                },
            ),
            (
                "https://-bad.example/",
                UrlError::BadHost {
                    host: "-bad.example".into(),
                },
            ),
            (
                "https://a..b/",
                UrlError::BadHost {
                    host: "a..b".into(),
                },
            ),
            (
                "https://[::1/",
                UrlError::BadHost {
                    host: "[::1".into(),
                },
            ),
            (
                "https://example.com:0/",
                UrlError::BadPort { port: "0".into() },
            ),
            (
                "https://example.com:65536/",
                UrlError::BadPort {
                    port: "65536".into(),
                },
            ),
            (
                "https://example.com:+80/",
                UrlError::BadPort { port: "+80".into() },
            ),
        ];
        for (url, expected) in cases {
            assert_eq!(check(url, &[]).as_ref(), Err(expected), "{url}");
        }
    }

    #[test]
    fn non_ascii_is_percent_encoded_and_the_rest_kept() {
        assert_eq!(
            normalize("https://example.com/café?q=%20ü"),
            "https://example.com/caf%C3%A9?q=%20%C3%BC"
        );
        ok(&normalize("https://example.com/日本"));
    }

    #[test]
    fn the_length_limit_counts_bytes() {
        let base = "https://example.com/";
        let at_limit = format!("{base}{}", "a".repeat(MAX_URL_BYTES - base.len()));
        ok(&at_limit);
        let over = format!("{at_limit}a");
        assert_eq!(
            check(&over, &[]),
            Err(UrlError::TooLong {
                len: MAX_URL_BYTES + 1
            })
        );
    }

    #[test]
    fn a_blocked_host_blocks_its_subdomains_but_not_lookalikes() {
        let blocklist = vec!["evil.example".to_owned()];
        let blocked = |host: &str| UrlError::Blocked { host: host.into() };
        assert_eq!(
            check("https://evil.example/x", &blocklist),
            Err(blocked("evil.example"))
        );
        assert_eq!(
            check("https://EVIL.example./", &blocklist),
            Err(blocked("evil.example"))
        );
        assert_eq!(
            check("https://a.evil.example:8/", &blocklist),
            Err(blocked("a.evil.example"))
        );
        assert_eq!(check("https://notevil.example/", &blocklist), Ok(()));
    }
}
