//! Header transforms (both directions) and phase 7, respond: what every response gets on its
//! way out, whoever produced it (the upstream, a stored idempotent response, or a refusal).

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http1::Response;

use crate::config::HeaderTransformConfig;
use crate::gateway::{Exchange, set_request_id};

/// Header changes, in order: remove, set (replace), add (append).
#[derive(Debug, Default)]
pub struct HeaderTransform {
    remove: Vec<HeaderName>,
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderTransform {
    /// From a validated config (invalid entries cannot remain; they are skipped).
    pub fn new(config: &HeaderTransformConfig) -> HeaderTransform {
        let pairs = |map: &std::collections::BTreeMap<String, String>| {
            map.iter()
                .filter_map(|(n, v)| {
                    Some((
                        HeaderName::from_bytes(n.as_bytes()).ok()?,
                        HeaderValue::from_str(v).ok()?,
                    ))
                })
                .collect()
        };
        HeaderTransform {
            remove: config
                .remove
                .iter()
                .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
                .collect(),
            set: pairs(&config.set),
            add: pairs(&config.add),
        }
    }

    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

/// Phase 7: the route's response transforms, CORS fields for a request with an `Origin`,
/// the rate-limit fields, and the request id.
pub fn respond(mut response: Response, exchange: &Exchange) -> Response {
    let headers = &mut response.head.headers;
    if let Some(route) = &exchange.route {
        route.response_headers.apply(headers);
        if let (Some(cors), Some(origin)) = (&route.cors, &exchange.origin) {
            cors.decorate(origin, headers);
        }
    }
    for (name, value) in &exchange.rate_limit_headers {
        headers.insert(name.clone(), value.clone());
    }
    set_request_id(&mut response, &exchange.request_id);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_then_set_then_add() {
        let mut config = HeaderTransformConfig::default();
        config.remove.push("server".into());
        config.set.insert("x-a".into(), "1".into());
        config.add.insert("x-b".into(), "2".into());
        let mut headers = HeaderMap::new();
        headers.insert("server", HeaderValue::from_static("upstream/1.0"));
        headers.insert("x-a", HeaderValue::from_static("0"));
        headers.insert("x-b", HeaderValue::from_static("1"));
        HeaderTransform::new(&config).apply(&mut headers);
        assert!(!headers.contains_key("server"));
        assert_eq!(headers["x-a"], "1");
        let b: Vec<_> = headers.get_all("x-b").iter().collect();
        assert_eq!(b, ["1", "2"]);
    }
}
