//! Load balancing: which endpoint of a cluster gets the next request.
//!
//! One file per algorithm, each named as in the config (`lb = "..."`) and the `--lb` flag.

mod key;

use serde::{Deserialize, Serialize};

pub use key::{HashKey, hash_bytes};

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
