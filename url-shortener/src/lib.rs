//! A URL shortener: the classic system-design case study as a real service.
//!
//! | module | what it holds |
//! |---|---|
//! | [`id`] | ids leased in blocks from a counter, scrambled by a Feistel permutation, spelt in base62 |
//! | [`target`] | which URLs a link may point to |
//! | [`alias`] | which custom codes a user may choose |
//! | [`store`] | the [`store::Store`] trait, the embedded sled store and the shared kv-store one |
//! | [`expiry`] | when links stop redirecting, and the sweep that removes them |
//! | [`cache`] | cache-aside: a sharded LRU with TTL, byte bound, negative entries, invalidation |
//! | [`clicks`] | click events through a bounded queue, aggregated here or counted through the message broker |
//! | [`api`] | the HTTP JSON API: routes, handlers, errors, API keys, OpenAPI document |
//! | [`server`] | [`run`]: the service on a listener the caller bound |
//! | [`config`] | every setting, its default and its check |
//! | [`clock`] | wall-clock time behind a seam, for expiry tests |
//! | [`timestamp`] | RFC 3339 to and from Unix milliseconds |

pub mod alias;
pub mod api;
pub mod cache;
pub mod clicks;
pub mod clock;
pub mod config;
pub mod expiry;
pub mod id;
pub mod server;
pub mod store;
pub mod target;
pub mod timestamp;

pub use server::{RunError, run};
