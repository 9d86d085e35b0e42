//! One participant: its str0m `Rtc`, what it publishes, what it receives
//! (downstream slots) and the state of SDP negotiation with its client.
//!
//! Negotiation follows "perfect negotiation" with the server as the impolite
//! side: a client offer that crosses a pending server offer is ignored, and
//! the client (polite) rolls back, answers ours and offers again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::record::Tap;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::ChannelId;
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequestKind, Mid, Pt, Rid};
use str0m::net::TcpType;
use str0m::rtp::{Extension, ExtensionMap, Ssrc};
use str0m::{Candidate, Rtc, RtcConfig};

use super::allocate::LegBudget;
use super::command::TrackInfo;
use super::command::{ClientEvent, ErrorCode, JoinRequest, MidInfo, Permissions, Signal};
use super::demux::Transport;
use super::dynacast::Dynacast;
use super::forwarder::{Forwarder, PictureIds};
use super::ids::{ParticipantId, TrackId, TrackKind, TrackSource};
use super::layers::{Layer, LayerChoice, MAX_LAYERS};
use super::rate::ByteBudget;
use super::speech::SpeechMeter;

/// Subscriptions arriving within this window share one renegotiation: a
/// publisher's audio and video, or a whole room on join, cost one offer.
pub const OFFER_BATCH: Duration = Duration::from_millis(20);

/// What one participant may make the server hold or do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParticipantLimits {
    /// Tracks it may publish at once (more: `too_many_tracks`).
    pub tracks: usize,
    /// Data channel bytes per second it may have relayed, with twice that
    /// as a burst (0: no limit); past it messages are dropped and the
    /// client is told (`rate_limited`).
    pub data_bytes_per_second: u64,
}

/// Microphone, camera, screen and its audio are four.
pub const DEFAULT_MAX_TRACKS: usize = 16;
/// 64 Mbit/s of chat and files; a 16 MiB burst (a 5 MB file goes at once).
pub const DEFAULT_DATA_BYTES_PER_SECOND: u64 = 8 << 20;

impl Default for ParticipantLimits {
    fn default() -> Self {
        ParticipantLimits { tracks: DEFAULT_MAX_TRACKS, data_bytes_per_second: DEFAULT_DATA_BYTES_PER_SECOND }
    }
}

/// How often a client sending too much data is told so.
pub const DATA_LIMIT_NOTICE_EVERY: Duration = Duration::from_secs(10);

/// How often str0m reports per-leg stats (NACKs are counted from them).
pub const STATS_INTERVAL: Duration = Duration::from_secs(5);

/// A peer that has not completed ICE this long after joining is dropped.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// A connected participant whose client sent nothing we accepted for this
/// long has lost its media path (consent freshness): it is removed. str0m
/// (ICE-lite) notices the same after 15 s without a check, but not while a
/// client that cannot get through keeps restarting ICE.
pub const SILENCE_TIMEOUT: Duration = Duration::from_secs(15);

/// Media the client sends to us.
pub struct Published {
    pub track: TrackId,
    pub kind: TrackKind,
    pub source: TrackSource,
    /// Payload type → codec, learnt from the negotiated session.
    pub codecs: Vec<(Pt, Codec)>,
    /// Whether the track is announced (not stopped by a later offer).
    pub active: bool,
    /// The rid of each simulcast layer, as its packets arrive (keyframe
    /// requests for a layer go to its stream).
    pub rids: [Option<Rid>; MAX_LAYERS],
    /// Whether it speaks (microphones only).
    pub speech: SpeechMeter,
    /// Which of its simulcast layers the publisher was told to send.
    pub dynacast: Option<Dynacast>,
}

/// A sending m-line towards this participant. It is keyed by the publisher's
/// identity and source, so a publisher that rejoins continues on the same
/// slot, with continuous sequence numbers and no renegotiation.
pub struct DownTrack {
    pub identity: Arc<str>,
    pub source: TrackSource,
    pub kind: TrackKind,
    pub mid: Mid,
    /// The track currently fed into this slot; `None` while vacant.
    pub track: Option<TrackId>,
    /// Set once the client answered the offer that added the slot.
    pub ssrc: Option<Ssrc>,
    pub pts: Vec<(Codec, Pt)>,
    pub forwarder: Forwarder,
    /// Which simulcast layer goes out, and the subscriber's wishes.
    pub choice: LayerChoice,
    pub picture_ids: PictureIds,
}

/// What [`Participant::subscribe`] did.
pub struct Subscribed {
    /// The leg the track flows on, if it is negotiated already.
    pub ready: Option<usize>,
    /// The track it replaced on that leg (the same source published anew).
    pub replaced: Option<TrackId>,
}

struct Wanted {
    track: TrackInfo,
}

#[derive(Default)]
struct Negotiation {
    /// Our offer awaiting the client's answer.
    pending: Option<(SdpPendingOffer, Vec<usize>)>,
    /// Subscriptions waiting for the next offer.
    wanted: Vec<Wanted>,
    /// The client's first offer was accepted; we only offer after that.
    started: bool,
}

pub struct Participant {
    pub id: ParticipantId,
    pub room: Arc<str>,
    pub identity: Arc<str>,
    pub permissions: Permissions,
    pub rtc: Rtc,
    pub ufrag: String,
    /// Remote addresses admitted by the demux for this participant.
    pub addrs: Vec<Transport>,
    /// Deadline the participant asked for in its last `Output::Timeout`.
    pub timeout: Instant,
    /// Earliest deadline queued for it in the shard's timers.
    pub scheduled: Option<Instant>,
    pub joined_at: Instant,
    /// When a packet from its client was last accepted.
    pub last_heard: Instant,
    pub connected: bool,
    pub published: FxHashMap<Mid, Published>,
    /// Sources the client declared per mid in its offers.
    sources: HashMap<String, TrackSource>,
    pub down: Vec<DownTrack>,
    pub down_by_track: FxHashMap<TrackId, usize>,
    pub down_by_mid: FxHashMap<Mid, usize>,
    neg: Negotiation,
    pub channel: Option<ChannelId>,
    /// When queued subscriptions should be offered (see [`OFFER_BATCH`]).
    pub offer_due: Option<Instant>,
    /// Cumulative NACK counts str0m last reported per m-line, to count the
    /// growth: (received from this client, sent to it).
    pub nacks_seen: HashMap<Mid, (u64, u64)>,
    /// RTP was written on one of our legs and awaits the shard's drain.
    pub written: bool,
    /// What the client's browser estimates its link carries of what we
    /// send it, from its REMB reports, and the layer allocation made of it.
    pub budget: LegBudget,
    /// Set while it is recorded: its routes' taps are clones of this.
    pub record: Option<Tap>,
    /// Tracks it may publish at once (see `check_offer`).
    pub max_tracks: usize,
    /// What it may still have relayed over the data channel.
    pub data_budget: ByteBudget,
    /// When it was last told its data channel messages were dropped.
    pub data_limit_told: Option<Instant>,
}

/// Retransmissions a leg keeps answering NACKs with, as a share of what it
/// sends (over the last second). str0m's default, 15 %, is below what a
/// link losing 10 % each way needs once lost retransmissions are asked again
/// (it then drops every queued resend, and frames freeze); past half, the
/// link is better served by a lower layer than by more repairs.
const RTX_RATIO_CAP: f32 = 0.5;
/// Packets and age of the cache NACKs are answered from (str0m's defaults:
/// about 3 s of a 720p layer).
const RTX_CACHE_PACKETS: usize = 2000;
const RTX_CACHE_AGE: Duration = Duration::from_secs(3);

/// The codecs every leg negotiates: forwarding without transcoding needs all
/// participants to share them, and Opus + VP8 work in every WebRTC browser.
///
/// What a subscriber's link carries is estimated by the subscriber's own
/// browser: every leg negotiates abs-send-time and REMB, we stamp no
/// transport-wide sequence numbers on what we send (vendored str0m, patch
/// 4), so the browser runs its receive-side estimator and reports it with
/// REMB a few times a second. That costs the server nothing per packet
/// (send-side estimation on every leg cost a fifth of its CPU, see
/// benches/README.md). A participant that may not publish also gets no
/// transport-cc at all: it only serves estimating what the client sends.
pub fn rtc_config(can_publish: bool) -> RtcConfig {
    let config = RtcConfig::new()
        .set_ice_lite(true)
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        // str0m's default (128 KiB) would refuse relayed data long before
        // our own per-recipient bound does.
        .set_sctp_max_buffered_amount(super::shard::MAX_DATA_BUFFERED)
        // Per-leg stats once in a while, for the NACK counters.
        .set_stats_interval(Some(STATS_INTERVAL));
    if can_publish {
        return config;
    }
    let mut exts = ExtensionMap::empty();
    for (id, ext) in ExtensionMap::standard().iter() {
        if !matches!(ext, Extension::TransportSequenceNumber) {
            exts.set(id, ext.clone());
        }
    }
    config.set_extension_map(exts)
}

impl Participant {
    /// `udp`: the shard's UDP candidates (one per address family); `tcp`:
    /// the ICE-TCP listener's, if any (passive, so the client connects to
    /// it; str0m gives host TCP a lower priority than host UDP, so it is
    /// used only when UDP fails).
    pub fn new(id: ParticipantId, req: JoinRequest, udp: &[SocketAddr], tcp: Option<SocketAddr>, now: Instant) -> Self {
        let mut rtc = rtc_config(req.permissions.can_publish).build(now);
        for addr in udp {
            // Invariant: a host candidate for a concrete socket address is always valid.
            let c = Candidate::host(*addr, "udp").expect("host candidate");
            rtc.add_local_candidate(c);
        }
        if let Some(tcp) = tcp {
            let c = Candidate::builder().tcp().host(tcp).tcptype(TcpType::Passive).build();
            rtc.add_local_candidate(c.expect("passive TCP host candidate"));
        }
        let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        Participant {
            id,
            room: req.room,
            identity: req.identity,
            permissions: req.permissions,
            rtc,
            ufrag,
            addrs: Vec::new(),
            timeout: now,
            scheduled: None,
            joined_at: now,
            last_heard: now,
            connected: false,
            published: FxHashMap::default(),
            sources: HashMap::new(),
            down: Vec::new(),
            down_by_track: FxHashMap::default(),
            down_by_mid: FxHashMap::default(),
            neg: Negotiation::default(),
            channel: None,
            offer_due: None,
            nacks_seen: HashMap::new(),
            written: false,
            budget: LegBudget::default(),
            record: None,
            max_tracks: DEFAULT_MAX_TRACKS,
            data_budget: ByteBudget::new(0, 0, now),
            data_limit_told: None,
        }
    }

    /// Holds it to `limits` from now on.
    pub fn set_limits(&mut self, limits: ParticipantLimits, now: Instant) {
        self.max_tracks = limits.tracks;
        let rate = limits.data_bytes_per_second;
        self.data_budget = ByteBudget::new(rate, rate.saturating_mul(2), now);
    }

    /// Handles the client's offer; returns the answer or an error for the client.
    pub fn accept_offer(
        &mut self,
        sdp: &str,
        sources: Vec<(String, TrackSource)>,
    ) -> Result<Option<ClientEvent>, ClientEvent> {
        if self.neg.pending.is_some() {
            // Glare: we are impolite. The client rolls back, answers ours and re-offers.
            tracing::debug!(participant = %self.id, "client offer crossed ours; ignoring it");
            return Ok(None);
        }
        check_offer(sdp, self.permissions.can_publish, self.max_tracks)
            .map_err(|(code, message)| ClientEvent::Error { code, message })?;
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| bad_sdp(format!("unparseable offer: {e}")))?;
        self.sources.extend(sources);
        let answer = self.rtc.sdp_api().accept_offer(offer).map_err(|e| bad_sdp(format!("offer refused: {e}")))?;
        self.neg.started = true;
        Ok(Some(ClientEvent::Answer { sdp: with_rrtr(&answer.to_sdp_string()) }))
    }

    /// Handles the client's answer; returns the slots that just became ready.
    pub fn accept_answer(&mut self, sdp: &str) -> Result<Vec<usize>, ClientEvent> {
        let Some((pending, slots)) = self.neg.pending.take() else {
            tracing::debug!(participant = %self.id, "answer without a pending offer; ignoring it");
            return Ok(vec![]);
        };
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| bad_sdp(format!("unparseable answer: {e}")))?;
        self.rtc.sdp_api().accept_answer(pending, answer).map_err(|e| bad_sdp(format!("answer refused: {e}")))?;
        let mut ready = Vec::with_capacity(slots.len());
        for i in slots {
            let mid = self.down[i].mid;
            let ssrc = self.rtc.direct_api().stream_tx_by_mid(mid, None).map(|s| {
                s.set_rtx_cache(RTX_CACHE_PACKETS, RTX_CACHE_AGE, Some(RTX_RATIO_CAP));
                s.ssrc()
            });
            let pts = self.negotiated_codecs(mid).into_iter().map(|(pt, c)| (c, pt)).collect();
            let d = &mut self.down[i];
            d.ssrc = ssrc;
            d.pts = pts;
            if ssrc.is_some() {
                ready.push(i);
            }
        }
        Ok(ready)
    }

    pub fn add_candidate(&mut self, candidate: &str) -> Result<(), ClientEvent> {
        let line = candidate.strip_prefix("a=").unwrap_or(candidate);
        match Candidate::from_sdp_string(line) {
            Ok(c) => {
                self.rtc.add_remote_candidate(c);
                Ok(())
            }
            // mDNS names cannot be resolved here; peer-reflexive discovery covers them.
            Err(_) if line.contains(".local") => Ok(()),
            Err(e) => Err(ClientEvent::Error { code: ErrorCode::BadCandidate, message: format!("bad candidate: {e}") }),
        }
    }

    /// Starts sending `track` here: reuses the slot of the same identity and
    /// source if there is one (returns it), else queues it for the next offer.
    pub fn subscribe(&mut self, track: TrackInfo) -> Subscribed {
        if let Some(i) = self
            .down
            .iter()
            .position(|d| d.identity == track.identity && d.source == track.source && d.kind == track.kind)
        {
            let replaced = self.down[i].track.replace(track.track).filter(|old| *old != track.track);
            if let Some(old) = replaced {
                self.down_by_track.remove(&old);
            }
            // A new source starts at its keyframe; the subscriber's wishes stay.
            self.down[i].choice.current = None;
            self.down_by_track.insert(track.track, i);
            return Subscribed { ready: self.down[i].ssrc.map(|_| i), replaced };
        }
        if !self.neg.wanted.iter().any(|w| w.track.track == track.track) {
            self.neg.wanted.push(Wanted { track });
        }
        Subscribed { ready: None, replaced: None }
    }

    pub fn unsubscribe(&mut self, track: TrackId) {
        self.neg.wanted.retain(|w| w.track.track != track);
        if let Some(i) = self.down_by_track.remove(&track) {
            self.down[i].track = None;
        }
    }

    /// Makes an offer for queued subscriptions when none is outstanding.
    pub fn maybe_offer(&mut self) -> Option<ClientEvent> {
        if !self.neg.started || self.neg.pending.is_some() || self.neg.wanted.is_empty() {
            return None;
        }
        let wanted = std::mem::take(&mut self.neg.wanted);
        let mut api = self.rtc.sdp_api();
        let mut slots = Vec::with_capacity(wanted.len());
        let mut mids = Vec::with_capacity(wanted.len());
        for Wanted { track } in wanted {
            // msid track ids must be unique in a session (browsers key tracks by them).
            let stream_id = msid_token(&track.identity);
            let track_id = msid_token(&format!("{}-{}", track.identity, track.source.as_str()));
            let mid = api.add_media(track.kind.into(), Direction::SendOnly, Some(stream_id), Some(track_id), None);
            let clock = match track.kind {
                TrackKind::Audio => 48_000,
                TrackKind::Video => 90_000,
            };
            let i = self.down.len();
            self.down.push(DownTrack {
                identity: track.identity.clone(),
                source: track.source,
                kind: track.kind,
                mid,
                track: Some(track.track),
                ssrc: None,
                pts: Vec::new(),
                forwarder: Forwarder::new(clock, self.id.0 << 16 | i as u64),
                choice: LayerChoice::default(),
                picture_ids: PictureIds::default(),
            });
            self.down_by_track.insert(track.track, i);
            self.down_by_mid.insert(mid, i);
            slots.push(i);
            mids.push(MidInfo {
                mid: mid.to_string(),
                identity: track.identity,
                source: track.source,
                kind: track.kind,
            });
        }
        let (offer, pending) = api.apply()?;
        self.neg.pending = Some((pending, slots));
        Some(ClientEvent::Offer { sdp: with_rrtr(&offer.to_sdp_string()), mids })
    }

    pub fn source_of(&self, mid: Mid, kind: TrackKind) -> TrackSource {
        self.sources.get(&mid.to_string()).copied().unwrap_or(TrackSource::default_for(kind))
    }

    /// Payload types negotiated on `mid` with their codecs.
    pub fn negotiated_codecs(&self, mid: Mid) -> Vec<(Pt, Codec)> {
        let Some(media) = self.rtc.media(mid) else { return vec![] };
        let remote = media.remote_pts();
        self.rtc
            .codec_config()
            .params()
            .iter()
            .filter(|p| remote.is_empty() || remote.contains(&p.pt()))
            .map(|p| (p.pt(), p.spec().codec))
            .collect()
    }

    /// The track and codec of a packet received on `mid` with payload type
    /// `pt`, if `mid` carries an active published track. A payload type not
    /// seen before is learnt from the negotiated session.
    pub fn published_codec(&mut self, mid: Mid, pt: Pt) -> Option<(TrackId, Codec)> {
        let pubd = self.published.get(&mid).filter(|p| p.active)?;
        if let Some((_, c)) = pubd.codecs.iter().find(|(p, _)| *p == pt) {
            return Some((pubd.track, *c));
        }
        let codecs = self.negotiated_codecs(mid);
        let pubd = self.published.get_mut(&mid)?;
        pubd.codecs = codecs;
        pubd.codecs.iter().find(|(p, _)| *p == pt).map(|(_, c)| (pubd.track, *c))
    }

    /// Asks the client for a keyframe of `layer` of a track it publishes.
    pub fn request_keyframe(&mut self, mid: Mid, layer: Layer) {
        let rid = self.published.get(&mid).and_then(|p| p.rids.get(layer as usize).copied().flatten());
        if let Some(rx) = self.rtc.direct_api().stream_rx_by_mid(mid, rid) {
            rx.request_keyframe(KeyframeRequestKind::Pli);
        }
    }

    /// Applies a `subscription` message to the leg on `mid`; returns its slot.
    fn set_subscription(&mut self, mid: &str, max_height: Option<u32>, enabled: bool) -> Result<usize, ClientEvent> {
        let Some(i) = self.down.iter().position(|d| d.mid.to_string() == mid) else {
            let message = format!("no received track on mid {mid}");
            return Err(ClientEvent::Error { code: ErrorCode::NotAllowed, message });
        };
        let c = &mut self.down[i].choice;
        c.max_height = max_height;
        c.enabled = enabled;
        Ok(i)
    }
}

fn bad_sdp(message: String) -> ClientEvent {
    ClientEvent::Error { code: ErrorCode::BadSdp, message }
}

/// A WebRTC msid must be token characters; identities may be any text.
fn msid_token(identity: &str) -> String {
    identity.chars().map(|c| if c.is_ascii_alphanumeric() || "-._~".contains(c) { c } else { '_' }).take(64).collect()
}

/// Refuses offers we cannot serve before str0m sees them, with a precise error:
/// a media section without Opus or VP8, or sending media without the grant.
/// Checks an offer before str0m parses it: an SDP, codecs we forward, no
/// sending without the grant, at most `max_tracks` sending sections.
pub fn check_offer(sdp: &str, can_publish: bool, max_tracks: usize) -> Result<(), (ErrorCode, String)> {
    if !sdp.starts_with("v=0") {
        return Err((ErrorCode::BadSdp, "offer is not an SDP (must start with v=0)".into()));
    }
    let mut sending = 0;
    for section in sdp.split("\nm=").skip(1) {
        let kind = section.split_whitespace().next().unwrap_or("");
        if kind != "audio" && kind != "video" {
            continue;
        }
        let port_zero = section.split_whitespace().nth(1) == Some("0");
        let lower = section.to_ascii_lowercase();
        let supported = lower.contains(" opus/48000") || lower.contains(" vp8/90000");
        if !port_zero && !supported {
            return Err((
                ErrorCode::UnsupportedCodec,
                format!("{kind} section offers no supported codec (need Opus or VP8)"),
            ));
        }
        let sends = lower.contains("a=sendonly") || lower.contains("a=sendrecv");
        if sends && !port_zero && !can_publish {
            return Err((ErrorCode::NotAllowed, "this token may not publish".into()));
        }
        sending += usize::from(sends && !port_zero);
    }
    if sending > max_tracks {
        return Err((
            ErrorCode::TooManyTracks,
            format!("{sending} tracks offered; a participant may publish {max_tracks}"),
        ));
    }
    Ok(())
}

/// Shorthand the shard uses to route signals.
pub fn handle_signal(p: &mut Participant, signal: Signal) -> Result<SignalOutcome, ClientEvent> {
    match signal {
        Signal::Offer { sdp, sources } => Ok(SignalOutcome::Answer(p.accept_offer(&sdp, sources)?)),
        Signal::Answer { sdp } => Ok(SignalOutcome::Ready(p.accept_answer(&sdp)?)),
        Signal::Candidate { candidate } => p.add_candidate(&candidate).map(|_| SignalOutcome::None),
        Signal::Mute { mid, muted } => Ok(SignalOutcome::Mute(mid, muted)),
        Signal::Subscription { mid, max_height, enabled } => {
            Ok(SignalOutcome::Subscription(p.set_subscription(&mid, max_height, enabled)?))
        }
    }
}

pub enum SignalOutcome {
    None,
    Answer(Option<ClientEvent>),
    Ready(Vec<usize>),
    Mute(String, bool),
    /// The subscriber changed what it wants of the leg in this slot.
    Subscription(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offer_checks() {
        let ok = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\na=sendonly\r\n";
        assert!(check_offer(ok, true, 4).is_ok());
        assert_eq!(check_offer(ok, false, 4).unwrap_err().0, ErrorCode::NotAllowed);
        let h264 = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=rtpmap:102 H264/90000\r\na=sendonly\r\n";
        assert_eq!(check_offer(h264, true, 4).unwrap_err().0, ErrorCode::UnsupportedCodec);
        assert_eq!(check_offer("hello", true, 4).unwrap_err().0, ErrorCode::BadSdp);
    }

    #[test]
    fn an_offer_publishing_more_tracks_than_allowed_is_refused() {
        let track = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\na=sendonly\r\n";
        let receive = "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\na=recvonly\r\n";
        let offer = |n: usize| format!("v=0\r\n{}{}", track.repeat(n), receive.repeat(10));
        assert!(check_offer(&offer(4), true, 4).is_ok(), "receiving sections do not count");
        assert_eq!(check_offer(&offer(5), true, 4).unwrap_err().0, ErrorCode::TooManyTracks);
    }

    #[test]
    fn msid_is_token() {
        assert_eq!(msid_token("ann lee@x.org"), "ann_lee_x.org");
    }
}

/// Adds `a=rtcp-fb:<pt> rrtr` wherever a payload type has NACK feedback.
/// A browser that only receives on an m-line learns its round-trip time
/// from RTCP XR only (it sends receiver reference times, str0m answers with
/// DLRR): without it libwebrtc spaces NACK retries by a 100 ms default, and
/// on a lossy link each lost retransmission becomes a visible freeze.
/// str0m does not write this feedback parameter itself.
fn with_rrtr(sdp: &str) -> String {
    let mut out = String::with_capacity(sdp.len() + 64);
    for line in sdp.split_inclusive('\n') {
        out.push_str(line);
        let trimmed = line.trim_end();
        if let Some(pt) = trimmed.strip_prefix("a=rtcp-fb:").and_then(|r| r.strip_suffix(" nack")) {
            let eol = &line[trimmed.len()..];
            out.push_str(&format!("a=rtcp-fb:{pt} rrtr{eol}"));
        }
    }
    out
}

#[cfg(test)]
mod rrtr_tests {
    use super::with_rrtr;

    #[test]
    fn rrtr_feedback_follows_every_nack_line() {
        let sdp = "m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\na=rtpmap:97 rtx/90000\r\n";
        let got = with_rrtr(sdp);
        assert_eq!(got.matches("a=rtcp-fb:96 rrtr\r\n").count(), 1, "{got}");
        assert!(got.contains("a=rtcp-fb:96 nack\r\na=rtcp-fb:96 rrtr\r\na=rtcp-fb:96 nack pli"));
        assert_eq!(with_rrtr("v=0\r\n"), "v=0\r\n");
    }
}
