//! Driving one participant's str0m `Rtc`: drain it until it asks for a
//! timeout (str0m's contract after every mutation) and turn its events into
//! work for the shard. Work that touches other participants is queued on the
//! fabric, never done here, so one participant is borrowed at a time.

use std::sync::Arc;
use std::time::Instant;

use str0m::bwe::BweKind;
use str0m::format::Codec;
use str0m::media::{Mid, Rid, Rids};
use str0m::rtp::{ExtensionValues, Vp8Descriptor};
use str0m::{Event, IceConnectionState, Output, Reason};
use tracing::{debug, info, warn};

use super::{Fabric, ShardOutput, Work};
use crate::core::command::{ClientEvent, ErrorCode, MediaPacket, RoomData, ShardEvent, Signal, TrackInfo};
use crate::core::demux::Slot;
use crate::core::dynacast::Dynacast;
use crate::core::ids::{TrackId, TrackKind, TrackSource};
use crate::core::layers::{self, MAX_LAYERS};
use crate::core::participant::{self, Participant, Published, SignalOutcome};
use crate::core::speech::SPEECH_INTERVAL;

impl Fabric {
    /// Drains `p` (in `slot`, generation `gen`) to its next `Output::Timeout`.
    pub(super) fn drive(&mut self, p: &mut Participant, slot: Slot, gen: u32, now: Instant) {
        loop {
            match p.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    let t = t + timer_slack(p.rtc.last_timeout_reason());
                    p.timeout = t;
                    if p.scheduled.is_none_or(|s| t < s) {
                        p.scheduled = Some(t);
                        self.timers.schedule(t, slot, gen);
                    }
                    break;
                }
                Ok(Output::Transmit(t)) => self.transmits.push_back(t),
                Ok(Output::Event(e)) => self.on_event(p, slot, e, now),
                Err(e) => {
                    warn!(participant = %p.id, room = %p.room, "rtc error: {e}");
                    self.work.push_back(Work::Gone(slot));
                    break;
                }
            }
        }
        if !p.rtc.is_alive() {
            self.work.push_back(Work::Gone(slot));
        }
    }

    /// A signalling message from `p`'s client.
    pub(super) fn on_signal(&mut self, p: &mut Participant, signal: Signal, now: Instant) {
        let pid = p.id;
        match participant::handle_signal(p, signal) {
            Err(ev) => self.outputs.push_back(ShardOutput::Client(pid, ev)),
            Ok(SignalOutcome::None) | Ok(SignalOutcome::Answer(None)) => {}
            Ok(SignalOutcome::Answer(Some(ev))) => self.outputs.push_back(ShardOutput::Client(pid, ev)),
            Ok(SignalOutcome::Ready(slots)) => {
                // Fresh legs start with a keyframe (if media already flows).
                for &i in &slots {
                    if let Some(t) = p.down[i].track.filter(|_| p.connected && p.down[i].kind == TrackKind::Video) {
                        self.work.push_back(Work::Keyframe(t, p.down[i].choice.target));
                    }
                }
            }
            Ok(SignalOutcome::Subscription(i)) => {
                let d = &mut p.down[i];
                if !d.choice.enabled {
                    // Back on later, it starts again at a keyframe.
                    d.choice.current = None;
                }
                let (Some(track), true) = (d.track, d.kind == TrackKind::Video) else { return };
                let Some(route) = self.routes.get(&track) else { return };
                if let Some(layer) = d.choice.retarget(&route.layers, now) {
                    self.work.push_back(Work::Keyframe(track, layer));
                }
            }
            Ok(SignalOutcome::Mute(mid, muted)) => {
                let track = p.published.iter().find(|(m, _)| m.to_string() == mid).map(|(_, t)| t.track);
                let out = match track {
                    Some(track) => ShardOutput::Control(ShardEvent::TrackMuted { participant: pid, track, muted }),
                    None => ShardOutput::Client(
                        pid,
                        ClientEvent::Error {
                            code: ErrorCode::NotAllowed,
                            message: format!("no published track on mid {mid}"),
                        },
                    ),
                };
                self.outputs.push_back(out);
            }
        }
    }

    /// Handles one str0m event of participant `p` (in `slot`).
    fn on_event(&mut self, p: &mut Participant, slot: Slot, e: Event, now: Instant) {
        match e {
            Event::Connected => {
                p.connected = true;
                info!(participant = %p.id, room = %p.room, "media connected");
                // Packets before this were dropped: every ready video leg needs a keyframe.
                for d in p.down.iter().filter(|d| d.ssrc.is_some() && d.kind == TrackKind::Video) {
                    if let Some(t) = d.track {
                        self.work.push_back(Work::Keyframe(t, d.choice.target));
                    }
                }
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                info!(participant = %p.id, room = %p.room, "ice disconnected");
                self.work.push_back(Work::Gone(slot));
            }
            Event::MediaAdded(m) if m.direction.is_receiving() && !p.down_by_mid.contains_key(&m.mid) => {
                self.publish(p, slot, m.mid, m.kind.into(), now);
            }
            Event::MediaChanged(m) if !p.down_by_mid.contains_key(&m.mid) => {
                self.media_changed(p, slot, m.mid, m.direction.is_receiving(), now)
            }
            Event::RtpPacket(rtp) => {
                self.stats.rtp_in += 1;
                let Some((mid, rid)) = p.rtc.direct_api().stream_rx(&rtp.header.ssrc).map(|s| (s.mid(), s.rid()))
                else {
                    return;
                };
                let Some((track, codec)) = p.published_codec(mid, rtp.header.payload_type) else { return };
                let layer = match rid {
                    None => 0,
                    Some(_) => p.rtc.media(mid).map_or(0, |m| layers::layer_of(rid, m.rids_rx())),
                };
                if let Some(pubd) = p.published.get_mut(&mid) {
                    pubd.rids[layer as usize] = rid;
                    if let (TrackSource::Microphone, Some(level)) = (pubd.source, rtp.header.ext_vals.audio_level) {
                        pubd.speech.observe(level);
                        self.speech_due.get_or_insert(now + SPEECH_INTERVAL);
                    }
                }
                let vp8 = (codec == Codec::Vp8).then(|| Vp8Descriptor::parse(&rtp.payload).ok()).flatten();
                let keyframe = vp8.is_some_and(|d| d.starts_keyframe(&rtp.payload));
                let pkt = MediaPacket {
                    track,
                    codec,
                    seq_no: *rtp.seq_no,
                    timestamp: rtp.header.timestamp,
                    marker: rtp.header.marker,
                    ext_vals: end_to_end_extensions(&rtp.header.ext_vals),
                    payload: rtp.payload,
                    arrival: now,
                    layer,
                    keyframe,
                    vp8,
                    sender_info: rtp.last_sender_info,
                };
                self.work.push_back(Work::Forward { pkt: Arc::new(pkt), from_remote: false });
            }
            Event::KeyframeRequest(req) => {
                self.stats.keyframe_requests_in += 1;
                if let Some(d) = p.down_by_mid.get(&req.mid).map(|i| &p.down[*i]) {
                    if let Some(track) = d.track {
                        self.work.push_back(Work::Keyframe(track, d.choice.current.unwrap_or(d.choice.target)));
                    }
                }
            }
            Event::ChannelOpen(cid, label) => {
                debug!(participant = %p.id, room = %p.room, %label, "data channel open");
                p.channel.get_or_insert(cid);
            }
            Event::ChannelData(d) => {
                if !p.data_budget.take(d.data.len(), now) {
                    self.stats.data_rate_limited += 1;
                    if p.data_limit_told.is_none_or(|t| now >= t + participant::DATA_LIMIT_NOTICE_EVERY) {
                        p.data_limit_told = Some(now);
                        let message = "data channel messages over this participant's byte rate were dropped".into();
                        let ev = ClientEvent::Error { code: ErrorCode::RateLimited, message };
                        self.outputs.push_back(ShardOutput::Client(p.id, ev));
                    }
                    return;
                }
                let payload = super::tag_data(&p.identity, p.id, d.binary, &d.data);
                let msg = RoomData { room: p.room.clone(), from: p.id, binary: d.binary, payload };
                self.work.push_back(Work::Data { msg: Arc::new(msg), from_remote: false });
            }
            Event::ChannelClose(cid) if p.channel == Some(cid) => p.channel = None,
            // Its browser's estimate of what its link carries of what we send.
            Event::EgressBitrateEstimate(BweKind::Remb { estimate, .. }) => {
                tracing::trace!(participant = %p.id, estimate = estimate.as_u64(), "remb");
                p.budget.on_estimate(estimate.as_u64())
            }
            // NACKs this client sent us (as a subscriber), cumulative per m-line.
            Event::MediaEgressStats(s) => {
                let seen = p.nacks_seen.entry(s.mid).or_default();
                self.stats.nacks_received += s.nacks.saturating_sub(seen.0);
                seen.0 = s.nacks;
            }
            // NACKs we sent this client (as a publisher).
            Event::MediaIngressStats(s) => {
                let seen = p.nacks_seen.entry(s.mid).or_default();
                self.stats.nacks_sent += s.nacks.saturating_sub(seen.1);
                seen.1 = s.nacks;
            }
            _ => {}
        }
    }

    /// A client's m-line changed direction: it stopped or (re)started sending.
    fn media_changed(&mut self, p: &mut Participant, slot: Slot, mid: Mid, receiving: bool, now: Instant) {
        match p.published.get_mut(&mid) {
            Some(pubd) if pubd.active && !receiving => {
                pubd.active = false;
                let track = pubd.track;
                self.routes.clear_publisher(track);
                self.outputs.push_back(ShardOutput::Control(ShardEvent::TrackUnpublished { participant: p.id, track }));
            }
            Some(pubd) if !pubd.active && receiving => {
                let kind = pubd.kind;
                p.published.remove(&mid);
                self.publish(p, slot, mid, kind, now);
            }
            None if receiving => {
                let kind = p.rtc.media(mid).map(|m| m.kind().into()).unwrap_or(TrackKind::Video);
                self.publish(p, slot, mid, kind, now);
            }
            _ => {}
        }
    }

    fn publish(&mut self, p: &mut Participant, slot: Slot, mid: Mid, kind: TrackKind, now: Instant) {
        if !p.permissions.can_publish {
            return;
        }
        let track = TrackId::new(self.id, self.next_track);
        self.next_track += 1;
        let source = p.source_of(mid, kind);
        let codecs = p.negotiated_codecs(mid);
        let (rids, offered) = offered_layers(p, mid);
        let dynacast = (offered.iter().filter(|o| **o).count() > 1).then(|| Dynacast::new(offered, now));
        if dynacast.is_some() {
            self.layers_due.get_or_insert(now + layers::LAYER_EVAL_INTERVAL);
        }
        let pubd = Published { track, kind, source, codecs, active: true, rids, speech: Default::default(), dynacast };
        p.published.insert(mid, pubd);
        let route = self.routes.entry(track);
        route.publisher = Some((slot, mid));
        route.set_tap(p.record.clone().map(|t| (t, source)));
        info!(participant = %p.id, room = %p.room, %track, ?kind, source = source.as_str(), "track published");
        let info = TrackInfo { track, participant: p.id, identity: p.identity.clone(), kind, source, muted: false };
        self.outputs.push_back(ShardOutput::Control(ShardEvent::TrackPublished { track: info }));
    }
}

/// The simulcast layers `p`'s offer declares for `mid` (rid of each layer,
/// and which layers there are); none without simulcast.
fn offered_layers(p: &mut Participant, mid: Mid) -> ([Option<Rid>; MAX_LAYERS], [bool; MAX_LAYERS]) {
    let (mut rids, mut offered) = ([None; MAX_LAYERS], [false; MAX_LAYERS]);
    if let Some(Rids::Specific(list)) = p.rtc.media(mid).map(|m| m.rids_rx()) {
        for rid in list.iter().filter(|_| list.len() > 1) {
            let l = layers::layer_of(Some(*rid), &Rids::Specific(list.clone())) as usize;
            (rids[l], offered[l]) = (Some(*rid), true);
        }
    }
    (rids, offered)
}

/// How late a participant's own timer may fire. str0m checks for missing
/// packets every 33 ms and sends transport-cc feedback every 50 ms for each
/// publishing peer, about 45 full timeouts per peer per second (measured in
/// pairs). A leg that is forwarded to is drained ~50–100 times a second, and
/// every drain is a full timeout that does due NACK and feedback work too:
/// letting these two timers lag a little lets a drain absorb them. 10 ms on
/// a 33 ms NACK check or 50 ms feedback is well inside what loss repair and
/// the browser's bandwidth estimation tolerate. Every other timer (ICE,
/// DTLS, pacing, RTCP reports) keeps its time.
pub const NACK_TWCC_SLACK: std::time::Duration = std::time::Duration::from_millis(10);

fn timer_slack(reason: Reason) -> std::time::Duration {
    match reason {
        Reason::Nack | Reason::Twcc => NACK_TWCC_SLACK,
        _ => std::time::Duration::ZERO,
    }
}

/// The header extensions that describe the media itself and so travel to
/// subscribers. The others (mid, rid, transport-cc, abs-send-time) belong to
/// one leg: copying the publisher's mid would make the subscriber's browser
/// demux the packet onto the wrong m-line.
fn end_to_end_extensions(e: &ExtensionValues) -> ExtensionValues {
    ExtensionValues {
        audio_level: e.audio_level,
        voice_activity: e.voice_activity,
        video_orientation: e.video_orientation,
        video_content_type: e.video_content_type,
        abs_capture_time: e.abs_capture_time,
        play_delay_min: e.play_delay_min,
        play_delay_max: e.play_delay_max,
        video_timing: e.video_timing,
        frame_mark: e.frame_mark,
        ..Default::default()
    }
}
