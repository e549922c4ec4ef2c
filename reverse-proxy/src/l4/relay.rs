//! One relayed TCP connection: the client's socket, the upstream's, and a bounded buffer for
//! each direction.
//!
//! ```text
//!             up pipe (client -> upstream)
//!  client ──▶ [ RELAY_BUFFER_BYTES ] ──▶ upstream
//!  client ◀── [ RELAY_BUFFER_BYTES ] ◀── upstream
//!             down pipe (upstream -> client)
//! ```
//!
//! **Back-pressure.** A pipe reads from its source only while its buffer has room. When the
//! destination is slow the buffer fills, the relay stops reading, the kernel's receive
//! buffer fills, and TCP flow control slows the sender down: memory per connection stays at
//! two buffers, whatever the speeds.
//!
//! **Edge-triggered readiness.** mio reports a socket once when it *becomes* readable or
//! writable, not while it stays so. So [`Relay::pump`] moves bytes until every step would
//! block (or a buffer is full and its destination would block): stopping earlier could leave
//! bytes that no further event would ever announce.
//!
//! **Half-close.** When one side finishes sending (read returns 0), its pipe drains what is
//! buffered and then shuts down the *write* half towards the other side, which sees the end
//! of the stream while still able to answer (a client that sends a request and half-closes
//! still gets the whole response). The relay is done when both directions have ended this
//! way, or at once when either side fails (a reset), since a broken stream cannot be relayed.

use std::io::{self, Read, Write};
use std::net::Shutdown;

use mio::net::TcpStream;

/// Bytes buffered per direction per connection: a few TCP segments per read system call, and
/// 32 KiB of memory for a relayed connection, whatever its traffic.
pub const RELAY_BUFFER_BYTES: usize = 16 * 1024;

/// Bytes on their way from one socket to the other.
#[derive(Debug)]
pub struct Pipe {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// The source has sent everything (read returned 0).
    source_done: bool,
    /// The destination's write half is shut: this direction is over.
    finished: bool,
    /// Bytes relayed, for the log.
    pub moved: u64,
}

impl Default for Pipe {
    fn default() -> Self {
        Pipe {
            buf: vec![0; RELAY_BUFFER_BYTES].into_boxed_slice(),
            start: 0,
            end: 0,
            source_done: false,
            finished: false,
            moved: 0,
        }
    }
}

/// What one pump of a pipe achieved.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Bytes moved (in or out): try again.
    Progress,
    /// Nothing more can happen until the next readiness event.
    Blocked,
}

impl Pipe {
    /// Moves bytes from `from` to `to` until blocked. Errors end the relay.
    fn pump(&mut self, from: &mut TcpStream, to: &mut TcpStream) -> io::Result<()> {
        while self.step(from, to)? == Step::Progress {}
        Ok(())
    }

    fn step(&mut self, from: &mut TcpStream, to: &mut TcpStream) -> io::Result<Step> {
        let mut step = Step::Blocked;
        if !self.source_done && self.end < self.buf.len() {
            match from.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.source_done = true;
                    step = Step::Progress;
                }
                Ok(n) => {
                    self.end += n;
                    step = Step::Progress;
                }
                Err(e) if blocked(&e) => {}
                Err(e) => return Err(e),
            }
        }
        if self.start < self.end {
            match to.write(&self.buf[self.start..self.end]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.start += n;
                    self.moved += n as u64;
                    if self.start == self.end {
                        (self.start, self.end) = (0, 0);
                    }
                    step = Step::Progress;
                }
                Err(e) if blocked(&e) => {}
                Err(e) => return Err(e),
            }
        }
        if self.source_done && self.start == self.end && !self.finished {
            // Everything the source sent has been delivered: pass its end of stream on.
            self.finished = true;
            match to.shutdown(Shutdown::Write) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
                Err(e) => return Err(e),
            }
        }
        Ok(step)
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }
}

fn blocked(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// Both directions of one connection.
#[derive(Debug)]
pub struct Relay {
    pub client: TcpStream,
    pub upstream: TcpStream,
    pub up: Pipe,
    pub down: Pipe,
}

impl Relay {
    pub fn new(client: TcpStream, upstream: TcpStream) -> Relay {
        Relay {
            client,
            upstream,
            up: Pipe::default(),
            down: Pipe::default(),
        }
    }

    /// Moves bytes both ways until blocked. `Ok(true)` when both directions are over.
    pub fn pump(&mut self) -> io::Result<bool> {
        self.up.pump(&mut self.client, &mut self.upstream)?;
        self.down.pump(&mut self.upstream, &mut self.client)?;
        Ok(self.up.is_finished() && self.down.is_finished())
    }
}
