//! Requests and responses: a head and a streaming body, shared by the server and the client so
//! that a proxy can hand what it received on one side to the other without converting.

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, StatusCode};

use crate::body::Body;
use crate::head::{RequestHead, ResponseHead};
use crate::upgrade::OnUpgrade;

/// An HTTP request. On the server side `remote_addr` is the peer and `upgrade` is set when the
/// client asked to switch protocols or sent CONNECT; on the client side both are ignored.
#[derive(Debug)]
pub struct Request {
    pub head: RequestHead,
    pub body: Body,
    pub remote_addr: Option<SocketAddr>,
    pub(crate) upgrade: Option<OnUpgrade>,
}

/// An HTTP response. On the client side `upgrade` is set for a `101 Switching Protocols`.
#[derive(Debug)]
pub struct Response {
    pub head: ResponseHead,
    pub body: Body,
    pub(crate) upgrade: Option<OnUpgrade>,
}

impl Request {
    pub fn new(method: Method, target: impl Into<String>, body: impl Into<Body>) -> Self {
        Request {
            head: RequestHead::new(method, target),
            body: body.into(),
            remote_addr: None,
            upgrade: None,
        }
    }

    /// Adds a field (keeping others of the same name).
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.head.headers.append(name, value);
        self
    }

    /// The connection after a `101 Switching Protocols`, or the tunnel after a 2xx to CONNECT:
    /// present when the client asked for an upgrade or sent CONNECT (without a body). Answer
    /// with a 101 (a 2xx for CONNECT) and await the returned future to get the raw stream; any
    /// other answer leaves the connection HTTP, and the future fails with `Error::Closed`.
    pub fn take_upgrade(&mut self) -> Option<OnUpgrade> {
        self.upgrade.take()
    }
}

impl Response {
    pub fn new(status: StatusCode, body: impl Into<Body>) -> Self {
        Response {
            head: ResponseHead::new(status),
            body: body.into(),
            upgrade: None,
        }
    }

    /// A `text/plain` response.
    pub fn text(status: StatusCode, text: impl Into<Bytes>) -> Self {
        Response::new(status, Body::full(text.into())).with_header(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )
    }

    /// Adds a field (keeping others of the same name).
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.head.headers.append(name, value);
        self
    }

    pub fn status(&self) -> StatusCode {
        self.head.status
    }

    /// The raw stream after a `101 Switching Protocols` received by the client.
    pub fn take_upgrade(&mut self) -> Option<OnUpgrade> {
        self.upgrade.take()
    }
}
