//! Fault links: a [`FaultProxy`] on every path from one instance to another.
//!
//! An instance never dials another one directly: its command line or config names the listen
//! address of the link between them, and the link forwards to the server. That is what lets
//! `cluster partition`, `heal` and `latency` act on one path while the processes keep running,
//! the way Toxiproxy is put between services:
//!
//! ```text
//!   url-shortener-1 ──▶ link url-shortener-1→kv-store ──▶ kv-store
//!   url-shortener-2 ──▶ link url-shortener-2→kv-store ──▶ kv-store
//!   reverse-proxy ───▶ link reverse-proxy→url-shortener-1 ──────────▶ url-shortener-1 (service)
//!   reverse-proxy ───▶ link reverse-proxy→url-shortener-1 (admin) ──▶ url-shortener-1 /readyz
//! ```
//!
//! Health checks have links of their own, to the server's admin listener, so a partition cuts
//! them too: the balancer sees the endpoint fail its checks, as it would on a real network.
//!
//! A link is up (listening) when it is not partitioned *and* the server behind it is running.
//! The second condition keeps a stopped server looking the way it does without the link: its
//! clients get "connection refused", which they know nothing was sent on and may retry
//! elsewhere, instead of a connection that is accepted and then closed, which for a POST
//! leaves them unsure whether it ran. The launcher lowers a server's links before it kills or
//! stops it; a server that dies by itself is noticed by the watcher within its interval, and
//! until then its links accept and close, like Toxiproxy's.
//!
//! `latency` delays what the server sends back (the link's downstream direction), so every
//! request-response exchange on the path takes that much longer.

use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};

use harness::{Direction, FaultProxy, Toxic, ToxicId};
use serde::{Deserialize, Serialize};

use crate::topology::Port;

/// One link, from a client instance to one listener of a server instance.
#[derive(Debug)]
pub struct Link {
    pub client: String,
    pub server: String,
    pub port: Port,
    proxy: FaultProxy,
    state: Mutex<LinkState>,
}

#[derive(Debug, Default)]
struct LinkState {
    partitioned: bool,
    server_up: bool,
    latency: Option<(u64, ToxicId)>,
    /// The last change the proxy could not make (listening again needs the same port).
    error: Option<String>,
}

/// A link as `cluster status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStatus {
    pub client: String,
    pub server: String,
    pub port: Port,
    /// Where the client connects.
    pub listen: SocketAddr,
    pub partitioned: bool,
    /// Whether the link accepts connections now.
    pub up: bool,
    /// Added to every exchange, in milliseconds; 0 for none.
    pub latency_ms: u64,
    /// Why the link is not in the state it should be, if it is not.
    pub error: Option<String>,
}

impl Link {
    /// A link to `server_addr`, down until [`Link::set_server_up`] says the server runs.
    pub fn start(
        client: &str,
        server: &str,
        port: Port,
        server_addr: SocketAddr,
        seed: u64,
    ) -> Link {
        let proxy = FaultProxy::start_seeded(server_addr, seed);
        let link = Link {
            client: client.to_owned(),
            server: server.to_owned(),
            port,
            proxy,
            state: Mutex::new(LinkState::default()),
        };
        let _ = link.proxy.stop_accepting();
        link
    }

    /// Where the client connects.
    pub fn listen_addr(&self) -> SocketAddr {
        self.proxy.listen_addr()
    }

    /// Whether this link joins `a` and `b`, in either direction.
    pub fn joins(&self, a: &[String], b: &[String]) -> bool {
        (a.contains(&self.client) && b.contains(&self.server))
            || (b.contains(&self.client) && a.contains(&self.server))
    }

    /// Follows the server: down while it is not running.
    pub fn set_server_up(&self, up: bool) -> harness::Result<()> {
        self.update(|state| state.server_up = up)
    }

    /// Partitions the link (`true`) or heals the partition.
    pub fn set_partitioned(&self, partitioned: bool) -> harness::Result<()> {
        self.update(|state| state.partitioned = partitioned)
    }

    /// Sets the added latency; 0 removes it.
    pub fn set_latency(&self, latency_ms: u64) -> harness::Result<()> {
        let mut state = self.lock();
        if let Some((_, id)) = state.latency.take() {
            self.proxy.remove_toxic(id);
        }
        if latency_ms > 0 {
            let toxic = Toxic::Latency {
                latency_ms,
                jitter_ms: 0,
            };
            let id = self.proxy.add_toxic(Direction::Downstream, toxic)?;
            state.latency = Some((latency_ms, id));
        }
        Ok(())
    }

    pub fn status(&self) -> LinkStatus {
        let state = self.lock();
        LinkStatus {
            client: self.client.clone(),
            server: self.server.clone(),
            port: self.port,
            listen: self.listen_addr(),
            partitioned: state.partitioned,
            up: self.proxy.is_enabled(),
            latency_ms: state.latency.map_or(0, |(ms, _)| ms),
            error: state.error.clone(),
        }
    }

    /// Applies a change and makes the proxy listen, or not, to match: a partition cuts the
    /// open connections too; a server going away only stops new ones (a server that drains
    /// finishes its own, and the connections of one that was killed end by themselves).
    fn update(&self, change: impl FnOnce(&mut LinkState)) -> harness::Result<()> {
        let mut state = self.lock();
        let was_partitioned = state.partitioned;
        change(&mut state);
        let listen = state.server_up && !state.partitioned;
        let outcome = match (listen, self.proxy.is_enabled()) {
            (false, _) if state.partitioned && !was_partitioned => self.proxy.set_enabled(false),
            (true, false) => self.proxy.set_enabled(true),
            (false, true) => self.proxy.stop_accepting(),
            _ => Ok(()),
        };
        state.error = outcome.as_ref().err().map(ToString::to_string);
        outcome
    }

    fn lock(&self) -> MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
