//! RTP time → the recorder's clock (nanoseconds since its epoch).
//!
//! A participant's tracks share the sender's wallclock: each RTCP sender
//! report ties a track's RTP time to it (NTP). The offset from that
//! wallclock to ours is the smallest `arrival − sender time` seen (the
//! packet that waited least in the network), the same for all of one
//! participant's tracks, so its audio and video line up however differently
//! they were delayed. A track without a sender report yet is placed by its
//! first frame's arrival.

use std::time::{Instant, UNIX_EPOCH};

use super::frames::Frame;

/// The offset from one participant's sender wallclock to ours.
#[derive(Debug, Default)]
pub struct SenderClock {
    offset_ns: Option<i128>,
}

impl SenderClock {
    pub fn observe(&mut self, f: &Frame, rate: u32, epoch: Instant) {
        if let Some(sent) = sender_time_ns(f, rate) {
            let o = arrival_ns(f, epoch) - sent;
            self.offset_ns = Some(self.offset_ns.map_or(o, |m| m.min(o)));
        }
    }

    /// Where `f` belongs on our clock by its sender report, if it has one.
    fn place(&self, f: &Frame, rate: u32) -> Option<i128> {
        Some(sender_time_ns(f, rate)? + self.offset_ns?)
    }
}

/// How far a track's RTP-time placement may drift from where its sender
/// reports put it before it is moved there.
const RESYNC_NS: i128 = 5_000_000;

/// One track's RTP timestamps, unwrapped and anchored on our clock; only
/// RTP time moves it (no jitter), except that it follows the sender
/// reports: anchored by arrival until the first one comes (a recording
/// usually starts before it), it moves to where they place it.
#[derive(Debug)]
pub struct TrackClock {
    rate: u32,
    last: Option<(u32, i64)>,
    anchor: Option<(i64, i128)>,
}

impl TrackClock {
    pub fn new(rate: u32) -> Self {
        TrackClock { rate, last: None, anchor: None }
    }

    /// `f`'s time on our clock (ns since `epoch`).
    pub fn time_of(&mut self, f: &Frame, sender: &SenderClock, epoch: Instant) -> i128 {
        let ext = match self.last {
            None => i64::from(f.rtp_time),
            Some((ts, ext)) => ext + i64::from(f.rtp_time.wrapping_sub(ts) as i32),
        };
        self.last = Some((f.rtp_time, ext));
        let placed = sender.place(f, self.rate);
        let (ext0, ns0) = *self.anchor.get_or_insert_with(|| (ext, placed.unwrap_or_else(|| arrival_ns(f, epoch))));
        let ns = ns0 + i128::from(ext - ext0) * 1_000_000_000 / i128::from(self.rate);
        match placed {
            Some(p) if (p - ns).abs() > RESYNC_NS => {
                self.anchor = Some((ext, p));
                p
            }
            _ => ns,
        }
    }
}

fn arrival_ns(f: &Frame, epoch: Instant) -> i128 {
    f.arrival.saturating_duration_since(epoch).as_nanos() as i128
}

/// When the sender captured `f`, on its wallclock (ns since 1970).
fn sender_time_ns(f: &Frame, rate: u32) -> Option<i128> {
    let sr = f.sender_info?;
    let ntp = sr.ntp_time.duration_since(UNIX_EPOCH).ok()?.as_nanos() as i128;
    let since = i128::from(f.rtp_time.wrapping_sub(sr.rtp_time.numer() as u32) as i32);
    Some(ntp + since * 1_000_000_000 / i128::from(rate))
}
