//! In-memory test bed (feature `testbed`): real `ShardCore`s driven by the
//! production loop turn (`io::turn::Driver`) over queues instead of sockets
//! and channels, the real `Rooms` directory, str0m client peers at fake
//! addresses, and virtual time. `Bed::run` always advances whatever is due
//! first, like str0m's `progress()`. Used by the media-plane tests and the
//! benchmarks.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::command::{ClientEvent, JoinRequest, MediaMsg, Permissions, ShardCommand, Signal};
use crate::core::ids::{ParticipantId, ShardId};
use crate::core::placement::DEFAULT_SPILL_AT;
use crate::core::rooms::{ControlOutput, Rooms};
use crate::core::shard::{ShardCore, ShardOutput};
use crate::io::batch::{Sent, BATCH};
use crate::io::turn::{Driver, ShardIo};

mod link;
mod record;
pub use link::{Link, ReceiveEstimator};
pub use record::{ffprobe_packets, ivf_frames, BedRecorder, FilePacket};
use str0m::bwe::Bitrate;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::ChannelId;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive, Transmit};
use str0m::rtp::{ExtensionValues, RtpWrite, SeqNo, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

pub struct Received {
    pub mid: Mid,
    pub seq: u64,
    pub payload: Vec<u8>,
    /// Header extensions the packet carried that bandwidth estimation uses.
    pub transport_cc: Option<u16>,
    pub abs_send_time: bool,
}

pub struct Client {
    pub pid: ParticipantId,
    pub identity: String,
    pub addr: SocketAddr,
    pub shard: usize,
    pub rtc: Rtc,
    pub timeout: Instant,
    pub pending: Option<SdpPendingOffer>,
    pub send_mids: Vec<(MediaKind, Mid)>,
    pub channel: Option<ChannelId>,
    pub events: Vec<ClientEvent>,
    pub rtp: Vec<Received>,
    pub data: Vec<(bool, Vec<u8>)>,
    pub keyframe_requests: usize,
    /// The rid of each keyframe request received (simulcast publishers).
    pub keyframe_rids: Vec<Option<String>>,
    /// Packets and frames sent per simulcast layer.
    pub layer_seq: [u64; 3],
    pub layer_frames: [u64; 3],
    pub connected: bool,
    /// Next sequence number per kind (index 0 audio, 1 video).
    pub seq: [u64; 2],
    pub gone: bool,
    /// When set, server offers wait in `held` instead of being answered at
    /// once: a test can then make its own offer cross ours (glare).
    pub hold_offers: bool,
    pub held: Vec<String>,
    /// RTP datagrams towards this client to lose on the way (a lossy link).
    pub lose_rtp: usize,
    /// Lose every n-th RTP datagram towards this client, retransmissions
    /// included (a link with steady loss, the same on every run).
    pub lose_every: Option<usize>,
    rtp_towards: usize,
    /// RTP datagrams this client sends to lose on the way (an outage).
    pub lose_uplink: usize,
    /// Lose every n-th RTP datagram this client sends (a lossy uplink).
    pub lose_uplink_every: Option<usize>,
    rtp_from: usize,
    /// The link from the server to this client and the client's estimate
    /// of it; `None`: unlimited, and no estimate (see [`Bed::set_downlink`]).
    pub downlink: Option<(Link<Transmit>, ReceiveEstimator)>,
    /// The SSRCs it receives RTP on (where its estimates go).
    rx_ssrcs: Vec<Ssrc>,
}

impl Client {
    pub fn has_event(&self, f: impl Fn(&ClientEvent) -> bool) -> bool {
        self.events.iter().any(f)
    }

    pub fn pt(&self, codec: Codec) -> Pt {
        self.rtc.codec_config().params().iter().find(|p| p.spec().codec == codec).expect("codec configured").pt()
    }
}

/// A datagram on its way: source, destination, bytes.
pub type Datagram = (SocketAddr, SocketAddr, Vec<u8>);

/// One shard's surroundings in memory: what the worker's socket and
/// channels are in production.
#[derive(Default)]
pub struct MemIo {
    now: Option<Instant>,
    inbox: VecDeque<Datagram>,
    commands: VecDeque<ShardCommand>,
    media: VecDeque<MediaMsg>,
    sent: Vec<Transmit>,
    handed: Vec<(ShardId, MediaMsg)>,
    control: Vec<ShardOutput>,
}

impl MemIo {
    fn has_input(&self) -> bool {
        !self.inbox.is_empty() || !self.commands.is_empty() || !self.media.is_empty()
    }
}

impl ShardIo for MemIo {
    fn now(&self) -> Instant {
        self.now.expect("the bed sets the time before a turn")
    }

    fn command(&mut self) -> Option<ShardCommand> {
        self.commands.pop_front()
    }

    fn media(&mut self) -> Option<MediaMsg> {
        self.media.pop_front()
    }

    fn recv(&mut self, core: &mut ShardCore, now: Instant) -> std::io::Result<usize> {
        if self.inbox.is_empty() {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        let n = self.inbox.len().min(BATCH);
        for (src, dst, d) in self.inbox.drain(..n) {
            core.handle_receive(now, Protocol::Udp, src, dst, &d);
        }
        Ok(n)
    }

    fn send(&mut self, batch: &mut Vec<Transmit>) -> Sent {
        let bytes = batch.iter().map(|t| t.contents.len() as u64).sum();
        let n = batch.len() as u64;
        self.sent.append(batch);
        Sent { datagrams: n, bytes, failed: 0, messages: n }
    }

    fn to_shard(&mut self, shard: ShardId, msg: MediaMsg) -> bool {
        self.handed.push((shard, msg));
        true
    }

    fn wake_shards(&mut self) {}

    fn to_control(&mut self, out: ShardOutput) {
        self.control.push(out);
    }
}

pub struct Bed {
    pub now: Instant,
    pub shards: Vec<ShardCore>,
    io: Vec<MemIo>,
    drivers: Vec<Driver>,
    pub rooms: Rooms,
    pub clients: HashMap<ParticipantId, Client>,
    /// A real recorder, when [`Bed::record_into`] made one.
    pub recorder: Option<BedRecorder>,
    next_pid: u64,
    next_port: u16,
}

pub fn shard_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], 5000 + i as u16))
}

impl Bed {
    /// A bed with the production placement: a room stays on one shard.
    pub fn new(shards: usize) -> Self {
        Self::with_spill_at(shards, DEFAULT_SPILL_AT)
    }

    /// A bed whose rooms spill onto another shard past `spill_at` members
    /// per shard (1: every member on a shard of its own while shards last).
    pub fn with_spill_at(shards: usize, spill_at: usize) -> Self {
        Bed {
            now: Instant::now(),
            shards: (0..shards).map(|i| ShardCore::new(i, vec![shard_addr(i)], None)).collect(),
            io: (0..shards).map(|_| MemIo::default()).collect(),
            drivers: (0..shards).map(|_| Driver::default()).collect(),
            rooms: Rooms::new(shards, spill_at),
            clients: HashMap::new(),
            recorder: None,
            next_pid: 1,
            next_port: 1000,
        }
    }

    /// Queues a command for a shard, as the control plane's lane does.
    pub fn command(&mut self, shard: ShardId, cmd: ShardCommand) {
        self.io[shard].commands.push_back(cmd);
    }

    /// Runs one loop turn of `shard` on `datagrams` and returns how many
    /// datagrams it sent (discarded, with its other outputs): the
    /// benchmarks' measure of the shard's own work.
    pub fn forward_through(&mut self, shard: ShardId, datagrams: Vec<Datagram>) -> usize {
        let io = &mut self.io[shard];
        io.now = Some(self.now);
        io.inbox.extend(datagrams);
        self.drivers[shard].readable = true;
        self.drivers[shard].turn(&mut self.shards[shard], io);
        io.handed.clear();
        io.control.clear();
        let n = io.sent.len();
        io.sent.clear();
        n
    }

    /// Joins `identity` to `room` and starts negotiation: the client offers
    /// `publish` (audio and/or video, send-only) and a data channel.
    pub fn join(&mut self, room: &str, identity: &str, publish: &[MediaKind]) -> ParticipantId {
        self.join_as(room, identity, publish, Permissions { can_publish: true, can_subscribe: true }, false)
    }

    /// Joins a publisher of audio and of video in three simulcast layers
    /// (rids `q`, `h`, `f`, as the pages send them); see [`Bed::send_layer`].
    pub fn join_simulcast(&mut self, room: &str, identity: &str) -> ParticipantId {
        let all = Permissions { can_publish: true, can_subscribe: true };
        self.join_as(room, identity, &[MediaKind::Audio, MediaKind::Video], all, true)
    }

    /// Joins a viewer: a grant without publishing, offering only a data channel.
    pub fn join_viewer(&mut self, room: &str, identity: &str) -> ParticipantId {
        self.join_as(room, identity, &[], Permissions { can_publish: false, can_subscribe: true }, false)
    }

    fn join_as(
        &mut self,
        room: &str,
        identity: &str,
        publish: &[MediaKind],
        permissions: Permissions,
        simulcast: bool,
    ) -> ParticipantId {
        let pid = ParticipantId(self.next_pid);
        self.next_pid += 1;
        self.next_port += 1;
        let addr = SocketAddr::from(([1, 1, 1, 1], self.next_port));
        let mut rtc = RtcConfig::new()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        let req = JoinRequest { room: room.into(), identity: identity.into(), name: None, permissions };
        let mut out = Vec::new();
        let joined = self.rooms.join(pid, req, &mut out);
        let mut api = rtc.sdp_api();
        let layers = |k: MediaKind| {
            (simulcast && k == MediaKind::Video).then(|| {
                let mut s = Simulcast::new();
                for rid in LAYER_RIDS {
                    s.add_send_layer(SimulcastLayer::new(rid));
                }
                s
            })
        };
        let send_mids: Vec<(MediaKind, Mid)> =
            publish.iter().map(|k| (*k, api.add_media(*k, Direction::SendOnly, None, None, layers(*k)))).collect();
        let channel = api.add_channel("room".into());
        let (offer, pending) = api.apply().unwrap();
        self.clients.insert(
            pid,
            Client {
                pid,
                identity: identity.into(),
                addr,
                shard: joined.shard,
                rtc,
                timeout: self.now,
                pending: Some(pending),
                send_mids,
                channel: Some(channel),
                events: vec![],
                rtp: vec![],
                data: vec![],
                keyframe_requests: 0,
                keyframe_rids: vec![],
                layer_seq: [0; 3],
                layer_frames: [0; 3],
                connected: false,
                seq: [0, 0],
                gone: false,
                hold_offers: false,
                held: vec![],
                lose_rtp: 0,
                lose_every: None,
                rtp_towards: 0,
                lose_uplink: 0,
                lose_uplink_every: None,
                rtp_from: 0,
                downlink: None,
                rx_ssrcs: Vec::new(),
            },
        );
        self.dispatch(out);
        let signal = Signal::Offer { sdp: offer.to_sdp_string(), sources: vec![] };
        self.command(joined.shard, ShardCommand::Signal { participant: pid, signal });
        pid
    }

    pub fn leave(&mut self, pid: ParticipantId) {
        let mut out = Vec::new();
        self.rooms.remove(pid, None, &mut out);
        self.dispatch(out);
        if let Some(c) = self.clients.get_mut(&pid) {
            c.gone = true;
        }
    }

    fn dispatch(&mut self, out: Vec<ControlOutput>) {
        for o in out {
            match o {
                ControlOutput::Shard(i, cmd) => self.command(i, cmd),
                ControlOutput::Client(pid, ev) => self.deliver_to_client(pid, ev),
            }
        }
    }

    fn deliver_to_client(&mut self, pid: ParticipantId, ev: ClientEvent) {
        let Some(c) = self.clients.get_mut(&pid) else { return };
        if c.gone {
            return;
        }
        match &ev {
            // An answer to an offer the client did not make (one a test
            // signalled itself, see `Bed::signal`) is only recorded.
            ClientEvent::Answer { sdp } if c.pending.is_some() => {
                let answer = SdpAnswer::from_sdp_string(sdp).unwrap();
                let pending = c.pending.take().expect("checked");
                c.rtc.sdp_api().accept_answer(pending, answer).unwrap();
            }
            ClientEvent::Offer { sdp, .. } if c.hold_offers => {
                c.held.push(sdp.clone());
            }
            ClientEvent::Offer { sdp, .. } => {
                let offer = SdpOffer::from_sdp_string(sdp).expect("the server's offers parse");
                // After a test signalled for the client behind its back (see
                // `Bed::signal`), the client may not be able to follow.
                let Ok(answer) = c.rtc.sdp_api().accept_offer(offer) else {
                    c.events.push(ev);
                    return;
                };
                let shard = c.shard;
                c.events.push(ev.clone());
                let signal = Signal::Answer { sdp: answer.to_sdp_string() };
                self.command(shard, ShardCommand::Signal { participant: pid, signal });
                return;
            }
            _ => {}
        }
        c.events.push(ev);
    }

    /// Signals for `pid` as its client would, without its client knowing
    /// (a made-up offer, candidate, mute or subscription).
    pub fn signal(&mut self, pid: ParticipantId, signal: Signal) {
        let shard = self.clients[&pid].shard;
        self.command(shard, ShardCommand::Signal { participant: pid, signal });
    }

    /// The client adds a send-only track and offers it (a renegotiation it
    /// starts, like a browser that begins sharing its screen).
    pub fn offer_new_track(&mut self, pid: ParticipantId, kind: MediaKind) {
        let c = self.clients.get_mut(&pid).unwrap();
        let mut api = c.rtc.sdp_api();
        let mid = api.add_media(kind, Direction::SendOnly, None, None, None);
        let (offer, pending) = api.apply().unwrap();
        c.pending = Some(pending);
        c.send_mids.push((kind, mid));
        let shard = c.shard;
        let signal = Signal::Offer { sdp: offer.to_sdp_string(), sources: vec![] };
        self.command(shard, ShardCommand::Signal { participant: pid, signal });
    }

    /// Answers the held server offers, as a polite client does after glare:
    /// accepting an offer rolls back its own pending one.
    pub fn answer_held_offers(&mut self, pid: ParticipantId) {
        let c = self.clients.get_mut(&pid).unwrap();
        c.hold_offers = false;
        c.pending = None;
        for sdp in std::mem::take(&mut c.held) {
            self.deliver_to_client(pid, ClientEvent::Offer { sdp, mids: vec![] });
        }
    }

    /// `pid` writes one RTP packet; returns the datagrams its client sends
    /// for it (SRTP, plus whatever else was due), not delivered anywhere.
    pub fn client_datagrams(&mut self, pid: ParticipantId, kind: MediaKind, payload: &[u8]) -> Vec<Datagram> {
        self.send_rtp(pid, kind, payload);
        let now = self.now;
        let c = self.clients.get_mut(&pid).unwrap();
        let mut out = Vec::new();
        loop {
            match c.rtc.poll_output().unwrap() {
                // Due now (e.g. the pacer releasing the packet): let it run.
                Output::Timeout(t) if t <= now && out.is_empty() => c.rtc.handle_input(Input::Timeout(now)).unwrap(),
                Output::Timeout(t) => {
                    c.timeout = t;
                    return out;
                }
                Output::Transmit(t) => out.push((t.source, t.destination, t.contents.to_vec())),
                Output::Event(_) => {}
            }
        }
    }

    /// Publishes one RTP packet of `kind` from `pid` with `payload`.
    pub fn send_rtp(&mut self, pid: ParticipantId, kind: MediaKind, payload: &[u8]) {
        let now = self.now;
        let c = self.clients.get_mut(&pid).unwrap();
        let mid = c.send_mids.iter().find(|(k, _)| *k == kind).unwrap().1;
        let pt = c.pt(if kind == MediaKind::Audio { Codec::Opus } else { Codec::Vp8 });
        let k = usize::from(kind == MediaKind::Video);
        c.seq[k] += 1;
        let seq: SeqNo = (c.seq[k] + 40_000).into();
        let ts = (c.seq[k] * 3000) as u32;
        let mut api = c.rtc.direct_api();
        let tx = api.stream_tx_by_mid(mid, None).expect("send stream");
        tx.write_rtp(RtpWrite::new(pt, seq, ts, now, payload.to_vec()).marker(true).nackable(true));
    }

    /// Publishes one RTP packet of `kind` from `pid` with the caller's
    /// sequence number and RTP time, captured at `captured` (the sender
    /// reports' wallclock; earlier than now for a packet that took a while
    /// to encode): for tests that need real media clocks.
    pub fn send_rtp_at(
        &mut self,
        pid: ParticipantId,
        kind: MediaKind,
        (seq, ts, captured): (u64, u32, Instant),
        marker: bool,
        payload: Vec<u8>,
    ) {
        let c = self.clients.get_mut(&pid).unwrap();
        let mid = c.send_mids.iter().find(|(k, _)| *k == kind).unwrap().1;
        let pt = c.pt(if kind == MediaKind::Audio { Codec::Opus } else { Codec::Vp8 });
        let mut api = c.rtc.direct_api();
        let tx = api.stream_tx_by_mid(mid, None).expect("send stream");
        tx.write_rtp(RtpWrite::new(pt, seq.into(), ts, captured, payload).marker(marker).nackable(true));
    }

    /// Publishes one RTP packet on simulcast layer `layer` (0..3) of `pid`'s
    /// video with the caller's sequence number, RTP time and payload.
    pub fn send_layer_rtp(
        &mut self,
        pid: ParticipantId,
        layer: usize,
        (seq, ts): (u64, u32),
        marker: bool,
        payload: Vec<u8>,
    ) {
        let now = self.now;
        let c = self.clients.get_mut(&pid).unwrap();
        let mid = c.send_mids.iter().find(|(k, _)| *k == MediaKind::Video).unwrap().1;
        let pt = c.pt(Codec::Vp8);
        let mut api = c.rtc.direct_api();
        let tx = api.stream_tx_by_mid(mid, Some(LAYER_RIDS[layer].into())).expect("layer stream");
        tx.write_rtp(RtpWrite::new(pt, seq.into(), ts, now, payload).marker(marker).nackable(true));
    }

    /// Publishes one 20 ms Opus packet from `pid` carrying `level` (dBov,
    /// −127..=0) in its RFC 6464 audio level extension.
    pub fn send_speech(&mut self, pid: ParticipantId, level: i8) {
        let now = self.now;
        let c = self.clients.get_mut(&pid).unwrap();
        let mid = c.send_mids.iter().find(|(k, _)| *k == MediaKind::Audio).unwrap().1;
        let pt = c.pt(Codec::Opus);
        c.seq[0] += 1;
        let seq: SeqNo = (c.seq[0] + 40_000).into();
        let ts = (c.seq[0] * 960) as u32;
        let ext =
            ExtensionValues { audio_level: Some(level), voice_activity: Some(level > -127), ..Default::default() };
        let mut api = c.rtc.direct_api();
        let tx = api.stream_tx_by_mid(mid, None).expect("send stream");
        tx.write_rtp(RtpWrite::new(pt, seq, ts, now, payload("opus", 60)).ext_vals(ext));
    }

    /// Publishes one single-packet frame on simulcast `layer` (0..3) of
    /// `pid`'s video; see [`Bed::send_layer_frame`].
    pub fn send_layer(&mut self, pid: ParticipantId, layer: usize, keyframe: bool) {
        self.send_layer_frame(pid, layer, keyframe, 1);
    }

    /// Publishes one frame of `packets` packets (300 bytes each) on
    /// simulcast `layer` (0..3) of `pid`'s video: VP8 payloads with the
    /// layer's own sequence numbers, picture ids and TL0PICIDX, a keyframe
    /// (declaring `LAYER_HEIGHTS`) when `keyframe`. Each packet's tag
    /// ([`layer_tag`]) is `<rid>:<n>`, `n` counting the layer's packets.
    pub fn send_layer_frame(&mut self, pid: ParticipantId, layer: usize, keyframe: bool, packets: usize) {
        let now = self.now;
        let c = self.clients.get_mut(&pid).unwrap();
        let mid = c.send_mids.iter().find(|(k, _)| *k == MediaKind::Video).unwrap().1;
        let pt = c.pt(Codec::Vp8);
        c.layer_frames[layer] += 1;
        let frame = c.layer_frames[layer];
        // Layers number their packets and pictures independently.
        let picture_id = ((frame + 5000 * layer as u64) % 32768) as u16;
        let ts = (frame * 3000 + 77_777 * layer as u64) as u32;
        for i in 0..packets {
            c.layer_seq[layer] += 1;
            let n = c.layer_seq[layer];
            let seq: SeqNo = (n + 1000 * layer as u64 + 7).into();
            let payload = vp8_layer_payload(LAYER_RIDS[layer], n, picture_id, i == 0, keyframe, LAYER_HEIGHTS[layer]);
            let mut api = c.rtc.direct_api();
            let tx = api.stream_tx_by_mid(mid, Some(LAYER_RIDS[layer].into())).expect("layer stream");
            tx.write_rtp(RtpWrite::new(pt, seq, ts, now, payload).marker(i + 1 == packets).nackable(true));
        }
    }

    /// Sends a binary data channel message; false if the client's own
    /// buffer refused it.
    pub fn send_binary(&mut self, pid: ParticipantId, data: &[u8]) -> bool {
        let c = self.clients.get_mut(&pid).unwrap();
        let cid = c.channel.unwrap();
        c.rtc.channel(cid).unwrap().write(true, data).unwrap()
    }

    pub fn send_data(&mut self, pid: ParticipantId, text: &str) {
        let c = self.clients.get_mut(&pid).unwrap();
        let cid = c.channel.unwrap();
        assert!(c.rtc.channel(cid).unwrap().write(false, text.as_bytes()).unwrap());
    }

    /// Advances virtual time by `d`, moving every packet and message.
    pub fn run(&mut self, d: Duration) {
        let end = self.now + d;
        let mut guard = 0;
        loop {
            guard += 1;
            assert!(guard < 200_000, "test bed did not settle");
            self.pump();
            let next = self
                .clients
                .values()
                .filter(|c| !c.gone)
                .map(|c| c.timeout)
                .chain(self.clients.values().filter_map(|c| c.downlink.as_ref().and_then(|(l, e)| l.next_event(e))))
                .chain(self.shards.iter().filter_map(|s| s.next_timeout()))
                .chain(self.recorder.as_ref().map(|r| r.next_timeout(self.now)))
                .min()
                .unwrap_or(end)
                .max(self.now);
            if next > end {
                self.now = end;
                self.pump();
                return;
            }
            self.now = next;
            let now = self.now;
            self.deliver_links();
            for c in self.clients.values_mut().filter(|c| !c.gone && c.timeout <= now) {
                c.rtc.handle_input(Input::Timeout(now)).unwrap();
            }
            for i in 0..self.shards.len() {
                self.turn(i);
            }
            if next == end {
                self.pump();
                return;
            }
        }
    }

    /// Delivers everything queued, until nothing moves.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            let pids: Vec<ParticipantId> = self.clients.keys().copied().collect();
            for pid in pids {
                moved |= self.drain_client(pid);
            }
            for i in 0..self.shards.len() {
                if self.io[i].has_input() {
                    self.turn(i);
                    moved |= self.io[i].has_input();
                }
                moved |= self.deliver_shard_outputs(i);
            }
            moved |= self.pump_recorder();
            if !moved {
                return;
            }
        }
    }

    /// One loop turn of shard `i` at the bed's time.
    fn turn(&mut self, i: ShardId) {
        self.io[i].now = Some(self.now);
        self.drivers[i].readable = true;
        self.drivers[i].turn(&mut self.shards[i], &mut self.io[i]);
    }

    /// Delivers what shard `i` sent, handed over and reported; true if anything.
    fn deliver_shard_outputs(&mut self, i: ShardId) -> bool {
        let now = self.now;
        let io = &mut self.io[i];
        let sent = std::mem::take(&mut io.sent);
        let handed = std::mem::take(&mut io.handed);
        let control = std::mem::take(&mut io.control);
        let moved = !sent.is_empty() || !handed.is_empty() || !control.is_empty();
        for t in sent {
            let Some(c) = self.clients.values_mut().find(|c| c.addr == t.destination && !c.gone) else { continue };
            if is_rtp(&t.contents) {
                c.rtp_towards += 1;
                if c.lose_rtp > 0 || c.lose_every.is_some_and(|n| c.rtp_towards % n == 0) {
                    c.lose_rtp = c.lose_rtp.saturating_sub(1);
                    continue;
                }
            }
            if let Some((link, _)) = &mut c.downlink {
                let bytes = t.contents.len();
                link.push(t, bytes, now);
                continue;
            }
            let pid = c.pid;
            self.receive(pid, &t);
        }
        for (to, msg) in handed {
            self.io[to].media.push_back(msg);
        }
        for o in control {
            match o {
                ShardOutput::Client(pid, ev) => self.deliver_to_client(pid, ev),
                ShardOutput::Control(ev) => {
                    let mut out = Vec::new();
                    self.rooms.handle_shard_event(ev, &mut out);
                    self.dispatch(out);
                }
            }
        }
        moved
    }

    /// Hands clients what their downlinks delivered by now, and sends
    /// their estimates of those links when due.
    fn deliver_links(&mut self) {
        let now = self.now;
        let pids: Vec<ParticipantId> = self.clients.keys().copied().collect();
        for pid in pids {
            loop {
                let c = self.clients.get_mut(&pid).unwrap();
                let Some((link, estimator)) = c.downlink.as_mut() else { break };
                let Some(t) = link.pop(now) else {
                    if let Some(bps) = estimator.report(link, now) {
                        for ssrc in &c.rx_ssrcs {
                            if let Some(rx) = c.rtc.direct_api().stream_rx(ssrc) {
                                rx.request_remb(Bitrate::bps(bps));
                            }
                        }
                        self.drain_client(pid);
                    }
                    break;
                };
                estimator.arrived(t.contents.len(), now);
                if !c.gone {
                    self.receive(pid, &t);
                }
            }
        }
    }

    /// Puts a link of `rate` bits/s (`None`: unlimited) with a 300 ms
    /// drop-tail queue between the server and `pid`, which from then on
    /// estimates it and reports that with REMB, as a browser does.
    pub fn set_downlink(&mut self, pid: ParticipantId, rate: Option<u64>) {
        let c = self.clients.get_mut(&pid).unwrap();
        let rate = rate.unwrap_or(u64::MAX);
        match &mut c.downlink {
            Some((link, _)) => link.rate = rate,
            None => c.downlink = Some((Link::new(rate, Duration::from_millis(300)), ReceiveEstimator::default())),
        }
    }

    /// Client `pid` receives datagram `t` now.
    fn receive(&mut self, pid: ParticipantId, t: &Transmit) {
        let now = self.now;
        let c = self.clients.get_mut(&pid).unwrap();
        let r = Receive::new(Protocol::Udp, t.source, t.destination, &t.contents).unwrap();
        // A refused datagram (e.g. DTLS receive queue full in a burst) is
        // a lost packet, as on a real network.
        let _ = c.rtc.handle_input(Input::Receive(now, r));
        // str0m's contract: drain after every input (in RTP mode it holds
        // one received packet until polled).
        self.drain_client(pid);
    }

    /// Polls one client until it asks for a timeout; its datagrams go to
    /// their shard. Returns whether anything happened.
    fn drain_client(&mut self, pid: ParticipantId) -> bool {
        let mut moved = false;
        loop {
            let c = self.clients.get_mut(&pid).unwrap();
            if c.gone {
                return moved;
            }
            match c.rtc.poll_output().unwrap() {
                Output::Timeout(t) => {
                    c.timeout = t;
                    return moved;
                }
                Output::Transmit(t) => {
                    moved = true;
                    if is_rtp(&t.contents) {
                        c.rtp_from += 1;
                        if c.lose_uplink > 0 || c.lose_uplink_every.is_some_and(|n| c.rtp_from.is_multiple_of(n)) {
                            c.lose_uplink = c.lose_uplink.saturating_sub(1);
                            continue;
                        }
                    }
                    let shard = (t.destination.port() - 5000) as usize;
                    self.io[shard].inbox.push_back((t.source, t.destination, t.contents.to_vec()));
                }
                Output::Event(e) => match e {
                    Event::Connected => c.connected = true,
                    Event::RtpPacket(p) => {
                        if !c.rx_ssrcs.contains(&p.header.ssrc) {
                            c.rx_ssrcs.push(p.header.ssrc);
                        }
                        let mid = c.rtc.direct_api().stream_rx(&p.header.ssrc).map(|s| s.mid()).unwrap();
                        let ext = &p.header.ext_vals;
                        let (transport_cc, abs_send_time) = (ext.transport_cc, ext.abs_send_time.is_some());
                        c.rtp.push(Received {
                            mid,
                            seq: *p.seq_no,
                            payload: p.payload.to_vec(),
                            transport_cc,
                            abs_send_time,
                        });
                    }
                    Event::KeyframeRequest(r) => {
                        c.keyframe_requests += 1;
                        c.keyframe_rids.push(r.rid.map(|r| r.to_string()));
                    }
                    Event::ChannelData(d) => c.data.push((d.binary, d.data)),
                    _ => {}
                },
            }
        }
    }

    pub fn client(&self, pid: ParticipantId) -> &Client {
        &self.clients[&pid]
    }
}

/// An (S)RTP datagram, not RTCP, STUN or DTLS (RFC 7983 and 5761).
fn is_rtp(d: &[u8]) -> bool {
    d.len() > 12 && d[0] >> 6 == 2 && !(192..=223).contains(&d[1])
}

/// A payload that names its sender and sequence, so receivers can check
/// identity. It opens with a VP8 payload descriptor (S=1, PID 0) and an
/// inter-frame header, which str0m's receive path parses for video.
pub fn payload(tag: &str, n: usize) -> Vec<u8> {
    let mut v = vec![0x10, 0x01];
    v.extend(format!("{tag}:{n}:").into_bytes());
    v.resize(200, n as u8);
    v
}

/// The tag part of a payload made by [`payload`].
pub fn tag(payload: &[u8]) -> &[u8] {
    payload.get(2..).unwrap_or(&[])
}

/// The rids [`Bed::join_simulcast`] publishes, lowest layer first.
pub const LAYER_RIDS: [&str; 3] = ["q", "h", "f"];

/// The height each layer's keyframes declare (width is 16:9).
pub const LAYER_HEIGHTS: [u16; 3] = [180, 360, 720];

/// Bytes of VP8 descriptor and frame header before a layer payload's tag.
const VP8_LAYER_HEADER: usize = 16;

/// A VP8 payload: descriptor (X, S when `start`, PID 0; 15-bit picture id,
/// TL0PICIDX, TID), a frame header when `start` (a keyframe's declares
/// `height`; filler otherwise), then the tag `<rid>:<n>:`.
pub fn vp8_layer_payload(rid: &str, n: u64, picture_id: u16, start: bool, keyframe: bool, height: u16) -> Vec<u8> {
    let b0 = if start { 0x90 } else { 0x80 };
    let mut v = vec![b0, 0xe0, 0x80 | (picture_id >> 8) as u8, picture_id as u8, picture_id as u8, 0x00];
    let width = height / 9 * 16;
    if keyframe && start {
        v.extend_from_slice(&[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a]);
        v.extend_from_slice(&width.to_le_bytes());
        v.extend_from_slice(&height.to_le_bytes());
    } else {
        v.extend_from_slice(&[0x11; 10]);
    }
    v.extend(format!("{rid}:{n}:").into_bytes());
    v.resize(300, 0);
    v
}

/// The `<rid>:<n>` of a payload made by [`vp8_layer_payload`].
pub fn layer_tag(payload: &[u8]) -> String {
    let rest = String::from_utf8_lossy(payload.get(VP8_LAYER_HEADER..).unwrap_or(&[])).into_owned();
    rest.split(':').take(2).collect::<Vec<_>>().join(":")
}

pub fn arc(v: &[u8]) -> Arc<[u8]> {
    v.into()
}
