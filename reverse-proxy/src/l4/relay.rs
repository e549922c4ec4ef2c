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
//! writable, not while it stays so. So each socket carries two flags, [`Ready`]: set by the
//! socket's events, cleared when a read or write shows the socket has nothing more to give or
//! take. A pipe reads only while its source is marked readable and writes only while its
//! destination is marked writable, and [`Relay::pump`] moves bytes until neither is possible:
//! stopping earlier could leave bytes that no further event would ever announce. A read that
//! returns fewer bytes than there was room for means the kernel's receive queue was empty at
//! that moment, and any byte arriving later raises a new event; so does a write that takes
//! fewer bytes than offered, for room in the send queue. Clearing the flag there (as tokio's
//! sockets do) saves the read or write that would only have answered "would block": with
//! small request/response exchanges that is two of every three `recvfrom` calls. The
//! exception is the end of the stream: the event that announced it is not repeated, and the
//! `0` may wait behind the bytes a short read returned, so once announced it keeps the socket
//! readable.
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

/// What is known of one socket's readiness: it may have bytes to read, it may take bytes to
/// write. Set from the socket's events; cleared when a call shows otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ready {
    pub read: bool,
    pub write: bool,
    /// The peer finished sending (or the socket failed): an event said so, and none will say
    /// it again, so a short read must not clear `read` (the end of stream may wait behind
    /// the bytes it returned).
    read_closed: bool,
    /// The same for writes: the next write reports the failure.
    write_closed: bool,
}

impl Ready {
    /// A socket nothing is known of yet: try both.
    pub const BOTH: Ready = Ready {
        read: true,
        write: true,
        read_closed: false,
        write_closed: false,
    };

    /// Adds what an event announces.
    pub fn note(&mut self, event: &mio::event::Event) {
        let failed = event.is_error();
        self.read_closed |= failed || event.is_read_closed();
        self.write_closed |= failed || event.is_write_closed();
        self.read |= self.read_closed || event.is_readable();
        self.write |= self.write_closed || event.is_writable();
    }

    /// A read returned fewer bytes than there was room for.
    fn read_short(&mut self) {
        self.read = self.read_closed;
    }

    /// A write took fewer bytes than offered.
    fn write_short(&mut self) {
        self.write = self.write_closed;
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
    fn pump(
        &mut self,
        (from, from_ready): (&mut TcpStream, &mut Ready),
        (to, to_ready): (&mut TcpStream, &mut Ready),
    ) -> io::Result<()> {
        while self.step(from, from_ready, to, to_ready)? == Step::Progress {}
        Ok(())
    }

    fn step(
        &mut self,
        from: &mut TcpStream,
        source: &mut Ready,
        to: &mut TcpStream,
        destination: &mut Ready,
    ) -> io::Result<Step> {
        let mut step = Step::Blocked;
        let room = self.buf.len() - self.end;
        if source.read && !self.source_done && room > 0 {
            match from.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.source_done = true;
                    step = Step::Progress;
                }
                Ok(n) => {
                    self.end += n;
                    if n < room {
                        // The receive queue is empty until the next event.
                        source.read_short();
                    }
                    step = Step::Progress;
                }
                Err(e) if blocked(&e) => source.read = false,
                Err(e) => return Err(e),
            }
        }
        if destination.write && self.start < self.end {
            let pending = self.end - self.start;
            match to.write(&self.buf[self.start..self.end]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.start += n;
                    self.moved += n as u64;
                    if self.start == self.end {
                        (self.start, self.end) = (0, 0);
                    }
                    if n < pending {
                        // The send queue is full until the next event.
                        destination.write_short();
                    }
                    step = Step::Progress;
                }
                Err(e) if blocked(&e) => destination.write = false,
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
    pub client_ready: Ready,
    pub upstream_ready: Ready,
    pub up: Pipe,
    pub down: Pipe,
}

impl Relay {
    /// A relay between two connected sockets, both assumed ready until a call shows otherwise.
    pub fn new(client: TcpStream, upstream: TcpStream) -> Relay {
        Relay {
            client,
            upstream,
            client_ready: Ready::BOTH,
            upstream_ready: Ready::BOTH,
            up: Pipe::default(),
            down: Pipe::default(),
        }
    }

    /// Moves bytes both ways until blocked. `Ok(true)` when both directions are over.
    pub fn pump(&mut self) -> io::Result<bool> {
        self.up.pump(
            (&mut self.client, &mut self.client_ready),
            (&mut self.upstream, &mut self.upstream_ready),
        )?;
        self.down.pump(
            (&mut self.upstream, &mut self.upstream_ready),
            (&mut self.client, &mut self.client_ready),
        )?;
        Ok(self.up.is_finished() && self.down.is_finished())
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener};
    use std::time::Duration;

    use mio::{Events, Interest, Poll, Token};

    use super::*;

    /// Two connected sockets: a mio one for the relay, a blocking std one for the peer.
    fn pair() -> (TcpStream, std::net::TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, _) = listener.accept().unwrap();
        ours.set_nonblocking(true).unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (TcpStream::from_std(ours), peer)
    }

    #[test]
    fn an_end_of_stream_queued_behind_data_is_passed_on_after_a_short_read() {
        let (client, mut client_peer) = pair();
        let (upstream, mut upstream_peer) = pair();
        let mut relay = Relay::new(client, upstream);
        let mut poll = Poll::new().unwrap();
        let both = Interest::READABLE | Interest::WRITABLE;
        poll.registry()
            .register(&mut relay.client, Token(0), both)
            .unwrap();
        poll.registry()
            .register(&mut relay.upstream, Token(1), both)
            .unwrap();
        // Nothing to read yet: the relay learns that the client is drained.
        relay.pump().unwrap();
        assert!(!relay.client_ready.read);

        // Bytes and the end of stream both queued before the relay hears of either: one
        // event announces them, and the read of the bytes is short.
        client_peer.write_all(b"hello").unwrap();
        client_peer.shutdown(Shutdown::Write).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let mut events = Events::with_capacity(8);
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        for event in events.iter().filter(|e| e.token() == Token(0)) {
            relay.client_ready.note(event);
        }
        relay.pump().unwrap();

        let mut received = Vec::new();
        upstream_peer.read_to_end(&mut received).unwrap();
        assert_eq!(
            received, b"hello",
            "the upstream saw the bytes, then the end"
        );
        assert!(relay.up.is_finished());
    }
}
