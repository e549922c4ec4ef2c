//! Random: each request goes to an endpoint drawn at random, in proportion to weight.
//!
//! No shared state at all between picks (one atomic add for the random number), which is why
//! it suits many independent proxies in front of one cluster: they cannot fall into step the
//! way round robins started together can. Its spread is only even on average: over n requests
//! each endpoint gets its share plus or minus about sqrt(n).

use super::{Balancer, Candidates, PickRng};

#[derive(Debug)]
pub struct Random {
    weights: Vec<u32>,
    rng: PickRng,
}

impl Random {
    pub fn new(weights: &[u32], seed: u64) -> Self {
        Random {
            weights: weights.to_vec(),
            rng: PickRng::new(seed),
        }
    }
}

impl Balancer for Random {
    fn pick(&self, candidates: &dyn Candidates, _key: Option<u64>) -> Option<usize> {
        let n = self.weights.len().min(candidates.count());
        let eligible_weight: u64 = (0..n)
            .filter(|&i| candidates.is_eligible(i))
            .map(|i| u64::from(self.weights[i]))
            .sum();
        if eligible_weight == 0 {
            return None;
        }
        // A point in [0, eligible_weight) lands in one endpoint's stretch of the line.
        let mut point = self.rng.below(eligible_weight);
        for i in (0..n).filter(|&i| candidates.is_eligible(i)) {
            let weight = u64::from(self.weights[i]);
            if point < weight {
                return Some(i);
            }
            point -= weight;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::{Table, assert_shares, histogram};

    fn seed() -> u64 {
        let seed = harness::seeded_rng().seed();
        eprintln!("random seed = {seed} (replay with TEST_SEED={seed})");
        seed
    }

    #[test]
    fn picks_follow_the_weights() {
        let weights = [1, 2, 3, 4];
        let table = Table::all_eligible(4);
        let counts = histogram(&Random::new(&weights, seed()), &table, 100_000, |_| None);
        assert_shares(&counts, &weights, 0.05);
    }

    #[test]
    fn ineligible_endpoints_are_left_out_of_the_draw() {
        let weights = [1, 1, 1];
        let mut table = Table::all_eligible(3);
        table.eligible[2] = false;
        let counts = histogram(&Random::new(&weights, seed()), &table, 30_000, |_| None);
        assert_eq!(counts[2], 0);
        assert_shares(&counts[..2], &weights[..2], 0.05);
    }
}
