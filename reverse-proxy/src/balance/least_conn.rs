//! Least connections: the endpoint with the fewest requests in flight, relative to its
//! weight (load / weight, compared without division).
//!
//! It adapts to requests of very different cost, which round robin cannot: an endpoint stuck
//! on slow requests stops getting new ones. Its weakness is the herd: many proxies (or many
//! requests arriving between two load updates) all see the same idlest endpoint and pile onto
//! it; `p2c` avoids that by looking at two random endpoints only.
//!
//! Ties are common (every endpoint idle at low load), so the scan starts at a rotating
//! position and keeps the first lightest endpoint it meets: ties are broken round robin
//! instead of always favouring endpoint 0.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Balancer, Candidates, lighter};

#[derive(Debug)]
pub struct LeastConn {
    weights: Vec<u32>,
    start: AtomicUsize,
}

impl LeastConn {
    pub fn new(weights: &[u32]) -> Self {
        LeastConn {
            weights: weights.to_vec(),
            start: AtomicUsize::new(0),
        }
    }
}

impl Balancer for LeastConn {
    fn pick(&self, candidates: &dyn Candidates, _key: Option<u64>) -> Option<usize> {
        let n = self.weights.len().min(candidates.count());
        if n == 0 {
            return None;
        }
        let start = self.start.fetch_add(1, Ordering::Relaxed) % n;
        let mut best: Option<(usize, u64)> = None;
        for step in 0..n {
            let i = (start + step) % n;
            if !candidates.is_eligible(i) {
                continue;
            }
            let load = candidates.in_flight(i);
            let better = match best {
                None => true,
                Some((b, b_load)) => lighter(load, self.weights[i], b_load, self.weights[b]),
            };
            if better {
                best = Some((i, load));
            }
        }
        best.map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::{Table, histogram};

    #[test]
    fn the_least_loaded_endpoint_is_picked() {
        let table = Table::all_eligible(4);
        *table.load.borrow_mut() = vec![5, 2, 7, 3];
        let lc = LeastConn::new(&[1, 1, 1, 1]);
        for _ in 0..8 {
            assert_eq!(lc.pick(&table, None), Some(1));
        }
    }

    #[test]
    fn load_is_relative_to_weight() {
        let table = Table::all_eligible(2);
        // 5 requests on weight 4 (1.25 each) is lighter than 2 on weight 1.
        *table.load.borrow_mut() = vec![5, 2];
        assert_eq!(LeastConn::new(&[4, 1]).pick(&table, None), Some(0));
    }

    #[test]
    fn with_load_following_the_picks_the_spread_is_even() {
        // Each pick adds a request that never finishes: the loads stay level.
        let table = Table::all_eligible(5);
        let lc = LeastConn::new(&[1; 5]);
        for _ in 0..500 {
            let i = lc.pick(&table, None).unwrap();
            table.load.borrow_mut()[i] += 1;
        }
        assert_eq!(*table.load.borrow(), vec![100; 5]);
    }

    #[test]
    fn ties_are_broken_in_turn() {
        let table = Table::all_eligible(4);
        let counts = histogram(&LeastConn::new(&[1; 4]), &table, 400, |_| None);
        assert_eq!(counts, vec![100; 4]);
    }

    #[test]
    fn ineligible_endpoints_are_never_picked_even_when_idle() {
        let mut table = Table::all_eligible(3);
        table.eligible[0] = false;
        *table.load.borrow_mut() = vec![0, 9, 4];
        assert_eq!(LeastConn::new(&[1; 3]).pick(&table, None), Some(2));
    }
}
