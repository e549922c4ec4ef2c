//! Phase 5, circuit breaker: the chosen cluster's breaker (`circuit_breaker.rs`) admits the
//! call or refuses it with 503 while the circuit is open; after the upstream phase, the
//! outcome goes back to it. A failure is any 5xx, whether the upstream sent it or the proxy
//! answered for it (refused connection, reset, timeout): from the client's side of the
//! gateway they are the same broken dependency.

use crate::circuit_breaker::{Call, State};
use crate::error::GatewayError;
use crate::gateway::{Exchange, Gateway, Table};
use crate::phase::upstream::Outcome;

pub fn admit(
    gateway: &Gateway,
    table: &Table,
    cluster: &str,
    exchange: &Exchange,
) -> Result<Option<Call>, GatewayError> {
    let Some(breaker) = table.breakers.get(cluster) else {
        return Ok(None);
    };
    match breaker.admit(exchange.now_ns) {
        Ok(call) => Ok(Some(call)),
        Err(rejected) => {
            gateway
                .metrics
                .breaker_rejections
                .with_label_values(&[cluster])
                .inc();
            set_state(gateway, table, cluster);
            Err(GatewayError::CircuitOpen {
                cluster: cluster.to_owned(),
                retry_after: rejected.retry_after,
            })
        }
    }
}

pub fn record(
    gateway: &Gateway,
    table: &Table,
    cluster: &str,
    call: Option<Call>,
    outcome: &Outcome,
) {
    let Some(call) = call else {
        return;
    };
    let now = gateway.clock.now_ns();
    match outcome.failed {
        true => call.failure(now),
        false => call.success(now),
    }
    set_state(gateway, table, cluster);
}

fn set_state(gateway: &Gateway, table: &Table, cluster: &str) {
    if let Some(breaker) = table.breakers.get(cluster) {
        let value = match breaker.state(gateway.clock.now_ns()) {
            State::Closed => 0,
            State::HalfOpen => 1,
            State::Open => 2,
        };
        gateway
            .metrics
            .breaker_state
            .with_label_values(&[cluster])
            .set(value);
    }
}
