//! Forwarding: a received packet is written on every local subscriber's leg
//! (shared, not copied) and handed once to each other shard with
//! subscribers. Writing only queues it in str0m; [`ShardCore::drain_written`]
//! releases each written leg once per receive batch.

use std::sync::Arc;
use std::time::Instant;

use str0m::rtp::RtpWrite;
use str0m::Input;
use tracing::debug;

use super::{Fabric, ShardCore};
use crate::core::command::{MediaMsg, MediaPacket};
use crate::core::participant::Participant;

impl ShardCore {
    pub(super) fn forward(&mut self, pkt: Arc<MediaPacket>, from_remote: bool, now: Instant) {
        let Fabric { routes, media_out, written, written_at, stats, .. } = &mut self.fabric;
        let Some(route) = routes.get(&pkt.track) else { return };
        if !from_remote {
            for shard in &route.remote_shards {
                media_out.push_back((*shard, MediaMsg::Rtp(pkt.clone())));
            }
        }
        for &slot in &route.subscribers {
            let Some(p) = self.peers.get_mut(slot) else { continue };
            if !write_rtp(p, &pkt, now) {
                stats.dropped_not_ready += 1;
                continue;
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

/// Writes one packet on a subscriber's leg; false if the leg is not ready.
fn write_rtp(p: &mut Participant, pkt: &MediaPacket, now: Instant) -> bool {
    if !p.connected {
        return false;
    }
    let Some(&i) = p.down_by_track.get(&pkt.track) else { return false };
    let d = &mut p.down[i];
    let (Some(ssrc), Some(pt)) = (d.ssrc, d.pts.iter().find(|(c, _)| *c == pkt.codec).map(|(_, pt)| *pt)) else {
        return false;
    };
    let Some((seq, ts)) = d.forwarder.rewrite(pkt.track.0, pkt.seq_no, pkt.timestamp, now) else { return false };
    let mut api = p.rtc.direct_api();
    let Some(tx) = api.stream_tx(&ssrc) else { return false };
    tx.write_rtp(
        RtpWrite::new(pt, seq.into(), ts, pkt.arrival, pkt.payload.clone())
            .marker(pkt.marker)
            .ext_vals(pkt.ext_vals.clone())
            .nackable(true),
    );
    true
}
