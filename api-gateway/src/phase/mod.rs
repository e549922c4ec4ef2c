//! The phases of a request, in the order `gateway.rs` runs them (its module doc draws the
//! whole lifecycle). Each phase is glue between the request and one concept's module:
//!
//! | phase | module here | the concept |
//! |---|---|---|
//! | 1 route | [`route`] | (here: matching, rewrites, canary split) |
//! | 2 authenticate | [`authenticate`] | `auth/`: API keys, JWT, JWKS |
//! | 3 rate limit | [`rate_limit`] | `ratelimit/`: five algorithms, local and cluster-wide |
//! | 4 idempotency | [`idempotency`] | `idempotency/`: Stripe-style keys, local or kv store |
//! | 5 circuit breaker | [`circuit_breaker`] | `circuit_breaker.rs` |
//! | 6 upstream | [`upstream`] | `reverse_proxy::proxy::Proxy` |
//! | 7 respond | [`transform`] | header transforms, `cors.rs` |

pub mod authenticate;
pub mod circuit_breaker;
pub mod idempotency;
pub mod rate_limit;
pub mod route;
pub mod transform;
pub mod upstream;
