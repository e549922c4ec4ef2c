//! Partition assignors, run by the group's leader member (on the client side, as in Kafka,
//! so the broker treats assignments as opaque bytes).
//!
//! - **range** (Kafka's `RangeAssignor`): per topic, the partitions in order are cut into one
//!   contiguous run per subscribed member (members sorted by id); the first
//!   `partitions % members` runs get one extra partition.
//! - **roundrobin** (Kafka's `RoundRobinAssignor`): every subscribed (topic, partition) in order
//!   is dealt to the members in turn, skipping members not subscribed to its topic.
//!
//! Subscriptions and assignments travel as postcard-encoded [`Subscription`] and
//! [`Assignment`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a member asks for: the metadata it sends with JoinGroup.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// Topics.
    pub topics: Vec<String>,
}

/// What a member gets: the bytes it receives from SyncGroup.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// (topic, partition), sorted.
    pub partitions: Vec<(String, u32)>,
}

impl Assignment {
    /// Decodes the bytes of SyncGroup (empty bytes: nothing assigned).
    pub fn decode(bytes: &[u8]) -> Option<Assignment> {
        if bytes.is_empty() {
            return Some(Assignment::default());
        }
        postcard::from_bytes(bytes).ok()
    }
}

/// The assignors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Assignor {
    /// Contiguous ranges per topic.
    Range,
    /// Dealt in turn.
    RoundRobin,
}

impl Assignor {
    /// The protocol name sent in JoinGroup.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::RoundRobin => "roundrobin",
        }
    }

    /// The assignor called `name`.
    pub fn from_name(name: &str) -> Option<Assignor> {
        match name {
            "range" => Some(Assignor::Range),
            "roundrobin" => Some(Assignor::RoundRobin),
            _ => None,
        }
    }

    /// Assigns the partitions of `partition_counts` (topic to count) to `members`
    /// (member id to subscription). Every member appears in the result.
    pub fn assign(
        self,
        members: &BTreeMap<String, Subscription>,
        partition_counts: &BTreeMap<String, u32>,
    ) -> BTreeMap<String, Assignment> {
        let mut result: BTreeMap<String, Assignment> = members
            .keys()
            .map(|id| (id.clone(), Assignment::default()))
            .collect();
        let subscribers = |topic: &str| -> Vec<&String> {
            members
                .iter()
                .filter(|(_, s)| s.topics.iter().any(|t| t == topic))
                .map(|(id, _)| id)
                .collect()
        };
        match self {
            Assignor::Range => {
                for (topic, &count) in partition_counts {
                    let takers = subscribers(topic);
                    if takers.is_empty() {
                        continue;
                    }
                    let (each, extra) = (count / takers.len() as u32, count % takers.len() as u32);
                    let mut next = 0;
                    for (i, member) in takers.into_iter().enumerate() {
                        let take = each + u32::from((i as u32) < extra);
                        let assigned = &mut result.get_mut(member).expect("a member").partitions;
                        assigned.extend((next..next + take).map(|p| (topic.clone(), p)));
                        next += take;
                    }
                }
            }
            Assignor::RoundRobin => {
                let ids: Vec<&String> = members.keys().collect();
                let mut turn = 0;
                for (topic, &count) in partition_counts {
                    if subscribers(topic).is_empty() {
                        continue;
                    }
                    for partition in 0..count {
                        loop {
                            let member = ids[turn % ids.len()];
                            turn += 1;
                            if members[member].topics.iter().any(|t| t == topic) {
                                let assigned = &mut result.get_mut(member).expect("a member");
                                assigned.partitions.push((topic.clone(), partition));
                                break;
                            }
                        }
                    }
                }
            }
        }
        for assignment in result.values_mut() {
            assignment.partitions.sort();
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: usize, topics: &[&str]) -> BTreeMap<String, Subscription> {
        (0..n)
            .map(|i| {
                let topics = topics.iter().map(|t| t.to_string()).collect();
                (format!("m{i}"), Subscription { topics })
            })
            .collect()
    }

    fn parts(assignment: &Assignment) -> Vec<(&str, u32)> {
        assignment
            .partitions
            .iter()
            .map(|(t, p)| (t.as_str(), *p))
            .collect()
    }

    #[test]
    fn range_gives_contiguous_runs_with_the_remainder_first() {
        let counts = BTreeMap::from([("t".to_string(), 7)]);
        let result = Assignor::Range.assign(&members(3, &["t"]), &counts);
        assert_eq!(parts(&result["m0"]), vec![("t", 0), ("t", 1), ("t", 2)]);
        assert_eq!(parts(&result["m1"]), vec![("t", 3), ("t", 4)]);
        assert_eq!(parts(&result["m2"]), vec![("t", 5), ("t", 6)]);
    }

    #[test]
    fn round_robin_deals_across_topics() {
        let counts = BTreeMap::from([("a".to_string(), 3), ("b".to_string(), 2)]);
        let result = Assignor::RoundRobin.assign(&members(2, &["a", "b"]), &counts);
        assert_eq!(parts(&result["m0"]), vec![("a", 0), ("a", 2), ("b", 1)]);
        assert_eq!(parts(&result["m1"]), vec![("a", 1), ("b", 0)]);
    }

    #[test]
    fn every_partition_is_assigned_exactly_once() {
        for assignor in [Assignor::Range, Assignor::RoundRobin] {
            for n in 1..6 {
                let counts = BTreeMap::from([("a".to_string(), 6), ("b".to_string(), 5)]);
                let result = assignor.assign(&members(n, &["a", "b"]), &counts);
                let mut all: Vec<_> = result.values().flat_map(|a| a.partitions.clone()).collect();
                all.sort();
                assert_eq!(all.len(), 11, "{assignor:?} {n}");
                all.dedup();
                assert_eq!(all.len(), 11, "{assignor:?} {n}");
            }
        }
    }

    #[test]
    fn members_not_subscribed_get_nothing_of_a_topic() {
        let mut members = members(2, &["a"]);
        members.insert(
            "m9".into(),
            Subscription {
                topics: vec!["b".into()],
            },
        );
        let counts = BTreeMap::from([("a".to_string(), 2), ("b".to_string(), 2)]);
        for assignor in [Assignor::Range, Assignor::RoundRobin] {
            let result = assignor.assign(&members, &counts);
            assert_eq!(
                parts(&result["m9"]),
                vec![("b", 0), ("b", 1)],
                "{assignor:?}"
            );
        }
    }
}
