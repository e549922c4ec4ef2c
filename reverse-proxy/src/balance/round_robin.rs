//! Round robin: endpoint 0, 1, 2, ..., n-1, 0, ... Weights are ignored (use
//! `weighted_round_robin` for them).
//!
//! The turn is one atomic counter shared by every worker thread, so the order is global, not
//! per thread. An ineligible endpoint is skipped for the next one in order; its turn is not
//! given back, so while it is out, the endpoint after it gets two turns in a row. That is what
//! nginx does too, and it keeps a pick O(1) when everything is healthy.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Balancer, Candidates};

#[derive(Debug)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    pub fn new(_endpoints: usize) -> Self {
        RoundRobin {
            next: AtomicUsize::new(0),
        }
    }
}

impl Balancer for RoundRobin {
    fn pick(&self, candidates: &dyn Candidates, _key: Option<u64>) -> Option<usize> {
        let n = candidates.count();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        (0..n)
            .map(|step| (start + step) % n)
            .find(|&i| candidates.is_eligible(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::{Table, histogram};

    #[test]
    fn every_endpoint_gets_the_same_number_of_turns() {
        let table = Table::all_eligible(4);
        let counts = histogram(&RoundRobin::new(4), &table, 4000, |_| None);
        assert_eq!(counts, vec![1000; 4]);
    }

    #[test]
    fn turns_go_in_order() {
        let table = Table::all_eligible(3);
        let rr = RoundRobin::new(3);
        let order: Vec<_> = (0..6).map(|_| rr.pick(&table, None).unwrap()).collect();
        assert_eq!(order, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn an_ineligible_endpoint_is_skipped_and_the_rest_share_evenly() {
        let mut table = Table::all_eligible(4);
        table.eligible[1] = false;
        let counts = histogram(&RoundRobin::new(4), &table, 4000, |_| None);
        assert_eq!(counts[1], 0);
        // Endpoint 2 gets endpoint 1's turns as well.
        assert_eq!(counts, vec![1000, 0, 2000, 1000]);
        table.eligible = vec![false; 4];
        assert_eq!(RoundRobin::new(4).pick(&table, None), None);
    }
}
