//! An API gateway: a reverse proxy with a policy chain in front of the upstream call.
//!
//! Every request runs the same phases, in order (the diagram is in `gateway.rs`): route ->
//! authenticate -> rate limit -> idempotency -> circuit breaker -> upstream -> respond. The
//! upstream call is the reverse-proxy crate's library (`reverse_proxy::proxy::Proxy`), so
//! balancing, health checks, retries and pooling are the proxy's, not written twice. The
//! binary (`src/main.rs`) parses flags and calls [`server::run`].
//!
//! | module | what it holds |
//! |---|---|
//! | [`config`] | the TOML model (`example.toml` writes it out); `validate` names the bad field |
//! | [`server`] | `run(listeners, config, clock, shutdown, reloads)`: listeners, admin, reload |
//! | [`gateway`] | the lifecycle: `Gateway::handle` runs the phases; the reloadable `Table` |
//! | [`phase`] | one module per phase, glue between a request and the concept modules below |
//! | [`auth`] | API keys (stored as digests) and JWT bearer tokens (HS256, RS256, ES256; JWKS) |
//! | [`ratelimit`] | token bucket, GCRA, fixed window, sliding log, sliding window; local and cluster-wide |
//! | [`idempotency`] | idempotency keys with Stripe's semantics, in memory or in the kv-store |
//! | [`circuit_breaker`] | closed, open, half-open over a rolling window |
//! | [`cors`] | CORS preflights and response fields |
//! | [`error`] | every refusal as one JSON shape with its status |
//! | [`metrics`] | `gateway_*` metrics by route, consumer, policy and cluster |
//! | [`clock`] | one monotonic reading per request; a manual clock for tests |

pub mod auth;
pub mod circuit_breaker;
pub mod clock;
pub mod config;
pub mod cors;
pub mod error;
pub mod gateway;
pub mod idempotency;
pub mod metrics;
pub mod phase;
pub mod ratelimit;
pub mod server;
