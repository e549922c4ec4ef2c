//! Handing out ids from blocks leased from a shared counter.
//!
//! Invariant: an id is handed out at most once across every instance on one store, provided
//! the store's lease is an atomic add that is durable before it returns. Each lease returns a
//! block no other lease overlaps; within a block the allocator hands ids out in order under a
//! lock. A process that dies loses the unused rest of its block: ids are unique, not dense.

use std::future::Future;
use std::ops::Range;

use tokio::sync::Mutex;

/// Default ids per lease: one store write per this many generated links. Larger blocks mean
/// fewer writes and larger gaps when an instance restarts.
pub const DEFAULT_BLOCK_SIZE: u64 = 1000;

/// Largest accepted block size, so a misconfiguration cannot burn through the code space:
/// 62^7 ids last 3.5 million leases of this size.
pub const MAX_BLOCK_SIZE: u64 = 1_000_000;

/// Hands out ids one at a time from the current block, leasing the next when it runs out.
#[derive(Debug)]
pub struct IdAllocator {
    block_size: u64,
    /// The unused rest of the current block. A tokio mutex: it is held across the lease, so
    /// concurrent callers wait for one lease instead of each taking a block.
    current: Mutex<Range<u64>>,
}

impl IdAllocator {
    /// An allocator that leases `block_size` ids at a time (1 to [`MAX_BLOCK_SIZE`]).
    pub fn new(block_size: u64) -> Self {
        assert!((1..=MAX_BLOCK_SIZE).contains(&block_size));
        IdAllocator {
            block_size,
            current: Mutex::new(0..0),
        }
    }

    /// The next id. When the block is used up, `lease(block_size)` is awaited for a new one;
    /// it must return a range of that many ids that no other lease returned.
    pub async fn next<F, Fut, E>(&self, lease: F) -> Result<u64, E>
    where
        F: FnOnce(u64) -> Fut,
        Fut: Future<Output = Result<Range<u64>, E>>,
    {
        let mut current = self.current.lock().await;
        if current.is_empty() {
            *current = lease(self.block_size).await?;
        }
        let id = current.start;
        current.start += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// A counter like the store's: one atomic add per lease.
    fn lease_from(counter: &AtomicU64, n: u64) -> std::future::Ready<Result<Range<u64>, ()>> {
        let end = counter.fetch_add(n, Ordering::SeqCst) + n;
        std::future::ready(Ok(end - n..end))
    }

    #[tokio::test]
    async fn one_lease_serves_a_whole_block() {
        let counter = AtomicU64::new(0);
        let leases = AtomicU64::new(0);
        let allocator = IdAllocator::new(10);
        let mut ids = Vec::new();
        for _ in 0..25 {
            let id = allocator
                .next(|n| {
                    leases.fetch_add(1, Ordering::SeqCst);
                    lease_from(&counter, n)
                })
                .await
                .unwrap();
            ids.push(id);
        }
        assert_eq!(ids, (0..25).collect::<Vec<_>>());
        assert_eq!(leases.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn allocators_sharing_a_counter_never_repeat_an_id() {
        let counter = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for instance in 0..4u64 {
            let counter = counter.clone();
            tasks.push(tokio::spawn(async move {
                let allocator = IdAllocator::new(instance + 3);
                let mut ids = Vec::new();
                for _ in 0..500 {
                    ids.push(allocator.next(|n| lease_from(&counter, n)).await.unwrap());
                    tokio::task::yield_now().await;
                }
                ids
            }));
        }
        let mut seen = HashSet::new();
        for task in tasks {
            for id in task.await.unwrap() {
                assert!(seen.insert(id), "id {id} handed out twice");
            }
        }
        assert_eq!(seen.len(), 2000);
    }

    #[tokio::test]
    async fn a_failed_lease_hands_out_nothing_and_the_next_call_retries() {
        let allocator = IdAllocator::new(5);
        let failed = allocator
            .next(|_| std::future::ready(Err::<Range<u64>, _>("store down")))
            .await;
        assert_eq!(failed, Err("store down"));
        let id = allocator
            .next(|_| std::future::ready(Ok::<_, &str>(100..105)))
            .await;
        assert_eq!(id, Ok(100));
    }
}
