//! Smooth weighted round robin, as nginx balances upstreams with weights.
//!
//! Plain weighted round robin gives endpoint A (weight 5) five turns in a row, then B, then
//! C: bursts. The smooth variant spreads A's turns out. Each endpoint keeps a `current` value;
//! on every pick:
//!
//! ```text
//! for each eligible endpoint:  current += weight
//! pick the endpoint with the largest current (the first one on a tie)
//! picked.current -= sum of the eligible endpoints' weights
//! ```
//!
//! The values always sum to zero, so over any `sum of weights` consecutive picks each
//! endpoint is picked exactly `weight` times, and an endpoint is never picked twice in a row
//! while another has at least as much weight. With weights 5, 1, 1 the order is
//! `a a b a c a a`, not `a a a a a b c`.
//!
//! An ineligible endpoint neither gains weight nor is picked; when it comes back, it starts
//! from where it stopped.

use std::sync::Mutex;

use super::{Balancer, Candidates};

#[derive(Debug)]
pub struct WeightedRoundRobin {
    weights: Vec<i64>,
    /// A std mutex: the critical section is a loop over the endpoints, with no `.await`.
    current: Mutex<Vec<i64>>,
}

impl WeightedRoundRobin {
    pub fn new(weights: &[u32]) -> Self {
        WeightedRoundRobin {
            weights: weights.iter().map(|&w| i64::from(w)).collect(),
            current: Mutex::new(vec![0; weights.len()]),
        }
    }
}

impl Balancer for WeightedRoundRobin {
    fn pick(&self, candidates: &dyn Candidates, _key: Option<u64>) -> Option<usize> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let mut total = 0;
        let mut best: Option<usize> = None;
        for i in 0..self.weights.len().min(candidates.count()) {
            if !candidates.is_eligible(i) {
                continue;
            }
            current[i] += self.weights[i];
            total += self.weights[i];
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let best = best?;
        current[best] -= total;
        Some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::{Table, histogram};

    #[test]
    fn turns_are_spread_out_as_in_nginx() {
        let table = Table::all_eligible(3);
        let wrr = WeightedRoundRobin::new(&[5, 1, 1]);
        let order: String = (0..14)
            .map(|_| ["a", "b", "c"][wrr.pick(&table, None).unwrap()])
            .collect();
        assert_eq!(order, "aabacaaaabacaa");
    }

    #[test]
    fn each_cycle_gives_every_endpoint_exactly_its_weight() {
        let weights = [3, 1, 2, 4];
        let table = Table::all_eligible(4);
        let counts = histogram(&WeightedRoundRobin::new(&weights), &table, 10 * 100, |_| {
            None
        });
        assert_eq!(counts, vec![300, 100, 200, 400]);
    }

    #[test]
    fn an_ineligible_endpoint_gets_nothing_and_the_others_keep_their_ratio() {
        let mut table = Table::all_eligible(3);
        table.eligible[0] = false;
        let counts = histogram(&WeightedRoundRobin::new(&[5, 2, 1]), &table, 300, |_| None);
        assert_eq!(counts, vec![0, 200, 100]);
    }
}
