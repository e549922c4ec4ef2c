//! Errors of the HTTP/1.1 layer, and the status code each one earns.
//!
//! Parsing errors are split by where they happen, because they are answered differently: a bad
//! header section ([`HeadError`]) is answered with a 4xx/5xx status before the connection is
//! closed; a bad body ([`BodyError`]) is discovered while the handler already runs, so it is
//! delivered to whoever reads the body, and the connection is closed afterwards because its
//! framing can no longer be trusted.

use http::StatusCode;

/// A header section that cannot be accepted. Every variant closes the connection: after a
/// framing error nothing on the stream can be trusted to start a new message (this is what
/// defeats request smuggling).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("request line longer than {max} bytes")]
    RequestLineTooLong { max: usize },
    #[error("header section longer than {max} bytes")]
    HeadersTooLarge { max: usize },
    #[error("more than {max} header fields")]
    TooManyHeaders { max: usize },
    #[error("malformed header section: {0}")]
    Malformed(&'static str),
    #[error("bare LF in header section (lines must end with CRLF)")]
    BareLf,
    #[error("unsupported HTTP version")]
    UnsupportedVersion,
    #[error("invalid Content-Length")]
    InvalidContentLength,
    #[error("Content-Length values differ")]
    ConflictingContentLength,
    #[error("both Transfer-Encoding and Content-Length")]
    TransferEncodingWithContentLength,
    #[error("Transfer-Encoding does not end with chunked (or applies chunked twice)")]
    ChunkedNotLast,
    #[error("invalid Transfer-Encoding value")]
    InvalidTransferEncoding,
    #[error("unsupported transfer coding")]
    UnsupportedTransferCoding,
    #[error("Transfer-Encoding in an HTTP/1.0 message")]
    TransferEncodingInHttp10,
    #[error("missing or repeated Host header")]
    BadHost,
    #[error("body of {len} bytes exceeds the limit of {max}")]
    BodyTooLarge { len: u64, max: u64 },
}

impl HeadError {
    /// The status a server answers with (RFC 9110 section 15 and RFC 9112 section 6).
    pub fn status(&self) -> StatusCode {
        match self {
            HeadError::RequestLineTooLong { .. } => StatusCode::URI_TOO_LONG,
            HeadError::HeadersTooLarge { .. } | HeadError::TooManyHeaders { .. } => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            HeadError::UnsupportedVersion => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            HeadError::UnsupportedTransferCoding => StatusCode::NOT_IMPLEMENTED,
            HeadError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// A message body whose framing is broken, or that broke a limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("body exceeds the limit of {max} bytes")]
    TooLarge { max: u64 },
    #[error("invalid chunk size line")]
    InvalidChunkSize,
    #[error("chunk size line longer than {max} bytes")]
    ChunkLineTooLong { max: usize },
    #[error("chunk data not followed by CRLF")]
    MissingChunkCrlf,
    #[error("trailer section longer than {max} bytes")]
    TrailersTooLarge { max: usize },
    #[error("malformed trailer section")]
    InvalidTrailers,
    #[error("chunk framing overhead out of proportion to the data")]
    ChunkOverhead,
    #[error("connection closed before the body was complete")]
    Incomplete,
}

impl BodyError {
    /// The status a server answers with, if it has not started its response yet.
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// Everything that can go wrong on a connection, as seen by a caller of the server or client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Head(#[from] HeadError),
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out: {0}")]
    Timeout(&'static str),
    #[error("connection closed")]
    Closed,
    /// The client could not open a connection to the upstream (refused, unreachable). Nothing
    /// was sent, so the request may go to another upstream whatever its method.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// The upstream answered with a header section that cannot be accepted (garbage, both
    /// Transfer-Encoding and Content-Length, differing lengths, over a limit). A proxy answers
    /// it with 502 Bad Gateway; see [`Error::is_upstream_protocol_error`].
    #[error("malformed response: {0}")]
    MalformedResponse(HeadError),
    /// A request built by the caller that cannot be sent as it is (a request target with a
    /// space or a control character would split the request on the wire). Nothing was sent.
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// Whether the upstream a client talked to broke HTTP/1.1 before its response head was
    /// accepted: the failure is the upstream's, not ours, and a proxy answers it with 502. (A
    /// broken response *body* surfaces later, as [`Error::Body`] from the body stream, when the
    /// proxy's own response has already started.)
    pub fn is_upstream_protocol_error(&self) -> bool {
        matches!(self, Error::MalformedResponse(_))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
