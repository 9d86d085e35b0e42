//! Dynacast: a simulcast publisher is told which of its layers anybody
//! takes, so it stops encoding the others (the pages set the encoding's
//! `active` to false). That saves the publisher's uplink and CPU: a room of
//! thumbnails costs it one small layer, not three.
//!
//! A layer is kept while some subscriber takes it or would take it if it
//! were sent (its wish, not what flows now: a paused layer must come back
//! for a subscriber who wants it), and for [`DYNACAST_HOLD`] after the last
//! one stopped, since each pause and resume costs the publisher a keyframe
//! and the subscribers a switch. The lowest layer is always kept: a new
//! subscriber then sees video at once, while a layer it wants resumes.

use std::time::{Duration, Instant};

use super::layers::MAX_LAYERS;

/// How long a layer nobody takes is still sent.
pub const DYNACAST_HOLD: Duration = Duration::from_secs(5);

/// One published simulcast track's layers, as the publisher was told.
#[derive(Debug, Clone)]
pub struct Dynacast {
    offered: [bool; MAX_LAYERS],
    /// When some subscriber last wanted each layer.
    wanted_at: [Option<Instant>; MAX_LAYERS],
    told: [bool; MAX_LAYERS],
}

impl Dynacast {
    /// For a track published at `now` with `offered` layers, all of which
    /// the publisher sends to begin with (and keeps for the hold, so that
    /// the room's subscribers can say what they take).
    pub fn new(offered: [bool; MAX_LAYERS], now: Instant) -> Self {
        Dynacast { offered, wanted_at: [Some(now); MAX_LAYERS], told: offered }
    }

    pub fn offered(&self) -> [bool; MAX_LAYERS] {
        self.offered
    }

    /// `wanted`: the layers subscribers want now. Returns the layers the
    /// publisher should send, when that is not what it was last told.
    pub fn update(&mut self, wanted: [bool; MAX_LAYERS], now: Instant) -> Option<[bool; MAX_LAYERS]> {
        let lowest = self.offered.iter().position(|o| *o);
        let mut send = [false; MAX_LAYERS];
        for l in 0..MAX_LAYERS {
            if wanted[l] {
                self.wanted_at[l] = Some(now);
            }
            let recent = self.wanted_at[l].is_some_and(|t| now.saturating_duration_since(t) < DYNACAST_HOLD);
            send[l] = self.offered[l] && (Some(l) == lowest || recent);
        }
        (send != self.told).then(|| {
            self.told = send;
            send
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [bool; 3] = [true; 3];

    #[test]
    fn a_layer_nobody_wants_stops_after_the_hold_and_returns_at_once() {
        let t0 = Instant::now();
        let mut d = Dynacast::new(ALL, t0);
        let only_low = [true, false, false];
        assert_eq!(d.update(only_low, t0 + Duration::from_secs(1)), None, "held after publishing");
        assert_eq!(d.update(only_low, t0 + DYNACAST_HOLD), Some(only_low));
        assert_eq!(d.update(only_low, t0 + DYNACAST_HOLD * 2), None, "told once");
        let top = [false, false, true];
        assert_eq!(d.update(top, t0 + DYNACAST_HOLD * 2), Some([true, false, true]), "back at once");
    }

    #[test]
    fn the_lowest_layer_is_always_sent() {
        let t0 = Instant::now();
        let mut d = Dynacast::new(ALL, t0);
        assert_eq!(d.update([false; 3], t0 + DYNACAST_HOLD), Some([true, false, false]));
        let mut two = Dynacast::new([false, true, true], t0);
        assert_eq!(two.update([false; 3], t0 + DYNACAST_HOLD), Some([false, true, false]));
    }

    #[test]
    fn a_layer_wanted_within_the_hold_stays() {
        let t0 = Instant::now();
        let mut d = Dynacast::new(ALL, t0);
        let later = t0 + DYNACAST_HOLD * 2;
        assert_eq!(d.update([true, true, false], later), Some([true, true, false]));
        assert_eq!(d.update([true, false, false], later + DYNACAST_HOLD / 2), None);
        assert_eq!(d.update([true, false, false], later + DYNACAST_HOLD), Some([true, false, false]));
    }
}
