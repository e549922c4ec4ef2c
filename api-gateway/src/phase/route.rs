//! Phase 1, route: which route a request belongs to, and where it will be sent.
//!
//! Routes are tried in the order of the config and the first match wins (Envoy's and Kong's
//! rule when priorities are equal: the operator writes specific routes first). A route
//! matches when all of these hold:
//!
//! | condition | rule |
//! |---|---|
//! | host | absent, equal (case-insensitive, port ignored), or `*.suffix` |
//! | path | `path`: exact, `{name}` matching one non-empty segment; `path_prefix`: whole segments (`/v1` matches `/v1` and `/v1/x`, never `/v1beta`) |
//! | headers | each configured field present with exactly the configured value (API versions by `Accept-Version`) |
//! | method | in the route's list, or the list is empty |
//!
//! When a request's host, path and headers match some routes but its method matches none of
//! them, the answer is 405 with `Allow` listing the methods that would have matched (RFC 9110
//! section 15.5.6) rather than a 404 that hides the resource.
//!
//! Paths with dot segments (`/v1/../admin`, also percent-encoded) are refused before
//! matching: an upstream that normalises them would otherwise serve a path the route table
//! never saw, the classic way around a prefix rule.
//!
//! Versioning falls out of these rules: `/v1/...` and `/v2/...` are two prefix routes to two
//! clusters, or one path with two routes told apart by `Accept-Version`. A weighted split
//! (canary) is a route with several upstreams; each request picks one in proportion to the
//! weights, from a counter run through a mixing function (no lock, no shared RNG state beyond
//! one atomic add).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use http1::Request;

use crate::cors;
use crate::error::GatewayError;
use crate::gateway::{Route, Table};

/// Most `{param}`s in one path.
pub const MAX_PARAMS: usize = 16;

/// A compiled path rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathPattern {
    /// Segments of an exact path: literals and `{param}`s.
    Exact(Vec<Segment>),
    /// A prefix without its trailing slash (`""` for `/`).
    Prefix(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    Param(String),
}

/// Parameters captured by an exact path, in order.
pub type Params = Vec<(String, String)>;

impl PathPattern {
    /// Compiles `/v1/links/{code}`.
    pub fn exact(path: &str) -> Result<PathPattern, String> {
        let rest = path
            .strip_prefix('/')
            .ok_or_else(|| "must start with `/`".to_owned())?;
        if rest.is_empty() {
            return Ok(PathPattern::Exact(Vec::new()));
        }
        let mut segments = Vec::new();
        for segment in rest.split('/') {
            let param = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}'));
            match param {
                Some(name) if is_param_name(name) => {
                    if segments
                        .iter()
                        .any(|s| *s == Segment::Param(name.to_owned()))
                    {
                        return Err(format!("`{{{name}}}` appears twice"));
                    }
                    segments.push(Segment::Param(name.to_owned()));
                }
                Some(_) => return Err(format!("`{segment}` is not a `{{name}}` of [a-z0-9_]")),
                None if segment.contains(['{', '}']) => {
                    return Err(format!("`{segment}`: a parameter must be a whole segment"));
                }
                None => segments.push(Segment::Literal(segment.to_owned())),
            }
        }
        let params = segments
            .iter()
            .filter(|s| matches!(s, Segment::Param(_)))
            .count();
        if params > MAX_PARAMS {
            return Err(format!("at most {MAX_PARAMS} parameters"));
        }
        Ok(PathPattern::Exact(segments))
    }

    /// Compiles a segment-wise prefix.
    pub fn prefix(prefix: &str) -> Result<PathPattern, String> {
        if !prefix.starts_with('/') {
            return Err("must start with `/`".to_owned());
        }
        if prefix.contains(['{', '}', '?', '#']) {
            return Err("a prefix is a plain path (no `{`, `}`, `?`, `#`)".to_owned());
        }
        Ok(PathPattern::Prefix(prefix.trim_end_matches('/').to_owned()))
    }

    /// Checks that a rewrite template uses only parameters `path` captures.
    pub fn check_template(path: &str, template: &str) -> Result<(), String> {
        let PathPattern::Exact(segments) = PathPattern::exact(path)? else {
            return Ok(());
        };
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| "an unclosed `{`".to_owned())?;
            let name = &rest[open + 1..open + close];
            if !segments.contains(&Segment::Param(name.to_owned())) {
                return Err(format!("`{{{name}}}` is not a parameter of `{path}`"));
            }
            rest = &rest[open + close + 1..];
        }
        Ok(())
    }

    /// Matches `path` (no query); on a match, the captured parameters and, for a prefix, the
    /// rest of the path after it (`""` or starting with `/`).
    pub fn matches<'p>(&self, path: &'p str) -> Option<(Params, &'p str)> {
        match self {
            PathPattern::Prefix(prefix) => {
                let rest = path.strip_prefix(prefix.as_str())?;
                (rest.is_empty() || rest.starts_with('/')).then(|| (Vec::new(), rest))
            }
            PathPattern::Exact(segments) => {
                let rest = path.strip_prefix('/')?;
                if segments.is_empty() {
                    return rest.is_empty().then(|| (Vec::new(), ""));
                }
                let mut params = Vec::new();
                let mut parts = rest.split('/');
                for segment in segments {
                    let part = parts.next()?;
                    match segment {
                        Segment::Literal(literal) if literal == part => {}
                        Segment::Param(name) if !part.is_empty() => {
                            params.push((name.clone(), part.to_owned()));
                        }
                        _ => return None,
                    }
                }
                parts.next().is_none().then_some((params, ""))
            }
        }
    }
}

fn is_param_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The path the upstream sees: `rewrite` applied to a matched request.
pub fn rewritten_path(
    template: &str,
    pattern: &PathPattern,
    params: &Params,
    rest: &str,
) -> String {
    match pattern {
        PathPattern::Prefix(_) => match (template.ends_with('/'), rest.strip_prefix('/')) {
            (true, Some(tail)) => format!("{template}{tail}"),
            _ if rest.is_empty() => template.to_owned(),
            _ => format!("{template}{rest}"),
        },
        PathPattern::Exact(_) => {
            let mut path = template.to_owned();
            for (name, value) in params {
                path = path.replace(&format!("{{{name}}}"), value);
            }
            path
        }
    }
}

/// Whether a path has a `.` or `..` segment, literally or percent-encoded.
pub fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|segment| {
        let lower = segment.to_ascii_lowercase();
        let decoded = lower.replace("%2e", ".");
        decoded == "." || decoded == ".."
    })
}

/// How a route matches hosts.
#[derive(Clone, Debug)]
pub enum HostMatch {
    Any,
    /// Lower case.
    Exact(String),
    /// Lower-case `.suffix` for `*.suffix`.
    Suffix(String),
}

impl HostMatch {
    pub fn new(host: Option<&str>) -> HostMatch {
        match host {
            None => HostMatch::Any,
            Some(host) => match host.strip_prefix('*') {
                Some(suffix) => HostMatch::Suffix(suffix.to_ascii_lowercase()),
                None => HostMatch::Exact(host.to_ascii_lowercase()),
            },
        }
    }

    fn matches(&self, host: Option<&str>) -> bool {
        let host = host.map(strip_port);
        match (self, host) {
            (HostMatch::Any, _) => true,
            (_, None) => false,
            (HostMatch::Exact(want), Some(host)) => want.eq_ignore_ascii_case(host),
            (HostMatch::Suffix(suffix), Some(host)) => {
                host.len() > suffix.len()
                    && host.is_char_boundary(host.len() - suffix.len())
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
        }
    }
}

/// `example.com:8080` -> `example.com`; `[::1]:80` -> `[::1]`.
fn strip_port(host: &str) -> &str {
    match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    }
}

/// What a route matches on, compiled.
#[derive(Debug)]
pub struct Matcher {
    pub host: HostMatch,
    pub path: PathPattern,
    /// Empty: any method.
    pub methods: Vec<Method>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Matcher {
    fn matches_except_method<'p>(
        &self,
        host: Option<&str>,
        path: &'p str,
        headers: &HeaderMap,
    ) -> Option<(Params, &'p str)> {
        if !self.host.matches(host) {
            return None;
        }
        let matched = self.path.matches(path)?;
        let headers_match = self
            .headers
            .iter()
            .all(|(name, value)| headers.get_all(name).iter().any(|v| v == value));
        headers_match.then_some(matched)
    }

    fn allows(&self, method: &Method) -> bool {
        self.methods.is_empty() || self.methods.contains(method)
    }
}

/// The weighted choice among a route's upstream clusters.
#[derive(Debug)]
pub struct Split {
    /// (cluster name, cumulative weight), in config order. Shared, so that a request can
    /// keep the name it was sent to without copying it.
    members: Vec<(Arc<str>, u64)>,
    total: u64,
    counter: AtomicU64,
}

impl Split {
    pub fn new(members: &[(String, u32)], seed: u64) -> Split {
        let mut total = 0;
        let members = members
            .iter()
            .map(|(name, weight)| {
                total += u64::from(*weight);
                (Arc::from(name.as_str()), total)
            })
            .collect();
        Split {
            members,
            total,
            counter: AtomicU64::new(seed),
        }
    }

    /// The cluster for the next request: member `i` is chosen with probability
    /// `weight_i / total`. A Weyl sequence (add a large odd constant) mixed by SplitMix64
    /// gives uniform, independent-looking draws from one atomic add.
    pub fn pick(&self) -> &Arc<str> {
        if self.members.len() == 1 {
            return &self.members[0].0;
        }
        let x = self
            .counter
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        let draw = splitmix64(x) % self.total;
        let index = self
            .members
            .partition_point(|(_, cumulative)| *cumulative <= draw);
        &self.members[index.min(self.members.len() - 1)].0
    }
}

fn splitmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Why no route took a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Unrouted {
    /// 404.
    NoRoute,
    /// 405; the methods the matching routes accept.
    MethodNotAllowed { allow: Vec<Method> },
}

/// The first route (by index into `matchers`) matching the request, with its captures.
pub fn find<'m, 'p>(
    matchers: impl IntoIterator<Item = &'m Matcher>,
    method: &Method,
    host: Option<&str>,
    path: &'p str,
    headers: &HeaderMap,
) -> Result<(usize, Params, &'p str), Unrouted> {
    let mut allow: Vec<Method> = Vec::new();
    let mut any_method_list = false;
    for (index, matcher) in matchers.into_iter().enumerate() {
        let Some((params, rest)) = matcher.matches_except_method(host, path, headers) else {
            continue;
        };
        if matcher.allows(method) {
            return Ok((index, params, rest));
        }
        any_method_list = true;
        for m in &matcher.methods {
            if !allow.contains(m) {
                allow.push(m.clone());
            }
        }
    }
    match any_method_list {
        true => Err(Unrouted::MethodNotAllowed { allow }),
        false => Err(Unrouted::NoRoute),
    }
}

/// Phase 1: the route of `request`, and the target the upstream will see when the route
/// rewrites it (path rewritten, query kept).
pub fn run(table: &Table, request: &Request) -> Result<(Arc<Route>, Option<String>), GatewayError> {
    let head = &request.head;
    if head.method == Method::CONNECT {
        return Err(GatewayError::MethodNotAllowed { allow: Vec::new() });
    }
    let path = head.path();
    if has_dot_segment(path) {
        return Err(GatewayError::BadRequest(
            "dot segments (`.`, `..`) are not allowed in a path",
        ));
    }
    let host = head.headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let lookup = |method: &Method| {
        let matchers = table.routes.iter().map(|r| &r.matcher);
        find(matchers, method, host, path, &head.headers).map_err(|e| match e {
            Unrouted::NoRoute => GatewayError::NoRoute,
            Unrouted::MethodNotAllowed { allow } => GatewayError::MethodNotAllowed { allow },
        })
    };
    // A preflight is routed as the request it announces, but only a route with CORS answers
    // one: elsewhere an OPTIONS request is an ordinary request, routed by its own method, so
    // that announcing a method cannot reach a route that does not accept OPTIONS.
    let (index, params, rest) = match cors::preflight_method(&head.method, &head.headers) {
        Some(announced) => match lookup(&announced) {
            Ok(found) if table.routes[found.0].cors.is_some() => found,
            _ => lookup(&head.method)?,
        },
        None => lookup(&head.method)?,
    };
    let route = table.routes[index].clone();
    let target = route.rewrite.as_ref().map(|template| {
        let path = rewritten_path(template, &route.matcher.path, &params, rest);
        match head.query() {
            Some(query) => format!("{path}?{query}"),
            None => path,
        }
    });
    Ok((route, target))
}

/// Builds a matcher from config values (validated before).
pub fn matcher(
    host: Option<&str>,
    path: PathPattern,
    methods: &[String],
    headers: &BTreeMap<String, String>,
) -> Matcher {
    Matcher {
        host: HostMatch::new(host),
        path,
        methods: methods
            .iter()
            .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
            .collect(),
        headers: headers
            .iter()
            .filter_map(|(name, value)| {
                Some((
                    HeaderName::from_bytes(name.as_bytes()).ok()?,
                    HeaderValue::from_str(value).ok()?,
                ))
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(host: Option<&str>, path: PathPattern, methods: &[&str]) -> Matcher {
        let methods: Vec<String> = methods.iter().map(|s| s.to_string()).collect();
        matcher(host, path, &methods, &BTreeMap::new())
    }

    #[test]
    fn exact_paths_capture_whole_segments() {
        let p = PathPattern::exact("/v1/links/{code}").unwrap();
        let (params, _) = p.matches("/v1/links/abc").unwrap();
        assert_eq!(params, vec![("code".to_owned(), "abc".to_owned())]);
        assert!(
            p.matches("/v1/links/").is_none(),
            "a parameter is never empty"
        );
        assert!(p.matches("/v1/links/abc/more").is_none());
        assert!(p.matches("/v1/links").is_none());
        assert!(PathPattern::exact("/v1/x{code}").is_err());
        assert!(PathPattern::exact("/{a}/{a}").is_err());
        assert!(PathPattern::exact("v1").is_err());
    }

    #[test]
    fn prefixes_match_whole_segments_only() {
        let p = PathPattern::prefix("/v1/").unwrap();
        assert_eq!(p.matches("/v1").unwrap().1, "");
        assert_eq!(p.matches("/v1/links").unwrap().1, "/links");
        assert!(p.matches("/v1beta").is_none());
        let root = PathPattern::prefix("/").unwrap();
        assert_eq!(root.matches("/anything").unwrap().1, "/anything");
    }

    #[test]
    fn rewrites_replace_the_prefix_or_fill_the_template() {
        let prefix = PathPattern::prefix("/v1").unwrap();
        let (params, rest) = prefix.matches("/v1/links/x").unwrap();
        assert_eq!(
            rewritten_path("/api/v1", &prefix, &params, rest),
            "/api/v1/links/x"
        );
        assert_eq!(rewritten_path("/", &prefix, &params, rest), "/links/x");
        assert_eq!(rewritten_path("/", &prefix, &params, ""), "/");
        let exact = PathPattern::exact("/v2/l/{code}").unwrap();
        let (params, rest) = exact.matches("/v2/l/abc").unwrap();
        assert_eq!(
            rewritten_path("/links/{code}/meta", &exact, &params, rest),
            "/links/abc/meta"
        );
        assert!(PathPattern::check_template("/v2/l/{code}", "/x/{id}").is_err());
    }

    #[test]
    fn dot_segments_are_found_even_encoded() {
        assert!(has_dot_segment("/v1/../admin"));
        assert!(has_dot_segment("/v1/%2E%2e/admin"));
        assert!(has_dot_segment("/./x"));
        assert!(!has_dot_segment("/v1/file.txt"));
        assert!(!has_dot_segment("/v1/..x"));
    }

    #[test]
    fn first_match_wins_and_a_wrong_method_is_405_with_allow() {
        let a = m(None, PathPattern::exact("/links").unwrap(), &["POST"]);
        let b = m(
            Some("*.example.com"),
            PathPattern::prefix("/").unwrap(),
            &[],
        );
        let c = m(
            None,
            PathPattern::prefix("/links").unwrap(),
            &["GET", "DELETE"],
        );
        let table = [&a, &b, &c];
        let none = HeaderMap::new();
        let found = find(table, &Method::POST, Some("x.io"), "/links", &none).unwrap();
        assert_eq!(found.0, 0);
        let found = find(
            table,
            &Method::GET,
            Some("API.Example.com:80"),
            "/links",
            &none,
        );
        assert_eq!(found.unwrap().0, 1);
        let found = find(table, &Method::PUT, Some("x.io"), "/links", &none);
        let allow = vec![Method::POST, Method::GET, Method::DELETE];
        assert_eq!(found.unwrap_err(), Unrouted::MethodNotAllowed { allow });
        let found = find(table, &Method::GET, Some("x.io"), "/other", &none);
        assert_eq!(found.unwrap_err(), Unrouted::NoRoute);
    }

    #[test]
    fn header_conditions_select_a_version() {
        let mut headers = BTreeMap::new();
        headers.insert("accept-version".to_owned(), "2".to_owned());
        let v2 = matcher(None, PathPattern::prefix("/links").unwrap(), &[], &headers);
        let v1 = m(None, PathPattern::prefix("/links").unwrap(), &[]);
        let table = [&v2, &v1];
        let mut request = HeaderMap::new();
        let found = find(table, &Method::GET, None, "/links", &request).unwrap();
        assert_eq!(found.0, 1);
        request.insert("accept-version", HeaderValue::from_static("2"));
        let found = find(table, &Method::GET, None, "/links", &request).unwrap();
        assert_eq!(found.0, 0);
    }

    #[test]
    fn a_split_follows_its_weights() {
        let split = Split::new(&[("stable".into(), 90), ("canary".into(), 10)], 7);
        let n = 100_000;
        let canary = (0..n).filter(|_| &**split.pick() == "canary").count() as f64;
        // Binomial(n, 0.1): sigma = sqrt(n * 0.1 * 0.9) ~ 95; 5 sigma either way.
        assert!(
            (canary - 10_000.0).abs() < 5.0 * 95.0,
            "canary got {canary} of {n}"
        );
    }
}
