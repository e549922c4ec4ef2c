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
//! Limits: at most `proxy.max_connections` relayed connections (counted apart from the HTTP
//! listeners'); past it the loop stops accepting and clients wait in the kernel's backlog.
//! Memory per connection: two buffers of [`relay::RELAY_BUFFER_BYTES`].

mod reactor;
pub mod relay;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use service_kit::shutdown::Shutdown;

use crate::proxy::Proxy;
use reactor::{Listener, Reactor, Signals};

/// An L4 listener (`[[tcp]]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpListenerConfig {
    /// Address to accept TCP connections on.
    pub listen: SocketAddr,
    /// Name of the cluster in `[clusters]` the connections are relayed to.
    pub cluster: String,
}

/// Starts the L4 event loop on its own thread for `listeners` (bound by the caller, in the
/// order of the config's `[[tcp]]` entries). It stops accepting when `shutdown` is triggered,
/// and `Shutdown::drain` waits for its connections (it is tracked as "l4"); past the drain
/// deadline they are closed.
pub fn spawn(
    listeners: Vec<(std::net::TcpListener, String)>,
    proxy: Arc<Proxy>,
    max_connections: usize,
    access_log: bool,
    shutdown: &Shutdown,
) -> std::io::Result<()> {
    let listeners = listeners
        .into_iter()
        .map(|(socket, cluster)| {
            socket.set_nonblocking(true)?;
            Ok(Listener {
                socket: mio::net::TcpListener::from_std(socket),
                cluster,
            })
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    let signals = Arc::new(Signals::default());
    let (reactor, waker) = Reactor::new(
        listeners,
        proxy,
        max_connections,
        access_log,
        signals.clone(),
    )?;
    let thread = std::thread::Builder::new()
        .name("l4-reactor".into())
        .spawn(move || reactor.run())?;
    // Drain waits for the loop to end; the loop ends after the last connection.
    shutdown.spawn("l4", async move {
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    });
    let watcher = shutdown.clone();
    tokio::spawn(async move {
        watcher.triggered().await;
        signals.stop.store(true, Ordering::Release);
        let _ = waker.wake();
        watcher.forced().await;
        signals.forced.store(true, Ordering::Release);
        let _ = waker.wake();
    });
    Ok(())
}
