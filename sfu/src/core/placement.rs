//! Which shard a new participant goes to.
//!
//! A room stays on one shard while it fits: media between members of one
//! shard never crosses a thread, so a two-party call costs one receive and
//! one send per packet. A room that outgrows `spill_at` members on a shard
//! spills onto another (its publishers then send one copy per extra shard).
//! New rooms go to the least loaded shard.

use std::collections::BTreeMap;

use super::ids::ShardId;

/// Members of one room per shard before it spills. A shard forwards a
/// 100-way webinar in about half of one core (benches/README.md), so a room
/// of this size leaves room for others on the shard.
pub const DEFAULT_SPILL_AT: usize = 50;

pub struct Placement {
    /// Participants per shard.
    load: Vec<usize>,
    spill_at: usize,
}

impl Placement {
    pub fn new(shards: usize, spill_at: usize) -> Self {
        assert!(shards > 0, "at least one shard");
        Placement { load: vec![0; shards], spill_at: spill_at.max(1) }
    }

    /// The shard for a new member of a room with `room` members per shard.
    pub fn choose(&self, room: &BTreeMap<ShardId, usize>) -> ShardId {
        // The room's fullest shard that still has space keeps it together.
        let with_space = room.iter().filter(|(_, n)| **n < self.spill_at);
        if let Some((shard, _)) = with_space.max_by_key(|(s, n)| (**n, std::cmp::Reverse(self.load[**s]))) {
            return *shard;
        }
        // New room, or every shard it uses is full: the least loaded shard
        // that is not full of it.
        let open = (0..self.load.len()).filter(|s| room.get(s).is_none_or(|n| *n < self.spill_at));
        open.min_by_key(|s| self.load[*s])
            .unwrap_or_else(|| (0..self.load.len()).min_by_key(|s| self.load[*s]).unwrap_or(0))
    }

    pub fn add(&mut self, shard: ShardId) {
        self.load[shard] += 1;
    }

    pub fn remove(&mut self, shard: ShardId) {
        self.load[shard] = self.load[shard].saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Places `n` members of one room, returning members per shard.
    fn place(p: &mut Placement, room: &mut BTreeMap<ShardId, usize>, n: usize) {
        for _ in 0..n {
            let s = p.choose(room);
            p.add(s);
            *room.entry(s).or_default() += 1;
        }
    }

    #[test]
    fn two_party_rooms_never_straddle_shards_and_rooms_spread() {
        let mut p = Placement::new(2, DEFAULT_SPILL_AT);
        let mut rooms: Vec<BTreeMap<ShardId, usize>> = vec![BTreeMap::new(); 100];
        // Joins interleaved as a real load would: every room's first member, then every second.
        for _ in 0..2 {
            for r in rooms.iter_mut() {
                place(&mut p, r, 1);
            }
        }
        assert!(rooms.iter().all(|r| r.len() == 1), "each pair on one shard");
        assert_eq!(p.load, vec![100, 100], "pairs spread evenly");
    }

    #[test]
    fn a_large_room_spills_when_its_shard_is_full() {
        let mut p = Placement::new(3, 4);
        let mut room = BTreeMap::new();
        place(&mut p, &mut room, 4);
        assert_eq!(room.len(), 1, "up to spill_at on one shard");
        place(&mut p, &mut room, 1);
        assert_eq!(room.len(), 2, "the next spills");
        place(&mut p, &mut room, 3);
        assert_eq!(
            room.values().copied().collect::<Vec<_>>(),
            vec![4, 4],
            "the spill shard fills before a third is used"
        );
        place(&mut p, &mut room, 5);
        assert_eq!(room.values().sum::<usize>(), 13, "past every shard's share, members still get a shard");
    }
}
