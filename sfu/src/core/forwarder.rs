//! Per-subscriber RTP rewrite: sequence numbers and timestamps stay
//! continuous on a downstream leg even when its source changes (a publisher
//! leaves and rejoins, or a later layer/source switch).

use std::time::Instant;

use str0m::rtp::{Vp8Descriptor, Vp8Patch, Vp8PatchError};

/// Rewrites one source's (extended seq, RTP timestamp) into the leg's space.
#[derive(Debug)]
pub struct Forwarder {
    /// Added (wrapping) to the source's extended sequence number.
    seq_offset: u64,
    /// Added (wrapping) to the source's RTP timestamp.
    ts_offset: u32,
    /// The source the offsets were computed for; `None` before the first packet.
    source: Option<u64>,
    /// Source seq of the first packet after the last switch; older ones are
    /// late packets of the previous source's space and must not be sent.
    first_in_seq: u64,
    last_out_seq: u64,
    last_out_ts: u32,
    last_out_at: Option<Instant>,
    clock_rate: u32,
}

/// Outgoing sequence numbers start below 2^15 so the SRTP rollover counter
/// starts at 0 on the receiver without out-of-band signalling (RFC 3711
/// 3.3.1), and differ per leg (RFC 3550 wants them unpredictable).
const MAX_FIRST_SEQ: u64 = 30_000;

impl Forwarder {
    /// `seed` varies the first outgoing sequence number between legs.
    pub fn new(clock_rate: u32, seed: u64) -> Self {
        let first = 1 + seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) % MAX_FIRST_SEQ;
        Forwarder {
            seq_offset: 0,
            ts_offset: 0,
            source: None,
            first_in_seq: 0,
            last_out_seq: first - 1,
            last_out_ts: 0,
            last_out_at: None,
            clock_rate,
        }
    }

    /// Maps a packet from `source` (any id that changes when the stream is
    /// replaced) to the outgoing (extended seq, timestamp), or `None` to drop it.
    pub fn rewrite(&mut self, source: u64, seq: u64, ts: u32, now: Instant) -> Option<(u64, u32)> {
        if self.source != Some(source) {
            self.switch_to(source, seq, ts, now);
        } else if seq < self.first_in_seq {
            return None;
        }
        let out_seq = seq.wrapping_add(self.seq_offset);
        let out_ts = ts.wrapping_add(self.ts_offset);
        if out_seq > self.last_out_seq {
            self.last_out_seq = out_seq;
            self.last_out_ts = out_ts;
            self.last_out_at = Some(now);
        }
        Some((out_seq, out_ts))
    }

    /// The next packet starts a new run even from the same source (the
    /// leg paused, and the packets skipped must not leave a gap).
    pub fn restart(&mut self) {
        self.source = None;
    }

    fn switch_to(&mut self, source: u64, seq: u64, ts: u32, now: Instant) {
        let next_seq = self.last_out_seq + 1;
        // Advance the timestamp by the wall time since the last packet sent,
        // so a receiver's jitter buffer sees time move on, never backwards.
        let next_ts = match self.last_out_at {
            Some(at) => {
                let elapsed = now.saturating_duration_since(at);
                let ticks = (elapsed.as_micros() as u64 * self.clock_rate as u64 / 1_000_000).max(1);
                self.last_out_ts.wrapping_add(ticks as u32)
            }
            None => ts,
        };
        self.seq_offset = next_seq.wrapping_sub(seq);
        self.ts_offset = next_ts.wrapping_sub(ts);
        self.source = Some(source);
        self.first_in_seq = seq;
    }
}

/// Per-subscriber VP8 picture id and TL0PICIDX rewrite: each simulcast
/// layer numbers its pictures on its own, so a switch would make the
/// receiver's frame-reference tracking see a jump. The offsets are chosen at
/// each switch so the leg's numbering goes on by one.
#[derive(Debug, Default)]
pub struct PictureIds {
    source: Option<u64>,
    pid_offset: u16,
    tl0_offset: u8,
    last_pid: Option<u16>,
    last_tl0: Option<u8>,
}

/// Picture ids are 15 bits (Chromium) or 7 bits.
const PID_MOD: u16 = 1 << 15;

impl PictureIds {
    /// As [`Forwarder::restart`].
    pub fn restart(&mut self) {
        self.source = None;
    }

    /// The patch that renumbers this packet for the leg (`None`: send as is).
    pub fn rewrite(&mut self, source: u64, payload: &[u8]) -> Option<Vp8Patch> {
        let desc = Vp8Descriptor::parse(payload).ok()?;
        let (pid, tl0) = self.renumber(source, desc.picture_id(), desc.tl0_pic_idx());
        if self.pid_offset == 0 && self.tl0_offset == 0 {
            return None;
        }
        let build = |pid_mask: u16| {
            let mut b = desc.patch();
            if let Some(p) = pid {
                b = b.picture_id(p & pid_mask);
            }
            if let Some(t) = tl0 {
                b = b.tl0_pic_idx(t);
            }
            b.build()
        };
        match build(PID_MOD - 1) {
            Ok(patch) => Some(patch),
            // A 7-bit picture id: renumber modulo 128.
            Err(Vp8PatchError::PictureIdTooLarge) => build(0x7f).ok(),
            Err(_) => None,
        }
    }

    /// The leg's (picture id, TL0PICIDX) for a packet of `source`.
    fn renumber(&mut self, source: u64, pid: Option<u16>, tl0: Option<u8>) -> (Option<u16>, Option<u8>) {
        if self.source != Some(source) {
            self.source = Some(source);
            self.pid_offset = match (self.last_pid, pid) {
                (Some(last), Some(p)) => last.wrapping_add(1).wrapping_sub(p) % PID_MOD,
                _ => 0,
            };
            self.tl0_offset = match (self.last_tl0, tl0) {
                (Some(last), Some(t)) => last.wrapping_add(1).wrapping_sub(t),
                _ => 0,
            };
        }
        let out_pid = pid.map(|p| p.wrapping_add(self.pid_offset) % PID_MOD);
        let out_tl0 = tl0.map(|t| t.wrapping_add(self.tl0_offset));
        self.last_pid = out_pid.or(self.last_pid);
        self.last_tl0 = out_tl0.or(self.last_tl0);
        (out_pid, out_tl0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn continuous_across_source_switch() {
        let t0 = Instant::now();
        let mut f = Forwarder::new(90_000, 7);
        let s = f.last_out_seq + 1;
        assert!(s < MAX_FIRST_SEQ + 1);
        assert_eq!(f.rewrite(1, 5000, 10, t0), Some((s, 10)));
        assert_eq!(f.rewrite(1, 5001, 3010, t0), Some((s + 1, 3010)));
        // New source with unrelated numbering, 100 ms later: seq goes on by
        // one, the timestamp by 100 ms of 90 kHz ticks.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(f.rewrite(2, 70_000, 999_999, t1), Some((s + 2, 3010 + 9000)));
        assert_eq!(f.rewrite(2, 70_001, 999_999 + 3000, t1), Some((s + 3, 3010 + 12000)));
        // A late packet of the new source from before its first seen one is dropped.
        assert_eq!(f.rewrite(2, 69_999, 0, t1), None);
    }

    #[test]
    fn reordered_packets_keep_their_place() {
        let t0 = Instant::now();
        let mut f = Forwarder::new(48_000, 9);
        let s = f.last_out_seq + 1;
        f.rewrite(7, 10, 0, t0);
        assert_eq!(f.rewrite(7, 12, 1920, t0), Some((s + 2, 1920)));
        assert_eq!(f.rewrite(7, 11, 960, t0), Some((s + 1, 960)));
        assert_eq!(f.rewrite(7, 13, 2880, t0), Some((s + 3, 2880)));
    }

    #[test]
    fn legs_start_at_different_low_sequence_numbers() {
        let a = Forwarder::new(90_000, 1).last_out_seq;
        let b = Forwarder::new(90_000, 2).last_out_seq;
        assert_ne!(a, b);
        assert!(a < MAX_FIRST_SEQ && b < MAX_FIRST_SEQ);
    }

    #[test]
    fn picture_ids_continue_across_a_layer_switch() {
        let mut r = PictureIds::default();
        assert_eq!(r.renumber(1, Some(1000), Some(7)), (Some(1000), Some(7)), "the first source goes as it is");
        assert_eq!(r.renumber(1, Some(1001), Some(8)), (Some(1001), Some(8)));
        // Another layer, numbered on its own.
        assert_eq!(r.renumber(2, Some(20_000), Some(200)), (Some(1002), Some(9)));
        assert_eq!(r.renumber(2, Some(20_001), Some(201)), (Some(1003), Some(10)));
        // Numbers wrap at 2^15 and 2^8.
        assert_eq!(r.renumber(3, Some(PID_MOD - 1), Some(255)), (Some(1004), Some(11)));
        assert_eq!(r.renumber(3, Some(0), Some(0)), (Some(1005), Some(12)));
    }

    #[test]
    fn a_renumbered_packet_gets_a_patch() {
        let vp8 = |pid: u16, tl0: u8| vec![0x90, 0xe0, 0x80 | (pid >> 8) as u8, pid as u8, tl0, 0x00, 0x00];
        let mut r = PictureIds::default();
        assert!(r.rewrite(1, &vp8(1000, 7)).is_none());
        assert!(r.rewrite(2, &vp8(5, 1)).is_some());
    }
}
