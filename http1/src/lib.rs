//! HTTP/1.1, written here: the message framing, limits and smuggling defences shared by the
//! reverse proxy, the API gateway, the URL shortener and every admin endpoint.
//!
//! `httparse` tokenizes start lines and field lines. Everything that gives the bytes a meaning
//! is in this crate, in the order a message travels:
//!
//! | module | what it holds |
//! |---|---|
//! | [`limits`] | every size and time limit, with the status each one earns |
//! | [`head`] | parsing and writing header sections; message types |
//! | [`framing`] | where a body ends (RFC 9112 section 6), strictly |
//! | [`decode`] | the sans-I/O body decoder (Content-Length, chunked with trailers, until close) |
//! | [`encode`] | the sans-I/O body encoder |
//! | [`body`] | bodies as streams with back-pressure |
//! | [`message`] | [`Request`] and [`Response`], shared by server and client |
//! | [`upgrade`] | the raw stream after `101 Switching Protocols` |
//! | [`server`] | the accept loop and one connection's request/response loop |
//! | [`error`] | errors and their status codes |
//! | [`client`] | the client and its keep-alive pool |

pub mod body;
pub mod client;
pub mod decode;
pub mod encode;
pub mod error;
pub mod framing;
pub mod head;
pub mod limits;
pub mod message;
pub mod server;
mod timer;
pub mod upgrade;

pub use body::{Body, BodySender, BodyStream, Collected, Frame};
pub use client::{Client, ClientConfig, ClientStats};
pub use error::{BodyError, Error, HeadError, Result};
pub use framing::BodyKind;
pub use head::{RequestHead, ResponseHead};
pub use limits::Limits;
pub use message::{Request, Response};
pub use upgrade::{OnUpgrade, Upgraded};

pub use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version, header};
