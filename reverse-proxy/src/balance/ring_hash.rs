//! Consistent hashing on a ring with virtual nodes (Karger et al., 1997; ketama).
//!
//! Hash values are points on a circle of 2^64 positions. Each endpoint is placed on it many
//! times (its *virtual nodes*: `ring_virtual_nodes x weight` points, at the hashes of
//! `"<address>#<n>"`), and a key belongs to the first endpoint point at or after the key's own
//! hash, going clockwise:
//!
//! ```text
//!            key k ─┐
//!   ──●A──────●B────▼───●C───────●A────●B──── ... ──▶ (wraps around)
//!                       └─ k goes to C
//! ```
//!
//! Why it is "consistent": removing an endpoint removes only its own points, so only the keys
//! that were on it move (each to the next point clockwise, spread over the others by their
//! virtual nodes); every other key keeps its endpoint. With N endpoints that is about 1/N of
//! the keys, where `hash % N` would move almost all of them. Many virtual nodes per endpoint
//! make each endpoint's share of the circle close to its weight (160 points give a spread of
//! a few percent).
//!
//! Points depend only on the endpoint's address, never on its position in the list, so
//! reordering endpoints in the config moves nothing. An ineligible endpoint is skipped the
//! same way a removed one is: the key walks on to the next point of an eligible endpoint.
//! Lookup is a binary search: O(log(points)).

use super::{Balancer, Candidates, PickRng, hash_bytes};
use crate::config::EndpointConfig;

#[derive(Debug)]
pub struct RingHash {
    /// `(point, endpoint index)`, sorted by point.
    ring: Vec<(u64, u32)>,
    /// Keys for requests that carry none.
    rng: PickRng,
}

impl RingHash {
    pub fn new(endpoints: &[EndpointConfig], virtual_nodes: u32, seed: u64) -> Self {
        let mut ring = Vec::new();
        for (index, endpoint) in endpoints.iter().enumerate() {
            let points = u64::from(virtual_nodes) * u64::from(endpoint.weight);
            for n in 0..points {
                let name = format!("{}#{n}", endpoint.address);
                ring.push((hash_bytes(name.as_bytes()), index as u32));
            }
        }
        // Sorting by (point, index) makes the rare collision of two points deterministic.
        ring.sort_unstable();
        RingHash {
            ring,
            rng: PickRng::new(seed),
        }
    }
}

impl Balancer for RingHash {
    fn pick(&self, candidates: &dyn Candidates, key: Option<u64>) -> Option<usize> {
        if self.ring.is_empty() {
            return None;
        }
        let key = key.unwrap_or_else(|| self.rng.next_u64());
        let start = self.ring.partition_point(|&(point, _)| point < key);
        let len = self.ring.len();
        (0..len)
            .map(|step| self.ring[(start + step) % len].1 as usize)
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
                address: format!("10.0.0.{}:8080", i + 1).parse().unwrap(),
                weight,
                health_address: None,
            })
            .collect()
    }

    #[test]
    fn keys_spread_in_proportion_to_weight() {
        let mut rng = harness::seeded_rng();
        eprintln!("seed = {} (replay with TEST_SEED={0})", rng.seed());
        let keys: Vec<u64> = (0..100_000).map(|_| rng.random()).collect();
        for weights in [vec![1; 5], vec![1, 2, 3]] {
            let ring = RingHash::new(&endpoints(&weights), 160, 0);
            let table = Table::all_eligible(weights.len());
            let counts = histogram(&ring, &table, keys.len(), |i| Some(keys[i]));
            assert_shares(&counts, &weights, 0.15);
        }
    }

    #[test]
    fn removing_one_of_n_endpoints_moves_only_its_own_keys() {
        let mut rng = harness::seeded_rng();
        eprintln!("seed = {} (replay with TEST_SEED={0})", rng.seed());
        let n = 8;
        let all = endpoints(&vec![1; n]);
        let before = RingHash::new(&all, 160, 0);
        let gone = rng.random_range(0..n);
        let mut rest = all.clone();
        rest.remove(gone);
        let after = RingHash::new(&rest, 160, 0);

        let (full, smaller) = (Table::all_eligible(n), Table::all_eligible(n - 1));
        let keys = 100_000;
        let mut moved = 0;
        for _ in 0..keys {
            let key = rng.random();
            let old = &all[before.pick(&full, Some(key)).unwrap()];
            let new = &rest[after.pick(&smaller, Some(key)).unwrap()];
            if old.address != new.address {
                assert_eq!(
                    old.address, all[gone].address,
                    "a key of a staying endpoint moved"
                );
                moved += 1;
            }
        }
        let fraction = moved as f64 / keys as f64;
        let ideal = 1.0 / n as f64;
        eprintln!(
            "ring_hash: {:.2}% of keys moved, 1/N = {:.2}%",
            fraction * 100.0,
            ideal * 100.0
        );
        assert!(
            (fraction - ideal).abs() < ideal * 0.3,
            "{fraction} vs {ideal}"
        );
    }

    #[test]
    fn an_ineligible_endpoint_hands_its_keys_on_and_takes_them_back() {
        let all = endpoints(&[1; 4]);
        let ring = RingHash::new(&all, 160, 0);
        let mut table = Table::all_eligible(4);
        let keys: Vec<u64> = (0..2000u64).map(|k| hash_bytes(&k.to_le_bytes())).collect();
        let healthy: Vec<_> = keys.iter().map(|&k| ring.pick(&table, Some(k))).collect();
        table.eligible[3] = false;
        for (&k, &was) in keys.iter().zip(&healthy) {
            let now = ring.pick(&table, Some(k));
            if was != Some(3) {
                assert_eq!(now, was, "only the ineligible endpoint's keys move");
            } else {
                assert_ne!(now, Some(3));
            }
        }
        table.eligible[3] = true;
        let back: Vec<_> = keys.iter().map(|&k| ring.pick(&table, Some(k))).collect();
        assert_eq!(back, healthy);
    }

    #[test]
    fn the_same_key_always_reaches_the_same_endpoint() {
        let table = Table::all_eligible(3);
        let a = RingHash::new(&endpoints(&[1; 3]), 160, 1);
        let b = RingHash::new(&endpoints(&[1; 3]), 160, 2);
        for k in 0..100u64 {
            let key = hash_bytes(&k.to_le_bytes());
            assert_eq!(a.pick(&table, Some(key)), b.pick(&table, Some(key)));
        }
    }
}
