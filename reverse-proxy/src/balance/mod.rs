//! Load balancing: which endpoint of a cluster gets the next request.
//!
//! One file per algorithm, each named as in the config (`lb = "..."`) and the `--lb` flag, and
//! all behind one trait, [`Balancer`]:
//!
//! | file | algorithm | state per pick | good for |
//! |---|---|---|---|
//! | `round_robin.rs` | each endpoint in turn | one atomic counter | equal endpoints, equal requests |
//! | `weighted_round_robin.rs` | nginx's smooth weighted round robin | a weight per endpoint, behind a lock | unequal endpoints |
//! | `least_conn.rs` | fewest requests in flight, relative to weight | reads every endpoint's load | requests of very different cost |
//! | `p2c.rs` | the less loaded of two picked at random | two loads | the same, at O(1), without a herd on the idlest endpoint |
//! | `random.rs` | at random, in proportion to weight | none | many proxies in front of the same cluster |
//! | `ring_hash.rs` | consistent hashing on a ring with virtual nodes | the ring | affinity: a key keeps its endpoint |
//! | `maglev.rs` | Maglev consistent hashing | a lookup table | the same, with a flatter spread and O(1) lookups |
//!
//! # What a balancer sees
//!
//! A balancer is built once per cluster from the endpoints' addresses and weights, which do
//! not change until the configuration is reloaded. What does change between two picks (which
//! endpoints are healthy, how many requests each is serving) it reads at pick time through
//! [`Candidates`]. So health changes rebuild nothing, and the hashing balancers keep their
//! tables: a key whose endpoint stays eligible keeps it.
//!
//! An endpoint that is not eligible is skipped the way each algorithm finds natural (the next
//! one in turn, the next point on the ring, the next slot of the table). A balancer returns
//! `None` only when no endpoint is eligible; the cluster then decides what to do (see the
//! panic threshold in `cluster.rs`).

mod key;
mod least_conn;
mod maglev;
mod p2c;
mod random;
mod ring_hash;
mod round_robin;
mod weighted_round_robin;

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::config::{ClusterConfig, EndpointConfig};

pub(crate) use key::finalize;
pub use key::{HashKey, hash_bytes};

pub use least_conn::LeastConn;
pub use maglev::Maglev;
pub use p2c::PowerOfTwoChoices;
pub use random::Random;
pub use ring_hash::RingHash;
pub use round_robin::RoundRobin;
pub use weighted_round_robin::WeightedRoundRobin;

/// The live state of a cluster's endpoints, as a balancer sees it at the moment of a pick.
/// Indices are positions in the cluster's endpoint list.
pub trait Candidates {
    /// Number of endpoints (eligible or not).
    fn count(&self) -> usize;
    /// Whether endpoint `index` may get this request: healthy, not ejected, and not already
    /// tried by this request.
    fn is_eligible(&self, index: usize) -> bool;
    /// Requests in flight to endpoint `index`.
    fn in_flight(&self, index: usize) -> u64;
}

/// Picks an endpoint for a request.
pub trait Balancer: Send + Sync + std::fmt::Debug {
    /// The index of an eligible endpoint, or `None` when none is eligible. `key` is the hash
    /// of the request's affinity key (see [`HashKey`]); only the hashing balancers read it,
    /// and they treat a missing key as a random one.
    fn pick(&self, candidates: &dyn Candidates, key: Option<u64>) -> Option<usize>;
}

/// The balancing algorithms, named the same in the config file and the `--lb` flag.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Algorithm {
    /// Each endpoint in turn, ignoring weights.
    #[default]
    RoundRobin,
    /// nginx's smooth weighted round robin: turns in proportion to weight, spread out.
    WeightedRoundRobin,
    /// The endpoint with the fewest requests in flight (relative to its weight).
    LeastConn,
    /// Power of two choices: two endpoints at random, the less loaded of the two.
    P2c,
    /// An endpoint at random, in proportion to weight.
    Random,
    /// Consistent hashing on a ring with virtual nodes.
    RingHash,
    /// Google's Maglev consistent hashing: a lookup table filled from per-endpoint
    /// permutations.
    Maglev,
}

impl Algorithm {
    /// Every algorithm, in the order of the documentation.
    pub const ALL: [Algorithm; 7] = [
        Algorithm::RoundRobin,
        Algorithm::WeightedRoundRobin,
        Algorithm::LeastConn,
        Algorithm::P2c,
        Algorithm::Random,
        Algorithm::RingHash,
        Algorithm::Maglev,
    ];

    /// The name used in the config file, the `--lb` flag and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round_robin",
            Algorithm::WeightedRoundRobin => "weighted_round_robin",
            Algorithm::LeastConn => "least_conn",
            Algorithm::P2c => "p2c",
            Algorithm::Random => "random",
            Algorithm::RingHash => "ring_hash",
            Algorithm::Maglev => "maglev",
        }
    }
}

/// Builds the balancer a cluster's config asks for. `seed` drives the random choices
/// (`p2c`, `random`, and the hashing balancers for requests without a key), so a test can
/// replay them.
pub fn build(config: &ClusterConfig, seed: u64) -> Box<dyn Balancer> {
    let endpoints = &config.endpoints;
    match config.lb {
        Algorithm::RoundRobin => Box::new(RoundRobin::new(endpoints.len())),
        Algorithm::WeightedRoundRobin => Box::new(WeightedRoundRobin::new(&weights(endpoints))),
        Algorithm::LeastConn => Box::new(LeastConn::new(&weights(endpoints))),
        Algorithm::P2c => Box::new(PowerOfTwoChoices::new(&weights(endpoints), seed)),
        Algorithm::Random => Box::new(Random::new(&weights(endpoints), seed)),
        Algorithm::RingHash => Box::new(RingHash::new(endpoints, config.ring_virtual_nodes, seed)),
        Algorithm::Maglev => Box::new(Maglev::new(endpoints, config.maglev_table_size, seed)),
    }
}

fn weights(endpoints: &[EndpointConfig]) -> Vec<u32> {
    endpoints.iter().map(|e| e.weight).collect()
}

/// A lock-free random source for picks: SplitMix64, whose state is a counter, so one atomic
/// add per number and no lock between worker threads. Not for secrets; good enough to spread
/// requests, and seeded so that tests replay.
#[derive(Debug)]
pub struct PickRng {
    state: AtomicU64,
}

impl PickRng {
    /// SplitMix64's increment (the golden ratio in 64 bits).
    const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

    pub fn new(seed: u64) -> Self {
        PickRng {
            state: AtomicU64::new(seed),
        }
    }

    pub fn next_u64(&self) -> u64 {
        let state = self
            .state
            .fetch_add(Self::GAMMA, Ordering::Relaxed)
            .wrapping_add(Self::GAMMA);
        key::finalize(state)
    }

    /// A number in `0..bound` (`bound > 0`), by Lemire's multiply-shift: no division, and a
    /// bias of at most `bound / 2^64`, far below anything a distribution could show.
    pub fn below(&self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

/// Whether load `a` on weight `wa` is lighter than load `b` on weight `wb`, comparing
/// `a / wa < b / wb` without division.
pub(crate) fn lighter(a: u64, wa: u32, b: u64, wb: u32) -> bool {
    u128::from(a) * u128::from(wb) < u128::from(b) * u128::from(wa)
}

/// The `n`-th eligible endpoint (0-based), if there are more than `n`.
pub(crate) fn nth_eligible(candidates: &dyn Candidates, n: usize) -> Option<usize> {
    (0..candidates.count())
        .filter(|&i| candidates.is_eligible(i))
        .nth(n)
}

pub(crate) fn count_eligible(candidates: &dyn Candidates) -> usize {
    (0..candidates.count())
        .filter(|&i| candidates.is_eligible(i))
        .count()
}

/// A test double for [`Candidates`]: loads and eligibility set by the test.
#[cfg(test)]
pub(crate) mod testing {
    use std::cell::RefCell;

    use super::Candidates;

    pub(crate) struct Table {
        pub eligible: Vec<bool>,
        pub load: RefCell<Vec<u64>>,
    }

    impl Table {
        pub(crate) fn all_eligible(n: usize) -> Table {
            Table {
                eligible: vec![true; n],
                load: RefCell::new(vec![0; n]),
            }
        }
    }

    impl Candidates for Table {
        fn count(&self) -> usize {
            self.eligible.len()
        }
        fn is_eligible(&self, index: usize) -> bool {
            self.eligible[index]
        }
        fn in_flight(&self, index: usize) -> u64 {
            self.load.borrow()[index]
        }
    }

    /// How many of `picks` picks went to each endpoint.
    pub(crate) fn histogram(
        balancer: &dyn super::Balancer,
        table: &Table,
        picks: usize,
        mut key: impl FnMut(usize) -> Option<u64>,
    ) -> Vec<usize> {
        let mut counts = vec![0; table.count()];
        for i in 0..picks {
            let picked = balancer.pick(table, key(i)).expect("an eligible endpoint");
            assert!(
                table.is_eligible(picked),
                "picked ineligible endpoint {picked}"
            );
            counts[picked] += 1;
        }
        counts
    }

    /// Asserts that each endpoint got its share of `total` within `tolerance` (a fraction).
    pub(crate) fn assert_shares(counts: &[usize], weights: &[u32], tolerance: f64) {
        let total: usize = counts.iter().sum();
        let weight_sum: u32 = weights.iter().sum();
        for (i, (&count, &weight)) in counts.iter().zip(weights).enumerate() {
            let expected = total as f64 * f64::from(weight) / f64::from(weight_sum);
            let error = (count as f64 - expected).abs() / expected;
            assert!(
                error <= tolerance,
                "endpoint {i}: {count} picks, expected {expected:.0} (off by {:.1}%, tolerance {:.1}%); all: {counts:?}",
                error * 100.0,
                tolerance * 100.0
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_in_range_and_replays_from_its_seed() {
        let a = PickRng::new(7);
        let b = PickRng::new(7);
        for bound in [1, 2, 3, 10, 1000] {
            let (x, y) = (a.below(bound), b.below(bound));
            assert!(x < bound);
            assert_eq!(x, y);
        }
    }

    #[test]
    fn lighter_compares_load_per_unit_of_weight() {
        assert!(lighter(1, 1, 3, 2)); // 1 < 1.5
        assert!(!lighter(3, 2, 1, 1));
        assert!(!lighter(2, 2, 1, 1)); // equal is not lighter
    }
}
