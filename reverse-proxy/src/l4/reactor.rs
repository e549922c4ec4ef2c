//! An event loop: one thread, one `mio::Poll`, every socket of its connections registered
//! with it. There is one per worker; all of them accept on the same listening sockets.
//!
//! ```text
//!  loop:
//!    poll(events, timeout = time to the next sweep)
//!    for each event:
//!      waker     -> shutdown asked: close the listeners; forced: drop everything
//!      listener  -> accept while all loops together are under max_connections: pick an
//!                   endpoint (the cluster's balancer), start a non-blocking connect,
//!                   register both sockets
//!      upstream of a connecting pair -> connected? start relaying; refused? next endpoint
//!      a relaying pair (either socket) -> note what the socket is ready for, pump both
//!                   pipes; done or broken? close both
//!    every SWEEP_PERIOD: connects past timeouts.connect_ms fail over to the next endpoint,
//!                        relays idle past timeouts.idle_ms are closed
//! ```
//!
//! Tokens: `0..L` are the listeners; connection slot `s` owns `L + 2s` (client) and
//! `L + 2s + 1` (upstream); [`WAKER`] is the shutdown signal. A slot is reused after its
//! connection closes; both sockets are deregistered (by being dropped) before that, so a
//! stale event for an old token can only mark the new connection's socket ready: the reads
//! and writes it causes answer "would block", and nothing moves.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use super::relay::Relay;
use crate::balance::hash_bytes;
use crate::cluster::{Cluster, InFlight};
use crate::metrics::ProxyMetrics;
use crate::outlier::Outcome;
use crate::proxy::Proxy;

/// The token of the waker that announces shutdown.
pub const WAKER: Token = Token(usize::MAX);
/// Events handled per `poll` call.
const EVENTS_PER_POLL: usize = 1024;
/// How often connect deadlines and idle timeouts are checked: the precision of both.
const SWEEP_PERIOD: Duration = Duration::from_millis(50);

/// An L4 listener and the cluster its connections go to.
pub struct Listener {
    pub socket: TcpListener,
    pub cluster: String,
}

/// The relayed connections of every loop together, held under `proxy.max_connections`. A
/// connection takes its place before it is accepted and gives it back when it closes.
#[derive(Debug)]
pub struct ConnectionLimit {
    open: AtomicUsize,
    max: usize,
}

impl ConnectionLimit {
    pub fn new(max: usize) -> ConnectionLimit {
        ConnectionLimit {
            open: AtomicUsize::new(0),
            max,
        }
    }

    /// A place for one more connection, if the limit allows it.
    fn take(&self) -> bool {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max).then_some(open + 1)
            })
            .is_ok()
    }

    /// Gives a place back; true if the limit was reached until now (clients may be waiting
    /// in the backlogs).
    fn give_back(&self) -> bool {
        self.open.fetch_sub(1, Ordering::AcqRel) >= self.max
    }
}

/// Flags set by the tokio side, read by the loop after a wake-up.
#[derive(Debug, Default)]
pub struct Signals {
    /// Stop accepting; finish the open connections.
    pub stop: AtomicBool,
    /// Close everything now.
    pub forced: AtomicBool,
}

enum Conn {
    Connecting(Connecting),
    Relaying(Relaying),
}

struct Connecting {
    client: TcpStream,
    client_addr: SocketAddr,
    upstream: TcpStream,
    cluster: Arc<Cluster>,
    index: usize,
    tried: Vec<usize>,
    in_flight: InFlight,
    deadline: Instant,
    started: Instant,
}

struct Relaying {
    relay: Relay,
    client_addr: SocketAddr,
    in_flight: InFlight,
    idle: Duration,
    last_active: Instant,
    started: Instant,
}

pub struct Reactor {
    poll: Poll,
    /// `None` once closed by shutdown; the vector keeps its length, which fixes the tokens.
    listeners: Vec<Option<Listener>>,
    slots: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// Connections of this loop (connecting or relaying): it ends at shutdown when none is left.
    active: usize,
    limit: Arc<ConnectionLimit>,
    /// A place was given back at the limit: accept again once this round of events is done
    /// (not from inside `give_back`, which `accept` itself may call: one stack frame per
    /// failing client would follow).
    rearm: bool,
    proxy: Arc<Proxy>,
    signals: Arc<Signals>,
    stopping: bool,
    access_log: bool,
}

impl Reactor {
    /// Registers the listeners; returns the reactor and the waker that interrupts its poll.
    pub fn new(
        mut listeners: Vec<Listener>,
        proxy: Arc<Proxy>,
        limit: Arc<ConnectionLimit>,
        access_log: bool,
        signals: Arc<Signals>,
    ) -> io::Result<(Reactor, Arc<Waker>)> {
        let poll = Poll::new()?;
        for (i, listener) in listeners.iter_mut().enumerate() {
            poll.registry()
                .register(&mut listener.socket, Token(i), Interest::READABLE)?;
        }
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let reactor = Reactor {
            poll,
            listeners: listeners.into_iter().map(Some).collect(),
            slots: Vec::new(),
            free: Vec::new(),
            active: 0,
            limit,
            rearm: false,
            proxy,
            signals,
            stopping: false,
            access_log,
        };
        Ok((reactor, waker))
    }

    fn metrics(&self) -> &ProxyMetrics {
        self.proxy.metrics()
    }

    /// Runs until shutdown: returns once the listeners are closed and the last connection is
    /// done, or at once when forced.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        let mut next_sweep = Instant::now() + SWEEP_PERIOD;
        loop {
            let timeout = next_sweep.saturating_duration_since(Instant::now());
            if let Err(error) = self.poll.poll(&mut events, Some(timeout))
                && error.kind() != io::ErrorKind::Interrupted
            {
                tracing::error!(%error, "L4 poll failed; closing every L4 connection");
                // The other loops go on: this loop's places are theirs again.
                for _ in 0..self.active {
                    self.limit.give_back();
                }
                return;
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    Token(i) if i < self.listeners.len() => self.accept(i),
                    Token(t) => self.on_socket(t - self.listeners.len(), event),
                }
            }
            self.accept_if_rearmed();
            if self.signals.forced.load(Ordering::Acquire) {
                tracing::warn!(
                    connections = self.active,
                    "L4: drain deadline passed; closing"
                );
                return;
            }
            if self.signals.stop.load(Ordering::Acquire) && !self.stopping {
                self.stopping = true;
                self.listeners.iter_mut().for_each(|l| *l = None);
                tracing::info!(connections = self.active, "L4: listeners closed; draining");
            }
            if self.stopping && self.active == 0 {
                return;
            }
            if Instant::now() >= next_sweep {
                self.sweep();
                self.accept_if_rearmed();
                next_sweep = Instant::now() + SWEEP_PERIOD;
            }
        }
    }

    /// Accepts on listener `i` until it would block or the connection limit is reached (the
    /// rest wait in the kernel's backlog; see `give_back`).
    fn accept(&mut self, i: usize) {
        while !self.stopping {
            let Some(Some(listener)) = self.listeners.get(i) else {
                return;
            };
            if !self.limit.take() {
                return;
            }
            let (client, client_addr) = match listener.socket.accept() {
                Ok(accepted) => accepted,
                Err(error) => {
                    if error.kind() != io::ErrorKind::WouldBlock {
                        tracing::warn!(%error, "L4 accept failed");
                    }
                    // Another loop may have taken the client, or the backlog is empty.
                    self.limit.give_back();
                    return;
                }
            };
            let _ = client.set_nodelay(true);
            let cluster_name = listener.cluster.clone();
            let Some(cluster) = self.proxy.table().cluster(&cluster_name).cloned() else {
                tracing::warn!(cluster = %cluster_name, "L4: cluster gone after a reload; closing");
                self.give_back();
                continue;
            };
            let key = Some(hash_bytes(client_addr.ip().to_string().as_bytes()));
            let started = Instant::now();
            self.connect(client, client_addr, cluster, key, Vec::new(), started);
        }
    }

    /// Starts a connect to the next endpoint for `client`, or closes it when none is left.
    fn connect(
        &mut self,
        client: TcpStream,
        client_addr: SocketAddr,
        cluster: Arc<Cluster>,
        key: Option<u64>,
        mut tried: Vec<usize>,
        started: Instant,
    ) {
        let attempts = cluster.config.retry.max_retries as usize + 1;
        while tried.len() < attempts {
            let Some(index) = cluster.pick(key, &tried) else {
                break;
            };
            tried.push(index);
            let address = cluster.endpoints()[index].address;
            let in_flight = cluster.start_request(index);
            let upstream = match TcpStream::connect(address) {
                Ok(upstream) => upstream,
                Err(error) => {
                    tracing::debug!(%address, %error, "L4 connect failed at once");
                    cluster.record(index, Outcome::ConnectFailure);
                    continue;
                }
            };
            let connecting = Connecting {
                client,
                client_addr,
                upstream,
                deadline: Instant::now() + cluster.config.timeouts.connect(),
                cluster,
                index,
                tried,
                in_flight,
                started,
            };
            self.insert(connecting);
            return;
        }
        self.count(&cluster, "no_endpoint");
        tracing::debug!(%client_addr, cluster = %cluster.name, "L4: no endpoint reachable; closing");
        drop(client);
        self.give_back();
    }

    fn insert(&mut self, mut connecting: Connecting) {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        let base = self.listeners.len() + 2 * slot;
        let registry = self.poll.registry();
        let both = Interest::READABLE | Interest::WRITABLE;
        let registered = registry
            .register(&mut connecting.client, Token(base), both)
            .and_then(|()| registry.register(&mut connecting.upstream, Token(base + 1), both));
        if let Err(error) = registered {
            tracing::warn!(%error, "L4: cannot register sockets; closing");
            self.free.push(slot);
            drop(connecting);
            self.give_back();
            return;
        }
        self.slots[slot] = Some(Conn::Connecting(connecting));
        self.active += 1;
        self.metrics().l4_active.inc();
    }

    fn on_socket(&mut self, token: usize, event: &Event) {
        let slot = token / 2;
        match self.slots.get_mut(slot).and_then(Option::take) {
            Some(Conn::Connecting(connecting)) => self.on_connect_event(slot, connecting),
            Some(Conn::Relaying(mut relaying)) => {
                let relay = &mut relaying.relay;
                match token % 2 {
                    0 => relay.client_ready.note(event),
                    _ => relay.upstream_ready.note(event),
                }
                self.on_relay_event(slot, relaying)
            }
            None => {}
        }
    }

    /// The upstream socket of a connecting pair changed state (or the client's did, which
    /// only matters once the pair relays).
    fn on_connect_event(&mut self, slot: usize, c: Connecting) {
        let failed = match c.upstream.take_error() {
            Ok(Some(error)) | Err(error) => Some(error),
            Ok(None) => match c.upstream.peer_addr() {
                Ok(_) => None,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    self.slots[slot] = Some(Conn::Connecting(c));
                    return;
                }
                Err(e) => Some(e),
            },
        };
        match failed {
            Some(error) => self.fail_over(slot, c, &error.to_string()),
            None => {
                c.cluster.record(c.index, Outcome::Success);
                let _ = c.upstream.set_nodelay(true);
                let relaying = Relaying {
                    relay: Relay::new(c.client, c.upstream),
                    client_addr: c.client_addr,
                    in_flight: c.in_flight,
                    idle: c.cluster.config.timeouts.idle(),
                    last_active: Instant::now(),
                    started: c.started,
                };
                self.count(&c.cluster, "relayed");
                self.on_relay_event(slot, relaying);
            }
        }
    }

    /// A connect failed or timed out: counts it against the endpoint and tries the next.
    fn fail_over(&mut self, slot: usize, c: Connecting, reason: &str) {
        let address = c.in_flight.endpoint().address;
        tracing::debug!(%address, reason, "L4 connect failed");
        c.cluster.record(c.index, Outcome::ConnectFailure);
        let Connecting {
            mut client,
            client_addr,
            cluster,
            tried,
            started,
            ..
        } = c;
        let _ = self.poll.registry().deregister(&mut client);
        self.release(slot);
        let key = Some(hash_bytes(client_addr.ip().to_string().as_bytes()));
        self.connect(client, client_addr, cluster, key, tried, started);
    }

    fn on_relay_event(&mut self, slot: usize, mut r: Relaying) {
        let (up, down) = (r.relay.up.moved, r.relay.down.moved);
        match r.relay.pump() {
            Ok(false) => {
                if (r.relay.up.moved, r.relay.down.moved) != (up, down) {
                    r.last_active = Instant::now();
                }
                self.slots[slot] = Some(Conn::Relaying(r));
            }
            Ok(true) => self.close(slot, r, "done"),
            Err(error) => self.close(slot, r, &error.to_string()),
        }
    }

    fn close(&mut self, slot: usize, r: Relaying, how: &str) {
        if self.access_log {
            tracing::info!(
                target: "reverse_proxy::access",
                client = %r.client_addr,
                endpoint = %r.in_flight.endpoint().address,
                cluster = %r.in_flight.cluster().name,
                bytes_up = r.relay.up.moved,
                bytes_down = r.relay.down.moved,
                duration_ms = r.started.elapsed().as_secs_f64() * 1000.0,
                end = how,
                "tcp connection",
            );
        }
        // Counted as gone first, so that a client that sees the close also sees the count.
        self.release(slot);
        // Dropping the sockets closes them and removes them from the poll.
        drop(r);
        self.give_back();
    }

    /// Frees a slot (its client may go on to another endpoint: see `fail_over`).
    fn release(&mut self, slot: usize) {
        self.slots[slot] = None;
        self.free.push(slot);
        self.active -= 1;
        self.metrics().l4_active.dec();
    }

    /// A client connection is closed: its place under the limit is free. If the limit had
    /// been reached, what waited in the backlogs is accepted after this round of events (the
    /// listeners' readiness was reported while the loops could not accept, and will not be
    /// reported again).
    fn give_back(&mut self) {
        self.rearm |= self.limit.give_back();
    }

    fn accept_if_rearmed(&mut self) {
        if std::mem::take(&mut self.rearm) {
            for i in 0..self.listeners.len() {
                self.accept(i);
            }
        }
    }

    /// Connect deadlines and idle timeouts.
    fn sweep(&mut self) {
        let now = Instant::now();
        for slot in 0..self.slots.len() {
            let expired = match &self.slots[slot] {
                Some(Conn::Connecting(c)) => now >= c.deadline,
                Some(Conn::Relaying(r)) => now.duration_since(r.last_active) >= r.idle,
                None => false,
            };
            if !expired {
                continue;
            }
            match self.slots[slot].take() {
                Some(Conn::Connecting(c)) => self.fail_over(slot, c, "connect timed out"),
                Some(Conn::Relaying(r)) => self.close(slot, r, "idle timeout"),
                None => {}
            }
        }
    }

    fn count(&self, cluster: &Cluster, outcome: &str) {
        self.metrics()
            .l4_connections
            .with_label_values(&[cluster.name.as_str(), outcome])
            .inc();
    }
}
