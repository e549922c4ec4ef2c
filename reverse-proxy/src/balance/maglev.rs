//! Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software Network
//! Load Balancer", NSDI 2016, section 3.4).
//!
//! A lookup table of `M` slots (`M` prime, much larger than the number of endpoints) maps a
//! key to an endpoint in one step: `table[key % M]`. The interest is in how the table is
//! filled, so that every endpoint owns almost exactly its share of slots *and* a change of
//! endpoints rewrites few slots.
//!
//! **The permutation.** Each endpoint has its own order of preference over the `M` slots,
//! derived from two hashes of its address:
//!
//! ```text
//! offset = h1(address) mod M
//! skip   = h2(address) mod (M - 1) + 1           (1 ..= M-1, never 0)
//! permutation[j] = (offset + j * skip) mod M     for j = 0, 1, 2, ...
//! ```
//!
//! Because `M` is prime, every `skip` is coprime with it, so `permutation` visits each slot
//! exactly once: it is a permutation of the table, a different one per endpoint.
//!
//! **The fill.** Endpoints take turns; on its turn an endpoint claims the next slot of its
//! permutation that nobody has claimed yet. With equal weights, turns go round robin until
//! the table is full, so every endpoint ends with `M / N` slots, give or take one. With
//! weights, an endpoint earns turns in proportion to its weight (an endpoint of weight `w`
//! gets `w / max_weight` of a turn per round; credit carries over).
//!
//! ```text
//! M = 7     A: offset 3, skip 4 -> 3 0 4 1 5 2 6        table after the fill:
//!           B: offset 0, skip 2 -> 0 2 4 6 1 3 5        slot: 0 1 2 3 4 5 6
//!           C: offset 3, skip 1 -> 3 4 5 6 0 1 2        who:  B A B A C C A
//! turn 1: A takes 3, B takes 0, C wants 3 (taken) -> 4;
//! turn 2: A wants 0, 4 (taken) -> 1, B takes 2, C takes 5; turn 3: A wants 5, 2 -> 6: full.
//! ```
//!
//! **Why little moves.** When an endpoint leaves, the others' permutations do not change, and
//! most of the slots each one claimed first are still free when its turn comes, so it claims
//! them again. The slots of the endpoint that left are shared out among the others, plus a
//! small extra churn where claims shift (the paper measures a few percent of the table). So
//! about 1/N of the keys move, a little more than with a ring, in exchange for a flatter
//! spread and O(1) lookups.
//!
//! **Ineligible endpoints.** Rebuilding the table on every health change would cost O(M) per
//! change and move a little more than necessary. Instead the lookup walks on from the key's
//! slot to the next slot whose endpoint is eligible: slots are interleaved pseudo-randomly,
//! so an unhealthy endpoint's keys spread over the others in proportion to their slots, and
//! no other key moves.

use super::{Balancer, Candidates, PickRng, hash_bytes, key};
use crate::config::EndpointConfig;

/// Marks a slot nobody has claimed yet while the table is filled.
const EMPTY: u32 = u32::MAX;

#[derive(Debug)]
pub struct Maglev {
    /// Endpoint index per slot; `len()` is the prime `M`.
    table: Vec<u32>,
    /// Keys for requests that carry none.
    rng: PickRng,
}

impl Maglev {
    /// Builds the table. `table_size` must be a prime above `endpoints.len()` (checked by the
    /// config's validation).
    pub fn new(endpoints: &[EndpointConfig], table_size: u64, seed: u64) -> Self {
        Maglev {
            table: fill(endpoints, table_size),
            rng: PickRng::new(seed),
        }
    }
}

/// The table for these endpoints: their permutations, then the fill.
fn fill(endpoints: &[EndpointConfig], m: u64) -> Vec<u32> {
    let prefs: Vec<(u64, u64)> = endpoints
        .iter()
        .map(|e| {
            let h1 = hash_bytes(e.address.to_string().as_bytes());
            // A second, independent hash: the first one mixed once more with a constant.
            let h2 = key::finalize(h1 ^ 0x5851_f42d_4c95_7f2d);
            (h1 % m, h2 % (m - 1) + 1)
        })
        .collect();
    let weights: Vec<u64> = endpoints.iter().map(|e| u64::from(e.weight)).collect();
    fill_from(&prefs, &weights, m)
}

/// The fill of the module documentation, from each endpoint's `(offset, skip)`.
fn fill_from(prefs: &[(u64, u64)], weights: &[u64], m: u64) -> Vec<u32> {
    let mut table = vec![EMPTY; m as usize];
    let Some(&max_weight) = weights.iter().max() else {
        return table;
    };
    let mut next = vec![0u64; prefs.len()];
    let mut credit = vec![0u64; prefs.len()];
    let mut filled = 0u64;
    loop {
        for (i, &(offset, skip)) in prefs.iter().enumerate() {
            credit[i] += weights[i];
            while credit[i] >= max_weight {
                credit[i] -= max_weight;
                // Terminates: the permutation visits every slot, and some slot is empty.
                loop {
                    let slot = ((offset + next[i] * skip) % m) as usize;
                    next[i] += 1;
                    if table[slot] == EMPTY {
                        table[slot] = i as u32;
                        filled += 1;
                        break;
                    }
                }
                if filled == m {
                    return table;
                }
            }
        }
    }
}

impl Balancer for Maglev {
    fn pick(&self, candidates: &dyn Candidates, key: Option<u64>) -> Option<usize> {
        let m = self.table.len();
        if m == 0 {
            return None;
        }
        let key = key.unwrap_or_else(|| self.rng.next_u64());
        let start = (key % m as u64) as usize;
        (0..m)
            .map(|step| self.table[(start + step) % m] as usize)
            .find(|&i| i < candidates.count() && candidates.is_eligible(i))
    }
}

#[cfg(test)]
mod tests {
    use rand::RngExt;

    use super::*;
    use crate::balance::testing::{Table, assert_shares, histogram};

    fn endpoints(weights: &[u32]) -> Vec<EndpointConfig> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| EndpointConfig {
                address: format!("10.0.1.{}:8080", i + 1).parse().unwrap(),
                weight,
                health_address: None,
            })
            .collect()
    }

    fn slots_per_endpoint(table: &[u32], n: usize) -> Vec<usize> {
        let mut counts = vec![0; n];
        for &owner in table {
            counts[owner as usize] += 1;
        }
        counts
    }

    #[test]
    fn every_slot_is_filled_and_shares_are_within_one_slot() {
        let table = fill(&endpoints(&[1; 7]), 65_537);
        assert!(table.iter().all(|&owner| owner != EMPTY));
        let counts = slots_per_endpoint(&table, 7);
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(max - min <= 1, "{counts:?}");
    }

    #[test]
    fn slots_follow_the_weights() {
        let weights = [1, 2, 4];
        let counts = slots_per_endpoint(&fill(&endpoints(&weights), 65_537), 3);
        assert_shares(&counts, &weights, 0.01);
    }

    #[test]
    fn keys_spread_in_proportion_to_weight() {
        let mut rng = harness::seeded_rng();
        eprintln!("seed = {} (replay with TEST_SEED={0})", rng.seed());
        let weights = [3, 1, 1, 1];
        let maglev = Maglev::new(&endpoints(&weights), 65_537, 0);
        let table = Table::all_eligible(4);
        let counts = histogram(&maglev, &table, 100_000, |_| Some(rng.random()));
        assert_shares(&counts, &weights, 0.05);
    }

    #[test]
    fn removing_one_of_n_endpoints_moves_about_one_nth_of_the_keys() {
        let mut rng = harness::seeded_rng();
        eprintln!("seed = {} (replay with TEST_SEED={0})", rng.seed());
        let n = 8;
        let all = endpoints(&vec![1; n]);
        let gone = rng.random_range(0..n);
        let mut rest = all.clone();
        rest.remove(gone);
        let before = Maglev::new(&all, 65_537, 0);
        let after = Maglev::new(&rest, 65_537, 0);

        let (full, smaller) = (Table::all_eligible(n), Table::all_eligible(n - 1));
        let keys = 100_000;
        let (mut moved, mut moved_from_staying) = (0, 0);
        for _ in 0..keys {
            let key = rng.random();
            let old = &all[before.pick(&full, Some(key)).unwrap()];
            let new = &rest[after.pick(&smaller, Some(key)).unwrap()];
            if old.address != new.address {
                moved += 1;
                if old.address != all[gone].address {
                    moved_from_staying += 1;
                }
            }
        }
        let fraction = moved as f64 / keys as f64;
        let extra = moved_from_staying as f64 / keys as f64;
        let ideal = 1.0 / n as f64;
        eprintln!(
            "maglev: {:.2}% of keys moved ({:.2}% from staying endpoints), 1/N = {:.2}%",
            fraction * 100.0,
            extra * 100.0,
            ideal * 100.0
        );
        assert!(
            fraction >= ideal * 0.9,
            "the removed endpoint's keys must move"
        );
        assert!(fraction <= ideal * 1.5, "{fraction} moved, ideal {ideal}");
    }

    #[test]
    fn an_ineligible_endpoint_hands_its_keys_on_and_no_other_key_moves() {
        let maglev = Maglev::new(&endpoints(&[1; 5]), 65_537, 0);
        let mut table = Table::all_eligible(5);
        let keys: Vec<u64> = (0..5000u64).map(|k| hash_bytes(&k.to_le_bytes())).collect();
        let healthy: Vec<_> = keys.iter().map(|&k| maglev.pick(&table, Some(k))).collect();
        table.eligible[2] = false;
        let mut handed_on = vec![0; 5];
        for (&k, &was) in keys.iter().zip(&healthy) {
            let now = maglev.pick(&table, Some(k)).unwrap();
            if was == Some(2) {
                handed_on[now] += 1;
            } else {
                assert_eq!(Some(now), was);
            }
        }
        assert_eq!(handed_on[2], 0);
        // The orphaned keys are shared by all four others, not dumped on one.
        assert!(
            handed_on.iter().enumerate().all(|(i, &c)| i == 2 || c > 0),
            "{handed_on:?}"
        );
    }

    #[test]
    fn the_example_of_the_documentation_fills_as_shown() {
        let prefs = [(3, 4), (0, 2), (3, 1)];
        assert_eq!(fill_from(&prefs, &[1, 1, 1], 7), [1, 0, 1, 0, 2, 2, 0]);
    }
}
