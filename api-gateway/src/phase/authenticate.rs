//! Phase 2, authenticate: who is calling.
//!
//! Header fields the gateway writes from credentials (forwarded claims, `X-Consumer`) are
//! removed from every request first, authenticated or not: otherwise a client could send
//! `X-User-Id: admin` itself and an upstream trusting the gateway would believe it. Then, on
//! a route that accepts credentials, the `auth/` module checks them; the credential itself is
//! stripped before the request goes upstream (an upstream never needs the API key, and one
//! that logs headers would leak it).

use http1::Request;

use crate::auth::Identity;
use crate::error::GatewayError;
use crate::gateway::{Exchange, Route, Table};

pub async fn run(
    table: &Table,
    route: &Route,
    request: &mut Request,
    exchange: &Exchange,
) -> Result<Option<Identity>, GatewayError> {
    let headers = &mut request.head.headers;
    for name in &table.claim_headers {
        headers.remove(name);
    }
    if route.auth.is_empty() {
        return Ok(None);
    }
    let now_unix_s = exchange.now_ns / 1_000_000_000;
    let identity = table
        .authenticator
        .authenticate(&request.head, &route.auth, &route.scopes, now_unix_s)
        .await
        .map_err(GatewayError::Auth)?;
    table.authenticator.strip_credentials(&mut request.head);
    for (name, value) in &identity.forward {
        request.head.headers.insert(name.clone(), value.clone());
    }
    Ok(Some(identity))
}
