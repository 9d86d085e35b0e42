//! `ShardCore`: the participants of one shard, driven without I/O.
//!
//! Inputs are `handle_*` calls; outputs are drained with `poll_transmit`
//! (datagrams for the socket) and `poll_output` (messages for the control
//! plane, other shards and clients). Only participants that got input or whose
//! deadline passed are driven: the timer heap names them, never a scan.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rustc_hash::FxHashMap;
use str0m::media::Mid;
use str0m::net::{Protocol, Receive, Transmit};
use str0m::rtp::{ExtensionValues, RtpWrite};
use str0m::{Event, IceConnectionState, Input, Output};
use tracing::{debug, info, warn};

use super::command::{
    ClientEvent, ErrorCode, MediaMsg, MediaPacket, RoomData, ShardCommand, ShardEvent, TrackInfo,
};
use super::demux::{self, Demux, Slot, MAX_ADDRS_PER_PEER};
use super::ids::{ParticipantId, ShardId, TrackId, TrackKind};
use super::keyframe::KeyframeThrottle;
pub use crate::stats::ShardStats;
use super::participant::{self, Participant, Published, SignalOutcome, CONNECT_TIMEOUT};
use super::timer::Timers;

/// Data channel bytes we let queue towards one participant before dropping
/// relayed messages for it: one slow receiver must not grow server memory.
pub const MAX_DATA_BUFFERED: usize = 1 << 20;

#[derive(Debug)]
pub enum ShardOutput {
    Control(ShardEvent),
    Media(ShardId, MediaMsg),
    Client(ParticipantId, ClientEvent),
}


/// Per published track on this shard: who here receives it, and for a local
/// publisher, which other shards need a copy.
#[derive(Default)]
struct Route {
    subscribers: Vec<Slot>,
    remote_shards: Vec<ShardId>,
    /// Set when the publisher is on this shard.
    publisher: Option<(Slot, Mid)>,
    /// Shard of a remote publisher, to send keyframe requests to.
    publisher_shard: Option<ShardId>,
    keyframes: KeyframeThrottle,
}

/// Work that touches participants other than the one being drained.
enum Work {
    Forward { pkt: Arc<MediaPacket>, from_remote: bool },
    Keyframe(TrackId),
    Data { msg: Arc<RoomData>, from_remote: bool },
    Gone(Slot),
}

pub struct ShardCore {
    id: ShardId,
    shards: usize,
    /// The address written into candidates (public IP + this shard's port).
    candidate_addr: SocketAddr,
    slots: Vec<Option<Participant>>,
    /// Bumped when a slot is freed, so stale timer entries are ignored.
    generations: Vec<u32>,
    free: Vec<Slot>,
    by_pid: HashMap<ParticipantId, Slot>,
    demux: Demux,
    timers: Timers,
    routes: FxHashMap<TrackId, Route>,
    /// Merged keyframe requests waiting for their track's window to end, so
    /// that neither the loop's deadline nor its timer work scans every route.
    keyframes_due: BinaryHeap<Reverse<(Instant, TrackId)>>,
    rooms: HashMap<Arc<str>, Vec<Slot>>,
    next_track: u64,
    work: VecDeque<Work>,
    transmits: VecDeque<Transmit>,
    /// Legs with RTP written since their last drain, and when the first was.
    written: Vec<Slot>,
    written_at: Option<Instant>,
    outputs: VecDeque<ShardOutput>,
    pub stats: ShardStats,
}

impl ShardCore {
    pub fn new(id: ShardId, shards: usize, candidate_addr: SocketAddr) -> Self {
        ShardCore {
            id,
            shards,
            candidate_addr,
            slots: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            by_pid: HashMap::new(),
            demux: Demux::default(),
            timers: Timers::default(),
            routes: FxHashMap::default(),
            keyframes_due: BinaryHeap::new(),
            rooms: HashMap::new(),
            next_track: 1,
            work: VecDeque::new(),
            transmits: VecDeque::new(),
            written: Vec::new(),
            written_at: None,
            outputs: VecDeque::new(),
            stats: ShardStats::default(),
        }
    }

    pub fn id(&self) -> ShardId {
        self.id
    }

    pub fn participant_count(&self) -> usize {
        self.by_pid.len()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_output(&mut self) -> Option<ShardOutput> {
        self.outputs.pop_front()
    }

    /// When `handle_timeout` should next be called.
    pub fn next_timeout(&self) -> Option<Instant> {
        let keyframes = self.keyframes_due.peek().map(|Reverse((t, _))| *t);
        [self.timers.next(), keyframes, self.written_at].into_iter().flatten().min()
    }

    // ---- input -------------------------------------------------------------

    pub fn handle_receive(&mut self, now: Instant, source: SocketAddr, destination: SocketAddr, buf: &[u8]) {
        self.stats.datagrams_in += 1;
        self.stats.bytes_in += buf.len() as u64;
        let slot = match self.demux.by_addr(&source) {
            Some(s) => s,
            None => match demux::stun_server_ufrag(buf).and_then(|u| self.demux.by_ufrag(u)) {
                Some(s) => s,
                None => {
                    self.stats.dropped_unknown_source += 1;
                    return;
                }
            },
        };
        let Ok(recv) = Receive::new(Protocol::Udp, source, destination, buf) else {
            self.stats.dropped_unparseable += 1;
            return;
        };
        let input = Input::Receive(now, recv);
        let Some(p) = self.slots[slot].as_mut() else { return };
        if !p.rtc.accepts(&input) {
            self.stats.dropped_unknown_source += 1;
            return;
        }
        if !p.addrs.contains(&source) && p.addrs.len() < MAX_ADDRS_PER_PEER {
            // Verified by `accepts` (STUN integrity with our ufrag/password):
            // a peer-reflexive address becomes a fast-path route.
            p.addrs.push(source);
            self.demux.insert_addr(source, slot);
        }
        if let Err(e) = p.rtc.handle_input(input) {
            debug!(participant = %p.id, room = %p.room, "input refused: {e}");
        }
        self.drive(slot, now);
        self.run_work(now);
    }

    /// Releases what was written on subscriber legs since the last drain
    /// (str0m sends written RTP on its next timeout), at most `max_legs` of
    /// them; true if some are left. The caller sends between calls, so the
    /// first subscribers of a large room need not wait for the last.
    pub fn drain_written(&mut self, now: Instant, max_legs: usize) -> bool {
        let n = self.written.len().min(max_legs);
        for i in 0..n {
            let slot = self.written[i];
            let Some(p) = self.slots[slot].as_mut() else { continue };
            p.written = false;
            if let Err(e) = p.rtc.handle_input(Input::Timeout(now)) {
                debug!(participant = %p.id, "timeout input: {e}");
            }
            self.drive(slot, now);
        }
        self.written.drain(..n);
        if self.written.is_empty() {
            self.written_at = None;
        }
        self.run_work(now);
        !self.written.is_empty()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.drain_written(now, usize::MAX);
        while let Some((at, slot, gen)) = self.timers.pop_due(now) {
            if self.generations.get(slot) != Some(&gen) {
                continue;
            }
            let Some(p) = self.slots[slot].as_mut() else { continue };
            if p.scheduled != Some(at) && p.offer_due.is_none_or(|d| d > now) {
                continue; // a stale entry: the live one is elsewhere in the heap
            }
            if p.offer_due.is_some_and(|d| d <= now) {
                p.offer_due = None;
                self.offer_if_needed(slot);
                self.drive(slot, now);
                let Some(p) = self.slots[slot].as_mut() else { continue };
                if p.scheduled.is_some_and(|s| s > now) {
                    continue;
                }
            }
            let Some(p) = self.slots[slot].as_mut() else { continue };
            p.scheduled = None;
            if p.timeout > now {
                p.scheduled = Some(p.timeout);
                self.timers.schedule(p.timeout, slot, gen);
                continue;
            }
            if !p.connected && now >= p.joined_at + CONNECT_TIMEOUT {
                info!(participant = %p.id, room = %p.room, "no media connection after {CONNECT_TIMEOUT:?}; dropping");
                self.work.push_back(Work::Gone(slot));
                continue;
            }
            if let Err(e) = p.rtc.handle_input(Input::Timeout(now)) {
                debug!(participant = %p.id, "timeout input: {e}");
            }
            self.drive(slot, now);
        }
        while let Some(&Reverse((at, track))) = self.keyframes_due.peek() {
            if at > now {
                break;
            }
            self.keyframes_due.pop();
            // `poll` opens a new window; false for an entry already served.
            if self.routes.get_mut(&track).is_some_and(|r| r.keyframes.poll(now)) {
                self.deliver_keyframe_request(track, now);
            }
        }
        self.run_work(now);
    }

    pub fn handle_media(&mut self, now: Instant, msg: MediaMsg) {
        match msg {
            MediaMsg::Rtp(pkt) => self.work.push_back(Work::Forward { pkt, from_remote: true }),
            MediaMsg::KeyframeRequest { track } => self.work.push_back(Work::Keyframe(track)),
            MediaMsg::Data(msg) => self.work.push_back(Work::Data { msg, from_remote: true }),
        }
        self.run_work(now);
    }

    pub fn handle_command(&mut self, now: Instant, cmd: ShardCommand) {
        match cmd {
            ShardCommand::AddParticipant { participant, request } => self.add(now, participant, request),
            ShardCommand::RemoveParticipant { participant } => {
                if let Some(slot) = self.by_pid.get(&participant).copied() {
                    self.remove(slot);
                }
            }
            ShardCommand::Signal { participant, signal } => self.signal(now, participant, signal),
            ShardCommand::Subscribe { subscriber, track, publisher_shard } => {
                self.subscribe(now, subscriber, track, publisher_shard)
            }
            ShardCommand::Unsubscribe { subscriber, track } => {
                if let Some(slot) = self.by_pid.get(&subscriber).copied() {
                    if let Some(p) = self.slots[slot].as_mut() {
                        p.unsubscribe(track);
                    }
                    self.unroute(track, slot);
                }
            }
            ShardCommand::SetRemoteShards { track, shards } => {
                self.routes.entry(track).or_default().remote_shards = shards;
            }
            ShardCommand::Shutdown => {
                let all: Vec<Slot> = self.by_pid.values().copied().collect();
                for slot in all {
                    self.remove(slot);
                }
            }
        }
        self.run_work(now);
    }

    // ---- participants ------------------------------------------------------

    fn add(&mut self, now: Instant, pid: ParticipantId, req: super::command::JoinRequest) {
        let p = Participant::new(pid, req, self.candidate_addr, now);
        info!(participant = %pid, room = %p.room, identity = %p.identity, shard = self.id, "participant added");
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                self.generations.push(0);
                self.slots.len() - 1
            }
        };
        self.demux.insert_ufrag(p.ufrag.clone(), slot);
        self.rooms.entry(p.room.clone()).or_default().push(slot);
        self.by_pid.insert(pid, slot);
        self.slots[slot] = Some(p);
        self.drive(slot, now);
    }

    fn remove(&mut self, slot: Slot) {
        let Some(mut p) = self.slots[slot].take() else { return };
        info!(participant = %p.id, room = %p.room, "participant removed");
        p.rtc.disconnect();
        self.demux.remove(&p.ufrag, &p.addrs);
        self.by_pid.remove(&p.id);
        if let Some(members) = self.rooms.get_mut(&p.room) {
            members.retain(|s| *s != slot);
            if members.is_empty() {
                self.rooms.remove(&p.room);
            }
        }
        for published in p.published.values() {
            if let Some(r) = self.routes.get_mut(&published.track) {
                r.publisher = None;
            }
        }
        let tracks: Vec<TrackId> = p.down_by_track.keys().copied().collect();
        for t in tracks {
            self.unroute(t, slot);
        }
        self.routes.retain(|_, r| r.publisher.is_some() || !r.subscribers.is_empty() || !r.remote_shards.is_empty());
        self.generations[slot] = self.generations[slot].wrapping_add(1);
        self.free.push(slot);
    }

    fn unroute(&mut self, track: TrackId, slot: Slot) {
        if let Some(r) = self.routes.get_mut(&track) {
            r.subscribers.retain(|s| *s != slot);
        }
    }

    fn signal(&mut self, now: Instant, pid: ParticipantId, signal: super::command::Signal) {
        let Some(slot) = self.by_pid.get(&pid).copied() else { return };
        let Some(p) = self.slots[slot].as_mut() else { return };
        match participant::handle_signal(p, signal) {
            Err(ev) => self.outputs.push_back(ShardOutput::Client(pid, ev)),
            Ok(SignalOutcome::None) => {}
            Ok(SignalOutcome::Answer(ev)) => {
                if let Some(ev) = ev {
                    self.outputs.push_back(ShardOutput::Client(pid, ev));
                }
            }
            Ok(SignalOutcome::Ready(slots)) => {
                // Fresh legs start with a keyframe (if media already flows).
                for &i in &slots {
                    if let Some(t) = p.down[i].track.filter(|_| p.connected && p.down[i].kind == TrackKind::Video) {
                        self.work.push_back(Work::Keyframe(t));
                    }
                }
            }
            Ok(SignalOutcome::Mute(mid, muted)) => {
                let track = p.published.iter().find(|(m, _)| m.to_string() == mid).map(|(_, t)| t.track);
                match track {
                    Some(track) => self.outputs.push_back(ShardOutput::Control(ShardEvent::TrackMuted {
                        participant: pid,
                        track,
                        muted,
                    })),
                    None => self.outputs.push_back(ShardOutput::Client(
                        pid,
                        ClientEvent::Error { code: ErrorCode::NotAllowed, message: format!("no published track on mid {mid}") },
                    )),
                }
            }
        }
        self.drive(slot, now);
        self.offer_if_needed(slot);
    }

    fn subscribe(&mut self, now: Instant, subscriber: ParticipantId, track: TrackInfo, publisher_shard: ShardId) {
        let Some(slot) = self.by_pid.get(&subscriber).copied() else { return };
        let Some(p) = self.slots[slot].as_mut() else { return };
        let id = track.track;
        let track_kind_is_video = track.kind == TrackKind::Video;
        let ready = p.subscribe(track).is_some();
        let route = self.routes.entry(id).or_default();
        if !route.subscribers.contains(&slot) {
            route.subscribers.push(slot);
        }
        if publisher_shard != self.id {
            route.publisher_shard = Some(publisher_shard);
        }
        if ready && p.connected && track_kind_is_video {
            self.work.push_back(Work::Keyframe(id));
        }
        if p.offer_due.is_none() {
            let due = now + participant::OFFER_BATCH;
            p.offer_due = Some(due);
            self.timers.schedule(due, slot, self.generations[slot]);
        }
    }

    fn offer_if_needed(&mut self, slot: Slot) {
        let Some(p) = self.slots[slot].as_mut() else { return };
        if let Some(ev) = p.maybe_offer() {
            self.outputs.push_back(ShardOutput::Client(p.id, ev));
        }
    }

    // ---- driving str0m -----------------------------------------------------

    /// Drains one participant's `Rtc` until it asks for a timeout (str0m's
    /// contract after every mutation). Work for others is queued, not done here.
    fn drive(&mut self, slot: Slot, now: Instant) {
        let gen = self.generations[slot];
        let Some(p) = self.slots[slot].as_mut() else { return };
        loop {
            match p.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    p.timeout = t;
                    if p.scheduled.is_none_or(|s| t < s) {
                        p.scheduled = Some(t);
                        self.timers.schedule(t, slot, gen);
                    }
                    break;
                }
                Ok(Output::Transmit(t)) => self.transmits.push_back(t),
                Ok(Output::Event(e)) => on_event(p, slot, e, now, self.id, &mut self.next_track, &mut self.work, &mut self.outputs, &mut self.routes, &mut self.stats),
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

    fn run_work(&mut self, now: Instant) {
        while let Some(w) = self.work.pop_front() {
            match w {
                Work::Forward { pkt, from_remote } => self.forward(pkt, from_remote, now),
                Work::Keyframe(track) => self.send_keyframe_request(track, now),
                Work::Data { msg, from_remote } => self.relay_data(msg, from_remote, now),
                Work::Gone(slot) => {
                    if let Some(p) = self.slots[slot].as_ref() {
                        let pid = p.id;
                        self.outputs.push_back(ShardOutput::Control(ShardEvent::ParticipantGone { participant: pid }));
                        self.remove(slot);
                    }
                }
            }
        }
    }

    fn forward(&mut self, pkt: Arc<MediaPacket>, from_remote: bool, now: Instant) {
        let Some(route) = self.routes.get_mut(&pkt.track) else { return };
        if !from_remote {
            for shard in &route.remote_shards {
                self.outputs.push_back(ShardOutput::Media(*shard, MediaMsg::Rtp(pkt.clone())));
            }
        }
        // The list is taken out while we walk it (`write_rtp` needs `&mut self`)
        // and put back after: no lookup or copy per subscriber.
        let subscribers = std::mem::take(&mut route.subscribers);
        for &slot in &subscribers {
            if self.write_rtp(slot, &pkt, now) {
                self.stats.rtp_forwarded += 1;
                // Drained after the receive batch (`drain_written`), not per
                // packet: str0m releases written packets on a timeout anyway.
                let p = self.slots[slot].as_mut().expect("write_rtp found it");
                if !std::mem::replace(&mut p.written, true) {
                    self.written.push(slot);
                    self.written_at.get_or_insert(now);
                }
            } else {
                self.stats.dropped_not_ready += 1;
            }
        }
        if let Some(r) = self.routes.get_mut(&pkt.track) {
            r.subscribers = subscribers;
        }
    }

    /// Writes one packet on a subscriber's leg; false if the leg is not ready.
    fn write_rtp(&mut self, slot: Slot, pkt: &MediaPacket, now: Instant) -> bool {
        let Some(p) = self.slots[slot].as_mut() else { return false };
        let Some(&i) = p.down_by_track.get(&pkt.track) else { return false };
        let d = &mut p.down[i];
        let (Some(ssrc), Some(pt)) = (d.ssrc, d.pts.iter().find(|(c, _)| *c == pkt.codec).map(|(_, pt)| *pt)) else {
            return false;
        };
        if !p.connected {
            return false;
        }
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

    /// A subscriber wants a keyframe: merged per track (see `KeyframeThrottle`)
    /// when the publisher is here, passed on to its shard otherwise.
    fn send_keyframe_request(&mut self, track: TrackId, now: Instant) {
        let Some(route) = self.routes.get_mut(&track) else { return };
        match (route.publisher, route.publisher_shard) {
            (Some(_), _) => {
                let waiting = route.keyframes.due().is_some();
                if route.keyframes.request(now) {
                    self.deliver_keyframe_request(track, now);
                } else if let (false, Some(due)) = (waiting, route.keyframes.due()) {
                    self.keyframes_due.push(Reverse((due, track)));
                }
            }
            (None, Some(shard)) => {
                self.outputs.push_back(ShardOutput::Media(shard, MediaMsg::KeyframeRequest { track }));
            }
            (None, None) => {}
        }
    }

    /// Queues a PLI on the local publisher's leg, past the throttle.
    fn deliver_keyframe_request(&mut self, track: TrackId, now: Instant) {
        let Some((slot, mid)) = self.routes.get(&track).and_then(|r| r.publisher) else { return };
        self.stats.keyframe_requests += 1;
        if let Some(p) = self.slots[slot].as_mut() {
            p.request_keyframe(mid);
            self.drive(slot, now);
        }
    }

    fn relay_data(&mut self, msg: Arc<RoomData>, from_remote: bool, now: Instant) {
        if !from_remote {
            for shard in (0..self.shards).filter(|s| *s != self.id) {
                self.outputs.push_back(ShardOutput::Media(shard, MediaMsg::Data(msg.clone())));
            }
        }
        let Some(members) = self.rooms.get(&msg.room).cloned() else { return };
        for slot in members {
            let Some(p) = self.slots[slot].as_mut() else { continue };
            if p.id == msg.from {
                continue;
            }
            let Some(cid) = p.channel else {
                self.stats.data_dropped += 1;
                continue;
            };
            let Some(mut ch) = p.rtc.channel(cid) else { continue };
            let sent = ch.buffered_amount() <= MAX_DATA_BUFFERED && ch.write(msg.binary, &msg.payload).unwrap_or(false);
            if sent {
                self.stats.data_relayed += 1;
            } else {
                self.stats.data_dropped += 1;
                debug!(participant = %p.id, room = %p.room, "data channel full; relayed message dropped");
            }
            self.drive(slot, now);
        }
    }
}

/// Handles one str0m event of participant `p` (in `slot`).
#[allow(clippy::too_many_arguments)]
fn on_event(
    p: &mut Participant,
    slot: Slot,
    e: Event,
    now: Instant,
    shard: ShardId,
    next_track: &mut u64,
    work: &mut VecDeque<Work>,
    outputs: &mut VecDeque<ShardOutput>,
    routes: &mut FxHashMap<TrackId, Route>,
    stats: &mut ShardStats,
) {
    match e {
        Event::Connected => {
            p.connected = true;
            info!(participant = %p.id, room = %p.room, "media connected");
            // Packets before this were dropped: every ready video leg needs a keyframe.
            for d in p.down.iter().filter(|d| d.ssrc.is_some() && d.kind == TrackKind::Video) {
                if let Some(t) = d.track {
                    work.push_back(Work::Keyframe(t));
                }
            }
        }
        Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
            info!(participant = %p.id, room = %p.room, "ice disconnected");
            work.push_back(Work::Gone(slot));
        }
        Event::MediaAdded(m) if m.direction.is_receiving() && !p.down_by_mid.contains_key(&m.mid) => {
            publish(p, slot, m.mid, m.kind.into(), shard, next_track, outputs, routes);
        }
        Event::MediaChanged(m) if !p.down_by_mid.contains_key(&m.mid) => {
            let receiving = m.direction.is_receiving();
            match p.published.get_mut(&m.mid) {
                Some(pubd) if pubd.active && !receiving => {
                    pubd.active = false;
                    let track = pubd.track;
                    if let Some(r) = routes.get_mut(&track) {
                        r.publisher = None;
                    }
                    outputs.push_back(ShardOutput::Control(ShardEvent::TrackUnpublished { participant: p.id, track }));
                }
                Some(pubd) if !pubd.active && receiving => {
                    let kind = pubd.kind;
                    p.published.remove(&m.mid);
                    publish(p, slot, m.mid, kind, shard, next_track, outputs, routes);
                }
                None if receiving => {
                    let kind = p.rtc.media(m.mid).map(|m| m.kind().into()).unwrap_or(TrackKind::Video);
                    publish(p, slot, m.mid, kind, shard, next_track, outputs, routes);
                }
                _ => {}
            }
        }
        Event::RtpPacket(rtp) => {
            stats.rtp_in += 1;
            let Some(mid) = p.rtc.direct_api().stream_rx(&rtp.header.ssrc).map(|s| s.mid()) else { return };
            let pt = rtp.header.payload_type;
            let Some(pubd) = p.published.get_mut(&mid) else { return };
            if !pubd.active {
                return;
            }
            let codec = match pubd.codecs.iter().find(|(p, _)| *p == pt) {
                Some((_, c)) => *c,
                None => {
                    // First packet of this PT: learn it from the negotiated session.
                    let codecs = p.negotiated_codecs(mid);
                    let pubd = p.published.get_mut(&mid).expect("looked up above");
                    pubd.codecs = codecs;
                    match pubd.codecs.iter().find(|(p, _)| *p == pt) {
                        Some((_, c)) => *c,
                        None => return,
                    }
                }
            };
            let track = p.published[&mid].track;
            let pkt = MediaPacket {
                track,
                codec,
                seq_no: *rtp.seq_no,
                timestamp: rtp.header.timestamp,
                marker: rtp.header.marker,
                ext_vals: end_to_end_extensions(&rtp.header.ext_vals),
                payload: rtp.payload,
                arrival: now,
            };
            work.push_back(Work::Forward { pkt: Arc::new(pkt), from_remote: false });
        }
        Event::KeyframeRequest(req) => {
            stats.keyframe_requests_in += 1;
            if let Some(track) = p.down_by_mid.get(&req.mid).and_then(|i| p.down[*i].track) {
                work.push_back(Work::Keyframe(track));
            }
        }
        Event::ChannelOpen(cid, label) => {
            debug!(participant = %p.id, room = %p.room, %label, "data channel open");
            p.channel.get_or_insert(cid);
        }
        Event::ChannelData(d) => {
            let payload = tag_data(&p.identity, p.id, d.binary, &d.data);
            let msg = RoomData { room: p.room.clone(), from: p.id, binary: d.binary, payload };
            work.push_back(Work::Data { msg: Arc::new(msg), from_remote: false });
        }
        Event::ChannelClose(cid) if p.channel == Some(cid) => p.channel = None,
        // NACKs this client sent us (as a subscriber), cumulative per m-line.
        Event::MediaEgressStats(s) => {
            let seen = p.nacks_seen.entry(s.mid).or_default();
            stats.nacks_received += s.nacks.saturating_sub(seen.0);
            seen.0 = s.nacks;
        }
        // NACKs we sent this client (as a publisher).
        Event::MediaIngressStats(s) => {
            let seen = p.nacks_seen.entry(s.mid).or_default();
            stats.nacks_sent += s.nacks.saturating_sub(seen.1);
            seen.1 = s.nacks;
        }
        _ => {}
    }
}

#[allow(clippy::too_many_arguments)]
fn publish(
    p: &mut Participant,
    slot: Slot,
    mid: Mid,
    kind: TrackKind,
    shard: ShardId,
    next_track: &mut u64,
    outputs: &mut VecDeque<ShardOutput>,
    routes: &mut FxHashMap<TrackId, Route>,
) {
    if !p.permissions.can_publish {
        return;
    }
    let track = TrackId::new(shard, *next_track);
    *next_track += 1;
    let source = p.source_of(mid, kind);
    let codecs = p.negotiated_codecs(mid);
    p.published.insert(mid, Published { track, kind, source, codecs, keyframes: Default::default(), active: true });
    routes.entry(track).or_default().publisher = Some((slot, mid));
    info!(participant = %p.id, room = %p.room, %track, ?kind, source = source.as_str(), "track published");
    let info = TrackInfo { track, participant: p.id, identity: p.identity.clone(), kind, source, muted: false };
    outputs.push_back(ShardOutput::Control(ShardEvent::TrackPublished { track: info }));
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

/// Tags a relayed data channel message with its sender. Text becomes JSON
/// `{"from","participant","data"}`; binary gets a prefix of one length byte
/// and the sender's identity (truncated to 255 bytes).
pub fn tag_data(identity: &str, pid: ParticipantId, binary: bool, data: &[u8]) -> Arc<[u8]> {
    if binary {
        let id = &identity.as_bytes()[..identity.len().min(255)];
        let mut v = Vec::with_capacity(1 + id.len() + data.len());
        v.push(id.len() as u8);
        v.extend_from_slice(id);
        v.extend_from_slice(data);
        v.into()
    } else {
        let text = String::from_utf8_lossy(data);
        serde_json::json!({ "from": identity, "participant": pid, "data": text }).to_string().into_bytes().into()
    }
}
