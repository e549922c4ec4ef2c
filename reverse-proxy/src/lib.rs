//! An L7 (HTTP/1.1) reverse proxy and load balancer, built on the workspace's `http1` layer.
//!
//! The request path is a library ([`proxy::Proxy`]) so that the API gateway reuses it; the
//! binary (`src/main.rs`) only parses flags and calls [`server::run`]. The lifecycle of one
//! request is drawn in `proxy.rs`.
//!
//! | module | what it holds |
//! |---|---|
//! | [`config`] | routes and clusters from TOML or the quick-start flags; `validate` names the bad field |
//! | [`server`] | `run(listeners, config, shutdown)`: the HTTP and admin listeners, draining |
//! | [`proxy`] | the request path: route, pick, forward, relay; the access log |
//! | [`route`] | host + path prefix -> cluster, first match wins |
//! | [`cluster`] | a cluster at run time: endpoints' live state, balancer, connection pool |
//! | [`balance`] | the balancing algorithms, one file each, behind one trait |
//! | [`health`] | active health checks (HTTP or TCP probes, thresholds) |
//! | [`outlier`] | passive health: ejecting endpoints that fail live requests |
//! | [`retry`] | which failures are retried, backoff with jitter, the retry budget |
//! | [`circuit_breaker`] | max connections, max pending, max requests per cluster |
//! | [`headers`] | hop-by-hop fields out, forwarding fields (`Via`, `X-Forwarded-*`, `Forwarded`) in |
//! | [`request_id`] | `X-Request-Id` kept or generated |
//! | [`error`] | why the proxy answered itself: status and `Proxy-Status` per failure |
//! | [`l4`] | L4 mode: TCP relayed on an explicit `mio` event loop, same clusters and balancers |
//! | [`tls`] | TLS termination: certificates by SNI, ALPN http/1.1, the HTTPS accept loop |
//! | [`tunnel`] | WebSocket and other upgrades relayed as raw byte streams |
//! | [`metrics`] | the Prometheus metrics of the request path |
//! | [`alloc`] | the binaries' memory allocator (mimalloc) |

pub mod alloc;
pub mod balance;
pub mod circuit_breaker;
pub mod cluster;
pub mod config;
pub mod error;
pub mod headers;
pub mod health;
pub mod l4;
pub mod metrics;
pub mod outlier;
pub mod proxy;
pub mod request_id;
pub mod retry;
pub mod route;
pub mod server;
pub mod tls;
pub mod tunnel;
