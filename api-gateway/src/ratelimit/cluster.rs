//! Cluster scope: the window counters of [`super::fixed_window`] and
//! [`super::sliding_window`] kept in the kv-store, so that every gateway instance counts
//! against one limit.
//!
//! ```text
//!  fixed window, one pipeline:            sliding window, one pipeline:
//!    INCR    ratelimit:P:K:<n>              INCR    ratelimit:P:K:<n>
//!    PEXPIRE ratelimit:P:K:<n> 2w NX        PEXPIRE ratelimit:P:K:<n> 2w NX
//!                                           GET     ratelimit:P:K:<n-1>
//!  allowed: count ≤ limit                 allowed: prev × (1 - elapsed/w) + count ≤ limit
//!                                           denied: DECR ratelimit:P:K:<n> (takes it back)
//! ```
//!
//! `<n>` is the window index (`now / w`, windows aligned to the Unix epoch), so instances
//! agree on windows as far as their clocks do. `INCR` is atomic in the store: of many
//! instances racing for the last slot, exactly one reads `limit`. The kv-store has no
//! scripting (`EVAL`) or transactions, which is why the bucket algorithms have no cluster
//! form: their read-modify-write would race between instances. The fixed window keeps its
//! denied increments (the count past the limit changes nothing); the sliding window takes
//! them back, because this window's count weighs on the next. `PEXPIRE ... NX` sets the
//! key's life once, at two windows, long enough to serve as the next window's "previous".
//!
//! Store keys are `ratelimit:{policy}:{key}:{window}`, the key already bounded by
//! [`super::bounded_key`]. A failed or timed-out call (the client's `io_timeout`, `[kv] timeout_ms`)
//! is decided by `on_store_error`, and the decision says `store_failed`.

use std::fmt::Write;

use bytes::Bytes;
use kv_store::client::Client;
use kv_store::resp::reply::Reply;

use super::sliding_window::{Counts, SlidingWindow};
use super::{AlgorithmKind, FailureMode, NS_PER_MS, PolicyConfig, Verdict};

/// What a fail-closed denial asks the client to wait.
const STORE_RETRY_NS: u64 = 1_000_000_000;

pub struct ClusterLimiter {
    prefix: String,
    sliding: bool,
    limit: u64,
    window_ns: u64,
    on_error: FailureMode,
    store: Client,
}

impl ClusterLimiter {
    /// `algorithm` is a window algorithm (validated by [`PolicyConfig::validate`]).
    pub fn new(
        name: &str,
        algorithm: AlgorithmKind,
        config: &PolicyConfig,
        store: Client,
    ) -> ClusterLimiter {
        ClusterLimiter {
            prefix: format!("ratelimit:{name}:"),
            sliding: algorithm == AlgorithmKind::SlidingWindow,
            limit: config.limit,
            window_ns: config.window_ms * NS_PER_MS,
            on_error: config.on_store_error,
            store,
        }
    }

    /// One request; the flag is true when the store failed and `on_store_error` decided.
    pub async fn decide(&self, key: &str, now_ns: u64) -> (Verdict, bool) {
        let index = now_ns / self.window_ns;
        let result = match self.sliding {
            false => self.fixed(key, index, now_ns).await,
            true => self.sliding(key, index, now_ns).await,
        };
        match result {
            Ok(verdict) => (verdict, false),
            Err(error) => {
                tracing::warn!(policy = %self.prefix, %error, "rate-limit store unavailable");
                let allowed = self.on_error == FailureMode::FailOpen;
                let retry_after_ns = (!allowed).then_some(STORE_RETRY_NS);
                (
                    Verdict {
                        allowed,
                        remaining: 0,
                        reset_ns: 0,
                        retry_after_ns,
                    },
                    true,
                )
            }
        }
    }

    async fn fixed(&self, key: &str, index: u64, now_ns: u64) -> Result<Verdict, String> {
        let name = self.store_key(key, index);
        let replies = self
            .store
            .pipeline(vec![incr(&name), self.expire(&name)])
            .await
            .map_err(|e| e.to_string())?;
        let count = integer(replies.first())?;
        let to_end = self.window_ns - now_ns % self.window_ns;
        let allowed = count <= self.limit;
        Ok(Verdict {
            allowed,
            remaining: self.limit.saturating_sub(count),
            reset_ns: to_end,
            retry_after_ns: (!allowed).then_some(to_end),
        })
    }

    async fn sliding(&self, key: &str, index: u64, now_ns: u64) -> Result<Verdict, String> {
        let (name, previous) = (
            self.store_key(key, index),
            self.store_key(key, index.wrapping_sub(1)),
        );
        let get = vec![Bytes::from_static(b"GET"), Bytes::from(previous)];
        let replies = self
            .store
            .pipeline(vec![incr(&name), self.expire(&name), get])
            .await
            .map_err(|e| e.to_string())?;
        let before = Counts {
            current: integer(replies.first())?.saturating_sub(1),
            previous: match replies.get(2) {
                Some(Reply::Null) => 0,
                reply => reply
                    .and_then(Reply::as_bytes)
                    .and_then(|b| std::str::from_utf8(b).ok()?.parse().ok())
                    .ok_or_else(|| format!("unexpected GET reply {reply:?}"))?,
            },
            elapsed_ns: now_ns % self.window_ns,
        };
        if SlidingWindow::admits(self.limit, self.window_ns, before) {
            let after = Counts {
                current: before.current + 1,
                ..before
            };
            return Ok(Verdict {
                allowed: true,
                remaining: SlidingWindow::remaining(self.limit, self.window_ns, after),
                reset_ns: SlidingWindow::reset_ns(self.window_ns, after),
                retry_after_ns: None,
            });
        }
        // Best effort: if it fails, the count errs toward denying in the next window.
        let _ = self
            .store
            .command(&[b"DECR".as_slice(), name.as_bytes()])
            .await;
        Ok(Verdict {
            allowed: false,
            remaining: 0,
            reset_ns: SlidingWindow::reset_ns(self.window_ns, before),
            retry_after_ns: Some(SlidingWindow::retry_after_ns(
                self.limit,
                self.window_ns,
                before,
            )),
        })
    }

    fn expire(&self, name: &str) -> Vec<Bytes> {
        let ttl_ms = 2 * self.window_ns / NS_PER_MS;
        ["PEXPIRE", name, &ttl_ms.to_string(), "NX"]
            .iter()
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect()
    }

    /// `ratelimit:{policy}:{key}:{window}`.
    pub fn store_key(&self, key: &str, index: u64) -> String {
        let mut name = String::with_capacity(self.prefix.len() + key.len() + 21);
        name.push_str(&self.prefix);
        name.push_str(key);
        let _ = write!(name, ":{index}");
        name
    }
}

fn incr(name: &str) -> Vec<Bytes> {
    vec![
        Bytes::from_static(b"INCR"),
        Bytes::copy_from_slice(name.as_bytes()),
    ]
}

fn integer(reply: Option<&Reply>) -> Result<u64, String> {
    match reply {
        Some(Reply::Integer(n)) if *n >= 0 => Ok(*n as u64),
        other => Err(format!("unexpected INCR reply {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(name: &str) -> ClusterLimiter {
        let config = PolicyConfig {
            limit: 10,
            window_ms: 1000,
            ..PolicyConfig::default()
        };
        let client = Client::new(kv_store::client::ClientConfig::new(
            "127.0.0.1:1".parse().unwrap(),
        ));
        ClusterLimiter::new(name, AlgorithmKind::FixedWindow, &config, client)
    }

    #[test]
    fn store_keys_are_namespaced_by_policy_and_window() {
        let l = limiter("per_ip");
        assert_eq!(
            l.store_key("ip:10.0.0.1", 1_800_000_007),
            "ratelimit:per_ip:ip:10.0.0.1:1800000007"
        );
    }

    #[test]
    fn the_expiry_is_two_windows_set_once() {
        let args: Vec<_> = limiter("p")
            .expire("k")
            .iter()
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
            .collect();
        assert_eq!(args, ["PEXPIRE", "k", "2000", "NX"]);
    }

    #[tokio::test]
    async fn an_unreachable_store_decides_by_the_failure_mode() {
        let mut l = limiter("p");
        let (verdict, failed) = l.decide("k", 5_000_000_000).await;
        assert!(failed && verdict.allowed, "fail_open is the default");
        l.on_error = FailureMode::FailClosed;
        let (verdict, failed) = l.decide("k", 5_000_000_000).await;
        assert!(failed && !verdict.allowed);
        assert_eq!(verdict.retry_after_ns, Some(STORE_RETRY_NS));
    }
}
