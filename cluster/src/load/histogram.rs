//! A latency histogram with a fixed memory cost and a bounded relative error.
//!
//! Latencies span five orders of magnitude (tens of microseconds to seconds), so buckets of
//! one width would be either too coarse at the bottom or too many at the top. Like HdrHistogram,
//! the buckets here are exact below [`LINEAR_MAX`] microseconds and above it split every power of
//! two into [`SUB_BUCKETS`] equal parts:
//!
//! ```text
//!   value (µs)         bucket width
//!   0 .. 127           1 µs   (exact)
//!   128 .. 255         2 µs   (64 buckets)
//!   256 .. 511         4 µs   (64 buckets)
//!   ...                ...    a value is off by at most 1/64 (1.6 %) of itself
//! ```
//!
//! Values above [`MAX_MICROS`] (an hour) are counted as [`MAX_MICROS`].

/// Below this many microseconds every value has its own bucket.
const LINEAR_MAX: u64 = 128;

/// Buckets per power of two above [`LINEAR_MAX`].
const SUB_BUCKETS: u64 = 64;

/// Largest value kept exactly enough: an hour, in microseconds (under 2^32).
pub const MAX_MICROS: u64 = 3_600_000_000;

/// Powers of two from 2^7 to 2^31: [`MAX_MICROS`] is below 2^32.
const OCTAVES: u64 = 32 - 7;

const BUCKETS: usize = (LINEAR_MAX + OCTAVES * SUB_BUCKETS) as usize;

/// Counts of latencies in microseconds.
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }
}

impl Histogram {
    pub fn record(&mut self, micros: u64) {
        let micros = micros.min(MAX_MICROS);
        self.counts[index(micros)] += 1;
        self.total += 1;
        self.max = self.max.max(micros);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// The value at quantile `q` (0.5 for the median), as the top of its bucket, or 0 when
    /// nothing was recorded.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return upper_bound(i).min(self.max);
            }
        }
        self.max
    }
}

fn index(micros: u64) -> usize {
    if micros < LINEAR_MAX {
        return micros as usize;
    }
    let octave = u64::from(63 - micros.leading_zeros()) - 7;
    let sub = (micros >> (octave + 1)) - SUB_BUCKETS;
    (LINEAR_MAX + octave * SUB_BUCKETS + sub) as usize
}

/// The largest value that falls in bucket `i`.
fn upper_bound(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR_MAX {
        return i;
    }
    let (octave, sub) = (
        (i - LINEAR_MAX) / SUB_BUCKETS,
        (i - LINEAR_MAX) % SUB_BUCKETS,
    );
    let width = 1u64 << (octave + 1);
    (SUB_BUCKETS + sub) * width + width - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_a_bucket_that_contains_it() {
        let mut previous_top = None;
        for micros in (0..5_000).chain([65_535, 1_000_000, 59_999_999, MAX_MICROS]) {
            let i = index(micros);
            let top = upper_bound(i);
            assert!(micros <= top, "{micros} above its bucket's top {top}");
            let bottom = if i == 0 { 0 } else { upper_bound(i - 1) + 1 };
            assert!(
                micros >= bottom,
                "{micros} below its bucket's bottom {bottom}"
            );
            assert!(
                (top - bottom) as f64 <= micros as f64 / 64.0 + 1.0,
                "bucket of {micros} too wide: {bottom}..={top}"
            );
            if let Some(previous) = previous_top {
                assert!(top >= previous);
            }
            previous_top = Some(top);
        }
        assert!(index(MAX_MICROS) < BUCKETS);
    }

    #[test]
    fn quantiles_are_within_the_bucket_error() {
        let mut histogram = Histogram::default();
        for micros in 1..=10_000 {
            histogram.record(micros);
        }
        for (q, exact) in [(0.5, 5_000.0), (0.99, 9_900.0), (1.0, 10_000.0)] {
            let got = histogram.quantile(q) as f64;
            assert!(
                (got - exact).abs() <= exact / 64.0 + 1.0,
                "q{q}: {got} vs {exact}"
            );
        }
        assert_eq!(histogram.quantile(1.0), 10_000, "the max is exact");
        let mut other = Histogram::default();
        other.record(20_000);
        histogram.merge(&other);
        assert_eq!(histogram.count(), 10_001);
        assert_eq!(histogram.max(), 20_000);
        assert_eq!(Histogram::default().quantile(0.99), 0);
    }
}
