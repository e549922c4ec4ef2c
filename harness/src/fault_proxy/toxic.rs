//! The toxics (faults) a [`super::FaultProxy`] can apply, and the table of active ones.
//!
//! Names and parameters follow Toxiproxy's, so a reader who knows one knows the other. Toxics of
//! the same kind in the same direction combine: latencies add up, the lowest bandwidth wins, the
//! first slicer added is the one that slices, every `limit_data` counts on its own.

use std::time::{Duration, Instant};

use crate::{Error, Result};

/// Most toxics active at once on one proxy; a test that needs more is probably looping by mistake.
pub const TOXICS_MAX: usize = 64;

/// Which stream a toxic applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to server: requests.
    Upstream,
    /// Server to client: responses.
    Downstream,
}

/// One fault, with Toxiproxy's name and parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toxic {
    /// Delays every chunk by `latency_ms`, plus or minus up to `jitter_ms` drawn from the proxy's
    /// seeded RNG. Chunks are delayed in order, one after the other, so a stream of many small
    /// chunks is slowed more than a single round trip (Toxiproxy pipelines them instead).
    Latency { latency_ms: u64, jitter_ms: u64 },
    /// Paces the stream to at most `rate_kb_per_s` KiB per second. Must not be zero (that is a
    /// `timeout` toxic).
    Bandwidth { rate_kb_per_s: u64 },
    /// Cuts every chunk into writes of `average_size` plus or minus `size_variation` bytes,
    /// pausing `delay_us` microseconds between them: exercises parsers on split frames.
    Slicer {
        average_size: usize,
        size_variation: usize,
        delay_us: u64,
    },
    /// Forwards `bytes` more bytes in this direction, then closes the connection (both sides).
    LimitData { bytes: u64 },
    /// After `timeout_ms`, resets the connection: the side that receives this direction's data
    /// gets a TCP RST (`ECONNRESET`) instead of an orderly close, the other side a close.
    ResetPeer { timeout_ms: u64 },
    /// Blackhole: stops forwarding this direction (data is held, not lost, and flows again if the
    /// toxic is removed); after `timeout_ms` closes the connection, or never if it is 0.
    Timeout { timeout_ms: u64 },
}

impl Toxic {
    fn validate(self) -> Result<Toxic> {
        let reason = match self {
            Toxic::Bandwidth { rate_kb_per_s: 0 } => "rate_kb_per_s must be positive",
            Toxic::Slicer {
                average_size: 0, ..
            } => "average_size must be positive",
            Toxic::Slicer {
                average_size,
                size_variation,
                ..
            } if size_variation >= average_size => "size_variation must be below average_size",
            _ => return Ok(self),
        };
        Err(Error::InvalidToxic {
            toxic: self,
            reason,
        })
    }
}

/// Identifies an added toxic, for removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ToxicId(u64);

/// A toxic as listed by [`super::FaultProxy::toxics`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToxicEntry {
    pub id: ToxicId,
    pub direction: Direction,
    pub toxic: Toxic,
}

/// A toxic and the moment it was added. A timed toxic (`reset_peer`, `timeout`) starts its clock
/// for a connection at whichever is later: the toxic's addition or the connection's opening.
#[derive(Debug, Clone, Copy)]
pub(super) struct Active {
    pub(super) entry: ToxicEntry,
    pub(super) added_at: Instant,
}

impl Active {
    /// When this toxic's timeout expires for a connection opened at `opened_at`.
    pub(super) fn expires_at(&self, opened_at: Instant, timeout_ms: u64) -> Instant {
        self.added_at.max(opened_at) + Duration::from_millis(timeout_ms)
    }
}

/// The active toxics, in the order they were added. Shared through a `watch` channel so that
/// every connection sees changes while it is open.
#[derive(Debug, Default)]
pub(super) struct ToxicTable {
    active: Vec<Active>,
    next_id: u64,
}

impl ToxicTable {
    pub(super) fn add(&mut self, direction: Direction, toxic: Toxic) -> Result<ToxicId> {
        let toxic = toxic.validate()?;
        if self.active.len() >= TOXICS_MAX {
            return Err(Error::InvalidToxic {
                toxic,
                reason: "TOXICS_MAX toxics are already active",
            });
        }
        let id = ToxicId(self.next_id);
        self.next_id += 1;
        self.active.push(Active {
            entry: ToxicEntry {
                id,
                direction,
                toxic,
            },
            added_at: Instant::now(),
        });
        Ok(id)
    }

    /// Removes a toxic; false if no toxic has this id.
    pub(super) fn remove(&mut self, id: ToxicId) -> bool {
        let before = self.active.len();
        self.active.retain(|a| a.entry.id != id);
        self.active.len() != before
    }

    pub(super) fn clear(&mut self) {
        self.active.clear();
    }

    pub(super) fn entries(&self) -> Vec<ToxicEntry> {
        self.active.iter().map(|a| a.entry).collect()
    }

    /// The toxics of one direction, in order of addition.
    pub(super) fn for_direction(&self, direction: Direction) -> Vec<Active> {
        self.active
            .iter()
            .filter(|a| a.entry.direction == direction)
            .copied()
            .collect()
    }

    pub(super) fn all(&self) -> &[Active] {
        &self.active
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonsensical_toxics_are_rejected() {
        let mut table = ToxicTable::default();
        let zero_rate = Toxic::Bandwidth { rate_kb_per_s: 0 };
        assert!(table.add(Direction::Upstream, zero_rate).is_err());
        let wide = Toxic::Slicer {
            average_size: 10,
            size_variation: 10,
            delay_us: 0,
        };
        assert!(table.add(Direction::Upstream, wide).is_err());
        assert!(table.entries().is_empty());
    }

    #[test]
    fn toxics_are_listed_in_order_and_removed_by_id() {
        let mut table = ToxicTable::default();
        let latency = Toxic::Latency {
            latency_ms: 5,
            jitter_ms: 0,
        };
        let limit = Toxic::LimitData { bytes: 3 };
        let first = table.add(Direction::Upstream, latency).unwrap();
        let second = table.add(Direction::Downstream, limit).unwrap();
        assert_eq!(table.for_direction(Direction::Downstream).len(), 1);
        assert!(table.remove(first));
        assert!(!table.remove(first));
        let listed = table.entries();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, second);
        assert_eq!(listed[0].toxic, limit);
    }

    #[test]
    fn the_number_of_toxics_is_bounded() {
        let mut table = ToxicTable::default();
        let toxic = Toxic::LimitData { bytes: 1 };
        for _ in 0..TOXICS_MAX {
            table.add(Direction::Upstream, toxic).unwrap();
        }
        assert!(table.add(Direction::Upstream, toxic).is_err());
    }
}
