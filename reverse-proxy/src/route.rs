//! Routing: which cluster serves a request, from its host and path.
//!
//! Routes are tried in the order of the config and the first match wins, as in Envoy's route
//! tables: the operator puts specific routes before general ones. A route matches when
//!
//! - its `host` is absent, equal to the request's host (case-insensitive, port ignored), or
//!   `*.suffix` and the request's host ends with `.suffix`; and
//! - the request path starts with its `path_prefix` (a plain string prefix).
//!
//! The request's host is the `Host` field (HTTP/1.1 requires exactly one, and `http1` has
//! already refused requests with none or two; for an absolute-form target `http1` checks that
//! the two agree).

use crate::config::RouteConfig;

/// A compiled routing table: routes in order, each naming a cluster by its index.
#[derive(Debug)]
pub struct Router {
    routes: Vec<Route>,
}

#[derive(Debug)]
struct Route {
    host: HostMatch,
    path_prefix: String,
    cluster: usize,
}

#[derive(Debug)]
enum HostMatch {
    Any,
    /// Lower-case host name.
    Exact(String),
    /// Lower-case `.suffix` (with its leading dot) for `*.suffix`.
    Suffix(String),
}

impl Router {
    /// Compiles `routes`; `cluster_index` maps a cluster name to its index (validation has
    /// checked that every name exists, so an unknown one is skipped rather than a panic).
    pub fn new(routes: &[RouteConfig], cluster_index: impl Fn(&str) -> Option<usize>) -> Router {
        let routes = routes
            .iter()
            .filter_map(|route| {
                let host = match route.host.as_deref() {
                    None => HostMatch::Any,
                    Some(host) => match host.strip_prefix('*') {
                        Some(suffix) => HostMatch::Suffix(suffix.to_ascii_lowercase()),
                        None => HostMatch::Exact(host.to_ascii_lowercase()),
                    },
                };
                Some(Route {
                    host,
                    path_prefix: route.path_prefix.clone(),
                    cluster: cluster_index(&route.cluster)?,
                })
            })
            .collect();
        Router { routes }
    }

    /// The cluster index for a request to `host` (as in the `Host` field, port allowed) and
    /// `path`, or `None` when no route matches.
    pub fn route(&self, host: Option<&str>, path: &str) -> Option<usize> {
        let host = host.map(strip_port);
        self.routes
            .iter()
            .find(|route| route.host.matches(host) && path.starts_with(&route.path_prefix))
            .map(|route| route.cluster)
    }
}

impl HostMatch {
    fn matches(&self, host: Option<&str>) -> bool {
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

/// `example.com:8080` -> `example.com`; `[::1]:8080` -> `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(host: Option<&str>, prefix: &str, cluster: &str) -> RouteConfig {
        RouteConfig {
            host: host.map(str::to_owned),
            path_prefix: prefix.to_owned(),
            cluster: cluster.to_owned(),
        }
    }

    fn router() -> Router {
        let routes = [
            route(Some("api.example.com"), "/v2/", "api-v2"),
            route(Some("api.example.com"), "/", "api"),
            route(Some("*.cdn.example.com"), "/", "cdn"),
            route(None, "/static/", "static"),
            route(None, "/", "web"),
        ];
        let names = ["api-v2", "api", "cdn", "static", "web"];
        Router::new(&routes, |name| names.iter().position(|n| *n == name))
    }

    #[test]
    fn the_first_matching_route_wins() {
        let r = router();
        assert_eq!(r.route(Some("api.example.com"), "/v2/users"), Some(0));
        assert_eq!(r.route(Some("API.example.com:8443"), "/v1/users"), Some(1));
        assert_eq!(r.route(Some("img.cdn.example.com"), "/a.png"), Some(2));
        assert_eq!(r.route(Some("cdn.example.com"), "/static/x"), Some(3));
        assert_eq!(r.route(Some("other.org"), "/"), Some(4));
        assert_eq!(r.route(None, "/x"), Some(4));
    }

    #[test]
    fn without_a_catch_all_some_requests_match_nothing() {
        let routes = [route(Some("a.example"), "/app/", "a")];
        let r = Router::new(&routes, |_| Some(0));
        assert_eq!(r.route(Some("a.example"), "/app/x"), Some(0));
        assert_eq!(r.route(Some("a.example"), "/other"), None);
        assert_eq!(r.route(Some("b.example"), "/app/x"), None);
    }

    #[test]
    fn ports_are_ignored_for_names_and_bracketed_addresses() {
        assert_eq!(strip_port("example.com:80"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
    }
}
