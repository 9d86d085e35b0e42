//! The arena of a shard's participants: slot indices that stay valid while
//! a participant lives, generations that tell a freed-and-reused slot from
//! the one a stale timer entry named, and the participant-id index.

use std::collections::HashMap;

use crate::core::demux::Slot;
use crate::core::ids::ParticipantId;
use crate::core::participant::Participant;

#[derive(Default)]
pub struct Slots {
    slots: Vec<Option<Participant>>,
    /// Bumped when a slot is freed, so stale timer entries are ignored.
    generations: Vec<u32>,
    free: Vec<Slot>,
    by_pid: HashMap<ParticipantId, Slot>,
}

impl Slots {
    /// Puts `p` in a free slot (or a new one) and returns it.
    pub fn insert(&mut self, p: Participant) -> Slot {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                self.generations.push(0);
                self.slots.len() - 1
            }
        };
        self.by_pid.insert(p.id, slot);
        self.slots[slot] = Some(p);
        slot
    }

    /// Takes the participant out and frees its slot for reuse.
    pub fn remove(&mut self, slot: Slot) -> Option<Participant> {
        let p = self.slots.get_mut(slot)?.take()?;
        self.by_pid.remove(&p.id);
        self.generations[slot] = self.generations[slot].wrapping_add(1);
        self.free.push(slot);
        Some(p)
    }

    pub fn get(&self, slot: Slot) -> Option<&Participant> {
        self.slots.get(slot)?.as_ref()
    }

    pub fn get_mut(&mut self, slot: Slot) -> Option<&mut Participant> {
        self.slots.get_mut(slot)?.as_mut()
    }

    /// The slot's current generation (what a timer entry must match).
    pub fn generation(&self, slot: Slot) -> u32 {
        self.generations.get(slot).copied().unwrap_or(0)
    }

    pub fn slot_of(&self, pid: ParticipantId) -> Option<Slot> {
        self.by_pid.get(&pid).copied()
    }

    pub fn len(&self) -> usize {
        self.by_pid.len()
    }

    /// Every occupied slot.
    pub fn occupied(&self) -> Vec<Slot> {
        self.by_pid.values().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::command::{JoinRequest, Permissions};
    use std::time::Instant;

    fn participant(id: u64) -> Participant {
        let req = JoinRequest {
            room: "r".into(),
            identity: format!("p{id}").into(),
            name: None,
            permissions: Permissions { can_publish: true, can_subscribe: true },
        };
        Participant::new(ParticipantId(id), req, &["10.0.0.1:5000".parse().unwrap()], None, Instant::now())
    }

    #[test]
    fn a_reused_slot_has_a_new_generation() {
        let mut s = Slots::default();
        let a = s.insert(participant(1));
        let gen = s.generation(a);
        assert!(s.remove(a).is_some());
        assert!(s.slot_of(ParticipantId(1)).is_none());
        let b = s.insert(participant(2));
        assert_eq!(a, b, "the freed slot is reused");
        assert_ne!(s.generation(b), gen, "an entry for the old occupant no longer matches");
        assert!(s.remove(a).is_some() && s.remove(a).is_none(), "removing twice is harmless");
    }
}
