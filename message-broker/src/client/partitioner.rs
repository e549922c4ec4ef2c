//! Which partition a record goes to.
//!
//! - **With a key**: `murmur2(key) & 0x7fffffff` modulo the partition count, exactly as Kafka's
//!   default partitioner computes it, so a key lands on the partition Kafka would choose (and
//!   records of one key stay in order, on one partition).
//! - **Without a key**: the sticky partitioner of Kafka's KIP-480. All keyless records go to
//!   one partition until the batch being filled there is sent, then another partition is
//!   picked at random. Spreading each record round-robin would instead send many small batches;
//!   sticking fills whole batches, which is what makes batching pay.
//!
//! murmur2 is Austin Appleby's MurmurHash2, 32-bit, with Kafka's seed `0x9747b28c` and the
//! algorithm's constants `m = 0x5bd1e995`, `r = 24`; the tail bytes are mixed little-endian.

use rand::RngExt;

const SEED: u32 = 0x9747_b28c;
const M: u32 = 0x5bd1_e995;
const R: u32 = 24;

/// Kafka's murmur2 of `data`, as a signed value like Java's `int`.
pub fn murmur2(data: &[u8]) -> i32 {
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes(chunk.try_into().expect("4 bytes"));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, &byte) in tail.iter().enumerate().rev() {
            h ^= u32::from(byte) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner gives `key` among `partitions`.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    (murmur2(key) as u32 & 0x7fff_ffff) % partitions
}

/// Chooses partitions for records: by key hash, or sticky for keyless records.
#[derive(Debug)]
pub struct Partitioner {
    partitions: u32,
    sticky: u32,
    rng: rand::rngs::StdRng,
}

impl Partitioner {
    /// A partitioner over `partitions` (at least 1).
    pub fn new(partitions: u32) -> Self {
        let mut rng: rand::rngs::StdRng = rand::make_rng();
        let sticky = rng.random_range(0..partitions.max(1));
        Partitioner {
            partitions: partitions.max(1),
            sticky,
            rng,
        }
    }

    /// The partition for a record with this key.
    pub fn partition(&self, key: Option<&[u8]>) -> u32 {
        match key {
            Some(key) => partition_for_key(key, self.partitions),
            None => self.sticky,
        }
    }

    /// Called when the batch of `partition` was sent: keyless records move on if they were
    /// sticking to it.
    pub fn batch_sent(&mut self, partition: u32) {
        if partition == self.sticky && self.partitions > 1 {
            let other = self.rng.random_range(0..self.partitions - 1);
            self.sticky = if other >= partition { other + 1 } else { other };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafkas_values() {
        // Values from Kafka's own tests of its partitioner hash.
        assert_eq!(murmur2(b"21"), -973_932_308);
        assert_eq!(murmur2(b"foobar"), -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985_981_536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1_486_304_829);
        assert_eq!(murmur2(b"abc"), 479_470_107);
    }

    #[test]
    fn keys_are_stable_and_keyless_records_stick_until_a_batch_is_sent() {
        let mut partitioner = Partitioner::new(6);
        let key = partitioner.partition(Some(b"user-17"));
        assert_eq!(key, partition_for_key(b"user-17", 6));
        let sticky = partitioner.partition(None);
        assert_eq!(partitioner.partition(None), sticky);
        partitioner.batch_sent((sticky + 1) % 6);
        assert_eq!(
            partitioner.partition(None),
            sticky,
            "another partition's batch"
        );
        partitioner.batch_sent(sticky);
        assert_ne!(partitioner.partition(None), sticky);
        assert_eq!(partitioner.partition(Some(b"user-17")), key);
    }
}
