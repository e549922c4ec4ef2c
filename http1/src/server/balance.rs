//! Keeping the connection counts of several accept loops level.
//!
//! A server that runs one single-threaded runtime per worker (the proxy's `proxy.workers`) has
//! every runtime accept on the same listening socket. Which one gets a new connection is a race
//! that the kernel settles (every event loop is told the socket is readable; the first `accept`
//! wins), and nothing makes it fair: with two workers and 50 keep-alive clients, one worker
//! did 57 to 69% of the work, in four runs.
//!
//! So each loop still accepts for itself, but keeps a new connection only if no other loop
//! serves fewer; otherwise the connection goes to the loop that serves the fewest, through
//! that loop's inbox:
//!
//! ```text
//!   listener ──accept──▶ loop 0 ── place(): loop 1 serves fewest ──▶ inbox 1 ──▶ loop 1 serves it
//!                        open: [12, 11] ──────────────────────────▶ [12, 12]
//! ```
//!
//! HAProxy hands each accepted connection to its least loaded thread in the same way, and
//! Envoy's `exact_balance` does it with a lock. Moving a connection costs a removal from one
//! event loop, a registration with another and a wake-up of the receiving thread, once per
//! connection: nothing per request. A loop that stops (shutdown) closes its inbox and takes no
//! more; what was still in it is closed unread, as the connections left in the kernel's backlog
//! are when the listener closes.
//!
//! The counts are read and bumped without a lock, so two loops placing at the same moment can
//! both pick the same one; the next placements even that out.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

/// The accept loops serving one listener: their shared connection limit, and how many
/// connections each serves.
pub struct AcceptGroup {
    /// One permit per connection, over all the loops: `max_connections`.
    permits: Arc<Semaphore>,
    /// Connections served by each loop, the ones on their way to it included.
    open: Box<[AtomicUsize]>,
    /// Each loop's inbox. Unbounded, but every connection in it holds a permit, so together
    /// they hold at most `max_connections`.
    inboxes: Box<[UnboundedSender<Handed>]>,
}

/// One accept loop's place in an [`AcceptGroup`]: what it accepts with.
pub struct Member {
    group: Arc<AcceptGroup>,
    index: usize,
    inbox: UnboundedReceiver<Handed>,
}

/// A connection to serve, with its [`Lease`].
pub struct Accepted {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub lease: Lease,
}

/// A connection's place in its group: its permit, and its count in the loop serving it.
/// Keep it for as long as the connection is served.
pub struct Lease {
    _permit: OwnedSemaphorePermit,
    group: Arc<AcceptGroup>,
    member: usize,
}

/// A connection between two loops: registered with neither event loop.
struct Handed {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    lease: Lease,
}

impl AcceptGroup {
    /// A group of `loops` accept loops (at least one) serving at most `max_connections`
    /// connections together; one [`Member`] per loop.
    pub fn members(max_connections: usize, loops: usize) -> Vec<Member> {
        let loops = loops.max(1);
        let (inboxes, receivers): (Vec<_>, Vec<_>) =
            (0..loops).map(|_| unbounded_channel()).unzip();
        let group = Arc::new(AcceptGroup {
            permits: Arc::new(Semaphore::new(max_connections)),
            open: (0..loops).map(|_| AtomicUsize::new(0)).collect(),
            inboxes: inboxes.into(),
        });
        receivers
            .into_iter()
            .enumerate()
            .map(|(index, inbox)| Member {
                group: group.clone(),
                index,
                inbox,
            })
            .collect()
    }

    /// The loop that gets a connection `from` accepted: `from` itself unless another loop
    /// that still takes connections serves fewer. Counts it there.
    fn place(&self, from: usize) -> usize {
        let mut best = from;
        let mut fewest = self.open[from].load(Ordering::Relaxed);
        for (index, open) in self.open.iter().enumerate() {
            let open = open.load(Ordering::Relaxed);
            if open < fewest && !self.inboxes[index].is_closed() {
                (best, fewest) = (index, open);
            }
        }
        self.open[best].fetch_add(1, Ordering::Relaxed);
        best
    }

    /// Connections served by each loop, in the order of [`AcceptGroup::members`]'s members.
    pub fn open(&self) -> Vec<usize> {
        self.open
            .iter()
            .map(|open| open.load(Ordering::Relaxed))
            .collect()
    }
}

impl Member {
    /// The group this loop belongs to.
    pub fn group(&self) -> Arc<AcceptGroup> {
        self.group.clone()
    }

    /// The next connection this loop serves: one another loop handed over, or one it accepts
    /// itself and keeps. A connection it accepts for a loop that serves fewer is handed over,
    /// and the wait goes on. A connection slot is taken before `accept`, so that a group at
    /// its limit leaves new clients in the backlog.
    pub async fn next(&mut self, listener: &TcpListener) -> io::Result<Accepted> {
        loop {
            let handed = tokio::select! {
                biased;
                Some(handed) = self.inbox.recv() => handed,
                accepted = accept_within_limit(listener, &self.group.permits) => {
                    let (stream, peer, permit) = accepted?;
                    let member = self.group.place(self.index);
                    let lease = Lease { _permit: permit, group: self.group.clone(), member };
                    if member == self.index {
                        return Ok(Accepted { stream, peer, lease });
                    }
                    let stream = match stream.into_std() {
                        Ok(stream) => stream,
                        Err(error) => {
                            warn!(%error, %peer, "cannot move a connection between workers");
                            continue;
                        }
                    };
                    match self.group.inboxes[member].send(Handed { stream, peer, lease }) {
                        Ok(()) => continue,
                        // That loop stopped after it was chosen: served here.
                        Err(returned) => returned.0,
                    }
                }
            };
            match self.take(handed) {
                Ok(accepted) => return Ok(accepted),
                Err(error) => warn!(%error, "cannot register a connection from another worker"),
            }
        }
    }

    /// Registers `handed` with this loop's event loop and counts it here.
    fn take(&self, handed: Handed) -> io::Result<Accepted> {
        let Handed {
            stream,
            peer,
            mut lease,
        } = handed;
        if lease.member != self.index {
            self.group.open[lease.member].fetch_sub(1, Ordering::Relaxed);
            self.group.open[self.index].fetch_add(1, Ordering::Relaxed);
            lease.member = self.index;
        }
        let stream = TcpStream::from_std(stream)?;
        Ok(Accepted {
            stream,
            peer,
            lease,
        })
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        // Closed first, so that no loop places a connection here from now on.
        self.inbox.close();
        while let Ok(handed) = self.inbox.try_recv() {
            debug!(peer = %handed.peer, "closing a connection handed over as the worker stops");
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.group.open[self.member].fetch_sub(1, Ordering::Relaxed);
    }
}

/// Waits for a free connection slot, then for a client.
async fn accept_within_limit(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
) -> io::Result<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
    let permit = permits
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| io::Error::other("connection semaphore closed"))?;
    let (stream, peer) = listener.accept().await?;
    // Responses are batched in our own buffer; Nagle's algorithm would only delay them.
    if let Err(e) = stream.set_nodelay(true) {
        debug!(error = %e, "TCP_NODELAY not set");
    }
    Ok((stream, peer, permit))
}
