//! Circuit breaking by thresholds (Envoy's model): limits on what the proxy asks of one
//! cluster at once, so that an upstream that slows down gets a fast 503 for the excess
//! instead of a queue that grows until every client times out.
//!
//! ```text
//!  request ──▶ requests in flight < max_requests ? ──no──▶ 503 connection_limit_reached "max_requests"
//!                   │ yes
//!                   ▼
//!             a connection free (< max_connections busy) ? ──yes──▶ forward
//!                   │ no
//!                   ▼
//!             pending < max_pending ? ──no──▶ 503 "max_pending"
//!                   │ yes: wait for a connection, at most timeouts.connect_ms
//!                   ▼                     (still none ──▶ 503 "max_connections")
//!                 forward
//! ```
//!
//! HTTP/1.1 carries one request per connection at a time, so "connections busy" is the
//! number of tries being sent or answered; idle pooled connections do not count. The limits
//! are counted per cluster, not per endpoint, and are independent of the retry budget
//! (`retry.rs`), which limits how much of the load may be retries.
//!
//! This is the "thresholds" kind of circuit breaker. The "closed, open, half-open" state
//! machine that stops calling a failing service altogether is the outlier detector's job here
//! (`outlier.rs`: an endpoint that keeps failing is ejected, then let back after a time).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::CircuitBreakerConfig;

/// The limits of one cluster and what is counted against them.
#[derive(Debug)]
pub struct CircuitBreaker {
    limits: CircuitBreakerConfig,
    requests: Arc<AtomicU32>,
    pending: Arc<AtomicU32>,
    connections: Arc<Semaphore>,
}

/// One request counted against `max_requests` until dropped.
#[derive(Debug)]
pub struct RequestSlot {
    requests: Arc<AtomicU32>,
}

impl Drop for RequestSlot {
    fn drop(&mut self) {
        self.requests.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a request as pending while it waits for a connection.
struct Pending<'a>(&'a AtomicU32);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl CircuitBreaker {
    pub fn new(limits: &CircuitBreakerConfig) -> Self {
        CircuitBreaker {
            limits: limits.clone(),
            requests: Arc::default(),
            pending: Arc::default(),
            connections: Arc::new(Semaphore::new(limits.max_connections as usize)),
        }
    }

    /// Requests in flight now (pending ones included).
    pub fn requests(&self) -> u32 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Admits a request under `max_requests`, or names the limit.
    pub fn admit(&self) -> Result<RequestSlot, &'static str> {
        let admitted = self
            .requests
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.limits.max_requests).then_some(n + 1)
            });
        match admitted {
            Ok(_) => Ok(RequestSlot {
                requests: self.requests.clone(),
            }),
            Err(_) => Err("max_requests"),
        }
    }

    /// A connection for one try: at once if one is free, else after waiting as pending for at
    /// most `wait`. The error names the limit that refused it.
    pub async fn connection(&self, wait: Duration) -> Result<OwnedSemaphorePermit, &'static str> {
        if let Ok(permit) = self.connections.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let queued = self
            .pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.limits.max_pending).then_some(n + 1)
            });
        if queued.is_err() {
            return Err("max_pending");
        }
        let _pending = Pending(&self.pending);
        match tokio::time::timeout(wait, self.connections.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err("max_connections"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_connections: u32, max_pending: u32, max_requests: u32) -> CircuitBreakerConfig {
        CircuitBreakerConfig {
            max_connections,
            max_pending,
            max_requests,
        }
    }

    #[test]
    fn requests_over_the_limit_are_refused_until_one_ends() {
        let breaker = CircuitBreaker::new(&limits(10, 10, 2));
        let a = breaker.admit().unwrap();
        let _b = breaker.admit().unwrap();
        assert_eq!(breaker.admit().unwrap_err(), "max_requests");
        drop(a);
        assert!(breaker.admit().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_pool_queues_up_to_max_pending_then_refuses() {
        let breaker = Arc::new(CircuitBreaker::new(&limits(1, 1, 100)));
        let busy = breaker.connection(Duration::from_secs(1)).await.unwrap();
        // One waiter fits in the queue; it gets the connection when it is released.
        let waiter = tokio::spawn({
            let breaker = breaker.clone();
            async move { breaker.connection(Duration::from_secs(5)).await.map(drop) }
        });
        tokio::task::yield_now().await;
        assert_eq!(
            breaker
                .connection(Duration::from_secs(1))
                .await
                .unwrap_err(),
            "max_pending"
        );
        drop(busy);
        assert!(waiter.await.unwrap().is_ok());

        // A waiter that outlasts its wait is refused by max_connections.
        let _busy = breaker.connection(Duration::from_secs(1)).await.unwrap();
        let refused = breaker.connection(Duration::from_millis(200)).await;
        assert_eq!(refused.unwrap_err(), "max_connections");
    }
}
