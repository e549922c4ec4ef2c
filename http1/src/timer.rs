//! Time limits that cost nothing on the path where nothing waits.
//!
//! A busy keep-alive connection runs several time limits per request: on the server, the idle
//! timeout while it waits for the next request and the stall timeout of each write and flush;
//! on the client, the wait for each response head and the same write stalls. Arming one the plain
//! way (`tokio::time::timeout`) reads the clock, builds a timer entry, and, if the future has to
//! wait, inserts that entry in the runtime's timer wheel and removes it again afterwards: a lock
//! and a few hundred instructions per limit, per request, for timers that almost never fire.
//!
//! - [`timeout_lazily`] polls the future once before arming anything: a write into a socket
//!   with room, the common case, finishes there.
//! - [`IdleTimer`] keeps one sleep per connection and moves it as rarely as possible (the
//!   server's idle wait, the client's response-header wait): each wait only records its own
//!   deadline, and the sleep, still set for an earlier and therefore sooner deadline, is moved
//!   when it fires before the current one. A connection that answers a
//!   request every millisecond re-arms its timer once per `idle_timeout`, not once per request.
//!
//! Neither changes what a limit means: the deadline of a wait is still "now + limit" taken when
//! the wait begins, to within the microseconds of one poll.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::error::Elapsed;
use tokio::time::{Instant, Sleep, sleep_until, timeout};

/// Like [`tokio::time::timeout`], but the timer is armed only if `future` is not ready on its
/// first poll.
pub(crate) async fn timeout_lazily<F: Future>(
    limit: Duration,
    future: F,
) -> Result<F::Output, Elapsed> {
    let mut future = pin!(future);
    if let Poll::Ready(output) = poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await {
        return Ok(output);
    }
    timeout(limit, future).await
}

/// A connection's limit on waits that follow one another (the server's wait for the next
/// request, the client's wait for a response head), with a sleep that is only moved when it
/// fires too early (see the module doc).
pub(crate) struct IdleTimer {
    limit: Duration,
    /// Created by the first wait that has to sleep; `None` on connections that never waited.
    sleep: Option<Pin<Box<Sleep>>>,
    /// The deadline of the current wait, once the wait has begun.
    deadline: Option<Instant>,
}

impl IdleTimer {
    pub(crate) fn new(limit: Duration) -> Self {
        IdleTimer {
            limit,
            sleep: None,
            deadline: None,
        }
    }

    /// Ends the current wait: the next [`IdleTimer::poll_expired`] begins a new one.
    pub(crate) fn reset(&mut self) {
        self.deadline = None;
    }

    /// Begins a new wait now, rather than at the next poll, and returns its deadline.
    pub(crate) fn begin(&mut self) -> Instant {
        let deadline = Instant::now() + self.limit;
        self.deadline = Some(deadline);
        deadline
    }

    /// Ready when the current wait (begun by the first call after [`IdleTimer::reset`]) has
    /// lasted `limit`.
    pub(crate) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let limit = self.limit;
        let deadline = *self.deadline.get_or_insert_with(|| Instant::now() + limit);
        // An existing sleep is set for an earlier wait's deadline, never a later one: the clock
        // only moves forward.
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(sleep_until(deadline)));
        loop {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if Instant::now() >= deadline {
                return Poll::Ready(());
            }
            // The sleep belonged to an earlier wait: move it to this one's deadline, which
            // registers the waker again.
            sleep.as_mut().reset(deadline);
        }
    }
}

/// Runs `future` until it completes (`Some`) or the current wait of `timer` expires (`None`).
pub(crate) async fn within<F: Future>(timer: &mut IdleTimer, future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        timer.poll_expired(cx).map(|()| None)
    })
    .await
}
