//! `run`: the proxy as a server, on listeners bound by the caller.
//!
//! ```text
//!  run(listeners, config, shutdown)
//!    ├─ metrics registry ─▶ Proxy (routes, clusters, pools)
//!    ├─ admin listener: /metrics, /healthz, /readyz          (service_kit::admin)
//!    ├─ HTTP listener: http1::server::serve_shared ─▶ Proxy::handle (a task per connection)
//!    ├─ workers 2..N: a thread each, with its own runtime and the same listeners
//!    ├─ reloads: each validated Config received swaps routes and clusters (proxy.rs)
//!    └─ shutdown triggered ─▶ /readyz says draining ─▶ stop accepting
//!         ─▶ in-flight requests finish (server.shutdown_timeout_ms) ─▶ return
//! ```
//!
//! # Reload without dropping a request
//!
//! The binary turns SIGHUP into a [`Config`] (file and flags read again, then validated; an
//! invalid one is logged and ignored) and sends it on the `reloads` channel. Here it becomes a
//! new table of routes and clusters (new balancers, pools, health checks) that replaces the
//! old one in one pointer swap. The listeners are not touched, so no connection is refused
//! and none is closed; a request that started before the swap finishes on the old table (it
//! holds an `Arc` to it), and the old pools and health checks go away with the last such
//! request. Settings that belong to the listeners or the process (`[server]`, `tls.listen`,
//! `[[tcp]]` and every `proxy.*` field) need a restart; a reload that changes them says so in
//! the log.
//!
//! # Workers
//!
//! With `proxy.workers = N` the proxy runs N single-threaded tokio runtimes, as nginx runs N
//! worker processes: the caller's (which also serves the admin listener, reloads, health
//! checks and the L4 loop's signals) and N - 1 threads started here. Each runtime accepts on
//! the same listening sockets (each registers them with its own event loop; the kernel gives a
//! new connection to the worker whose `accept` gets there first). The worker that accepted it
//! keeps it unless another serves fewer connections, which then gets it instead (an
//! `http1::server::AcceptGroup` per listener: left to the race, one of two workers did up to
//! 69% of the work). Each worker serves its connections to their end, upstream exchanges
//! included: a connection never changes thread once served, and idle upstream connections are
//! pooled per runtime (see `http1`'s pool). Everything else is shared: routes and clusters,
//! balancers, limits, metrics. `proxy.max_connections` bounds the connections of all workers
//! together. One multi-threaded runtime would move tasks between threads and wake threads for
//! one another; measured on the bench, that cost more than the second thread gave
//! (BENCHMARKS.md).

use std::future::Future;
use std::os::fd::AsFd;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http1::server::{self, AcceptGroup, Member, ServerConfig as HttpConfig};
use http1::{Request, Response};
use service_kit::admin::{self, AdminState};
use service_kit::metrics::{MetricsError, Registry};
use service_kit::shutdown::Shutdown;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::headers::Scheme;
use crate::metrics::ProxyMetrics;
use crate::proxy::{Downstream, Proxy};
use crate::tls::{self, CurrentTls};

/// The sockets the proxy serves, bound by the caller (tests bind port 0).
#[derive(Debug)]
pub struct Listeners {
    /// Plain HTTP clients.
    pub http: TcpListener,
    /// HTTPS clients, when the config has a `[tls]` section (ignored otherwise).
    pub https: Option<TcpListener>,
    /// The L4 listeners, one per `[[tcp]]` entry, in order (std sockets: they go to `mio`).
    pub tcp: Vec<std::net::TcpListener>,
    /// `/metrics`, `/healthz`, `/readyz`.
    pub admin: TcpListener,
}

/// Why the proxy could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("metrics: {0}")]
    Metrics(#[from] MetricsError),
    #[error("{0}")]
    Setup(String),
}

/// Most reloads queued; a SIGHUP that finds the queue full is dropped, since the reload
/// already queued reads the same file.
pub const RELOAD_QUEUE: usize = 1;

/// Serves `config` (already validated) until `shutdown` is triggered, then drains. Each
/// config received on `reloads` (validated by the sender) replaces routes and clusters.
pub async fn run(
    listeners: Listeners,
    config: Config,
    shutdown: Shutdown,
    reloads: mpsc::Receiver<Config>,
) -> Result<(), RunError> {
    let registry = Registry::new();
    let metrics = ProxyMetrics::register(&registry)?;
    let proxy = Arc::new(Proxy::new(&config, metrics, shutdown.clone()).map_err(RunError::Setup)?);
    let admin_state = AdminState::new(registry);
    let drain = config.server.shutdown_timeout();

    let admin_task = tokio::spawn({
        let (state, stop) = (admin_state.clone(), shutdown.clone());
        async move { admin::serve(listeners.admin, state, drain, stop.triggered()).await }
    });
    let draining = tokio::spawn({
        let (state, stop) = (admin_state.clone(), shutdown.clone());
        async move {
            stop.triggered().await;
            state.mark_draining();
        }
    });

    let http = HttpConfig {
        max_connections: config.proxy.max_connections,
        drain_timeout: drain,
        ..HttpConfig::default()
    };
    // Each listener's accept loops, one per worker in order (the first is this runtime's):
    // their shared limit, their counts kept level.
    let (max_connections, worker_count) = (config.proxy.max_connections, config.proxy.workers);
    let mut http_members = AcceptGroup::members(max_connections, worker_count).into_iter();
    let mut https_members = AcceptGroup::members(max_connections, worker_count).into_iter();
    let http_member = http_members.next().expect("a member per worker");
    let https_member = https_members.next().expect("a member per worker");
    let mut sampled_listeners = vec![("http", http_member.group())];
    let tls = match (&config.tls, listeners.https) {
        (Some(tls), Some(listener)) => {
            let server_config =
                tls::server_config(tls).map_err(|e| RunError::Setup(e.to_string()))?;
            let current: CurrentTls = Arc::new(RwLock::new(server_config));
            Some((listener, current, tls.handshake_timeout()))
        }
        _ => None,
    };
    if tls.is_some() {
        sampled_listeners.push(("https", https_member.group()));
    }
    // The other workers' copies of the listeners; their threads start last, once nothing
    // here can fail any more.
    let mut workers = Vec::with_capacity(config.proxy.workers);
    for _ in 1..config.proxy.workers {
        workers.push(Worker {
            http: share(&listeners.http)?,
            https: match &tls {
                Some((listener, current, timeout)) => {
                    Some((share(listener)?, current.clone(), *timeout))
                }
                None => None,
            },
            config: http.clone(),
            proxy: proxy.clone(),
            http_member: http_members.next().expect("a member per worker"),
            https_member: https_members.next().expect("a member per worker"),
            shutdown: shutdown.clone(),
        });
    }
    let current_tls = tls.map(|(listener, current, handshake_timeout)| {
        tokio::spawn(tls::serve(
            listener,
            current.clone(),
            handshake_timeout,
            Arc::new(http.clone()),
            Arc::new(handler(proxy.clone(), Scheme::Https)),
            https_member,
            shutdown.clone(),
        ));
        current
    });
    if listeners.tcp.len() != config.tcp.len() {
        return Err(RunError::Setup(format!(
            "{} L4 listeners for {} [[tcp]] entries",
            listeners.tcp.len(),
            config.tcp.len()
        )));
    }
    if !listeners.tcp.is_empty() {
        let l4_listeners = listeners
            .tcp
            .into_iter()
            .zip(&config.tcp)
            .map(|(socket, tcp)| (socket, tcp.cluster.clone()))
            .collect();
        crate::l4::spawn(
            l4_listeners,
            proxy.clone(),
            config.proxy.workers,
            config.proxy.max_connections,
            config.proxy.access_log,
            &shutdown,
        )
        .map_err(|e| {
            // What started already (the HTTPS listener, loops) stops with the shutdown.
            shutdown.trigger();
            RunError::Setup(format!("L4 event loop: {e}"))
        })?;
    }
    let reloader = tokio::spawn(apply_reloads(
        proxy.clone(),
        config.clone(),
        reloads,
        current_tls,
    ));
    let sampler = tokio::spawn(crate::metrics::sample(
        Arc::downgrade(&proxy),
        sampled_listeners,
    ));
    let mut served = Vec::with_capacity(workers.len());
    for (index, worker) in (1..).zip(workers) {
        match worker.spawn(index) {
            Ok(done) => served.push(done),
            Err(error) => {
                // The workers already started stop with the shutdown.
                shutdown.trigger();
                return Err(error);
            }
        }
    }
    let local = listeners.http.local_addr().ok();
    tracing::info!(listen = ?local, clusters = config.clusters.len(), routes = config.routes.len(), "serving");
    admin_state.mark_ready();
    let plain = Arc::new(handler(proxy.clone(), Scheme::Http));
    server::serve_shared(
        listeners.http,
        http,
        plain,
        http_member,
        shutdown.triggered(),
    )
    .await
    .map_err(|e| RunError::Setup(e.to_string()))?;
    // Every worker has drained its HTTP connections too (or could not start).
    for done in served {
        let _ = done.await;
    }
    draining.abort();
    reloader.abort();
    sampler.abort();
    let _ = admin_task.await;
    Ok(())
}

/// A listening socket, once more: the same socket under a second descriptor, for another
/// worker's event loop to register.
fn share(listener: &TcpListener) -> Result<std::net::TcpListener, RunError> {
    let shared = listener
        .as_fd()
        .try_clone_to_owned()
        .map(std::net::TcpListener::from)
        .map_err(|e| RunError::Setup(format!("cannot share a listener with a worker: {e}")))?;
    Ok(shared)
}

/// What a worker after the first serves: the listeners (shared with the other workers) and
/// the proxy.
struct Worker {
    http: std::net::TcpListener,
    https: Option<(std::net::TcpListener, CurrentTls, Duration)>,
    config: HttpConfig,
    proxy: Arc<Proxy>,
    http_member: Member,
    https_member: Member,
    shutdown: Shutdown,
}

impl Worker {
    /// Starts the worker's thread and runtime. The receiver resolves (or fails, if the
    /// runtime could not start) once its listeners are closed and its plain HTTP connections
    /// drained. The thread lives on until the shutdown's drain is over: the tasks it runs that
    /// the drain waits for (HTTPS connections, tunnels) end with its runtime.
    fn spawn(self, index: usize) -> Result<oneshot::Receiver<()>, RunError> {
        let (served, done) = oneshot::channel();
        let thread = std::thread::Builder::new().name(format!("worker-{index}"));
        thread
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        tracing::error!(%error, worker = index, "cannot start a worker's runtime");
                        return;
                    }
                };
                let shutdown = self.shutdown.clone();
                runtime.block_on(async move {
                    if let Err(error) = self.serve().await {
                        tracing::error!(%error, worker = index, "worker stopped");
                    }
                    let _ = served.send(());
                    shutdown.drained().await;
                });
            })
            .map_err(|e| RunError::Setup(format!("cannot start worker {index}: {e}")))?;
        Ok(done)
    }

    async fn serve(self) -> std::io::Result<()> {
        if let Some((listener, current, handshake_timeout)) = self.https {
            tokio::spawn(tls::serve(
                TcpListener::from_std(listener)?,
                current,
                handshake_timeout,
                Arc::new(self.config.clone()),
                Arc::new(handler(self.proxy.clone(), Scheme::Https)),
                self.https_member,
                self.shutdown.clone(),
            ));
        }
        let plain = Arc::new(handler(self.proxy, Scheme::Http));
        server::serve_shared(
            TcpListener::from_std(self.http)?,
            self.config,
            plain,
            self.http_member,
            self.shutdown.triggered(),
        )
        .await
        .map_err(std::io::Error::other)
    }
}

/// The `http1` handler of a listener whose clients use `scheme`. A named type rather than
/// a closure returning a boxed future: the request's future (the whole try loop) is large,
/// and boxing it would cost an allocation and a copy per request.
fn handler(proxy: Arc<Proxy>, scheme: Scheme) -> ProxyHandler {
    ProxyHandler { proxy, scheme }
}

struct ProxyHandler {
    proxy: Arc<Proxy>,
    scheme: Scheme,
}

impl http1::server::Handler for ProxyHandler {
    fn call(&self, request: Request) -> impl Future<Output = Response> + Send {
        self.proxy.handle(
            request,
            Downstream {
                scheme: self.scheme,
            },
        )
    }
}

async fn apply_reloads(
    proxy: Arc<Proxy>,
    mut current: Config,
    mut reloads: mpsc::Receiver<Config>,
    tls: Option<CurrentTls>,
) {
    while let Some(config) = reloads.recv().await {
        if let (Some(current_tls), Some(tls_config)) = (&tls, &config.tls) {
            match tls::server_config(tls_config) {
                Ok(server_config) => {
                    *current_tls.write().unwrap_or_else(|e| e.into_inner()) = server_config;
                }
                Err(error) => {
                    tracing::error!(%error, "reload failed: keeping the previous config and certificates");
                    continue;
                }
            }
        }
        for field in restart_only_changes(&current, &config) {
            tracing::warn!(
                field,
                "changed in the new config but only applied at restart"
            );
        }
        match proxy.reload(&config) {
            Ok(()) => {
                tracing::info!(
                    clusters = config.clusters.len(),
                    routes = config.routes.len(),
                    "config reloaded"
                );
                current = config;
            }
            Err(error) => {
                tracing::error!(%error, "reload failed; still serving the previous config")
            }
        }
    }
}

/// The settings a reload cannot change, named as in the file, that differ.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if old.server != new.server {
        changed.push("server");
    }
    if old.tls.as_ref().map(|t| t.listen) != new.tls.as_ref().map(|t| t.listen) {
        changed.push("tls.listen");
    }
    if old.tcp != new.tcp {
        changed.push("tcp");
    }
    if old.proxy.workers != new.proxy.workers {
        changed.push("proxy.workers");
    }
    if old.proxy.max_connections != new.proxy.max_connections {
        changed.push("proxy.max_connections");
    }
    if old.proxy.max_tunnels != new.proxy.max_tunnels {
        changed.push("proxy.max_tunnels");
    }
    let (a, b) = (&old.proxy, &new.proxy);
    let fields = [
        ("proxy.via", a.via != b.via),
        ("proxy.access_log", a.access_log != b.access_log),
        (
            "proxy.forwarded_headers",
            a.forwarded_headers != b.forwarded_headers,
        ),
        ("proxy.request_id", a.request_id != b.request_id),
    ];
    changed.extend(
        fields
            .into_iter()
            .filter(|(_, differs)| *differs)
            .map(|(name, _)| name),
    );
    changed
}
