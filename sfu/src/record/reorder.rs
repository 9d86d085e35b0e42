//! A small jitter buffer per recorded stream: packets leave in sequence
//! order; a missing one is waited for (a NACK's repair takes a round trip)
//! until the packet after it has waited [`Reorder::hold`], then skipped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::command::MediaPacket;

/// Packets buffered per stream at most; past it the oldest gap is skipped.
const MAX_BUFFERED: usize = 512;

/// What leaves the buffer: a packet, or the news that some were lost
/// before the next one.
#[derive(Debug)]
pub enum Released {
    Packet(Arc<MediaPacket>),
    Lost,
}

#[derive(Debug)]
pub struct Reorder {
    hold: Duration,
    /// The sequence number expected next (str0m's extended, 64-bit).
    next: Option<u64>,
    waiting: BTreeMap<u64, Arc<MediaPacket>>,
}

impl Reorder {
    pub fn new(hold: Duration) -> Self {
        Reorder { hold, next: None, waiting: BTreeMap::new() }
    }

    /// Takes a packet; what can leave now goes to `out`.
    pub fn push(&mut self, pkt: Arc<MediaPacket>, out: &mut Vec<Released>) {
        let seq = pkt.seq_no;
        match self.next {
            // Late (already skipped or a duplicate): too late to use.
            Some(next) if seq < next => return,
            None => self.next = Some(seq),
            _ => {}
        }
        self.waiting.insert(seq, pkt);
        self.release_in_order(out);
        while self.waiting.len() > MAX_BUFFERED {
            self.skip_gap(out);
        }
    }

    /// Skips gaps whose next packet has waited long enough.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Released>) {
        while let Some((_, first)) = self.waiting.first_key_value() {
            if now.saturating_duration_since(first.arrival) < self.hold {
                break;
            }
            self.skip_gap(out);
        }
    }

    /// The earliest time `poll` may release something.
    pub fn deadline(&self) -> Option<Instant> {
        self.waiting.first_key_value().map(|(_, p)| p.arrival + self.hold)
    }

    fn skip_gap(&mut self, out: &mut Vec<Released>) {
        let Some((&seq, _)) = self.waiting.first_key_value() else { return };
        out.push(Released::Lost);
        self.next = Some(seq);
        self.release_in_order(out);
    }

    fn release_in_order(&mut self, out: &mut Vec<Released>) {
        let Some(mut next) = self.next else { return };
        while let Some(pkt) = self.waiting.remove(&next) {
            out.push(Released::Packet(pkt));
            next += 1;
        }
        self.next = Some(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ids::TrackId;
    use str0m::format::Codec;

    fn pkt(seq: u64, at: Instant) -> Arc<MediaPacket> {
        Arc::new(MediaPacket {
            track: TrackId(1),
            codec: Codec::Opus,
            seq_no: seq,
            timestamp: seq as u32 * 960,
            marker: false,
            ext_vals: Default::default(),
            payload: Arc::from(&[1u8][..]),
            arrival: at,
            layer: 0,
            keyframe: false,
            vp8: None,
            sender_info: None,
        })
    }

    fn seqs(out: &[Released]) -> Vec<Option<u64>> {
        out.iter()
            .map(|r| match r {
                Released::Packet(p) => Some(p.seq_no),
                Released::Lost => None,
            })
            .collect()
    }

    #[test]
    fn reordered_packets_leave_in_sequence_order() {
        let t = Instant::now();
        let mut r = Reorder::new(Duration::from_millis(100));
        let mut out = Vec::new();
        for s in [10, 12, 11, 13] {
            r.push(pkt(s, t), &mut out);
        }
        assert_eq!(seqs(&out), [Some(10), Some(11), Some(12), Some(13)]);
    }

    #[test]
    fn a_gap_is_waited_for_then_skipped_and_reported() {
        let t = Instant::now();
        let mut r = Reorder::new(Duration::from_millis(100));
        let mut out = Vec::new();
        r.push(pkt(1, t), &mut out);
        r.push(pkt(3, t), &mut out);
        r.poll(t + Duration::from_millis(50), &mut out);
        assert_eq!(seqs(&out), [Some(1)], "still waiting for 2");
        r.poll(t + Duration::from_millis(100), &mut out);
        assert_eq!(seqs(&out), [Some(1), None, Some(3)]);
        // The repair arriving after the skip is too late.
        r.push(pkt(2, t), &mut out);
        assert_eq!(out.len(), 3);
    }
}
