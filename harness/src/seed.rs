//! Seeded randomness that a failing test can replay.
//!
//! A randomized test is only useful if its failures can be reproduced. Every random choice a test
//! makes therefore comes from one [`StdRng`] seeded by a single `u64`, and that seed is printed
//! when the test fails:
//!
//! ```text
//! seed = 8410943116263735042 (replay with TEST_SEED=8410943116263735042)
//! ```
//!
//! Running the test again with that environment variable makes the same choices. Without it each
//! run draws a fresh seed from the operating system, so repeated runs explore different cases.
//!
//! Only the test's own choices are replayed: thread scheduling and network timing are not under
//! the seed's control. Pass `rng.random::<u64>()` to components that take a seed (such as
//! [`crate::FaultProxy::start_seeded`]) so that their choices are covered by the same seed.

use std::convert::Infallible;

use rand::rngs::{StdRng, SysRng};
use rand::{SeedableRng, TryRng};

/// Environment variable that fixes the seed of every [`seeded_rng`] in the process.
const SEED_ENV: &str = "TEST_SEED";

/// A seeded random number generator that prints its seed if the test panics.
///
/// It implements [`rand::Rng`], so `rand::RngExt` methods (`random`, `random_range`, ...) work
/// on it directly.
#[derive(Debug)]
pub struct TestRng {
    seed: u64,
    rng: StdRng,
}

/// Returns a [`TestRng`] seeded from `TEST_SEED` if set, or else from the operating system.
///
/// # Panics
///
/// If `TEST_SEED` is set but is not a decimal `u64`, or the OS has no entropy to give.
pub fn seeded_rng() -> TestRng {
    let seed = match std::env::var(SEED_ENV) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{SEED_ENV}={text:?} is not a u64: {e}")),
        Err(_) => SysRng.try_next_u64().expect("the OS random source failed"),
    };
    TestRng::from_seed(seed)
}

impl TestRng {
    /// A generator with an explicit seed, for tests that pin one case.
    pub fn from_seed(seed: u64) -> TestRng {
        TestRng {
            seed,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The seed this generator started from.
    pub fn seed(&self) -> u64 {
        self.seed
    }
}

impl TryRng for TestRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        self.rng.try_next_u32()
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        self.rng.try_next_u64()
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.rng.try_fill_bytes(dst)
    }
}

impl Drop for TestRng {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "seed = {seed} (replay with {SEED_ENV}={seed})",
                seed = self.seed
            );
        }
    }
}
