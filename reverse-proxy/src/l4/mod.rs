//! L4 mode: TCP connections relayed as bytes to a cluster's endpoints, on an explicit `mio`
//! event loop.
//!
//! The L7 proxy runs on tokio, which hides the event loop; this mode writes it out, as a
//! readable example of what tokio does underneath: one thread asks the kernel (epoll, through
//! `mio`) which sockets are ready, and moves bytes between them without blocking.
//!
//! ```text
//!  client ──TCP──▶ [tcp] listener ──accept──▶ pick an endpoint (the cluster's balancer,
//!                                             keyed by client IP for ring_hash / maglev)
//!                                     ──non-blocking connect (timeouts.connect_ms;
//!                                       refused or timed out: the next endpoint, up to
//!                                       retry.max_retries more)──▶ upstream
//!  then bytes both ways through two bounded buffers, half-close passed on, until both
//!  directions end, either side fails, or nothing moves for timeouts.idle_ms
//! ```
//!
//! It shares with L7 everything above the socket: the cluster config, the balancers, active
//! health checks (TCP or HTTP probes run by the tokio side), outlier detection (connect
//! failures count), the panic threshold, and reloads (a listener's cluster is looked up in the
//! current table at each accept). It does not share the retry budget or circuit breaker: a
//! connection is not a request.
//!
//! | file | what it holds |
//! |---|---|
//! | `reactor.rs` | the loop: poll, accept, connect, dispatch events, sweep timeouts, shutdown |
//! | `relay.rs` | one connection: the two pipes, back-pressure, half-close |
//!
//! Workers: `proxy.workers` loops, each on its own thread, all accepting on the same listening
//! sockets (each registers them with its own poll; whichever `accept` gets there first has the
//! client). A connection stays with the loop that accepted it.
//!
//! Limits: at most `proxy.max_connections` relayed connections over all loops (counted apart
//! from the HTTP listeners'); past it the loops stop accepting and clients wait in the
//! kernel's backlog.
//! Memory per connection: two buffers of [`relay::RELAY_BUFFER_BYTES`].

mod reactor;
pub mod relay;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use service_kit::shutdown::Shutdown;

use crate::proxy::Proxy;
use reactor::{ConnectionLimit, Listener, Reactor, Signals};

/// An L4 listener (`[[tcp]]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpListenerConfig {
    /// Address to accept TCP connections on.
    pub listen: SocketAddr,
    /// Name of the cluster in `[clusters]` the connections are relayed to.
    pub cluster: String,
}

/// Starts `workers` L4 event loops, each on its own thread, for `listeners` (bound by the
/// caller, in the order of the config's `[[tcp]]` entries). They stop accepting when
/// `shutdown` is triggered, and `Shutdown::drain` waits for their connections (tracked as
/// "l4"); past the drain deadline they are closed.
pub fn spawn(
    listeners: Vec<(std::net::TcpListener, String)>,
    proxy: Arc<Proxy>,
    workers: usize,
    max_connections: usize,
    access_log: bool,
    shutdown: &Shutdown,
) -> std::io::Result<()> {
    for (socket, _) in &listeners {
        socket.set_nonblocking(true)?;
    }
    let signals = Arc::new(Signals::default());
    let limit = Arc::new(ConnectionLimit::new(max_connections));
    let mut ended = Vec::with_capacity(workers);
    let mut wakers = Vec::with_capacity(workers);
    for index in 0..workers.max(1) {
        // The same sockets under new descriptors, for this loop's poll.
        let own = listeners
            .iter()
            .map(|(socket, cluster)| {
                Ok(Listener {
                    socket: mio::net::TcpListener::from_std(socket.try_clone()?),
                    cluster: cluster.clone(),
                })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        let (reactor, waker) = Reactor::new(
            own,
            proxy.clone(),
            limit.clone(),
            access_log,
            signals.clone(),
        )?;
        // Told when the loop returns (or its thread dies): awaited, not joined, so that no
        // thread of the runtime's blocking pool waits on a loop that never ends.
        let (done, end) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("l4-reactor-{index}"))
            .spawn(move || {
                reactor.run();
                drop(done);
            })?;
        ended.push(end);
        wakers.push(waker);
    }
    // Drain waits for the loops to end; each ends after its last connection.
    shutdown.spawn("l4", async move {
        for end in ended {
            let _ = end.await;
        }
    });
    let watcher = shutdown.clone();
    let wake_all = move || {
        for waker in &wakers {
            let _ = waker.wake();
        }
    };
    tokio::spawn(async move {
        watcher.triggered().await;
        signals.stop.store(true, Ordering::Release);
        wake_all();
        watcher.forced().await;
        signals.forced.store(true, Ordering::Release);
        wake_all();
    });
    Ok(())
}
