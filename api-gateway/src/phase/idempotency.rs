//! Phase 4, idempotency: a `POST` or `PATCH` carrying an `Idempotency-Key` runs at most once
//! per key (the store's rules are in `idempotency/`; this is how a request meets them).
//!
//! ```text
//!  key checked (1..=max_key_bytes of visible ASCII; a quoted sf-string is unquoted)
//!  body read whole (the route's limit) ─▶ fingerprint = SHA-256(method, target, body)
//!  store.begin(consumer + key, fingerprint)
//!     Proceed  ─▶ phases 5 and 6 run ─▶ the outcome is stored (finish) or, when nothing
//!                 reached the upstream, the claim is released so a retry may run
//!     Replay   ─▶ the stored response, with `Idempotent-Replayed: true` (and
//!                 `Idempotent-Body-Omitted: true` when its body was too large to store)
//!     InProgress ─▶ 409 · Mismatch ─▶ 422 · store down ─▶ 503
//! ```
//!
//! Keys are scoped by consumer (Stripe scopes them by account): two consumers choosing the
//! same key never see each other's responses. An ambiguous outcome (a reset or timeout after
//! the request was sent) is stored as the outcome: the upstream may have acted, so running
//! the request again could act twice, which is what the key exists to prevent.
//!
//! The response is read up to `idempotency.max_body_bytes` before it is relayed, so that it
//! can be stored; a larger one is stored without its body (`body_omitted`) and the rest
//! streams on to the client.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use http1::{Body, BodyError, BodyStream, Frame, Request, Response};

use crate::auth::Method as AuthMethod;
use crate::error::GatewayError;
use crate::gateway::{Exchange, Gateway, Route};
use crate::idempotency::{Begin, Claim, IdempotencyConfig, StoredResponse, fingerprint};
use crate::metrics::ANONYMOUS;
use crate::phase::upstream::Outcome;

/// Set on a stored response given again (Stripe's field name).
pub static IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// Set on a replay whose body was not stored (over `idempotency.max_body_bytes`, or cut off
/// upstream): the status and headers are the first response's, the body is empty.
pub static IDEMPOTENT_BODY_OMITTED: HeaderName = HeaderName::from_static("idempotent-body-omitted");

/// What phase 4 decided.
pub enum Begun {
    /// No key, not POST/PATCH, or the route or gateway does not deduplicate.
    NotApplicable,
    /// The answer: a stored response.
    Replay(Response),
    /// This request holds the key; its outcome must be stored or released.
    Claimed(Claimed),
}

/// A held key and the size limit of what will be stored.
pub struct Claimed {
    claim: Claim,
    max_body_bytes: usize,
}

pub async fn begin(
    gateway: &Gateway,
    route: &Route,
    request: &mut Request,
    exchange: &Exchange,
) -> Result<Begun, GatewayError> {
    let Some((config, store)) = &gateway.idempotency else {
        return Ok(Begun::NotApplicable);
    };
    let method = &request.head.method;
    if !route.idempotency || !(method == Method::POST || method == Method::PATCH) {
        return Ok(Begun::NotApplicable);
    }
    let Some(value) = request.head.headers.get(config.header.as_str()) else {
        return Ok(Begun::NotApplicable);
    };
    let key = parse_key(config, value.as_bytes())?;
    // Each kind of caller has its own prefix, so a token whose `sub` happens to equal a
    // configured consumer's name, or an API key entry's id, never shares its keys.
    let scope = match (&exchange.consumer, &exchange.identity) {
        (Some(consumer), _) => format!("consumer:{}", consumer.name),
        (None, Some(identity)) if identity.method == AuthMethod::ApiKey => {
            format!("key:{}", identity.credential_id)
        }
        (None, Some(identity)) => format!("token:{}", identity.credential_id),
        (None, None) => ANONYMOUS.to_owned(),
    };
    let scoped = format!("{scope}\n{key}");
    let body = read_body(request, route.max_body_bytes).await?;
    let print = fingerprint(&request.head.method, &request.head.target, &body);
    let outcome = |label: &str| {
        gateway
            .metrics
            .idempotency
            .with_label_values(&[route.name.as_str(), label])
            .inc()
    };
    match store.begin(&scoped, print, exchange.now_ns).await {
        Ok(Begin::Proceed(claim)) => {
            outcome("first");
            let max_body_bytes = config.max_body_bytes;
            Ok(Begun::Claimed(Claimed {
                claim,
                max_body_bytes,
            }))
        }
        Ok(Begin::Replay(stored)) => {
            outcome("replayed");
            Ok(Begun::Replay(replay(stored)))
        }
        Ok(Begin::InProgress) => {
            outcome("in_progress");
            Err(GatewayError::IdempotencyInProgress)
        }
        Ok(Begin::Mismatch) => {
            outcome("mismatch");
            Err(GatewayError::IdempotencyMismatch)
        }
        Err(error) => {
            tracing::warn!(%error, "idempotency store unavailable");
            Err(GatewayError::IdempotencyUnavailable)
        }
    }
}

/// The key as sent: raw (as Stripe takes it) or an sf-string in quotes (the IETF draft).
fn parse_key(config: &IdempotencyConfig, raw: &[u8]) -> Result<String, GatewayError> {
    let unquoted = match raw {
        [b'"', inner @ .., b'"'] => inner,
        other => other,
    };
    match config.check_key(unquoted) {
        Ok(key) => Ok(key.to_owned()),
        Err(_) => Err(GatewayError::BadRequest(
            "the idempotency key must be 1 to max_key_bytes printable ASCII characters",
        )),
    }
}

/// Reads the request body whole (it is hashed, and may have to be sent again) and puts it
/// back in the request.
async fn read_body(request: &mut Request, max: u64) -> Result<Bytes, GatewayError> {
    let body = std::mem::take(&mut request.body);
    let collected = body.collect(max).await.map_err(|e| match e {
        http1::Error::Body(BodyError::TooLarge { .. }) => GatewayError::BodyTooLarge { max },
        other => GatewayError::RequestBody(other.to_string()),
    })?;
    request.body = Body::full(collected.data.clone());
    Ok(collected.data)
}

/// Frees a key whose request never reached the upstream.
pub async fn release(gateway: &Gateway, route: &Route, claimed: Claimed) {
    if let Err(error) = claimed.claim.release().await {
        tracing::warn!(%error, "cannot release an idempotency key; it frees itself at lock_ttl_ms");
    }
    gateway
        .metrics
        .idempotency
        .with_label_values(&[route.name.as_str(), "released"])
        .inc();
}

/// After the upstream phase: stores the outcome under the held key, or releases the key when
/// nothing was sent. Returns the outcome for the client.
pub async fn finish(
    gateway: &Gateway,
    route: &Route,
    claimed: Option<Claimed>,
    outcome: Outcome,
    exchange: &Exchange,
) -> Result<Response, GatewayError> {
    let Some(claimed) = claimed else {
        return outcome.result;
    };
    if outcome.nothing_sent {
        release(gateway, route, claimed).await;
        return outcome.result;
    }
    let (stored, result) = match outcome.result {
        Ok(response) => {
            let (stored, response) = capture(response, claimed.max_body_bytes).await;
            (stored, Ok(response))
        }
        Err(error) => {
            let response = error.to_response(&exchange.request_id);
            let (stored, _) = capture(response, claimed.max_body_bytes).await;
            (stored, Err(error))
        }
    };
    if let Err(error) = claimed.claim.complete(stored, gateway.clock.now_ns()).await {
        tracing::warn!(%error, "cannot store an idempotent response; the key frees itself at lock_ttl_ms");
    }
    result
}

/// Fields not stored: they belong to one exchange, not to the outcome.
fn stored_field(name: &HeaderName) -> bool {
    name != header::DATE
        && name != header::CONTENT_LENGTH
        && name != header::TRANSFER_ENCODING
        && name.as_str() != "x-request-id"
}

/// Reads up to `max` bytes of the response body; returns what is stored and the response to
/// relay (the bytes read, then the rest of the body).
async fn capture(mut response: Response, max: usize) -> (StoredResponse, Response) {
    let mut prefix = VecDeque::new();
    let mut read = 0usize;
    let mut complete = false;
    let mut trailers = None;
    loop {
        match response.body.frame().await {
            None => {
                complete = true;
                break;
            }
            Some(Ok(Frame::Data(data))) => {
                read += data.len();
                prefix.push_back(data);
                if read > max {
                    break;
                }
            }
            Some(Ok(Frame::Trailers(fields))) => {
                trailers = Some(fields);
                complete = true;
                break;
            }
            Some(Err(error)) => {
                tracing::debug!(%error, "upstream body failed while being stored");
                break;
            }
        }
    }
    let mut body = BytesMut::with_capacity(read.min(max));
    if complete {
        prefix
            .iter()
            .for_each(|chunk| body.extend_from_slice(chunk));
    }
    let headers = response
        .head
        .headers
        .iter()
        .filter(|(name, _)| stored_field(name))
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                Bytes::copy_from_slice(value.as_bytes()),
            )
        })
        .collect();
    let stored = StoredResponse {
        status: response.status().as_u16(),
        headers,
        body: body.freeze(),
        body_omitted: !complete,
    };
    let rest = std::mem::take(&mut response.body);
    response.body = Body::from_stream(Prefixed {
        prefix,
        trailers,
        rest: (!complete).then_some(rest),
    });
    (stored, response)
}

/// A stored response, given again.
fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = Response::new(status, Body::full(stored.body));
    let mut headers = HeaderMap::with_capacity(stored.headers.len() + 1);
    for (name, value) in &stored.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    headers.insert(
        IDEMPOTENT_REPLAYED.clone(),
        HeaderValue::from_static("true"),
    );
    if stored.body_omitted {
        headers.insert(
            IDEMPOTENT_BODY_OMITTED.clone(),
            HeaderValue::from_static("true"),
        );
    }
    response.head.headers = headers;
    response
}

/// A body of which the first frames were already read.
struct Prefixed {
    prefix: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
    rest: Option<Body>,
}

impl BodyStream for Prefixed {
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<http1::Result<Frame>>> {
        let this = self.get_mut();
        if let Some(chunk) = this.prefix.pop_front() {
            return Poll::Ready(Some(Ok(Frame::Data(chunk))));
        }
        match &mut this.rest {
            Some(rest) => rest.poll_frame(cx),
            None => Poll::Ready(this.trailers.take().map(|t| Ok(Frame::Trailers(t)))),
        }
    }

    fn exact_len(&self) -> Option<u64> {
        let prefix: u64 = self.prefix.iter().map(|c| c.len() as u64).sum();
        match &self.rest {
            Some(rest) => rest.exact_len().map(|len| len + prefix),
            None => Some(prefix),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_printable_ascii_within_the_limit_quoted_or_not() {
        let config = IdempotencyConfig::default();
        assert_eq!(parse_key(&config, b"abc-123").unwrap(), "abc-123");
        assert_eq!(parse_key(&config, b"\"abc\"").unwrap(), "abc");
        assert!(parse_key(&config, b"").is_err());
        assert_eq!(
            parse_key(&config, b"a b").unwrap(),
            "a b",
            "a structured-field string may hold spaces"
        );
        assert!(parse_key(&config, b"a\tb").is_err());
        assert!(parse_key(&config, &[b'a'; 256]).is_err());
    }

    #[tokio::test]
    async fn a_captured_response_is_stored_and_still_relayed_whole() {
        let response = Response::text(StatusCode::CREATED, "hello");
        let (stored, relayed) = capture(response, 1024).await;
        assert_eq!(stored.status, 201);
        assert_eq!(&stored.body[..], b"hello");
        assert!(!stored.body_omitted);
        assert_eq!(relayed.body.collect(1024).await.unwrap().data, "hello");

        let big = Response::text(StatusCode::OK, vec![b'x'; 100]);
        let (stored, relayed) = capture(big, 10).await;
        assert!(stored.body_omitted && stored.body.is_empty());
        assert_eq!(relayed.body.collect(1024).await.unwrap().data.len(), 100);
    }

    #[tokio::test]
    async fn a_replay_says_it_is_one_and_says_when_its_body_was_not_stored() {
        let mut response = Response::text(StatusCode::CREATED, vec![b'x'; 100]);
        response
            .head
            .headers
            .insert("x-request-id", HeaderValue::from_static("first"));
        let (stored, _) = capture(response, 10).await;
        let again = replay(stored);
        assert_eq!(again.status(), StatusCode::CREATED);
        let headers = &again.head.headers;
        assert_eq!(headers[&IDEMPOTENT_REPLAYED], "true");
        assert_eq!(headers[&IDEMPOTENT_BODY_OMITTED], "true");
        assert!(!headers.contains_key("x-request-id"), "{headers:?}");
        assert!(again.body.collect(1024).await.unwrap().data.is_empty());

        let (stored, _) = capture(Response::text(StatusCode::OK, "whole"), 1024).await;
        let again = replay(stored);
        assert!(!again.head.headers.contains_key(&IDEMPOTENT_BODY_OMITTED));
        assert_eq!(again.body.collect(1024).await.unwrap().data, "whole");
    }
}
