//! Phase 3, rate limit: every policy that applies to the request, the route's first and then
//! the consumer's plan's, each with the key its `key` setting names.
//!
//! | `key` | the request's key | when it is absent |
//! |---|---|---|
//! | `consumer` | the configured consumer | the client IP |
//! | `api_key` | the API key's id | the client IP |
//! | `client_ip` | the client IP (`gateway.trusted_proxies` decides which) | `-` |
//! | `route` | the route's name | - |
//! | `header:NAME` | the field's value | the client IP |
//!
//! Falling back to the client IP means that leaving a credential or a header out never
//! escapes a limit (it lands in the bucket of the caller's address instead).
//!
//! Every policy is checked, even after one denies, so that the `RateLimit` fields report
//! each; a request denied by one policy still counts against the others, as in Envoy's
//! rate-limit filter (a denied client retrying too early burns its other quotas too).

use std::borrow::Cow;

use http1::RequestHead;

use crate::auth::Method as AuthMethod;
use crate::error::GatewayError;
use crate::gateway::{Exchange, Gateway, Route};
use crate::ratelimit::{self, KeySource};

pub async fn run(
    gateway: &Gateway,
    route: &Route,
    request: &RequestHead,
    exchange: &mut Exchange,
) -> Result<(), GatewayError> {
    let plan = exchange
        .consumer
        .as_ref()
        .map(|c| c.policies.as_slice())
        .unwrap_or(&[]);
    if route.policies.is_empty() && plan.is_empty() {
        return Ok(());
    }
    let mut decisions = Vec::with_capacity(route.policies.len() + plan.len());
    for policy in route.policies.iter().chain(plan) {
        let key = key_of(policy.key_source(), route, request, exchange);
        let decision = policy.check(&key, exchange.now_ns).await;
        let label = match (decision.allowed, decision.store_failed) {
            (true, false) => "allowed",
            (false, false) => "denied",
            (true, true) => "store_error_allowed",
            (false, true) => "store_error_denied",
        };
        gateway
            .metrics
            .rate_limit_decisions
            .with_label_values(&[policy.name(), label])
            .inc();
        decisions.push(decision);
    }
    exchange.rate_limit_headers = ratelimit::response_headers(&decisions);
    let Some(denied) = decisions.iter().find(|d| !d.allowed) else {
        return Ok(());
    };
    let policy = denied.policy.to_string();
    match denied.store_failed {
        true => Err(GatewayError::RateLimitUnavailable { policy }),
        // The message names the first policy that denied but gives the wait the
        // `Retry-After` field gives: the longest, after which every denying policy recovered.
        false => Err(GatewayError::RateLimited {
            policy,
            retry_after: ratelimit::longest_wait(&decisions).unwrap_or_default(),
        }),
    }
}

/// The request's key for one policy. Consumer and route keys are built once, with the table.
fn key_of<'a>(
    source: &KeySource,
    route: &'a Route,
    request: &RequestHead,
    exchange: &'a Exchange,
) -> Cow<'a, str> {
    let ip = || match exchange.client_ip {
        Some(ip) => Cow::Owned(format!("ip:{ip}")),
        None => Cow::Borrowed("-"),
    };
    match source {
        KeySource::Consumer => match &exchange.consumer {
            Some(consumer) => Cow::Borrowed(&consumer.limit_key),
            None => ip(),
        },
        KeySource::ApiKey => match &exchange.identity {
            Some(id) if id.method == AuthMethod::ApiKey => {
                Cow::Owned(format!("key:{}", id.credential_id))
            }
            _ => ip(),
        },
        KeySource::ClientIp => ip(),
        KeySource::Route => Cow::Borrowed(&route.limit_key),
        KeySource::Header(name) => match request.headers.get(name).map(|v| v.as_bytes()) {
            Some(value) => Cow::Owned(format!("header:{}", String::from_utf8_lossy(value))),
            None => ip(),
        },
    }
}
