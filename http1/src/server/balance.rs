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
//! HAProxy hands each accepted connection to the less loaded of two threads it picks, and
//! Envoy's `exact_balance` to the least loaded of all. Moving a connection costs a removal
//! from one event loop, a registration with another and a wake-up of the receiving thread,
//! once per connection: nothing per request. A loop busy with other work still gets its
//! share, which waits in its inbox until it looks. A loop that stops (shutdown) takes no
//! more, and what was still in its inbox is closed unread: those clients see the connection
//! close before any answer, as those left in the kernel's backlog see it reset.
//!
//! A connection counts from its placement until its [`Lease`] is dropped: for an HTTP
//! server, until the connection ends or becomes a tunnel (an upgrade or CONNECT). The counts
//! are read and bumped without a lock, so two loops placing at the same moment can both pick
//! the same one; the next placements even that out.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

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
}

/// One accept loop's place in an [`AcceptGroup`]: what it accepts with.
pub struct Member {
    group: Arc<AcceptGroup>,
    index: usize,
    /// Every loop's inbox, this one's included. Unbounded, but each connection in one holds a
    /// permit, so together they hold at most `max_connections`. Only the members hold the
    /// senders (a queued connection's lease holds the group), so the inboxes, and whatever is
    /// queued in them, go away with the last member.
    inboxes: Arc<[UnboundedSender<Handed>]>,
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
    /// connections together; one [`Member`] per loop, in order.
    pub fn members(max_connections: usize, loops: usize) -> Vec<Member> {
        let loops = loops.max(1);
        let (inboxes, receivers): (Vec<_>, Vec<_>) =
            (0..loops).map(|_| unbounded_channel()).unzip();
        let inboxes: Arc<[UnboundedSender<Handed>]> = inboxes.into();
        let group = Arc::new(AcceptGroup {
            permits: Arc::new(Semaphore::new(max_connections)),
            open: (0..loops).map(|_| AtomicUsize::new(0)).collect(),
        });
        receivers
            .into_iter()
            .enumerate()
            .map(|(index, inbox)| Member {
                group: group.clone(),
                index,
                inboxes: inboxes.clone(),
                inbox,
            })
            .collect()
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
    /// its limit leaves new clients in the backlog. A failed `accept` is logged; one that
    /// concerns the server rather than one client (typically out of file descriptors) pauses
    /// the loop for [`ACCEPT_ERROR_BACKOFF`], so that it does not spin while that lasts.
    pub async fn next(&mut self, listener: &TcpListener) -> Accepted {
        loop {
            let handed = tokio::select! {
                biased;
                Some(handed) = self.inbox.recv() => handed,
                accepted = accept_within_limit(listener, &self.group.permits) => {
                    let (stream, peer, permit) = match accepted {
                        Ok(accepted) => accepted,
                        Err(error) if is_per_connection(&error) => {
                            debug!(%error, "accept failed for one connection");
                            continue;
                        }
                        Err(error) => {
                            warn!(%error, "accept failed");
                            tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                            continue;
                        }
                    };
                    let member = self.place();
                    let lease = Lease { _permit: permit, group: self.group.clone(), member };
                    if member == self.index {
                        return Accepted { stream, peer, lease };
                    }
                    let stream = match stream.into_std() {
                        Ok(stream) => stream,
                        Err(error) => {
                            warn!(%error, %peer, "cannot move a connection between workers");
                            continue;
                        }
                    };
                    match self.inboxes[member].send(Handed { stream, peer, lease }) {
                        Ok(()) => continue,
                        // That loop stopped after it was chosen: served here.
                        Err(returned) => returned.0,
                    }
                }
            };
            match self.take(handed) {
                Ok(accepted) => return accepted,
                Err(error) => warn!(%error, "cannot register a connection from another worker"),
            }
        }
    }

    /// The loop that gets a connection this one accepted: this one unless another loop that
    /// still takes connections serves fewer. Counts it there.
    fn place(&self) -> usize {
        let open = &self.group.open;
        let mut best = self.index;
        let mut fewest = open[best].load(Ordering::Relaxed);
        for (index, count) in open.iter().enumerate() {
            let count = count.load(Ordering::Relaxed);
            if count < fewest && !self.inboxes[index].is_closed() {
                (best, fewest) = (index, count);
            }
        }
        open[best].fetch_add(1, Ordering::Relaxed);
        best
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

impl Drop for Lease {
    fn drop(&mut self) {
        self.group.open[self.member].fetch_sub(1, Ordering::Relaxed);
    }
}

/// How long an accept loop pauses after a failed `accept` that concerns the server.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Accept errors that concern one connection (it was reset before we took it), as opposed to
/// the server (out of file descriptors or memory), which deserve a pause.
fn is_per_connection(e: &io::Error) -> bool {
    use io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted};
    matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted)
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
