//! The OpenAPI 3.0 document at `/api/v1/openapi.json`.
//!
//! Written by hand (`openapi.json` beside this file) so that it reads as documentation, and
//! kept true by the tests below: every documented path and method must route to the route
//! with the documented `operationId`, and every route must be documented.

use http1::{HeaderValue, Response, StatusCode, header};

const DOCUMENT: &str = include_str!("openapi.json");

pub fn response() -> Response {
    Response::new(StatusCode::OK, DOCUMENT).with_header(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use http1::Method;
    use serde_json::Value;

    use super::*;
    use crate::api::{Resolved, Route, resolve};

    /// (method, path with `{code}` filled in, operationId) of every documented operation.
    fn operations() -> Vec<(Method, String, String)> {
        let document: Value = serde_json::from_str(DOCUMENT).expect("openapi.json is JSON");
        let mut operations = Vec::new();
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                if method == "parameters" {
                    continue;
                }
                let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let id = operation["operationId"].as_str().unwrap().to_owned();
                operations.push((method, path.replace("{code}", "abc1234"), id));
            }
        }
        operations
    }

    #[test]
    fn every_documented_operation_routes_to_its_handler() {
        for (method, path, id) in operations() {
            match resolve(&method, &path) {
                Resolved::Route(route, _) => {
                    assert_eq!(route.operation_id(), id, "{method} {path}")
                }
                other => panic!("{method} {path} is documented but routes to {other:?}"),
            }
        }
    }

    #[test]
    fn every_route_is_documented() {
        let documented: HashSet<String> = operations().into_iter().map(|(_, _, id)| id).collect();
        for route in Route::ALL {
            assert!(
                documented.contains(route.operation_id()),
                "{route:?} is not in openapi.json"
            );
        }
        assert_eq!(documented.len(), Route::ALL.len());
    }
}
