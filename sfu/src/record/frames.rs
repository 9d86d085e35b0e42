//! RTP packets (in sequence order, see `reorder`) → whole frames: VP8
//! frames reassembled from their packets, Opus packets as they are.
//!
//! A VP8 inter frame needs every frame before it back to a keyframe, so
//! after any loss (or a frame that does not complete) video waits for the
//! next keyframe, and says it needs one so the recorder can ask for it.

use std::time::Instant;

use str0m::rtp::rtcp::SenderInfo;

use crate::core::command::MediaPacket;
use crate::core::layers::{vp8_descriptor_len, vp8_keyframe_size};

/// One encoded frame, with what maps it onto the recording's timeline.
#[derive(Debug)]
pub struct Frame {
    pub data: Vec<u8>,
    pub rtp_time: u32,
    pub arrival: Instant,
    pub keyframe: bool,
    /// Width and height, on VP8 keyframes.
    pub size: Option<(u16, u16)>,
    pub sender_info: Option<SenderInfo>,
}

impl Frame {
    fn of(pkt: &MediaPacket, data: Vec<u8>) -> Self {
        Frame {
            data,
            rtp_time: pkt.timestamp,
            arrival: pkt.arrival,
            keyframe: pkt.keyframe,
            size: if pkt.keyframe { vp8_keyframe_size(&pkt.payload) } else { None },
            sender_info: pkt.sender_info,
        }
    }
}

/// Reassembles VP8 frames from one stream's packets.
#[derive(Debug)]
pub struct Vp8Frames {
    partial: Option<Frame>,
    /// Frames are dropped until a keyframe: at the start and after loss.
    need_keyframe: bool,
}

impl Default for Vp8Frames {
    fn default() -> Self {
        Vp8Frames { partial: None, need_keyframe: true }
    }
}

impl Vp8Frames {
    /// Whether the stream waits for a keyframe (ask the publisher for one).
    pub fn needs_keyframe(&self) -> bool {
        self.need_keyframe
    }

    /// Packets were lost before the next one: the frame being built and
    /// every frame until a keyframe are undecodable.
    pub fn on_lost(&mut self) {
        self.partial = None;
        self.need_keyframe = true;
    }

    /// A packet in sequence order; a frame when it completes one.
    pub fn on_packet(&mut self, pkt: &MediaPacket) -> Option<Frame> {
        let b0 = *pkt.payload.first()?;
        let Some(offset) = vp8_descriptor_len(&pkt.payload) else {
            self.on_lost();
            return None;
        };
        let starts_frame = b0 & 0x10 != 0 && b0 & 0x07 == 0;
        if starts_frame {
            if self.partial.is_some() {
                // The last frame never got its marker packet.
                self.on_lost();
            }
            self.partial = Some(Frame::of(pkt, Vec::with_capacity(pkt.payload.len() * 4)));
        }
        let frame = self.partial.as_mut()?;
        if frame.rtp_time != pkt.timestamp {
            self.on_lost();
            return None;
        }
        frame.data.extend_from_slice(&pkt.payload[offset..]);
        if !pkt.marker {
            return None;
        }
        let frame = self.partial.take()?;
        if self.need_keyframe && !frame.keyframe {
            return None;
        }
        self.need_keyframe = false;
        Some(frame)
    }
}

/// An Opus packet is a frame.
pub fn opus_frame(pkt: &MediaPacket) -> Option<Frame> {
    (!pkt.payload.is_empty()).then(|| Frame::of(pkt, pkt.payload.to_vec()))
}
