//! Simulcast layers: what a shard has seen of each layer of a published
//! video track ([`LayerStats`], kept on the track's route), and which layer
//! one subscriber wants and gets ([`LayerChoice`], kept on its leg).
//!
//! A layer is an index, 0 the lowest. A track without simulcast has one
//! layer, 0, and every rule below degenerates to "forward everything".
//! Switching waits for a keyframe of the target layer, so a decoder never
//! sees a delta frame of a stream it has no reference for; the leg's
//! [`Forwarder`](super::forwarder::Forwarder) and VP8 rewrite keep sequence
//! numbers, timestamps and picture ids continuous across the switch.

use std::time::{Duration, Instant};

use str0m::media::{Rid, Rids};

/// Layers a track may have (Chromium sends at most three for VP8).
pub const MAX_LAYERS: usize = 3;

pub type Layer = u8;

/// A layer with no packet for this long is off (the publisher's encoder
/// dropped it for bandwidth or CPU, or the client turned it off).
pub const LAYER_IDLE: Duration = Duration::from_millis(1000);

/// How often subscribers' layer targets are re-evaluated.
pub const LAYER_EVAL_INTERVAL: Duration = Duration::from_millis(250);

/// The layer index of a received stream's rid. The pages name their layers
/// `q`, `h`, `f` (quarter, half, full, as LiveKit does); other clients'
/// rids rank in the order their offer lists them.
pub fn layer_of(rid: Option<Rid>, rids: &Rids) -> Layer {
    let Some(rid) = rid else { return 0 };
    let name: &str = &rid;
    match name {
        "q" => 0,
        "h" => 1,
        "f" => 2,
        _ => match rids {
            Rids::Specific(v) => v.iter().position(|r| *r == rid).unwrap_or(0).min(MAX_LAYERS - 1) as Layer,
            _ => 0,
        },
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    last_packet: Option<Instant>,
    /// From the last keyframe's VP8 header.
    width: u16,
    height: u16,
    /// Bytes in the current rate window and the ones before it, newest first.
    bytes: [u64; RATE_WINDOWS],
    window_start: Option<Instant>,
}

/// Layer bitrates are measured over this many windows of [`RATE_WINDOW`]
/// (about two seconds: long enough that the keyframes a switch asks for do
/// not make a layer look twice as expensive).
const RATE_WINDOWS: usize = 4;
const RATE_WINDOW: Duration = Duration::from_millis(500);

/// Bytes a packet takes beyond its payload as a receiver's estimator counts
/// it: RTP header with our extensions, SRTP tag.
const RTP_OVERHEAD: u64 = 42;

/// One published video track's layers as seen on this shard (from the
/// packets it forwards; no state crosses shards).
#[derive(Debug, Default)]
pub struct LayerStats {
    layers: [Seen; MAX_LAYERS],
}

impl LayerStats {
    /// Counts one packet of `layer` (`bytes` of payload); `size` is the
    /// resolution a keyframe declares.
    pub fn on_packet(&mut self, layer: Layer, bytes: usize, size: Option<(u16, u16)>, now: Instant) {
        let Some(s) = self.layers.get_mut(layer as usize) else { return };
        s.last_packet = Some(now);
        if let Some((w, h)) = size {
            (s.width, s.height) = (w, h);
        }
        match s.window_start {
            Some(t) if now < t + RATE_WINDOW => {}
            Some(t) if now < t + RATE_WINDOW * RATE_WINDOWS as u32 => {
                // Shift by as many windows as passed.
                let mut start = t;
                while now >= start + RATE_WINDOW {
                    s.bytes.rotate_right(1);
                    s.bytes[0] = 0;
                    start += RATE_WINDOW;
                }
                s.window_start = Some(start);
            }
            _ => {
                s.bytes = [0; RATE_WINDOWS];
                s.window_start = Some(now);
            }
        }
        s.bytes[0] += bytes as u64 + RTP_OVERHEAD;
    }

    /// What `layer` has been sending, in bits per second (RTP packets, as
    /// a receiver counts them), over about the last two seconds (0 when idle).
    pub fn bitrate(&self, layer: Layer, now: Instant) -> u64 {
        let Some(s) = self.layers.get(layer as usize) else { return 0 };
        let Some(start) = s.window_start.filter(|_| self.is_active(layer, now)) else { return 0 };
        // The current window so far plus the whole ones before it.
        let whole = s.bytes[1..].iter().take_while(|b| **b > 0).count() as u32;
        let span = now.saturating_duration_since(start) + RATE_WINDOW * whole;
        let span = span.max(Duration::from_millis(100)).as_secs_f64();
        (s.bytes.iter().sum::<u64>() as f64 * 8.0 / span) as u64
    }

    pub fn is_active(&self, layer: Layer, now: Instant) -> bool {
        self.layers
            .get(layer as usize)
            .and_then(|s| s.last_packet)
            .is_some_and(|t| now.saturating_duration_since(t) < LAYER_IDLE)
    }

    /// More than one layer has been seen: switching needs keyframes.
    pub fn is_simulcast(&self) -> bool {
        self.layers[1..].iter().any(|s| s.last_packet.is_some())
    }

    /// The resolution of `layer`'s last keyframe, if one was seen.
    pub fn size(&self, layer: Layer) -> Option<(u16, u16)> {
        self.layers.get(layer as usize).filter(|s| s.height > 0).map(|s| (s.width, s.height))
    }

    /// `layer`'s height, from its keyframes or else from the nearest layer
    /// whose keyframes were seen, assuming a factor of two between layers.
    fn height_estimate(&self, layer: Layer) -> Option<u32> {
        (0..MAX_LAYERS as Layer)
            .filter_map(|k| self.size(k).map(|(_, h)| (k, u32::from(h))))
            .min_by_key(|(k, _)| k.abs_diff(layer))
            .map(|(k, h)| if layer >= k { h << (layer - k) } else { h >> (k - layer) })
    }

    /// The best layer for a subscriber that shows the video `max_height`
    /// lines tall: the smallest active layer at least that tall (a taller
    /// one would be wasted), else the tallest active one; with no limit, the
    /// top active layer. `None` while no layer is active. A layer whose
    /// keyframe has not passed here yet is taken to be twice as tall as the
    /// layer below it (the pages scale by 4, 2, 1; so does LiveKit).
    pub fn best_for(&self, max_height: Option<u32>, now: Instant) -> Option<Layer> {
        self.pick(max_height, (0..MAX_LAYERS as Layer).filter(|l| self.is_active(*l, now)))
    }

    /// The layer a subscriber showing `max_height` lines would take if the
    /// publisher sent every layer in `offered` (what dynacast asks for):
    /// the same rule as [`best_for`](Self::best_for), over offered layers.
    pub fn wanted_of(&self, max_height: Option<u32>, offered: [bool; MAX_LAYERS]) -> Option<Layer> {
        self.pick(max_height, (0..MAX_LAYERS as Layer).filter(|l| offered[*l as usize]))
    }

    /// The first of `layers` (ascending) at least `max_height` tall, else the last.
    pub fn pick(&self, max_height: Option<u32>, layers: impl Iterator<Item = Layer>) -> Option<Layer> {
        let mut top = None;
        for l in layers {
            let tall_enough = match (max_height, self.height_estimate(l)) {
                (None, _) | (Some(_), None) => false,
                (Some(max), Some(h)) => h >= max,
            };
            if tall_enough {
                return Some(l);
            }
            top = Some(l);
        }
        top
    }
}

/// A subscriber's layer of one video track.
#[derive(Debug, Clone)]
pub struct LayerChoice {
    /// The layer being forwarded; `None` until the first packet went out.
    pub current: Option<Layer>,
    /// The layer we switch to at its next keyframe.
    pub target: Layer,
    /// The subscriber's own limit (`subscription` message).
    pub max_height: Option<u32>,
    /// False when the subscriber turned this track off.
    pub enabled: bool,
    /// When a keyframe of `target` was last asked for, while switching.
    asked_at: Option<Instant>,
    /// The highest layer the leg's bandwidth allows (`None`: no estimate
    /// yet, no limit); set by [`crate::core::allocate`].
    pub cap: Option<Layer>,
    /// The layer the last allocation left it on.
    pub allocated: Option<Layer>,
    /// Not even the lowest layer fits the leg's bandwidth: no video for now.
    pub paused: bool,
}

impl Default for LayerChoice {
    fn default() -> Self {
        LayerChoice {
            current: None,
            target: (MAX_LAYERS - 1) as Layer,
            max_height: None,
            enabled: true,
            asked_at: None,
            cap: None,
            allocated: None,
            paused: false,
        }
    }
}

/// What to do with one packet on one subscriber's leg.
#[derive(Debug, PartialEq, Eq)]
pub enum Pass {
    Forward,
    /// Forward: the first packet of the target layer's keyframe; the leg switched.
    Switched,
    Skip,
}

impl LayerChoice {
    /// Decides for a packet of `layer` (`keyframe`: it starts one).
    /// Without simulcast (one layer seen) everything goes out; with it, a
    /// leg starts or switches only at a keyframe of its target.
    pub fn pass(&mut self, layer: Layer, keyframe: bool, simulcast: bool) -> Pass {
        if !self.enabled || self.paused {
            return Pass::Skip;
        }
        if self.current == Some(layer) {
            return Pass::Forward;
        }
        if !simulcast || (layer == self.target && keyframe) {
            self.current = Some(layer);
            self.asked_at = None;
            return Pass::Switched;
        }
        Pass::Skip
    }

    /// Re-targets from what the track's layers look like now. Returns the
    /// layer to ask a keyframe of: a new target, or one whose keyframe has
    /// not come a second after it was asked for (the request was lost).
    pub fn retarget(&mut self, stats: &LayerStats, now: Instant) -> Option<Layer> {
        if !self.enabled || self.paused {
            return None;
        }
        let wanted = stats.best_for(self.max_height, now)?;
        // The highest active layer at or below both the wish and the cap.
        let best = match self.cap {
            Some(cap) if cap < wanted => (0..=cap).rev().find(|l| stats.is_active(*l, now)).unwrap_or(0),
            _ => wanted,
        };
        let changed = best != self.target;
        self.target = best;
        if self.current == Some(best) {
            self.asked_at = None;
            return None;
        }
        match self.asked_at {
            Some(t) if !changed && now < t + SWITCH_RETRY => None,
            _ => {
                self.asked_at = Some(now);
                Some(best)
            }
        }
    }
}

/// A switch still waiting this long for its keyframe asks again.
const SWITCH_RETRY: Duration = Duration::from_secs(1);

/// The length of the VP8 payload descriptor (RFC 7741 4.2) that starts
/// `payload`, if it is all there.
pub fn vp8_descriptor_len(payload: &[u8]) -> Option<usize> {
    let b0 = *payload.first()?;
    let mut i = 1;
    if b0 & 0x80 != 0 {
        let x = *payload.get(1)?;
        i = 2;
        if x & 0x80 != 0 {
            i += if payload.get(i)? & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1;
        }
        if x & 0x30 != 0 {
            i += 1;
        }
    }
    (i <= payload.len()).then_some(i)
}

/// The width and height a VP8 keyframe declares (RFC 6386 9.1), if
/// `payload` (RTP payload, descriptor included) starts one.
pub fn vp8_keyframe_size(payload: &[u8]) -> Option<(u16, u16)> {
    let b0 = *payload.first()?;
    if b0 & 0x10 == 0 || b0 & 0x07 != 0 {
        return None;
    }
    let i = vp8_descriptor_len(payload)?;
    let frame = payload.get(i..i + 10)?;
    if frame[0] & 0x01 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
    let h = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
    Some((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats_with(now: Instant, sizes: &[Option<(u16, u16)>]) -> LayerStats {
        let mut s = LayerStats::default();
        for (l, size) in sizes.iter().enumerate() {
            s.on_packet(l as Layer, 1000, *size, now);
        }
        s
    }

    #[test]
    fn the_smallest_layer_that_fills_the_tile_is_chosen() {
        let now = Instant::now();
        let s = stats_with(now, &[Some((320, 180)), Some((640, 360)), Some((1280, 720))]);
        assert_eq!(s.best_for(None, now), Some(2));
        assert_eq!(s.best_for(Some(300), now), Some(1), "the smallest layer that fills 300 lines");
        assert_eq!(s.best_for(Some(180), now), Some(0));
        assert_eq!(s.best_for(Some(90), now), Some(0));
        // Taller than every layer: the top one.
        assert_eq!(s.best_for(Some(1080), now), Some(2));
    }

    #[test]
    fn unseen_sizes_are_estimated_from_a_seen_layer() {
        let now = Instant::now();
        let s = stats_with(now, &[Some((320, 180)), None, None]);
        assert_eq!(s.best_for(Some(300), now), Some(1));
        assert_eq!(s.best_for(Some(700), now), Some(2));
    }

    #[test]
    fn an_idle_layer_is_not_chosen() {
        let t0 = Instant::now();
        let mut s = stats_with(t0, &[Some((320, 180)), Some((640, 360)), Some((1280, 720))]);
        let t1 = t0 + LAYER_IDLE + Duration::from_millis(1);
        s.on_packet(0, 100, None, t1);
        s.on_packet(1, 100, None, t1);
        assert_eq!(s.best_for(None, t1), Some(1));
    }

    #[test]
    fn a_switch_waits_for_a_keyframe_of_the_target() {
        let mut c = LayerChoice { target: 0, ..Default::default() };
        assert_eq!(c.pass(0, false, true), Pass::Skip, "simulcast starts on a keyframe");
        assert_eq!(c.pass(0, true, true), Pass::Switched);
        assert_eq!(c.pass(0, false, true), Pass::Forward);
        c.target = 2;
        assert_eq!(c.pass(2, false, true), Pass::Skip);
        assert_eq!(c.pass(0, false, true), Pass::Forward, "the current layer flows until then");
        assert_eq!(c.pass(2, true, true), Pass::Switched);
        assert_eq!(c.pass(0, false, true), Pass::Skip);
    }

    #[test]
    fn a_single_layer_track_forwards_at_once() {
        let mut c = LayerChoice { target: 0, ..Default::default() };
        assert_eq!(c.pass(0, false, false), Pass::Switched);
        assert_eq!(c.pass(0, false, false), Pass::Forward);
    }

    #[test]
    fn a_disabled_track_forwards_nothing() {
        let mut c = LayerChoice { enabled: false, ..Default::default() };
        assert_eq!(c.pass(2, true, true), Pass::Skip);
    }

    #[test]
    fn keyframe_size_is_read_from_the_vp8_header() {
        // Descriptor: X, S, PID 0; I with a 15-bit picture id; then a
        // keyframe header for 640x360.
        let mut p = vec![0x90, 0x80, 0x81, 0x23];
        p.extend_from_slice(&[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01]);
        assert_eq!(vp8_keyframe_size(&p), Some((640, 360)));
        p[4] |= 0x01; // an interframe
        assert_eq!(vp8_keyframe_size(&p), None);
    }

    #[test]
    fn rids_map_to_layers() {
        let any = Rids::Any;
        assert_eq!(layer_of(None, &any), 0);
        assert_eq!(layer_of(Some("f".into()), &any), 2);
        let listed = Rids::Specific(vec!["lo".into(), "hi".into()]);
        assert_eq!(layer_of(Some("hi".into()), &listed), 1);
    }
}
