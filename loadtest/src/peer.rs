//! One synthetic peer: joins through the real signalling WebSocket, runs a
//! str0m `Rtc` (RTP mode) over its own UDP socket, publishes synthetic audio
//! and video and measures what it receives. One tokio task per peer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio::time::{sleep_until, timeout, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;

use crate::measure::Receiver;
use crate::media::{self, Kind, Probe, VideoSource};

/// Live counters the progress line and time series read.
#[derive(Default)]
pub struct Live {
    pub connected: AtomicU64,
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub failed: AtomicU64,
}

pub struct PeerPlan {
    pub id: u32,
    pub room: String,
    pub identity: String,
    pub audio: bool,
    pub video: bool,
}

pub struct PeerConfig {
    pub ws_url: String,
    pub token: String,
    pub video_bps: u64,
    pub fps: u32,
    /// Stop sending at this instant; stop receiving `DRAIN` later.
    pub send_until: Instant,
    pub epoch: Instant,
    pub live: Arc<Live>,
}

/// After sending stops, how long in-flight packets may still arrive.
pub const DRAIN: Duration = Duration::from_millis(700);
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct PeerResult {
    pub identity: String,
    /// From asking to join (token in hand) to the first media packet received.
    pub join_to_media: Option<Duration>,
    pub sent: u64,
    pub rx: Receiver,
    pub error: Option<String>,
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn run(plan: PeerPlan, cfg: PeerConfig) -> PeerResult {
    let mut result = PeerResult {
        identity: plan.identity.clone(),
        join_to_media: None,
        sent: 0,
        rx: Receiver::default(),
        error: None,
    };
    if let Err(e) = session(&plan, &cfg, &mut result).await {
        cfg.live.failed.fetch_add(1, Ordering::Relaxed);
        result.error = Some(format!("{e:#}"));
    }
    result
}

struct Peer {
    rtc: Rtc,
    socket: UdpSocket,
    pending: Option<SdpPendingOffer>,
    audio: Option<(Mid, Pt)>,
    video: Option<(Mid, Pt)>,
    connected: bool,
    next_timeout: Instant,
    keyframe_wanted: bool,
}

async fn session(plan: &PeerPlan, cfg: &PeerConfig, result: &mut PeerResult) -> anyhow::Result<()> {
    let started = Instant::now();
    let (mut ws, _) = timeout(JOIN_TIMEOUT, tokio_tungstenite::connect_async(&cfg.ws_url))
        .await
        .context("signalling did not answer in time")?
        .with_context(|| format!("connecting to {}", cfg.ws_url))?;
    send(&mut ws, json!({ "type": "join", "token": cfg.token })).await?;
    let joined = timeout(JOIN_TIMEOUT, next_json(&mut ws)).await.context("no answer to join")??;
    match joined["type"].as_str() {
        Some("joined") => {}
        Some("closed") => bail!("join refused: {} ({})", joined["message"], joined["code"]),
        _ => bail!("unexpected first message {joined}"),
    }

    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    let local = socket.local_addr()?;
    let mut rtc = RtcConfig::new().set_rtp_mode(true).clear_codecs().enable_opus(true, false).enable_vp8(true).build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp")?);
    let mut api = rtc.sdp_api();
    let audio_mid = plan.audio.then(|| api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None));
    let video_mid = plan.video.then(|| api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None));
    api.add_channel("room".into());
    let (offer, pending) = api.apply().context("nothing to offer")?;
    send(&mut ws, json!({ "type": "offer", "sdp": offer.to_sdp_string(), "tracks": [] })).await?;
    let pt = |rtc: &Rtc, codec: Codec| rtc.codec_config().params().iter().find(|p| p.spec().codec == codec).map(|p| p.pt());
    let audio = audio_mid.and_then(|m| pt(&rtc, Codec::Opus).map(|p| (m, p)));
    let video = video_mid.and_then(|m| pt(&rtc, Codec::Vp8).map(|p| (m, p)));
    let mut peer =
        Peer { rtc, socket, pending: Some(pending), audio, video, connected: false, next_timeout: Instant::now(), keyframe_wanted: false };

    let mut audio_tick = tokio::time::interval(media::AUDIO_INTERVAL);
    audio_tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut source = VideoSource::new(cfg.video_bps, cfg.fps);
    let mut video_tick = tokio::time::interval(source.frame_interval);
    video_tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let (mut audio_seq, mut video_seq, mut frames, mut rtp_seq) = (0u32, 0u32, 0u32, [0u64; 2]);
    let mut buf = vec![0u8; 2048];
    let stop_at = cfg.send_until + DRAIN;

    loop {
        let sending = peer.connected && Instant::now() < cfg.send_until;
        tokio::select! {
            msg = next_json(&mut ws) => {
                let msg = msg?;
                signal(&mut peer, &mut ws, &msg).await?;
                drive(&mut peer, cfg, result, started).await?;
            }
            r = peer.socket.recv_from(&mut buf) => {
                let (n, source) = r?;
                let now = Instant::now();
                if let Ok(contents) = Receive::new(Protocol::Udp, source, local, &buf[..n]) {
                    // A datagram str0m refuses is a lost packet; the session goes on.
                    let _ = peer.rtc.handle_input(Input::Receive(now, contents));
                }
                drive(&mut peer, cfg, result, started).await?;
            }
            _ = sleep_until(peer.next_timeout.into()) => {
                peer.rtc.handle_input(Input::Timeout(Instant::now()))?;
                drive(&mut peer, cfg, result, started).await?;
            }
            _ = audio_tick.tick(), if sending && peer.audio.is_some() => {
                let (mid, pt) = peer.audio.expect("checked by the guard");
                audio_seq += 1;
                let probe = Probe { sender: plan.id, kind: Kind::Audio, seq: audio_seq, sent_ns: ns_since(cfg.epoch) };
                rtp_seq[0] += 1;
                let ts = audio_seq.wrapping_mul(960);
                write(&mut peer, mid, pt, rtp_seq[0], ts, true, media::audio_packet(probe));
                result.sent += 1;
                cfg.live.sent.fetch_add(1, Ordering::Relaxed);
                drive(&mut peer, cfg, result, started).await?;
            }
            _ = video_tick.tick(), if sending && peer.video.is_some() => {
                let (mid, pt) = peer.video.expect("checked by the guard");
                if std::mem::take(&mut peer.keyframe_wanted) {
                    source.request_keyframe();
                }
                frames += 1;
                let ts = frames.wrapping_mul(90_000 / cfg.fps.max(1));
                let (_, packets) = source.next_frame(|| {
                    video_seq += 1;
                    Probe { sender: plan.id, kind: Kind::Video, seq: video_seq, sent_ns: ns_since(cfg.epoch) }
                });
                let n = packets.len();
                for (i, p) in packets.into_iter().enumerate() {
                    rtp_seq[1] += 1;
                    write(&mut peer, mid, pt, rtp_seq[1], ts, i + 1 == n, p);
                }
                result.sent += n as u64;
                cfg.live.sent.fetch_add(n as u64, Ordering::Relaxed);
                drive(&mut peer, cfg, result, started).await?;
            }
            _ = sleep_until(stop_at.into()) => break,
        }
    }
    let _ = send(&mut ws, json!({ "type": "leave" })).await;
    let _ = ws.close(None).await;
    if peer.connected {
        cfg.live.connected.fetch_sub(1, Ordering::Relaxed);
    } else {
        bail!("media never connected");
    }
    Ok(())
}

fn write(peer: &mut Peer, mid: Mid, pt: Pt, seq: u64, ts: u32, marker: bool, payload: Vec<u8>) {
    let now = Instant::now();
    let mut api = peer.rtc.direct_api();
    if let Some(tx) = api.stream_tx_by_mid(mid, None) {
        tx.write_rtp(RtpWrite::new(pt, seq.into(), ts, now, payload).marker(marker).nackable(true));
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
                    if result.rx.on_payload(&p.payload, ns_since(cfg.epoch)).is_some() {
                        result.join_to_media.get_or_insert_with(|| started.elapsed());
                    }
                    cfg.live.received.fetch_add(1, Ordering::Relaxed);
                }
                Event::KeyframeRequest(_) => peer.keyframe_wanted = true,
                _ => {}
            },
        }
    }
}

/// Handles one signalling message from the server.
async fn signal(peer: &mut Peer, ws: &mut Ws, msg: &Value) -> anyhow::Result<()> {
    match msg["type"].as_str() {
        Some("answer") => {
            let answer = SdpAnswer::from_sdp_string(msg["sdp"].as_str().unwrap_or_default())?;
            if let Some(pending) = peer.pending.take() {
                peer.rtc.sdp_api().accept_answer(pending, answer)?;
            }
        }
        Some("offer") => {
            let offer = SdpOffer::from_sdp_string(msg["sdp"].as_str().unwrap_or_default())?;
            let answer = peer.rtc.sdp_api().accept_offer(offer)?;
            send(ws, json!({ "type": "answer", "sdp": answer.to_sdp_string() })).await?;
        }
        Some("closed") => bail!("server closed the session: {} ({})", msg["message"], msg["code"]),
        Some("error") => tracing::warn!("server error: {msg}"),
        _ => {}
    }
    Ok(())
}

async fn send(ws: &mut Ws, v: Value) -> anyhow::Result<()> {
    ws.send(Message::Text(v.to_string().into())).await.context("signalling send")
}

/// The next JSON text message; pings are answered by tungstenite itself.
async fn next_json(ws: &mut Ws) -> anyhow::Result<Value> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t)?),
            Some(Ok(Message::Close(_))) | None => bail!("signalling connection closed"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e).context("signalling"),
        }
    }
}

pub fn ns_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

/// Checks that `url`'s host is a loopback address: the harness only loads
/// servers on this machine (or in a namespace reached through loopback).
pub fn loopback_only(addr: SocketAddr) -> anyhow::Result<()> {
    if !addr.ip().is_loopback() {
        bail!("refusing to send load to {addr}: only loopback targets are allowed");
    }
    Ok(())
}
