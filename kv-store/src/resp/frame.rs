//! The reply type: what a command answers, before it is encoded for a protocol version.

use bytes::Bytes;

/// One reply value. Commands build RESP3's richer shapes (maps, sets, doubles, booleans) and
/// [`crate::resp::encode`] flattens them for a RESP2 connection the way Redis does, so no command
/// needs to know which protocol its caller speaks.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `+OK`: a short status line without CR or LF.
    Simple(&'static str),
    /// A simple string built at run time (`+PONG` replies, `TYPE`).
    SimpleOwned(String),
    /// `-ERR ...`: the whole line after `-`, code included (`ERR`, `WRONGTYPE`, `NOAUTH`).
    Error(String),
    Integer(i64),
    Bulk(Bytes),
    /// The absent value: `$-1` in RESP2, `_` in RESP3.
    Null,
    /// The absent array: `*-1` in RESP2, `_` in RESP3.
    NullArray,
    Array(Vec<Frame>),
    /// Key/value pairs: `%` in RESP3, a flat array in RESP2.
    Map(Vec<(Frame, Frame)>),
    /// `~` in RESP3, an array in RESP2.
    Set(Vec<Frame>),
    /// `,` in RESP3, a bulk string in RESP2.
    Double(f64),
    /// `#t`/`#f` in RESP3, `:1`/`:0` in RESP2.
    Boolean(bool),
    /// `=` verbatim text in RESP3 (`txt:` prefix), a bulk string in RESP2.
    Verbatim(String),
}

impl Frame {
    pub const OK: Frame = Frame::Simple("OK");

    /// A bulk string from anything byte-like.
    pub fn bulk(bytes: impl Into<Bytes>) -> Frame {
        Frame::Bulk(bytes.into())
    }

    /// An error line; `message` starts with its code (`ERR`, `WRONGTYPE`, ...).
    pub fn error(message: impl Into<String>) -> Frame {
        Frame::Error(message.into())
    }

    /// An array of bulk strings.
    pub fn bulks<I: IntoIterator<Item = Bytes>>(items: I) -> Frame {
        Frame::Array(items.into_iter().map(Frame::Bulk).collect())
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Frame::Error(_))
    }
}
