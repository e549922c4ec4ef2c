//! Short codes: where the numbers come from, how they are disguised, how they are spelt.
//!
//! ```text
//!   store counter ──lease a block──▶ IdAllocator ──id──▶ Feistel::permute ──▶ base62::encode
//!   (one atomic add       (hands the block out      (a keyed bijection     (7 characters,
//!    per block_size ids)   one id at a time)          on 0..62^7)            zero-padded)
//! ```
//!
//! # Ranges from a counter (the ticket-server pattern)
//!
//! The store holds one counter. An instance takes a *block* of ids with a single atomic add
//! ([`lease`]) and then hands them out from memory, so the store sees one write per
//! `block_size` links instead of one per link, and any number of instances sharing the store
//! never hand out the same id: each block belongs to exactly one lease. This is Flickr's ticket
//! server with the range refinement Twitter, Instagram and most shorteners use. A crashed
//! instance loses the rest of its block (a gap in the id space, never a duplicate).
//!
//! # Why not hash-and-retry
//!
//! Hashing the URL (MD5, then take 7 base62 characters) needs no coordination, but codes
//! collide by the birthday bound: with 3.5 trillion codes, a collision is more likely than not
//! after about 2.2 million links, so every create needs a read-before-write and a retry loop,
//! and a lookup on each retry. It also gives the same long URL the same code for everybody,
//! which breaks per-link settings (expiry, 301 or 302, deletion by one owner).
//!
//! # Why not Snowflake ids
//!
//! A Snowflake id (41 bits of milliseconds, 10 bits of worker, 12 of sequence) needs no shared
//! counter at all, but it is 64 bits wide: 11 base62 characters, not 7. Each worker needs a
//! unique worker number (one more thing to coordinate), and the ids depend on wall clocks
//! moving forward. Counting is the shorter code.
//!
//! # Why scramble
//!
//! Consecutive ids would give consecutive codes: anyone could walk the whole set of links and
//! read how many exist. [`feistel`] maps each id to a unique, unguessable-looking number of the
//! same range; since it is a permutation, uniqueness of ids is uniqueness of codes, with no
//! lookup. The key is generated at the first start and kept in the store, so every instance on
//! one store scrambles alike.

pub mod base62;
pub mod feistel;
pub mod lease;

pub use feistel::Feistel;
pub use lease::IdAllocator;

/// Characters in a generated code.
pub const CODE_LEN: usize = 7;

/// How many distinct generated codes exist: 62^7, about 3.5 trillion.
pub const CODE_SPACE: u64 = 62u64.pow(CODE_LEN as u32);

/// The code for id `id` under `feistel`: `None` once the code space is exhausted.
pub fn code_for(feistel: &Feistel, id: u64) -> Option<String> {
    (id < CODE_SPACE).then(|| base62::encode(feistel.permute(id), CODE_LEN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_ids_give_unrelated_codes_of_seven_characters() {
        let feistel = Feistel::new(0x5eed, CODE_SPACE);
        let codes: Vec<String> = (0..4).map(|id| code_for(&feistel, id).unwrap()).collect();
        for code in &codes {
            assert_eq!(code.len(), CODE_LEN, "{codes:?}");
        }
        // Sequential codes would share their first six characters.
        assert!(
            codes.windows(2).all(|w| w[0][..6] != w[1][..6]),
            "{codes:?}"
        );
    }

    #[test]
    fn ids_beyond_the_code_space_have_no_code() {
        let feistel = Feistel::new(1, CODE_SPACE);
        assert!(code_for(&feistel, CODE_SPACE - 1).is_some());
        assert_eq!(code_for(&feistel, CODE_SPACE), None);
    }
}
