//! Phase 6, upstream: the request as the upstream will see it, and the call.
//!
//! The path is rewritten (query kept), the route's request header transforms run, the
//! configured consumer is named in `X-Consumer` (removed from the incoming request in phase
//! 2, so only the gateway can set it), and the body limit is enforced: an announced length
//! over it is refused at once with 413; a chunked body is cut off when it passes the limit.
//! Then `reverse_proxy::proxy::Proxy::handle_in` forwards to the cluster the split chose,
//! with everything the reverse proxy does (balancing, health, outlier ejection, retries with
//! a budget, pooled keep-alive connections, forwarding headers), bounded by the route's
//! timeout.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::HeaderName;
use http::header::HeaderValue;
use http1::{Body, BodyError, BodyStream, Frame, Request, Response};
use reverse_proxy::error::ProxyError;
use reverse_proxy::proxy::Downstream;

use crate::error::GatewayError;
use crate::gateway::{Exchange, Gateway, Route};

/// The consumer a request was authenticated as, for the upstream.
pub static X_CONSUMER: HeaderName = HeaderName::from_static("x-consumer");

/// What came of the upstream call.
#[derive(Debug)]
pub struct Outcome {
    /// The response to relay (the upstream's, or the proxy's own answer), or the route's
    /// timeout.
    pub result: Result<Response, GatewayError>,
    /// Nothing reached the upstream (connect failed, no healthy endpoint, a proxy limit):
    /// the request had no effect and may run again.
    pub nothing_sent: bool,
    /// A failure for the circuit breaker: a 5xx or a timeout.
    pub failed: bool,
}

/// Refuses a body announced larger than the route allows.
pub fn check_body(route: &Route, request: &mut Request) -> Result<(), GatewayError> {
    let max = route.max_body_bytes;
    match request.body.exact_len() {
        Some(len) if len > max => Err(GatewayError::BodyTooLarge { max }),
        Some(_) => Ok(()),
        None => {
            let body = std::mem::take(&mut request.body);
            request.body = Body::from_stream(Limited {
                body,
                left: max,
                max,
            });
            Ok(())
        }
    }
}

/// Rewrites the request for the upstream.
pub fn prepare(route: &Route, request: &mut Request, target: Option<String>, exchange: &Exchange) {
    if let Some(target) = target {
        request.head.target = target;
    }
    let headers = &mut request.head.headers;
    route.request_headers.apply(headers);
    if let Some(consumer) = &exchange.consumer
        && let Ok(value) = HeaderValue::from_str(&consumer.name)
    {
        headers.insert(X_CONSUMER.clone(), value);
    }
}

/// Sends the request to `cluster` through the reverse proxy.
pub async fn forward(
    gateway: &Gateway,
    route: &Route,
    cluster: &str,
    request: Request,
    downstream: Downstream,
) -> Outcome {
    let table = gateway.proxy.table();
    let Some(cluster) = table.cluster(cluster) else {
        // Validation ties every split member to a cluster; only a reload racing this
        // request can get here, and nothing was sent.
        let error = ProxyError::NoHealthyEndpoint {
            cluster: cluster.to_owned(),
        };
        return from_proxy(error.to_response(&gateway.settings.via), Some(error));
    };
    let call = gateway.proxy.handle_in(cluster, request, downstream);
    let (response, failure) = match route.timeout {
        None => call.await,
        Some(limit) => match tokio::time::timeout(limit, call).await {
            Ok(answered) => answered,
            Err(_) => return timed_out(limit),
        },
    };
    from_proxy(response, failure)
}

fn from_proxy(response: Response, failure: Option<ProxyError>) -> Outcome {
    let nothing_sent = failure.as_ref().is_some_and(|f| {
        f.nothing_sent()
            || matches!(
                f,
                ProxyError::NoHealthyEndpoint { .. } | ProxyError::CircuitOpen { .. }
            )
    });
    Outcome {
        failed: response.status().is_server_error(),
        result: Ok(response),
        nothing_sent,
    }
}

fn timed_out(limit: Duration) -> Outcome {
    Outcome {
        result: Err(GatewayError::Timeout(limit)),
        nothing_sent: false,
        failed: true,
    }
}

/// A request body of unknown length, cut off past `max` bytes.
struct Limited {
    body: Body,
    left: u64,
    max: u64,
}

impl BodyStream for Limited {
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<http1::Result<Frame>>> {
        let this = self.get_mut();
        let polled = this.body.poll_frame(cx);
        if let Poll::Ready(Some(Ok(Frame::Data(data)))) = &polled {
            let len = data.len() as u64;
            if len > this.left {
                let error = BodyError::TooLarge { max: this.max };
                return Poll::Ready(Some(Err(http1::Error::Body(error))));
            }
            this.left -= len;
        }
        polled
    }
}
