//! Power of two choices ("least request" in Envoy): pick two distinct eligible endpoints at
//! random, send the request to the less loaded of the two (load relative to weight).
//!
//! Mitzenmacher showed that this one extra look brings the maximum load down from
//! O(log n / log log n) (one random choice) to O(log log n), nearly as good as asking every
//! endpoint, and it costs two reads instead of n. It also avoids least-connections' herd: the
//! idlest endpoint is only in a sample with probability about 2/n, so concurrent picks do
//! not all land on it. The heaviest endpoint is never picked while another is eligible.

use super::{Balancer, Candidates, PickRng, count_eligible, lighter, nth_eligible};

#[derive(Debug)]
pub struct PowerOfTwoChoices {
    weights: Vec<u32>,
    rng: PickRng,
}

impl PowerOfTwoChoices {
    pub fn new(weights: &[u32], seed: u64) -> Self {
        PowerOfTwoChoices {
            weights: weights.to_vec(),
            rng: PickRng::new(seed),
        }
    }
}

impl Balancer for PowerOfTwoChoices {
    fn pick(&self, candidates: &dyn Candidates, _key: Option<u64>) -> Option<usize> {
        let eligible = count_eligible(candidates);
        if eligible <= 1 {
            return nth_eligible(candidates, 0);
        }
        // Two distinct positions among the eligible: the second is drawn from one fewer and
        // shifted past the first.
        let first = self.rng.below(eligible as u64) as usize;
        let mut second = self.rng.below(eligible as u64 - 1) as usize;
        if second >= first {
            second += 1;
        }
        let a = nth_eligible(candidates, first)?;
        let b = nth_eligible(candidates, second)?;
        let (load_a, load_b) = (candidates.in_flight(a), candidates.in_flight(b));
        if lighter(load_b, self.weights[b], load_a, self.weights[a]) {
            Some(b)
        } else {
            Some(a)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::{Table, assert_shares, histogram};

    fn seed() -> u64 {
        let seed = harness::seeded_rng().seed();
        eprintln!("p2c seed = {seed} (replay with TEST_SEED={seed})");
        seed
    }

    #[test]
    fn with_equal_loads_the_spread_is_uniform() {
        let table = Table::all_eligible(5);
        let p2c = PowerOfTwoChoices::new(&[1; 5], seed());
        let counts = histogram(&p2c, &table, 50_000, |_| None);
        assert_shares(&counts, &[1; 5], 0.05);
    }

    #[test]
    fn the_most_loaded_endpoint_is_never_picked() {
        let table = Table::all_eligible(4);
        *table.load.borrow_mut() = vec![1, 1, 50, 1];
        let p2c = PowerOfTwoChoices::new(&[1; 4], seed());
        let counts = histogram(&p2c, &table, 10_000, |_| None);
        assert_eq!(counts[2], 0, "{counts:?}");
    }

    #[test]
    fn with_load_following_the_picks_the_loads_stay_close() {
        // Requests that never finish: the worst endpoint's load stays near the mean.
        let table = Table::all_eligible(10);
        let p2c = PowerOfTwoChoices::new(&[1; 10], seed());
        for _ in 0..10_000 {
            let i = p2c.pick(&table, None).unwrap();
            table.load.borrow_mut()[i] += 1;
        }
        let loads = table.load.borrow();
        let (min, max) = (loads.iter().min().unwrap(), loads.iter().max().unwrap());
        assert!(max - min <= 10, "loads spread too far: {loads:?}");
    }

    #[test]
    fn only_eligible_endpoints_are_sampled() {
        let mut table = Table::all_eligible(4);
        table.eligible = vec![false, true, false, false];
        let p2c = PowerOfTwoChoices::new(&[1; 4], seed());
        assert_eq!(p2c.pick(&table, None), Some(1));
        table.eligible[1] = false;
        assert_eq!(p2c.pick(&table, None), None);
    }
}
