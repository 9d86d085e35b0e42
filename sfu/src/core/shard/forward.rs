//! Forwarding: a received packet is written on every local subscriber's leg
//! (shared, not copied) and handed once to each other shard with
//! subscribers. Writing only queues it in str0m; [`ShardCore::drain_written`]
//! releases each written leg once per receive batch.

use std::sync::Arc;
use std::time::Instant;

use str0m::rtp::RtpWrite;
use str0m::Input;
use tracing::debug;

use str0m::format::Codec;

use super::{Fabric, ShardCore, Work};
use crate::core::command::{MediaMsg, MediaPacket};
use crate::core::layers::{vp8_keyframe_size, Pass, MAX_LAYERS};
use crate::core::participant::Participant;

impl ShardCore {
    pub(super) fn forward(&mut self, pkt: Arc<MediaPacket>, from_remote: bool, now: Instant) {
        let Fabric { routes, media_out, written, written_at, stats, work, .. } = &mut self.fabric;
        let Some(route) = routes.get_mut(&pkt.track) else { return };
        if !from_remote {
            for shard in &route.remote_shards {
                media_out.push_back((*shard, MediaMsg::Rtp(pkt.clone())));
            }
        }
        let video = pkt.codec == Codec::Vp8;
        if video {
            let size = if pkt.keyframe { vp8_keyframe_size(&pkt.payload) } else { None };
            route.layers.on_packet(pkt.layer, pkt.payload.len(), size, now);
        }
        let simulcast = video && route.layers.is_simulcast();
        if !from_remote {
            if let Some((tap, source)) = &route.tap {
                // The best layer flowing is recorded; a new one starts at a keyframe.
                let best = if simulcast { route.layers.best_for(None, now).unwrap_or(0) } else { 0 };
                if video && route.tap_layer != Some(best) {
                    debug!(track = %pkt.track, from = ?route.tap_layer, to = best, "recorded layer");
                    route.tap_layer = Some(best);
                    work.push_back(Work::Keyframe(pkt.track, best));
                }
                if (!video || pkt.layer == best) && !tap.offer(*source, &pkt) {
                    stats.record_dropped += 1;
                }
            }
        }
        for &slot in &route.subscribers {
            let Some(p) = self.peers.get_mut(slot) else { continue };
            match write_rtp(p, &pkt, simulcast, now) {
                Written::Yes => {}
                Written::NotReady => {
                    stats.dropped_not_ready += 1;
                    continue;
                }
                Written::OtherLayer => continue,
            }
            stats.rtp_forwarded += 1;
            // Drained after the receive batch (`drain_written`), not per
            // packet: str0m releases written packets on a timeout anyway.
            if !std::mem::replace(&mut p.written, true) {
                written.push(slot);
                written_at.get_or_insert(now);
            }
        }
    }

    /// Releases what was written on subscriber legs since the last drain
    /// (str0m sends written RTP on its next timeout), at most `max_legs` of
    /// them; true if some are left. The caller sends between calls, so the
    /// first subscribers of a large room need not wait for the last.
    pub fn drain_written(&mut self, now: Instant, max_legs: usize) -> bool {
        let n = self.fabric.written.len().min(max_legs);
        for i in 0..n {
            let slot = self.fabric.written[i];
            let gen = self.peers.generation(slot);
            let Some(p) = self.peers.get_mut(slot) else { continue };
            p.written = false;
            self.fabric.stats.rtc_drain_timeouts += 1;
            if let Err(e) = p.rtc.handle_input(Input::Timeout(now)) {
                debug!(participant = %p.id, "timeout input: {e}");
            }
            self.fabric.drive(p, slot, gen, now);
        }
        self.fabric.written.drain(..n);
        if self.fabric.written.is_empty() {
            self.fabric.written_at = None;
        }
        self.run_work(now);
        !self.fabric.written.is_empty()
    }
}

enum Written {
    Yes,
    NotReady,
    /// Not the simulcast layer this leg gets (or the subscriber turned it off).
    OtherLayer,
}

/// Writes one packet on a subscriber's leg, if it is ready and wants this
/// packet's layer.
fn write_rtp(p: &mut Participant, pkt: &MediaPacket, simulcast: bool, now: Instant) -> Written {
    if !p.connected {
        return Written::NotReady;
    }
    let Some(&i) = p.down_by_track.get(&pkt.track) else { return Written::NotReady };
    let d = &mut p.down[i];
    let (Some(ssrc), Some(pt)) = (d.ssrc, d.pts.iter().find(|(c, _)| *c == pkt.codec).map(|(_, pt)| *pt)) else {
        return Written::NotReady;
    };
    let video = pkt.codec == Codec::Vp8;
    match video.then(|| d.choice.pass(pkt.layer, pkt.keyframe, simulcast)) {
        Some(Pass::Skip) => return Written::OtherLayer,
        Some(Pass::Switched) => {
            d.forwarder.restart();
            d.picture_ids.restart();
        }
        Some(Pass::Forward) | None => {}
    }
    // Each layer is its own source: a switch renumbers from the leg's last packet.
    let source = pkt.track.0.wrapping_mul(MAX_LAYERS as u64).wrapping_add(u64::from(pkt.layer));
    let Some((seq, ts)) = d.forwarder.rewrite(source, pkt.seq_no, pkt.timestamp, now) else {
        return Written::NotReady;
    };
    let patch = if video { d.picture_ids.rewrite(source, &pkt.payload) } else { None };
    let mut api = p.rtc.direct_api();
    let Some(tx) = api.stream_tx(&ssrc) else { return Written::NotReady };
    let mut w = RtpWrite::new(pt, seq.into(), ts, pkt.arrival, pkt.payload.clone())
        .marker(pkt.marker)
        .ext_vals(pkt.ext_vals.clone())
        .nackable(true);
    if let Some(patch) = patch {
        w = w.vp8_patch(patch);
    }
    tx.write_rtp(w);
    Written::Yes
}
