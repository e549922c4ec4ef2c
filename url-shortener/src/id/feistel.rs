//! A keyed permutation of `0..domain`: a balanced Feistel network with cycle walking.
//!
//! A Feistel network turns any round function `F` into a bijection. Split the input into
//! halves `L` and `R` of `half_bits` each; one round maps `(L, R)` to `(R, L ^ F(k, R))`, and
//! is undone by `(L, R) = (R ^ F(k, L), L)` whatever `F` is. Four rounds with pseudo-random
//! round functions (Luby and Rackoff, 1988) make the result look random to anyone without the
//! key. Here `F` is the `splitmix64` finaliser of the half xored with a round key: this is
//! obfuscation of the order of ids, not encryption of secrets.
//!
//! The network permutes `0..2^(2 * half_bits)`, the smallest even power of two covering the
//! domain (`2^42` for `62^7`). To stay inside the domain it *cycle-walks*: apply the network
//! again until the value falls inside. Because the network is a permutation, the walk from a
//! value inside the domain follows its cycle and must come back into the domain, and it does
//! so at a value no other input reaches first; the result is a bijection on the domain
//! (Black and Rogaway, "Ciphers with arbitrary finite domains", 2002). With `62^7 / 2^42 =
//! 0.8` the walk takes 1.25 steps on average.

const ROUNDS: usize = 4;

/// A bijection on `0..domain`, chosen by a 64-bit key.
#[derive(Clone, Debug)]
pub struct Feistel {
    round_keys: [u64; ROUNDS],
    half_bits: u32,
    domain: u64,
}

impl Feistel {
    /// The permutation of `0..domain` for `key`.
    ///
    /// # Panics
    ///
    /// If `domain` is below 2 or above `2^62` (the halves would not fit the arithmetic).
    pub fn new(key: u64, domain: u64) -> Self {
        assert!(
            (2..=1 << 62).contains(&domain),
            "Feistel domain {domain} out of range"
        );
        let bits = u64::BITS - (domain - 1).leading_zeros();
        let mut state = key;
        let round_keys = std::array::from_fn(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            mix(state)
        });
        Feistel {
            round_keys,
            half_bits: bits.div_ceil(2),
            domain,
        }
    }

    /// The image of `x`, in `0..domain`.
    ///
    /// # Panics
    ///
    /// If `x` is outside the domain.
    pub fn permute(&self, x: u64) -> u64 {
        assert!(x < self.domain, "{x} is outside the domain {}", self.domain);
        let mut y = self.forward(x);
        while y >= self.domain {
            y = self.forward(y);
        }
        y
    }

    /// The `x` whose image is `y`: the inverse of [`permute`](Self::permute).
    ///
    /// # Panics
    ///
    /// If `y` is outside the domain.
    pub fn invert(&self, y: u64) -> u64 {
        assert!(y < self.domain, "{y} is outside the domain {}", self.domain);
        let mut x = self.backward(y);
        while x >= self.domain {
            x = self.backward(x);
        }
        x
    }

    fn mask(&self) -> u64 {
        (1 << self.half_bits) - 1
    }

    fn round(&self, key: u64, half: u64) -> u64 {
        mix(half ^ key) & self.mask()
    }

    fn forward(&self, x: u64) -> u64 {
        let (mut left, mut right) = (x >> self.half_bits, x & self.mask());
        for &key in &self.round_keys {
            (left, right) = (right, left ^ self.round(key, right));
        }
        (left << self.half_bits) | right
    }

    fn backward(&self, y: u64) -> u64 {
        let (mut left, mut right) = (y >> self.half_bits, y & self.mask());
        for &key in self.round_keys.iter().rev() {
            (left, right) = (right ^ self.round(key, left), left);
        }
        (left << self.half_bits) | right
    }
}

/// The `splitmix64` finaliser: every input bit affects every output bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;
    use crate::id::CODE_SPACE;

    /// Every small domain, odd and even bit widths, is mapped onto itself one to one.
    #[test]
    fn small_domains_are_permuted_exhaustively() {
        for domain in [2, 3, 61, 62, 1000, 3844, 4096, 62 * 62 * 62] {
            let feistel = Feistel::new(domain ^ 0xfeed, domain);
            let images: HashSet<u64> = (0..domain).map(|x| feistel.permute(x)).collect();
            assert_eq!(images.len() as u64, domain, "domain {domain}");
            assert!(images.iter().all(|&y| y < domain), "domain {domain}");
        }
    }

    #[test]
    fn different_keys_give_different_permutations() {
        let (a, b) = (Feistel::new(1, CODE_SPACE), Feistel::new(2, CODE_SPACE));
        let differing = (0..100).filter(|&x| a.permute(x) != b.permute(x)).count();
        assert!(differing > 95, "{differing}");
    }

    #[test]
    fn outputs_are_not_in_input_order() {
        let feistel = Feistel::new(7, CODE_SPACE);
        let images: Vec<u64> = (0..1000).map(|x| feistel.permute(x)).collect();
        let ascending = images.windows(2).filter(|w| w[0] < w[1]).count();
        // A random order has about half its neighbours ascending.
        assert!((350..650).contains(&ascending), "{ascending}");
    }

    proptest! {
        #[test]
        fn invert_undoes_permute(key in any::<u64>(), x in 0..CODE_SPACE) {
            let feistel = Feistel::new(key, CODE_SPACE);
            let y = feistel.permute(x);
            prop_assert!(y < CODE_SPACE);
            prop_assert_eq!(feistel.invert(y), x);
        }

        #[test]
        fn distinct_ids_get_distinct_images(key in any::<u64>(), a in 0..CODE_SPACE, b in 0..CODE_SPACE) {
            prop_assume!(a != b);
            let feistel = Feistel::new(key, CODE_SPACE);
            prop_assert_ne!(feistel.permute(a), feistel.permute(b));
        }

        #[test]
        fn any_domain_is_a_bijection(key in any::<u64>(), domain in 2u64..5000) {
            let feistel = Feistel::new(key, domain);
            let images: HashSet<u64> = (0..domain).map(|x| feistel.permute(x)).collect();
            prop_assert_eq!(images.len() as u64, domain);
            prop_assert!(images.iter().all(|&y| y < domain));
        }
    }
}
