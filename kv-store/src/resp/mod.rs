//! RESP, the Redis serialization protocol, versions 2 and 3, without I/O.
//!
//! A client sends commands; the server answers with replies. Both directions are byte strings
//! made of typed frames, each introduced by one byte and ended by CRLF:
//!
//! ```text
//!  request (always an array of bulk strings)      replies (RESP2 types, then RESP3 additions)
//!  *2\r\n$3\r\nGET\r\n$3\r\nkey\r\n                +OK\r\n           simple string
//!                                                 -ERR message\r\n  error
//!  or an "inline" command, as typed in telnet:    :42\r\n           integer
//!  GET key\r\n                                    $5\r\nhello\r\n   bulk string ($-1 null)
//!                                                 *2\r\n...         array (*-1 null array)
//!                                                 _\r\n             RESP3 null
//!                                                 ,3.14\r\n         RESP3 double
//!                                                 #t\r\n            RESP3 boolean
//!                                                 %1\r\n...         RESP3 map (key, value pairs)
//!                                                 ~2\r\n...         RESP3 set
//! ```
//!
//! [`request`] parses commands (the server's side), [`Frame`] and [`encode`] write replies in
//! the protocol version the connection chose with `HELLO`. Every size the parser accepts is
//! bounded by [`Limits`].

mod encode;
mod frame;
pub mod reply;
pub mod request;

pub use encode::{encode, format_double, format_i64};
pub use frame::Frame;
pub use request::{Limits, ProtocolError};

/// The protocol version a connection speaks. Every connection starts in RESP2; `HELLO 3`
/// switches it to RESP3, which adds maps, sets, doubles, booleans and a distinct null.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Resp2,
    Resp3,
}
