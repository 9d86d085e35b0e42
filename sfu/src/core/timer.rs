//! When each participant's `Rtc` next wants `Input::Timeout`.
//!
//! A min-heap with lazy deletion: an entry is pushed only when a deadline
//! moves earlier than the one already queued, so a busy peer whose deadline
//! keeps moving later costs nothing. The caller remembers which entry is live
//! (`Participant::scheduled`) and drops any other it pops: re-queuing a stale
//! entry would duplicate the live one, and duplicates would breed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use super::demux::Slot;

#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, Slot, u32)>>,
}

impl Timers {
    /// Queues `slot` (in generation `gen`) at `at`.
    pub fn schedule(&mut self, at: Instant, slot: Slot, gen: u32) {
        self.heap.push(Reverse((at, slot, gen)));
    }

    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _, _))| *t)
    }

    /// Pops one entry due at `now`: its time, slot and generation.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, Slot, u32)> {
        match self.heap.peek() {
            Some(Reverse((t, _, _))) if *t <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}
