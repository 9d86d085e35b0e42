//! One synthetic peer's media: a str0m `Rtc` (RTP mode) over its own UDP
//! socket that publishes synthetic audio and video (one stream or three
//! simulcast layers) and measures what it receives. Signalling
//! (switchboard's WebSocket or Janus' HTTP API) comes in through a
//! [`Signaller`]. A peer may receive through a shaped downlink (our own
//! userspace shaper: rate cap, drop-tail queue), which it then estimates
//! and reports with REMB, as a browser does. One tokio task per peer.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sfu::testbed::{Link, ReceiveEstimator};
use str0m::bwe::Bitrate;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, Ssrc};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio::time::{sleep_until, MissedTickBehavior};

use crate::measure::Receiver;
use crate::media::{self, Kind, Probe, VideoSource};
use crate::signal::{FromServer, Signaller, ToServer};

/// Live counters the progress line and time series read.
#[derive(Default)]
pub struct Live {
    pub connected: AtomicU64,
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub failed: AtomicU64,
}

#[derive(Debug, Clone)]
pub struct PeerPlan {
    pub id: u32,
    pub room: String,
    pub identity: String,
    pub audio: bool,
    pub video: bool,
}

pub struct PeerConfig {
    /// Address the peer's UDP socket binds (must reach the server's candidates).
    pub bind_ip: std::net::IpAddr,
    /// Offer first even without media to send (switchboard wants a data
    /// channel from everyone; a Janus subscriber waits for Janus' offer).
    pub always_offer: bool,
    pub video_bps: u64,
    pub fps: u32,
    /// Publish video as three simulcast layers (see [`LAYERS`]).
    pub simulcast: bool,
    /// The downlink's rate cap in bits/s; `None`: no shaper, no estimate.
    pub downlink_bps: Option<u64>,
    /// Pacing rate as a multiple of `video_bps`; 0 for no pacing.
    pub pacing: f64,
    /// Stop sending at this instant; stop receiving `DRAIN` later.
    pub send_until: Instant,
    pub epoch: Instant,
    pub live: Arc<Live>,
    /// End without a goodbye: no leave, the signalling connection just
    /// drops and media stops (the churn scenario's crashed clients).
    pub vanish: bool,
}

/// After sending stops, how long in-flight packets may still arrive.
pub const DRAIN: Duration = Duration::from_millis(700);

#[derive(Debug)]
pub struct PeerResult {
    pub identity: String,
    /// From asking to join (token in hand) to the first media packet received.
    pub join_to_media: Option<Duration>,
    pub sent: u64,
    pub rx: Receiver,
    pub error: Option<String>,
}

impl PeerResult {
    /// One participant's two PeerConnections (Janus: publisher + subscriber) as one.
    pub fn merge(mut self, other: PeerResult) -> PeerResult {
        self.sent += other.sent;
        if other.rx.packets > 0 || self.rx.packets == 0 {
            self.rx = other.rx;
        }
        self.join_to_media = self.join_to_media.or(other.join_to_media);
        self.error = self.error.or(other.error);
        self
    }
}

/// Runs the peer: `connect` joins (its time counts towards join time), then
/// media flows until `cfg.send_until` plus `DRAIN`.
pub async fn run<F>(plan: PeerPlan, cfg: PeerConfig, connect: F) -> PeerResult
where
    F: std::future::Future<Output = anyhow::Result<Signaller>>,
{
    let mut result = PeerResult {
        identity: plan.identity.clone(),
        join_to_media: None,
        sent: 0,
        rx: Receiver::default(),
        error: None,
    };
    let started = Instant::now();
    let outcome = match connect.await {
        Ok(signaller) => session(&plan, &cfg, signaller, &mut result, started).await,
        Err(e) => Err(e),
    };
    if let Err(e) = outcome {
        cfg.live.failed.fetch_add(1, Ordering::Relaxed);
        result.error = Some(format!("{e:#}"));
    }
    result
}

/// The simulcast layers a publisher sends, lowest first, as the pages do:
/// rid, share of the video bitrate, size.
pub const LAYERS: [(&str, f64, (u16, u16)); 3] =
    [("q", 0.1, (320, 180)), ("h", 1.0 / 3.0, (640, 360)), ("f", 1.0, (1280, 720))];

/// Size of a single-layer publisher's key frames.
const SINGLE_SIZE: (u16, u16) = (640, 480);

/// How long a datagram may wait in the shaped downlink's queue.
const DOWNLINK_QUEUE: Duration = Duration::from_millis(300);

/// One video stream a publisher sends: a simulcast layer or the only one.
struct Layer {
    rid: Option<Rid>,
    source: VideoSource,
    /// Probe and RTP sequence numbers (layers number theirs independently).
    probe_seq: u32,
    rtp_seq: u64,
    /// Added to the RTP timestamps: layers' clocks start apart, as in a browser.
    ts_offset: u32,
}

fn video_layers(cfg: &PeerConfig) -> Vec<Layer> {
    let layer = |rid: Option<&str>, bps: f64, size, i: u32| Layer {
        rid: rid.map(Rid::from),
        source: VideoSource::new(bps as u64, cfg.fps, size),
        probe_seq: 0,
        rtp_seq: u64::from(i) * 10_000,
        ts_offset: i.wrapping_mul(77_777),
    };
    if !cfg.simulcast {
        return vec![layer(None, cfg.video_bps as f64, SINGLE_SIZE, 0)];
    }
    (0..).zip(LAYERS).map(|(i, (rid, share, size))| layer(Some(rid), cfg.video_bps as f64 * share, size, i)).collect()
}

/// A shaped downlink: what arrived waits here for its turn.
type Downlink = (Link<(SocketAddr, Vec<u8>)>, ReceiveEstimator);

struct Peer {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    pending: Option<SdpPendingOffer>,
    audio: Option<(Mid, Pt)>,
    video: Option<(Mid, Pt)>,
    layers: Vec<Layer>,
    connected: bool,
    next_timeout: Instant,
    downlink: Option<Downlink>,
    /// SSRCs media arrives on: where REMB reports go.
    rx_ssrcs: Vec<Ssrc>,
}

async fn session(
    plan: &PeerPlan,
    cfg: &PeerConfig,
    signaller: Signaller,
    result: &mut PeerResult,
    started: Instant,
) -> anyhow::Result<()> {
    let Signaller { to_server, mut from_server } = signaller;
    let socket = UdpSocket::bind((cfg.bind_ip, 0)).await?;
    let local = socket.local_addr()?;
    let mut rtc = RtcConfig::new()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp")?);
    let mut api = rtc.sdp_api();
    let audio_mid = plan.audio.then(|| api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None));
    let simulcast = cfg.simulcast.then(|| {
        let mut s = Simulcast::new();
        for (rid, ..) in LAYERS {
            s.add_send_layer(SimulcastLayer::new(rid));
        }
        s
    });
    let video_mid = plan.video.then(|| api.add_media(MediaKind::Video, Direction::SendOnly, None, None, simulcast));
    if cfg.always_offer {
        api.add_channel("room".into());
    }
    let pending = match api.apply() {
        Some((offer, pending)) => {
            to_server.send(ToServer::Offer(offer.to_sdp_string())).await.context("signalling ended")?;
            Some(pending)
        }
        None => None, // receive-only: the server offers
    };
    let pt =
        |rtc: &Rtc, codec: Codec| rtc.codec_config().params().iter().find(|p| p.spec().codec == codec).map(|p| p.pt());
    let audio = audio_mid.and_then(|m| pt(&rtc, Codec::Opus).map(|p| (m, p)));
    let video = video_mid.and_then(|m| pt(&rtc, Codec::Vp8).map(|p| (m, p)));
    let mut peer = Peer {
        rtc,
        socket,
        local,
        pending,
        audio,
        video,
        layers: video_layers(cfg),
        connected: false,
        next_timeout: Instant::now(),
        downlink: cfg.downlink_bps.map(|bps| (Link::new(bps, DOWNLINK_QUEUE), ReceiveEstimator::default())),
        rx_ssrcs: Vec::new(),
    };

    let mut audio_tick = tokio::time::interval(media::AUDIO_INTERVAL);
    audio_tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut video_tick = tokio::time::interval(peer.layers[0].source.frame_interval);
    video_tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let (mut audio_seq, mut frames, mut audio_rtp_seq) = (0u32, 0u32, 0u64);
    let video_bps: f64 = peer.layers.iter().map(|l| l.source.bitrate_bps as f64).sum();
    let mut pacer = Pacer::new(video_bps * cfg.pacing, Instant::now());
    let mut buf = vec![0u8; 2048];
    let stop_at = cfg.send_until + DRAIN;

    loop {
        let sending = peer.connected && Instant::now() < cfg.send_until;
        tokio::select! {
            msg = from_server.recv() => {
                let msg = msg.context("signalling ended")?;
                if let Some(reply) = signal(&mut peer, msg)? {
                    to_server.send(reply).await.context("signalling ended")?;
                }
                drive(&mut peer, cfg, result, started).await?;
            }
            r = peer.socket.recv_from(&mut buf) => {
                let (n, source) = r?;
                let now = Instant::now();
                match &mut peer.downlink {
                    Some((link, _)) => link.push((source, buf[..n].to_vec()), n, now),
                    None => receive(&mut peer, source, &buf[..n], now),
                }
                drive(&mut peer, cfg, result, started).await?;
            }
            _ = sleep_until(downlink_due(&peer).into()), if peer.downlink.is_some() => {
                deliver_downlink(&mut peer, Instant::now());
                drive(&mut peer, cfg, result, started).await?;
            }
            _ = sleep_until(peer.next_timeout.into()) => {
                peer.rtc.handle_input(Input::Timeout(Instant::now()))?;
                drive(&mut peer, cfg, result, started).await?;
            }
            _ = audio_tick.tick(), if sending && peer.audio.is_some() => {
                let (mid, pt) = peer.audio.expect("checked by the guard");
                audio_seq += 1;
                let probe =
                    Probe { sender: plan.id, kind: Kind::Audio, layer: 0, seq: audio_seq, sent_ns: ns_since(cfg.epoch) };
                audio_rtp_seq += 1;
                let ts = audio_seq.wrapping_mul(960);
                write(&mut peer, mid, None, pt, audio_rtp_seq, ts, true, media::audio_packet(probe));
                result.sent += 1;
                cfg.live.sent.fetch_add(1, Ordering::Relaxed);
                drive(&mut peer, cfg, result, started).await?;
            }
            _ = video_tick.tick(), if sending && peer.video.is_some() => {
                frames += 1;
                let ts = frames.wrapping_mul(90_000 / cfg.fps.max(1));
                for (index, layer) in peer.layers.iter_mut().enumerate() {
                    let probe_seq = &mut layer.probe_seq;
                    let (_, packets) = layer.source.next_frame(|| {
                        *probe_seq += 1;
                        let sent_ns = ns_since(cfg.epoch);
                        Probe { sender: plan.id, kind: Kind::Video, layer: index as u8, seq: *probe_seq, sent_ns }
                    });
                    let n = packets.len();
                    let ts = ts.wrapping_add(layer.ts_offset);
                    for (i, p) in packets.into_iter().enumerate() {
                        layer.rtp_seq += 1;
                        pacer.queue.push_back(Paced { layer: index, seq: layer.rtp_seq, ts, marker: i + 1 == n, payload: p });
                    }
                    result.sent += n as u64;
                    cfg.live.sent.fetch_add(n as u64, Ordering::Relaxed);
                }
                send_paced(&mut peer, &mut pacer, cfg.epoch);
                drive(&mut peer, cfg, result, started).await?;
            }
            _ = sleep_until(pacer.next.into()), if !pacer.queue.is_empty() => {
                send_paced(&mut peer, &mut pacer, cfg.epoch);
                drive(&mut peer, cfg, result, started).await?;
            }
            _ = sleep_until(stop_at.into()) => break,
        }
    }
    let _ = to_server.send(if cfg.vanish { ToServer::Vanish } else { ToServer::Leave }).await;
    if peer.connected {
        cfg.live.connected.fetch_sub(1, Ordering::Relaxed);
    } else {
        bail!("media never connected");
    }
    Ok(())
}

/// A video packet waiting for its turn to leave.
struct Paced {
    /// Index into the publisher's layers.
    layer: usize,
    seq: u64,
    ts: u32,
    marker: bool,
    payload: Vec<u8>,
}

/// Spreads video packets at a fixed rate, like a browser's pacer, so the
/// server sees packets rather than whole frames at once.
struct Pacer {
    queue: VecDeque<Paced>,
    /// Bits per second; 0 or less sends everything at once.
    rate: f64,
    /// When the next packet may leave.
    next: Instant,
}

impl Pacer {
    fn new(rate: f64, now: Instant) -> Self {
        Pacer { queue: VecDeque::new(), rate, next: now }
    }

    /// The next packet if it may leave at `now`.
    fn pop_due(&mut self, now: Instant) -> Option<Paced> {
        if self.rate > 0.0 && self.next > now {
            return None;
        }
        let p = self.queue.pop_front()?;
        if self.rate > 0.0 {
            let bits = (p.payload.len() * 8) as f64;
            self.next =
                self.next.max(now.checked_sub(PACER_SLACK).unwrap_or(now)) + Duration::from_secs_f64(bits / self.rate);
        }
        Some(p)
    }
}

/// How far the pacer may fall behind and then catch up in a burst (a late
/// timer must not slow the stream down for good).
const PACER_SLACK: Duration = Duration::from_millis(5);

/// Writes the queued video packets that are due, stamping each probe with
/// its real send time so that time in the pacer is not counted as latency.
fn send_paced(peer: &mut Peer, pacer: &mut Pacer, epoch: Instant) {
    let Some((mid, pt)) = peer.video else { return };
    while let Some(mut p) = pacer.pop_due(Instant::now()) {
        media::restamp(&mut p.payload, ns_since(epoch));
        let rid = peer.layers[p.layer].rid;
        write(peer, mid, rid, pt, p.seq, p.ts, p.marker, p.payload);
    }
}

#[allow(clippy::too_many_arguments)]
fn write(peer: &mut Peer, mid: Mid, rid: Option<Rid>, pt: Pt, seq: u64, ts: u32, marker: bool, payload: Vec<u8>) {
    let now = Instant::now();
    let mut api = peer.rtc.direct_api();
    if let Some(tx) = api.stream_tx_by_mid(mid, rid) {
        tx.write_rtp(RtpWrite::new(pt, seq.into(), ts, now, payload).marker(marker).nackable(true));
    }
}

fn receive(peer: &mut Peer, source: SocketAddr, datagram: &[u8], now: Instant) {
    if let Ok(contents) = Receive::new(Protocol::Udp, source, peer.local, datagram) {
        // A datagram str0m refuses is a lost packet; the session goes on.
        let _ = peer.rtc.handle_input(Input::Receive(now, contents));
    }
}

/// When the shaped downlink next delivers or reports.
fn downlink_due(peer: &Peer) -> Instant {
    let far = Instant::now() + Duration::from_secs(3600);
    peer.downlink.as_ref().and_then(|(link, est)| link.next_event(est)).unwrap_or(far)
}

/// Hands str0m what the shaped downlink delivered by `now` and, when due,
/// reports the estimate of it on every stream media arrives on.
fn deliver_downlink(peer: &mut Peer, now: Instant) {
    let Some((link, estimator)) = &mut peer.downlink else { return };
    let mut delivered = Vec::new();
    while let Some(d) = link.pop(now) {
        estimator.arrived(d.1.len(), now);
        delivered.push(d);
    }
    let report = estimator.report(link, now);
    for (source, datagram) in delivered {
        receive(peer, source, &datagram, now);
    }
    if let Some(bps) = report {
        let mut api = peer.rtc.direct_api();
        for ssrc in &peer.rx_ssrcs {
            if let Some(rx) = api.stream_rx(ssrc) {
                rx.request_remb(Bitrate::bps(bps));
            }
        }
    }
}

/// Drains the `Rtc` until it asks for a timeout (str0m's contract).
async fn drive(peer: &mut Peer, cfg: &PeerConfig, result: &mut PeerResult, started: Instant) -> anyhow::Result<()> {
    loop {
        match peer.rtc.poll_output()? {
            Output::Timeout(t) => {
                peer.next_timeout = t;
                return Ok(());
            }
            Output::Transmit(t) => {
                // Loopback sends only fail on a full buffer: that is loss.
                let _ = peer.socket.send_to(&t.contents, t.destination).await;
            }
            Output::Event(e) => match e {
                Event::Connected => {
                    peer.connected = true;
                    cfg.live.connected.fetch_add(1, Ordering::Relaxed);
                }
                Event::IceConnectionStateChange(IceConnectionState::Disconnected) => bail!("ICE disconnected"),
                Event::RtpPacket(p) => {
                    if peer.downlink.is_some() && !peer.rx_ssrcs.contains(&p.header.ssrc) {
                        peer.rx_ssrcs.push(p.header.ssrc);
                    }
                    if result.rx.on_payload(*p.seq_no, &p.payload, ns_since(cfg.epoch)).is_some() {
                        result.join_to_media.get_or_insert_with(|| started.elapsed());
                    }
                    cfg.live.received.fetch_add(1, Ordering::Relaxed);
                }
                Event::KeyframeRequest(r) => {
                    for layer in peer.layers.iter_mut().filter(|l| r.rid.is_none() || l.rid == r.rid) {
                        layer.source.request_keyframe();
                    }
                }
                _ => {}
            },
        }
    }
}

/// Applies one message from the server; returns the reply, if one is due.
fn signal(peer: &mut Peer, msg: FromServer) -> anyhow::Result<Option<ToServer>> {
    match msg {
        FromServer::Answer(sdp) => {
            let answer = SdpAnswer::from_sdp_string(&sdp)?;
            if let Some(pending) = peer.pending.take() {
                peer.rtc.sdp_api().accept_answer(pending, answer)?;
            }
            Ok(None)
        }
        FromServer::Offer(sdp) => {
            let offer = SdpOffer::from_sdp_string(&sdp)?;
            let answer = peer.rtc.sdp_api().accept_offer(offer)?;
            Ok(Some(ToServer::Answer(answer.to_sdp_string())))
        }
        FromServer::Closed(why) => bail!("server closed the session: {why}"),
    }
}

pub fn ns_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

/// Refuses addresses that are not this host's (or this namespace's): the
/// harness only loads servers here. Loopback always is; another address is
/// if a socket can bind it.
pub fn local_only(ip: std::net::IpAddr) -> anyhow::Result<()> {
    if ip.is_loopback() || std::net::UdpSocket::bind((ip, 0)).is_ok() {
        return Ok(());
    }
    bail!("refusing to send load to {ip}: only addresses of this host or namespace are allowed");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pacer(rate: f64, packets: usize, t0: Instant) -> Pacer {
        let mut p = Pacer::new(rate, t0);
        for seq in 0..packets as u64 {
            p.queue.push_back(Paced { layer: 0, seq, ts: 0, marker: false, payload: vec![0; 1000] });
        }
        p
    }

    fn drain(p: &mut Pacer, at: Instant) -> Vec<u64> {
        std::iter::from_fn(|| p.pop_due(at)).map(|x| x.seq).collect()
    }

    #[test]
    fn a_frame_leaves_at_the_pacing_rate() {
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        // 8 Mb/s: one 1000-byte packet per millisecond.
        let mut p = pacer(8e6, 12, t0);
        assert_eq!(drain(&mut p, t0), [0]);
        assert_eq!(drain(&mut p, t0 + ms / 2), [] as [u64; 0]);
        assert_eq!(drain(&mut p, t0 + ms), [1]);
        assert_eq!(drain(&mut p, t0 + 3 * ms), [2, 3]);
        // After a stall it catches up by at most the slack, then paces again.
        let late = t0 + 50 * ms;
        assert_eq!(drain(&mut p, late).len(), 6);
        assert_eq!(drain(&mut p, late + ms), [10]);
    }

    #[test]
    fn no_pacing_sends_the_frame_at_once() {
        let t0 = Instant::now();
        let mut p = pacer(0.0, 10, t0);
        assert_eq!(drain(&mut p, t0), (0..10).collect::<Vec<_>>());
    }
}
