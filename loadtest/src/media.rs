//! Synthetic media. Every payload ends with a probe: who sent it, on which
//! simulcast layer, its place in that stream and when it was sent (nanoseconds since the run's
//! epoch; senders and receivers share the process clock), so receivers can
//! measure loss, duplicates, reordering, jitter and the latency the server adds.
//!
//! Video is VP8-shaped: a payload descriptor (S bit on a frame's first packet),
//! a VP8 payload header with the key-frame bit and, on key frames, the start
//! code and the layer's size; frames follow the bitrate (key frames several times larger), are split
//! at `MAX_PAYLOAD` and the last packet carries the marker. Audio is one
//! Opus-sized packet per 20 ms.

use std::time::Duration;

pub const PROBE_MAGIC: [u8; 4] = *b"SBLT";
pub const PROBE_LEN: usize = 4 + 4 + 1 + 1 + 4 + 8;
pub const MAX_PAYLOAD: usize = 1100;
pub const AUDIO_PAYLOAD: usize = 80;
pub const AUDIO_INTERVAL: Duration = Duration::from_millis(20);
/// A key frame costs this many delta frames.
const KEYFRAME_WEIGHT: usize = 5;
pub const KEYFRAME_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Audio = 0,
    Video = 1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub sender: u32,
    pub kind: Kind,
    /// The simulcast layer (0 lowest); 0 without simulcast.
    pub layer: u8,
    pub seq: u32,
    pub sent_ns: u64,
}

impl Probe {
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&PROBE_MAGIC);
        out.extend_from_slice(&self.sender.to_be_bytes());
        out.push(self.kind as u8);
        out.push(self.layer);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.sent_ns.to_be_bytes());
    }

    /// Reads the probe at the end of `payload`, if there is one.
    pub fn read(payload: &[u8]) -> Option<Probe> {
        let p = payload.get(payload.len().checked_sub(PROBE_LEN)?..)?;
        if p[..4] != PROBE_MAGIC {
            return None;
        }
        let kind = match p[8] {
            0 => Kind::Audio,
            1 => Kind::Video,
            _ => return None,
        };
        Some(Probe {
            sender: u32::from_be_bytes(p[4..8].try_into().ok()?),
            kind,
            layer: p[9],
            seq: u32::from_be_bytes(p[10..14].try_into().ok()?),
            sent_ns: u64::from_be_bytes(p[14..22].try_into().ok()?),
        })
    }
}

/// Rewrites the send time of the probe at the end of `payload` (written by
/// [`Probe::write`]), for packets that waited in a pacer.
pub fn restamp(payload: &mut [u8], sent_ns: u64) {
    if let Some(at) = payload.len().checked_sub(8) {
        payload[at..].copy_from_slice(&sent_ns.to_be_bytes());
    }
}

/// One audio payload: filler then the probe.
pub fn audio_packet(probe: Probe) -> Vec<u8> {
    let mut v = vec![0xfc; AUDIO_PAYLOAD - PROBE_LEN];
    probe.write(&mut v);
    v
}

/// Splits video frames into RTP payloads.
pub struct VideoSource {
    pub bitrate_bps: u64,
    delta_bytes: usize,
    /// Width and height its key frames declare.
    size: (u16, u16),
    pub frame_interval: Duration,
    frames: u64,
    frames_per_key: u64,
    key_requested: bool,
}

impl VideoSource {
    pub fn new(bitrate_bps: u64, fps: u32, size: (u16, u16)) -> Self {
        let fps = fps.max(1) as u64;
        let frames_per_key = (KEYFRAME_INTERVAL.as_secs_f64() * fps as f64).max(1.0) as u64;
        // Bytes per period spread so that one key frame plus the deltas meet the bitrate.
        let period_bytes = bitrate_bps / 8 * frames_per_key / fps;
        let delta_bytes = (period_bytes as usize / (frames_per_key as usize - 1 + KEYFRAME_WEIGHT)).max(PROBE_LEN + 16);
        VideoSource {
            bitrate_bps,
            delta_bytes,
            size,
            frame_interval: Duration::from_secs_f64(1.0 / fps as f64),
            frames: 0,
            frames_per_key,
            key_requested: true,
        }
    }

    /// The next frame is a key frame (a subscriber asked).
    pub fn request_keyframe(&mut self) {
        self.key_requested = true;
    }

    /// Payloads of the next frame, each with a probe from `probe(i)`; the
    /// bool is true for a key frame.
    pub fn next_frame(&mut self, mut probe: impl FnMut() -> Probe) -> (bool, Vec<Vec<u8>>) {
        let key = self.key_requested || self.frames.is_multiple_of(self.frames_per_key);
        self.key_requested = false;
        self.frames += 1;
        let size = if key { self.delta_bytes * KEYFRAME_WEIGHT } else { self.delta_bytes };
        let room = MAX_PAYLOAD - PROBE_LEN - 1;
        let packets = size.div_ceil(room).max(1);
        let per = size / packets;
        let mut out = Vec::with_capacity(packets);
        for i in 0..packets {
            let mut v = Vec::with_capacity(per + PROBE_LEN + 11);
            // VP8 payload descriptor: S bit on the first packet, partition 0.
            v.push(if i == 0 { 0x10 } else { 0x00 });
            if i == 0 {
                // VP8 payload header: P (inverse key frame) bit, version 0, show_frame.
                v.extend_from_slice(&[if key { 0x10 } else { 0x11 }, 0x00, 0x00]);
                if key {
                    // Start code and the size (RFC 6386 9.1).
                    v.extend_from_slice(&[0x9d, 0x01, 0x2a]);
                    v.extend_from_slice(&self.size.0.to_le_bytes());
                    v.extend_from_slice(&self.size.1.to_le_bytes());
                }
            }
            v.resize(per.max(v.len() + 1), 0x55);
            probe().write(&mut v);
            out.push(v);
        }
        (key, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_roundtrip_and_frames_follow_the_bitrate() {
        let p = Probe { sender: 7, kind: Kind::Video, layer: 2, seq: 42, sent_ns: 123_456_789 };
        assert_eq!(Probe::read(&audio_packet(p)), Some(p));
        assert_eq!(Probe::read(b"too short"), None);

        let mut v = VideoSource::new(1_500_000, 30, (1280, 720));
        let mut seq = 0;
        let mut bytes = 0;
        let mut keys = 0;
        for _ in 0..60 {
            let (key, pkts) = v.next_frame(|| {
                seq += 1;
                Probe { sender: 1, kind: Kind::Video, layer: 0, seq, sent_ns: 0 }
            });
            keys += key as u32;
            assert_eq!(pkts[0][0] & 0x10, 0x10, "S bit on the first packet");
            assert_eq!(pkts[0][1] & 0x01, if key { 0 } else { 1 }, "P bit says key frame");
            assert!(pkts.iter().all(|p| p.len() <= MAX_PAYLOAD && Probe::read(p).is_some()));
            bytes += pkts.iter().map(|p| p.len()).sum::<usize>();
        }
        assert_eq!(keys, 1, "one key frame in two seconds");
        let bps = bytes as f64 * 8.0 / 2.0;
        assert!((bps - 1_500_000.0).abs() < 150_000.0, "bitrate {bps}");
    }

    #[test]
    fn restamp_changes_only_the_send_time() {
        let probe = Probe { sender: 7, kind: Kind::Video, layer: 1, seq: 42, sent_ns: 1 };
        let mut v = vec![0x55; 100];
        probe.write(&mut v);
        restamp(&mut v, 123_456);
        assert_eq!(Probe::read(&v), Some(Probe { sent_ns: 123_456, ..probe }));
    }
}
