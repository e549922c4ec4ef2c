//! What a proxy changes in the header sections it relays.
//!
//! **Hop-by-hop fields** (RFC 9110 section 7.6.1) describe one connection, not the message:
//! `Connection` and every field it names, `Keep-Alive`, `Proxy-Connection`, `TE`,
//! `Transfer-Encoding` and `Upgrade`. Relayed as they are, they would tell the next hop
//! things that are false for its own connection: a client's `Connection: close` would close
//! the pooled upstream connection, a `Transfer-Encoding` copied next to the body we frame
//! ourselves would be request smuggling. So they are removed both ways. The one exception is a
//! protocol upgrade, which must travel end to end: `Upgrade` and `Connection: upgrade` are put
//! back when the client asked for one (and on the 101 that accepts it).
//!
//! **Forwarding fields** tell the upstream what the proxy hid by opening its own connection:
//!
//! | field | value | rule |
//! |---|---|---|
//! | `Via` | `1.1 <pseudonym>` | appended (RFC 9110 section 7.6.3), both ways |
//! | `X-Forwarded-For` | the client's IP | appended to the list received |
//! | `X-Forwarded-Proto` | `http` or `https` | set: only this proxy knows the scheme it received |
//! | `X-Forwarded-Host` | the `Host` received | set, for the same reason |
//! | `Forwarded` | `for=...;proto=...;host=...` | appended (RFC 7239) |
//!
//! `Via` is always added: RFC 9110 asks it of every proxy. The other four can be turned off
//! (`proxy.forwarded_headers = false`), for upstreams that do not read them; they then pass as
//! received.
//!
//! Appended lists keep what earlier proxies wrote, so the upstream sees the whole path. It is
//! the upstream's business to trust only the entries added by proxies it knows: a client can
//! send any `X-Forwarded-For` it likes, and only the last entry is this proxy's word.

use std::net::{IpAddr, SocketAddr};

use http::Version;
use http::header::{self, Entry, HeaderMap, HeaderName, HeaderValue};

pub static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
pub static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// The scheme the downstream client used to reach the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// Removes the hop-by-hop fields from `headers`. Returns the `Upgrade` value if the message
/// asked for (or accepted) a protocol upgrade, so the caller can put it back.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) -> Option<HeaderValue> {
    // Most messages carry none of them: one pass over the (few) names present is cheaper
    // than looking each of the six up.
    if !headers.keys().any(is_hop_by_hop) {
        return None;
    }
    let mut upgrading = false;
    // Fields named by Connection go first, while we can still read it.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|token| {
            let is_upgrade = token.eq_ignore_ascii_case("upgrade");
            upgrading |= is_upgrade;
            !token.is_empty() && !is_upgrade
        })
        .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    let upgrade = headers.remove(header::UPGRADE).filter(|_| upgrading);
    headers.remove(header::CONNECTION);
    headers.remove(&KEEP_ALIVE);
    headers.remove(&PROXY_CONNECTION);
    headers.remove(header::TE);
    headers.remove(header::TRANSFER_ENCODING);
    upgrade
}

/// The hop-by-hop fields every message loses (besides those `Connection` names).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::UPGRADE
        || name == header::TE
        || name == header::TRANSFER_ENCODING
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
}

/// Puts an upgrade back after [`remove_hop_by_hop`]: `Upgrade: <protocol>` and
/// `Connection: upgrade`.
pub fn restore_upgrade(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::UPGRADE, protocol);
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
}

/// What the forwarding fields say about the downstream side of one request.
#[derive(Clone, Copy, Debug)]
pub struct Forwarding {
    pub client: Option<SocketAddr>,
    pub scheme: Scheme,
}

/// Adds the `X-Forwarded-*` and `Forwarded` fields of the module documentation to a request
/// going upstream (`Via` is the caller's: it is added even when these are turned off).
/// Every value is written straight into its final buffer: this runs on every request.
pub fn add_forwarding(headers: &mut HeaderMap, fwd: Forwarding) {
    let host = headers.get(header::HOST).cloned();
    if let Some(client) = fwd.client {
        let mut ip = String::with_capacity(48);
        push_ip(&mut ip, client.ip());
        let mut element = String::with_capacity(64);
        element.push_str("for=");
        match client.ip() {
            IpAddr::V4(_) => element.push_str(&ip),
            // A node of `Forwarded` (RFC 7239 section 6): an IPv6 address is bracketed and
            // quoted.
            IpAddr::V6(_) => {
                element.push_str("\"[");
                element.push_str(&ip);
                element.push_str("]\"");
            }
        }
        element.push_str(";proto=");
        element.push_str(fwd.scheme.as_str());
        if let Some(host) = host.as_ref().and_then(|h| h.to_str().ok()) {
            element.push_str(";host=");
            push_token_or_quoted(&mut element, host);
        }
        append_to_list(headers, &X_FORWARDED_FOR, ip);
        append_to_list(headers, &FORWARDED, element);
    }
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(fwd.scheme.as_str()),
    );
    if let Some(host) = host {
        headers.insert(X_FORWARDED_HOST.clone(), host);
    }
}

/// The `Via` value for a message received with `version`.
pub fn via_value(version: Version, pseudonym: &str) -> HeaderValue {
    let protocol = if version == Version::HTTP_10 {
        "1.0"
    } else {
        "1.1"
    };
    // The pseudonym is a validated token, so the value is always valid.
    HeaderValue::from_str(&format!("{protocol} {pseudonym}"))
        .unwrap_or_else(|_| HeaderValue::from_static("1.1 reverse-proxy"))
}

/// Appends `item` to a comma-separated list field, merging every field line of it into one
/// (order kept), so the upstream sees a single, complete list.
fn append_to_list(headers: &mut HeaderMap, name: &'static HeaderName, item: String) {
    // One lookup for the read and the write.
    match headers.entry(name) {
        Entry::Vacant(entry) => {
            if let Some(value) = list_value(item) {
                entry.insert(value);
            }
        }
        Entry::Occupied(mut entry) => {
            let mut list = String::new();
            for value in entry.iter() {
                if let Ok(value) = value.to_str() {
                    list.push_str(value);
                    list.push_str(", ");
                }
            }
            list.push_str(&item);
            if let Some(value) = list_value(list) {
                // Replaces every field line received.
                entry.insert(value);
            }
        }
    }
}

/// The String's buffer becomes the value's: no second copy.
fn list_value(list: String) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(bytes::Bytes::from(list)).ok()
}

/// Writes an address as `Display` does (`std`'s formatter is several times slower for the
/// IPv4 case, which is every request on a typical deployment).
fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(ip) => {
            for (i, octet) in ip.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
        }
        IpAddr::V6(ip) => {
            use std::fmt::Write;
            let _ = write!(out, "{ip}");
        }
    }
}

/// A `Forwarded` value is a token or a quoted string (RFC 7239 section 4); a host with a port
/// has a `:`, which a token cannot hold.
fn push_token_or_quoted(out: &mut String, value: &str) {
    // tchar (RFC 9110 section 5.6.2), as a match: a search of the symbol list per byte was
    // a tenth of this module's time.
    let is_tchar = |b: u8| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            )
    };
    let is_token = value.bytes().all(is_tchar);
    if is_token {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        if c == '\\' || c == '"' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(fields: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for &(name, value) in fields {
            headers.append(name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn hop_by_hop_fields_and_those_connection_names_are_removed() {
        let mut headers = map(&[
            ("connection", "keep-alive, x-secret"),
            ("connection", "close"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-secret", "hop"),
            ("x-kept", "end-to-end"),
        ]);
        assert_eq!(remove_hop_by_hop(&mut headers), None);
        let names: Vec<_> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-kept"]);
    }

    #[test]
    fn an_upgrade_survives_to_be_put_back() {
        let mut headers = map(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "abc"),
        ]);
        let upgrade = remove_hop_by_hop(&mut headers).unwrap();
        assert_eq!(upgrade, "websocket");
        restore_upgrade(&mut headers, upgrade);
        assert_eq!(headers["upgrade"], "websocket");
        assert_eq!(headers["connection"], "upgrade");
        assert_eq!(headers["sec-websocket-key"], "abc");
    }

    #[test]
    fn forwarding_fields_append_to_what_earlier_proxies_wrote() {
        let mut headers = map(&[
            ("host", "shop.example:8080"),
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-for", "198.51.100.2"),
            ("x-forwarded-proto", "forged"),
            ("forwarded", "for=203.0.113.7"),
            ("via", "1.1 cdn"),
        ]);
        add_forwarding(
            &mut headers,
            Forwarding {
                client: Some("[2001:db8::1]:4000".parse().unwrap()),
                scheme: Scheme::Https,
            },
        );
        assert_eq!(
            headers["x-forwarded-for"],
            "203.0.113.7, 198.51.100.2, 2001:db8::1"
        );
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-forwarded-host"], "shop.example:8080");
        assert_eq!(
            headers["forwarded"],
            "for=203.0.113.7, for=\"[2001:db8::1]\";proto=https;host=\"shop.example:8080\""
        );
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "1.20.255.9",
            "100.10.1.0",
            "255.255.255.255",
            "2001:db8::1",
            "::",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = String::new();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string());
        }
        let mut out = String::new();
        push_token_or_quoted(&mut out, r#"a"b\c:1"#);
        assert_eq!(out, r#""a\"b\\c:1""#);
    }

    #[test]
    fn an_http_1_0_request_is_marked_as_such_in_via() {
        assert_eq!(via_value(Version::HTTP_10, "edge"), "1.0 edge");
    }
}
