//! The five value types and the sorted set's two indexes.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::ops::Bound;

use bytes::Bytes;

/// What a key holds. Collections are never empty: the command that removes the last element
/// removes the key, as Redis does, so `EXISTS` and `TYPE` never see an empty list.
///
/// Hashes, sets and sorted sets are boxed so that a `Value` is 40 bytes (a `Bytes` and a tag)
/// rather than 80: most keys are strings, and every key pays for the largest variant.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(Bytes),
    List(VecDeque<Bytes>),
    Hash(Box<HashMap<Bytes, Bytes>>),
    Set(Box<HashSet<Bytes>>),
    ZSet(Box<ZSet>),
}

impl Value {
    /// The name `TYPE` answers.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::List(_) => "list",
            Value::Hash(_) => "hash",
            Value::Set(_) => "set",
            Value::ZSet(_) => "zset",
        }
    }
}

/// A score that can be ordered: NaN never enters a sorted set (commands refuse it), so the
/// total order of `f64::total_cmp` is the numeric order, with -0.0 before 0.0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score(pub f64);

impl Eq for Score {}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// A sorted set: members by score, ties by member bytes, as Redis orders them.
///
/// Two indexes, as Redis keeps a dict beside its skiplist: `scores` answers "what is the score
/// of m" in O(1); `ordered` walks members in order. Rank lookups walk `ordered` (O(rank)):
/// a `BTreeSet` keeps no subtree sizes. That is a known cost for `ZRANK` and deep `ZRANGE`
/// offsets on very large sets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ZSet {
    scores: HashMap<Bytes, f64>,
    ordered: BTreeSet<(Score, Bytes)>,
}

impl ZSet {
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    pub fn score(&self, member: &[u8]) -> Option<f64> {
        self.scores.get(member).copied()
    }

    /// Sets `member`'s score; returns the previous one.
    pub fn insert(&mut self, member: Bytes, score: f64) -> Option<f64> {
        let previous = self.scores.insert(member.clone(), score);
        if let Some(old) = previous {
            self.ordered.remove(&(Score(old), member.clone()));
        }
        self.ordered.insert((Score(score), member));
        previous
    }

    pub fn remove(&mut self, member: &[u8]) -> Option<f64> {
        let (member, score) = self.scores.remove_entry(member)?;
        self.ordered.remove(&(Score(score), member));
        Some(score)
    }

    /// Members in ascending order of (score, member).
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&Bytes, f64)> {
        self.ordered.iter().map(|(score, member)| (member, score.0))
    }

    /// Members between `min` and `max` in member order, for `BYLEX`. Like Redis, this assumes
    /// every member has the same score (the way a sorted set is used as an ordered index):
    /// the bounds are placed among the members of the lowest score, and an open end (`-`,
    /// `+`) runs to the set's end, so with mixed scores the answer is unspecified, as in
    /// Redis. O(log n) to the first member.
    pub fn range_lex(
        &self,
        min: Bound<&[u8]>,
        max: Bound<&[u8]>,
    ) -> impl DoubleEndedIterator<Item = (&Bytes, f64)> {
        let key = |score: Score, m: &[u8]| (score, Bytes::copy_from_slice(m));
        let empty = match (min, max) {
            (Bound::Included(lo), Bound::Included(hi)) => lo > hi,
            (Bound::Included(lo) | Bound::Excluded(lo), Bound::Excluded(hi))
            | (Bound::Excluded(lo), Bound::Included(hi)) => lo >= hi,
            _ => false,
        };
        let range = match self.ordered.first() {
            Some((score, _)) if !empty => {
                let score = *score;
                let lower = min.map(|m| key(score, m));
                let upper = match max {
                    Bound::Unbounded => Bound::Unbounded,
                    bound => bound.map(|m| key(score, m)),
                };
                Some(self.ordered.range((lower, upper)))
            }
            _ => None,
        };
        range
            .into_iter()
            .flatten()
            .map(|(score, member)| (member, score.0))
    }

    /// 0-based rank of `member` in ascending order.
    pub fn rank(&self, member: &[u8]) -> Option<usize> {
        let score = self.score(member)?;
        Some(
            self.ordered
                .range(..(Score(score), Bytes::copy_from_slice(member)))
                .count(),
        )
    }

    /// Removes and returns the lowest-ranked member.
    pub fn pop_min(&mut self) -> Option<(Bytes, f64)> {
        let (score, member) = self.ordered.pop_first()?;
        self.scores.remove(&member);
        Some((member, score.0))
    }

    /// Removes and returns the highest-ranked member.
    pub fn pop_max(&mut self) -> Option<(Bytes, f64)> {
        let (score, member) = self.ordered.pop_last()?;
        self.scores.remove(&member);
        Some((member, score.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_a_bytes_and_a_tag() {
        assert_eq!(std::mem::size_of::<Value>(), 40);
    }

    #[test]
    fn zset_orders_by_score_then_member() {
        let mut z = ZSet::default();
        z.insert(Bytes::from_static(b"b"), 1.0);
        z.insert(Bytes::from_static(b"a"), 1.0);
        z.insert(Bytes::from_static(b"c"), 0.5);
        let order: Vec<_> = z.iter().map(|(m, _)| m.clone()).collect();
        assert_eq!(order, ["c", "a", "b"]);
        assert_eq!(z.rank(b"b"), Some(2));
        assert_eq!(z.insert(Bytes::from_static(b"c"), 3.0), Some(0.5));
        assert_eq!(z.rank(b"c"), Some(2));
        assert_eq!(z.pop_min(), Some((Bytes::from_static(b"a"), 1.0)));
        assert_eq!(z.remove(b"c"), Some(3.0));
        assert_eq!(z.len(), 1);
    }
}
