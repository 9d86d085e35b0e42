//! `ShardCore`: the participants of one shard, driven without I/O.
//!
//! Inputs are `handle_*` calls; outputs are drained with `poll_transmit`
//! (datagrams for the socket), `poll_media` (messages for other shards) and
//! `poll_output` (for the control plane and clients). Only participants that
//! got input or whose deadline passed are driven: the timer heap names them,
//! never a scan.
//!
//! The state is borrowed apart: [`Slots`] holds the participants, and the
//! [`Fabric`] everything that connects them (routes, timers, queued work and
//! outputs, counters), so driving one participant can touch the fabric
//! without a second borrow of the arena.
//!
//! - `slots`: the arena of participants.
//! - `drive`: driving one participant's str0m `Rtc` and reading its events.
//! - `routes`: who receives each published track; keyframe windows.
//! - `forward`: RTP onto subscriber legs, and releasing what was written.
//! - `data`: data channel relay within a room.

mod data;
mod drive;
mod forward;
mod routes;
mod slots;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use str0m::net::{Protocol, Receive, Transmit};
use str0m::Input;
use tracing::{debug, info};

pub use self::data::tag_data;
use self::routes::{KeyframeTarget, Routes};
use self::slots::Slots;
use super::allocate::Track;
use super::command::{
    ClientEvent, JoinRequest, MediaMsg, MediaPacket, PauseReason, RoomData, ShardCommand, ShardEvent, Speaker,
    TrackInfo,
};
use super::demux::{self, Demux, Slot, MAX_ADDRS_PER_PEER};
use super::ids::{ParticipantId, ShardId, TrackId, TrackKind, TrackSource};
use super::layers::{Layer, LAYER_EVAL_INTERVAL, MAX_LAYERS};
use super::participant::{
    self, DownTrack, Participant, ParticipantLimits, Subscribed, CONNECT_TIMEOUT, SILENCE_TIMEOUT,
};
use super::speech::SPEECH_INTERVAL;
use super::timer::Timers;
use crate::record::{RecorderLanes, Tap, TapInfo};
pub use crate::stats::ShardStats;

/// Data channel bytes we let queue towards one participant before dropping
/// relayed messages for it: one slow receiver must not grow server memory.
pub const MAX_DATA_BUFFERED: usize = 1 << 20;

/// A server ufrag that now names a participant of this shard, or no longer
/// does: for the ICE-TCP listener, which hands a new connection to the shard
/// whose participant its first STUN message names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UfragChange {
    Added(String),
    Removed(String),
}

/// For the control plane and clients; never dropped (low rate).
#[derive(Debug)]
pub enum ShardOutput {
    Control(ShardEvent),
    Client(ParticipantId, ClientEvent),
}

/// Work that touches participants other than the one being drained.
enum Work {
    Forward { pkt: Arc<MediaPacket>, from_remote: bool },
    Keyframe(TrackId, Layer),
    Data { msg: Arc<RoomData>, from_remote: bool },
    Gone(Slot),
}

/// Everything of a shard but its participants.
struct Fabric {
    id: ShardId,
    next_track: u64,
    timers: Timers,
    routes: Routes,
    /// This shard's members of each room (data relay).
    rooms: HashMap<Arc<str>, Vec<Slot>>,
    /// The other shards with members of each local room (from the directory).
    room_shards: HashMap<Arc<str>, Vec<ShardId>>,
    work: VecDeque<Work>,
    transmits: VecDeque<Transmit>,
    /// Legs with RTP written since their last drain, and when the first was.
    written: Vec<Slot>,
    written_at: Option<Instant>,
    outputs: VecDeque<ShardOutput>,
    media_out: VecDeque<(ShardId, MediaMsg)>,
    stats: ShardStats,
    /// When subscribers' simulcast layers are next re-evaluated; `None`
    /// while nobody here subscribes to anything.
    layers_due: Option<Instant>,
    /// When microphones' speaking states are next decided; `None` while no
    /// audio level has come since the last time.
    speech_due: Option<Instant>,
    /// The speakers last reported per room (participants, loudest first).
    speakers_sent: HashMap<Arc<str>, Vec<ParticipantId>>,
    ufrags: VecDeque<UfragChange>,
    /// Where recorded packets go, if recording is possible.
    recorder: Option<RecorderLanes>,
    /// Taps made here (unique with the shard id).
    taps_made: u64,
    /// What each participant here may hold or do.
    limits: ParticipantLimits,
}

pub struct ShardCore {
    /// The addresses written into candidates (public IP + this shard's
    /// port), one per UDP socket (address family) of the shard.
    udp_addrs: Vec<SocketAddr>,
    /// The ICE-TCP listener's candidate address, when there is one.
    tcp_addr: Option<SocketAddr>,
    peers: Slots,
    demux: Demux,
    fabric: Fabric,
}

impl ShardCore {
    pub fn new(id: ShardId, udp_addrs: Vec<SocketAddr>, tcp_addr: Option<SocketAddr>) -> Self {
        ShardCore {
            udp_addrs,
            tcp_addr,
            peers: Slots::default(),
            demux: Demux::default(),
            fabric: Fabric {
                id,
                next_track: 1,
                timers: Timers::default(),
                routes: Routes::default(),
                rooms: HashMap::new(),
                room_shards: HashMap::new(),
                work: VecDeque::new(),
                transmits: VecDeque::new(),
                written: Vec::new(),
                written_at: None,
                outputs: VecDeque::new(),
                media_out: VecDeque::new(),
                stats: ShardStats::default(),
                layers_due: None,
                speech_due: None,
                speakers_sent: HashMap::new(),
                ufrags: VecDeque::new(),
                recorder: None,
                taps_made: 0,
                limits: ParticipantLimits::default(),
            },
        }
    }

    /// Lets this shard record its participants (see `record`).
    /// What each participant who joins from now on may hold or do.
    pub fn set_limits(&mut self, limits: ParticipantLimits) {
        self.fabric.limits = limits;
    }

    pub fn set_recorder(&mut self, lanes: RecorderLanes) {
        self.fabric.recorder = Some(lanes);
    }

    pub fn id(&self) -> ShardId {
        self.fabric.id
    }

    pub fn participant_count(&self) -> usize {
        self.peers.len()
    }

    /// Routes held (tracks published here or received from other shards):
    /// zero once everyone has left, however they left.
    pub fn route_count(&self) -> usize {
        self.fabric.routes.len()
    }

    pub fn stats(&self) -> &ShardStats {
        &self.fabric.stats
    }

    pub fn stats_mut(&mut self) -> &mut ShardStats {
        &mut self.fabric.stats
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.fabric.transmits.pop_front()
    }

    /// Media for another shard: hand it over right after the receive batch
    /// that made it, like local fan-out.
    pub fn poll_media(&mut self) -> Option<(ShardId, MediaMsg)> {
        self.fabric.media_out.pop_front()
    }

    pub fn poll_output(&mut self) -> Option<ShardOutput> {
        self.fabric.outputs.pop_front()
    }

    /// Ufrags gained or lost since the last call (see [`UfragChange`]).
    pub fn poll_ufrag(&mut self) -> Option<UfragChange> {
        self.fabric.ufrags.pop_front()
    }

    /// When `handle_timeout` should next be called.
    pub fn next_timeout(&self) -> Option<Instant> {
        let f = &self.fabric;
        [f.timers.next(), f.routes.next_keyframe_due(), f.written_at, f.layers_due, f.speech_due]
            .into_iter()
            .flatten()
            .min()
    }

    // ---- input -------------------------------------------------------------

    /// One datagram (or, over ICE-TCP, one RFC 4571 frame) from `source`
    /// to our `destination` candidate address.
    pub fn handle_receive(
        &mut self,
        now: Instant,
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        buf: &[u8],
    ) {
        let stats = &mut self.fabric.stats;
        stats.datagrams_in += 1;
        stats.bytes_in += buf.len() as u64;
        let slot = match self.demux.by_addr(&(proto, source)) {
            Some(s) => s,
            None => match demux::stun_server_ufrag(buf).and_then(|u| self.demux.by_ufrag(u)) {
                Some(s) => s,
                None => {
                    stats.dropped_unknown_source += 1;
                    return;
                }
            },
        };
        let Ok(recv) = Receive::new(proto, source, destination, buf) else {
            stats.dropped_unparseable += 1;
            return;
        };
        let input = Input::Receive(now, recv);
        let Some(p) = self.peers.get_mut(slot) else { return };
        if !p.rtc.accepts(&input) {
            stats.dropped_unknown_source += 1;
            return;
        }
        p.last_heard = now;
        let transport = (proto, source);
        if !p.addrs.contains(&transport) && p.addrs.len() < MAX_ADDRS_PER_PEER {
            // Verified by `accepts` (STUN integrity with our ufrag/password):
            // a peer-reflexive address becomes a fast-path route.
            p.addrs.push(transport);
            self.demux.insert_addr(transport, slot);
        }
        if let Err(e) = p.rtc.handle_input(input) {
            debug!(participant = %p.id, room = %p.room, "input refused: {e}");
        }
        self.drive(slot, now);
        self.run_work(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.drain_written(now, usize::MAX);
        while let Some((at, slot, gen)) = self.fabric.timers.pop_due(now) {
            if self.peers.generation(slot) != gen {
                continue;
            }
            let Some(p) = self.peers.get_mut(slot) else { continue };
            if p.scheduled != Some(at) && p.offer_due.is_none_or(|d| d > now) {
                continue; // a stale entry: the live one is elsewhere in the heap
            }
            if p.offer_due.is_some_and(|d| d <= now) {
                p.offer_due = None;
                self.offer_if_needed(slot);
                self.drive(slot, now);
                let Some(p) = self.peers.get_mut(slot) else { continue };
                if p.scheduled.is_some_and(|s| s > now) {
                    continue;
                }
            }
            let Some(p) = self.peers.get_mut(slot) else { continue };
            p.scheduled = None;
            if p.timeout > now {
                p.scheduled = Some(p.timeout);
                self.fabric.timers.schedule(p.timeout, slot, gen);
                continue;
            }
            if !p.connected && now >= p.joined_at + CONNECT_TIMEOUT {
                info!(participant = %p.id, room = %p.room, "no media connection after {CONNECT_TIMEOUT:?}; dropping");
                self.fabric.work.push_back(Work::Gone(slot));
                continue;
            }
            if p.connected && now >= p.last_heard + SILENCE_TIMEOUT {
                info!(participant = %p.id, room = %p.room, "nothing from its client for {SILENCE_TIMEOUT:?}; dropping");
                self.fabric.work.push_back(Work::Gone(slot));
                continue;
            }
            self.fabric.stats.rtc_timer_timeouts += 1;
            if let Err(e) = p.rtc.handle_input(Input::Timeout(now)) {
                debug!(participant = %p.id, "timeout input: {e}");
            }
            self.drive(slot, now);
        }
        while let Some((track, layer)) = self.fabric.routes.pop_due_keyframe(now) {
            self.deliver_keyframe_request(track, layer, now);
        }
        if self.fabric.layers_due.is_some_and(|t| t <= now) {
            self.retarget_layers(now);
        }
        if self.fabric.speech_due.is_some_and(|t| t <= now) {
            self.update_speakers(now);
        }
        self.run_work(now);
    }

    /// Decides who speaks among this shard's microphones and reports each
    /// room whose list of speakers (loudest first) changed.
    fn update_speakers(&mut self, now: Instant) {
        let mut by_room: HashMap<Arc<str>, Vec<Speaker>> = HashMap::new();
        let mut any_microphone = false;
        for slot in self.peers.occupied() {
            let Some(p) = self.peers.get_mut(slot) else { continue };
            let mics = p.published.values_mut().filter(|t| t.source == TrackSource::Microphone && t.active);
            let Some(level) = mics.fold(None, |best, t| {
                any_microphone = true;
                best.max(t.speech.evaluate())
            }) else {
                continue;
            };
            let speaker = Speaker { participant: p.id, identity: p.identity.clone(), level };
            by_room.entry(p.room.clone()).or_default().push(speaker);
        }
        let f = &mut self.fabric;
        // Rooms whose speakers fell silent (or left) are told so once.
        for room in f.speakers_sent.keys() {
            by_room.entry(room.clone()).or_default();
        }
        for (room, mut speakers) in by_room {
            speakers.sort_by(|a, b| b.level.cmp(&a.level).then(a.participant.cmp(&b.participant)));
            let order: Vec<ParticipantId> = speakers.iter().map(|s| s.participant).collect();
            if f.speakers_sent.get(&room).map_or(&[][..], |v| v) == order.as_slice() {
                continue;
            }
            if order.is_empty() {
                f.speakers_sent.remove(&room);
            } else {
                f.speakers_sent.insert(room.clone(), order);
            }
            debug!(%room, ?speakers, "speakers changed");
            let ev = ShardEvent::Speakers { room, shard: f.id, speakers };
            f.outputs.push_back(ShardOutput::Control(ev));
        }
        f.speech_due = any_microphone.then_some(now + SPEECH_INTERVAL);
    }

    /// Shares each subscriber's bandwidth (its browser's estimate) between
    /// the video it receives, screen shares first, then the active
    /// speakers' cameras (`core::allocate`), then
    /// moves every leg's simulcast target to the best layer that is active,
    /// allowed and matches the subscriber's wishes, asking for keyframes
    /// where that changed.
    fn retarget_layers(&mut self, now: Instant) {
        let mut any = false;
        // Who speaks in each room (as this shard hears it: a room that
        // spilled over shards is not merged here), loudest first.
        let speaking: HashMap<Arc<str>, Vec<Arc<str>>> = self
            .fabric
            .speakers_sent
            .iter()
            .map(|(room, ids)| {
                let names = ids.iter().filter_map(|id| self.peers.slot_of(*id).and_then(|s| self.peers.get(s)));
                (room.clone(), names.map(|p| p.identity.clone()).collect())
            })
            .collect();
        for slot in self.peers.occupied() {
            let Some(p) = self.peers.get_mut(slot) else { continue };
            let f = &mut self.fabric;
            let mut order: Vec<usize> = (0..p.down.len())
                .filter(|i| p.down[*i].kind == TrackKind::Video && p.down[*i].ssrc.is_some())
                .filter(|i| p.down[*i].track.is_some_and(|t| f.routes.get(&t).is_some()))
                .collect();
            if order.is_empty() {
                continue;
            }
            any = true;
            // Screen shares first, then the speakers' cameras, loudest first, then the rest.
            let speakers = speaking.get(&p.room).map_or(&[][..], |v| v.as_slice());
            order.sort_by_key(|i| {
                let d = &p.down[*i];
                let speaker = speakers.iter().position(|s| *s == d.identity).unwrap_or(usize::MAX);
                (d.source != TrackSource::ScreenShare, speaker)
            });
            let mut downs: Vec<Option<&mut DownTrack>> = p.down.iter_mut().map(Some).collect();
            let mut tracks: Vec<Track> = order
                .iter()
                .filter_map(|i| downs[*i].take())
                .filter_map(|d| {
                    let route = f.routes.get(&d.track?)?;
                    Some(Track { stats: &route.layers, choice: &mut d.choice })
                })
                .collect();
            let changed = p.budget.allocate(&mut tracks, now);
            drop(tracks);
            for i in changed {
                let d = &p.down[order[i]];
                let mid = d.mid.to_string();
                let ev = match d.choice.paused {
                    true => ClientEvent::TrackPaused { mid, reason: PauseReason::Bandwidth },
                    false => ClientEvent::TrackResumed { mid },
                };
                debug!(participant = %p.id, ?ev, estimate = ?p.budget.estimate(), "video paused or resumed");
                f.outputs.push_back(ShardOutput::Client(p.id, ev));
            }
            for i in order {
                let d = &mut p.down[i];
                let Some(track) = d.track else { continue };
                let Some(route) = f.routes.get(&track) else { continue };
                if let Some(layer) = d.choice.retarget(&route.layers, now) {
                    debug!(participant = %p.id, %track, from = ?d.choice.current, to = layer, estimate = ?p.budget.estimate(), "switching layer");
                    f.work.push_back(Work::Keyframe(track, layer));
                }
            }
        }
        let publishing = self.dynacast(now);
        self.fabric.layers_due = (any || publishing).then_some(now + LAYER_EVAL_INTERVAL);
    }

    /// Tells each local simulcast publisher which layers its subscribers
    /// want, when that changed (see `core::dynacast`). Subscribers on other
    /// shards are not known here: a track that has some keeps every layer.
    /// Returns whether there is any such publisher.
    fn dynacast(&mut self, now: Instant) -> bool {
        let f = &mut self.fabric;
        let mut any = false;
        for (track, route) in f.routes.iter() {
            let Some((publisher, mid)) = route.publisher else { continue };
            let published = self.peers.get(publisher).and_then(|p| p.published.get(&mid));
            let Some(offered) = published.and_then(|t| t.dynacast.as_ref()).map(|d| d.offered()) else { continue };
            any = true;
            let mut wanted = if route.remote_shards.is_empty() { [false; MAX_LAYERS] } else { offered };
            // A recording takes the best layer: the one it records, and the
            // top one offered (if the publisher can send it).
            if route.tap.is_some() {
                let top = (0..MAX_LAYERS).rev().find(|l| offered[*l]);
                for l in [top, route.tap_layer.map(usize::from)].into_iter().flatten() {
                    wanted[l] = true;
                }
            }
            for &slot in &route.subscribers {
                let Some(p) = self.peers.get(slot) else { continue };
                let Some(d) = p.down_by_track.get(track).map(|i| &p.down[*i]).filter(|d| d.choice.enabled) else {
                    continue;
                };
                // What it would take were every layer sent (no more than one
                // above what its bandwidth allows: the next step up is tried
                // with that layer), and what it gets until it switched.
                let wish = route.layers.wanted_of(d.choice.max_height, offered).filter(|_| !d.choice.paused);
                let wish = match (wish, d.choice.cap) {
                    (Some(w), Some(cap)) => Some(w.min(cap + 1)),
                    (w, _) => w,
                };
                for l in [wish, d.choice.current].into_iter().flatten() {
                    wanted[l as usize] = true;
                }
            }
            let Some(p) = self.peers.get_mut(publisher) else { continue };
            let Some(t) = p.published.get_mut(&mid) else { continue };
            let Some(send) = t.dynacast.as_mut().and_then(|d| d.update(wanted, now)) else { continue };
            let rids: Vec<String> =
                (0..MAX_LAYERS).filter(|l| send[*l]).filter_map(|l| t.rids[l]).map(|r| r.to_string()).collect();
            debug!(participant = %p.id, %track, ?rids, "dynacast: layers wanted");
            f.outputs.push_back(ShardOutput::Client(p.id, ClientEvent::LayersWanted { mid: mid.to_string(), rids }));
        }
        any
    }

    pub fn handle_media(&mut self, now: Instant, msg: MediaMsg) {
        let work = match msg {
            MediaMsg::Rtp(pkt) => Work::Forward { pkt, from_remote: true },
            MediaMsg::KeyframeRequest { track, layer } => Work::Keyframe(track, layer),
            MediaMsg::Data(msg) => Work::Data { msg, from_remote: true },
        };
        self.fabric.work.push_back(work);
        self.run_work(now);
    }

    pub fn handle_command(&mut self, now: Instant, cmd: ShardCommand) {
        match cmd {
            ShardCommand::AddParticipant { participant, request } => self.add(now, participant, request),
            ShardCommand::RemoveParticipant { participant } => {
                if let Some(slot) = self.peers.slot_of(participant) {
                    self.remove(slot);
                }
            }
            ShardCommand::Signal { participant, signal } => self.signal(now, participant, signal),
            ShardCommand::Subscribe { subscriber, track, publisher_shard } => {
                self.subscribe(now, subscriber, track, publisher_shard)
            }
            ShardCommand::Unsubscribe { subscriber, track } => {
                if let Some(slot) = self.peers.slot_of(subscriber) {
                    if let Some(p) = self.peers.get_mut(slot) {
                        p.unsubscribe(track);
                    }
                    self.fabric.routes.remove_subscriber(track, slot);
                }
            }
            ShardCommand::SetRemoteShards { track, shards } => {
                self.fabric.routes.set_remote_shards(track, shards);
            }
            ShardCommand::SetRoomShards { room, shards } => {
                if shards.is_empty() {
                    self.fabric.room_shards.remove(&room);
                } else {
                    self.fabric.room_shards.insert(room, shards);
                }
            }
            ShardCommand::Record { participant, recording } => self.record(participant, recording),
            ShardCommand::RecorderKeyframe { track, layer } => self.fabric.work.push_back(Work::Keyframe(track, layer)),
            ShardCommand::Shutdown => {
                for slot in self.peers.occupied() {
                    self.remove(slot);
                }
            }
        }
        self.run_work(now);
    }

    // ---- participants ------------------------------------------------------

    fn add(&mut self, now: Instant, pid: ParticipantId, req: JoinRequest) {
        let mut p = Participant::new(pid, req, &self.udp_addrs, self.tcp_addr, now);
        p.set_limits(self.fabric.limits, now);
        info!(participant = %pid, room = %p.room, identity = %p.identity, shard = self.fabric.id, "participant added");
        let (ufrag, room) = (p.ufrag.clone(), p.room.clone());
        let slot = self.peers.insert(p);
        self.fabric.ufrags.push_back(UfragChange::Added(ufrag.clone()));
        self.demux.insert_ufrag(ufrag, slot);
        self.fabric.rooms.entry(room).or_default().push(slot);
        self.drive(slot, now);
    }

    fn remove(&mut self, slot: Slot) {
        let Some(mut p) = self.peers.remove(slot) else { return };
        info!(participant = %p.id, room = %p.room, "participant removed");
        if let Some(tap) = p.record.take() {
            tap.close();
        }
        p.rtc.disconnect();
        self.demux.remove(&p.ufrag, &p.addrs);
        let f = &mut self.fabric;
        f.ufrags.push_back(UfragChange::Removed(p.ufrag));
        if let Some(members) = f.rooms.get_mut(&p.room) {
            members.retain(|s| *s != slot);
            if members.is_empty() {
                f.rooms.remove(&p.room);
                f.room_shards.remove(&p.room);
            }
        }
        for published in p.published.values() {
            f.routes.clear_publisher(published.track);
        }
        f.routes.forget_subscriber(slot);
    }

    /// Starts (a new tap on each of its tracks) or stops recording a participant.
    fn record(&mut self, pid: ParticipantId, recording: Option<Arc<str>>) {
        let Some(slot) = self.peers.slot_of(pid) else { return };
        let Some(p) = self.peers.get_mut(slot) else { return };
        let f = &mut self.fabric;
        if let Some(old) = p.record.take() {
            old.close();
        }
        if let (Some(recording), Some(lanes)) = (recording, f.recorder.clone()) {
            f.taps_made += 1;
            let info = TapInfo {
                id: (f.id as u64) << 48 | f.taps_made,
                recording,
                participant: pid,
                identity: p.identity.clone(),
                shard: f.id,
                dropped: Default::default(),
            };
            p.record = Some(Tap::new(info, lanes));
        }
        for pubd in p.published.values().filter(|t| t.active) {
            f.routes.entry(pubd.track).set_tap(p.record.clone().map(|t| (t, pubd.source)));
        }
    }

    fn signal(&mut self, now: Instant, pid: ParticipantId, signal: super::command::Signal) {
        let Some(slot) = self.peers.slot_of(pid) else { return };
        let Some(p) = self.peers.get_mut(slot) else { return };
        self.fabric.on_signal(p, signal, now);
        self.follow_ice_restart(slot);
        self.drive(slot, now);
        self.offer_if_needed(slot);
    }

    /// After an offer with new ICE credentials (the client restarted ICE,
    /// e.g. on a new network) str0m answers with a new ufrag of ours: STUN
    /// from the new path names it, so the demux must know it.
    fn follow_ice_restart(&mut self, slot: Slot) {
        let Some(p) = self.peers.get_mut(slot) else { return };
        let ufrag = p.rtc.direct_api().local_ice_credentials().ufrag;
        if ufrag == p.ufrag {
            return;
        }
        info!(participant = %p.id, room = %p.room, "ICE restart");
        let old = std::mem::replace(&mut p.ufrag, ufrag.clone());
        // The old paths are forgotten too: the checks of the new ICE session
        // admit the addresses it uses (and a client that moves often never
        // runs into the bound on remembered addresses).
        self.demux.remove(&old, &std::mem::take(&mut p.addrs));
        self.demux.insert_ufrag(ufrag.clone(), slot);
        let f = &mut self.fabric;
        f.ufrags.push_back(UfragChange::Removed(old));
        f.ufrags.push_back(UfragChange::Added(ufrag));
    }

    fn subscribe(&mut self, now: Instant, subscriber: ParticipantId, track: TrackInfo, publisher_shard: ShardId) {
        let Some(slot) = self.peers.slot_of(subscriber) else { return };
        let gen = self.peers.generation(slot);
        let Some(p) = self.peers.get_mut(slot) else { return };
        let f = &mut self.fabric;
        let id = track.track;
        let is_video = track.kind == TrackKind::Video;
        let Subscribed { ready, replaced } = p.subscribe(track);
        if let Some(old) = replaced {
            // The same source published again (a rejoin): its old track is
            // no longer sent to this subscriber.
            f.routes.remove_subscriber(old, slot);
        }
        f.routes.add_subscriber(id, slot, (publisher_shard != f.id).then_some(publisher_shard));
        f.layers_due.get_or_insert(now + LAYER_EVAL_INTERVAL);
        if let (Some(i), true, true) = (ready, p.connected, is_video) {
            let choice = &mut p.down[i].choice;
            // Aim at what flows now, if this shard has seen the track.
            if let Some(route) = f.routes.get(&id) {
                choice.retarget(&route.layers, now);
            }
            f.work.push_back(Work::Keyframe(id, choice.target));
        }
        if p.offer_due.is_none() {
            let due = now + participant::OFFER_BATCH;
            p.offer_due = Some(due);
            f.timers.schedule(due, slot, gen);
        }
    }

    fn offer_if_needed(&mut self, slot: Slot) {
        let Some(p) = self.peers.get_mut(slot) else { return };
        if let Some(ev) = p.maybe_offer() {
            self.fabric.outputs.push_back(ShardOutput::Client(p.id, ev));
        }
    }

    /// Drains one participant (see [`Fabric::drive`]).
    fn drive(&mut self, slot: Slot, now: Instant) {
        let gen = self.peers.generation(slot);
        if let Some(p) = self.peers.get_mut(slot) {
            self.fabric.drive(p, slot, gen, now);
        }
    }

    fn run_work(&mut self, now: Instant) {
        while let Some(w) = self.fabric.work.pop_front() {
            match w {
                Work::Forward { pkt, from_remote } => self.forward(pkt, from_remote, now),
                Work::Keyframe(track, layer) => self.send_keyframe_request(track, layer, now),
                Work::Data { msg, from_remote } => self.relay_data(msg, from_remote, now),
                Work::Gone(slot) => {
                    if let Some(p) = self.peers.get(slot) {
                        let participant = p.id;
                        self.fabric
                            .outputs
                            .push_back(ShardOutput::Control(ShardEvent::ParticipantGone { participant }));
                        self.remove(slot);
                    }
                }
            }
        }
    }

    /// A subscriber wants a keyframe: merged per track when the publisher
    /// is here, passed on to its shard otherwise.
    fn send_keyframe_request(&mut self, track: TrackId, layer: Layer, now: Instant) {
        match self.fabric.routes.keyframe_request(track, layer, now) {
            KeyframeTarget::Local => self.deliver_keyframe_request(track, layer, now),
            KeyframeTarget::Remote(shard) => {
                self.fabric.media_out.push_back((shard, MediaMsg::KeyframeRequest { track, layer }))
            }
            KeyframeTarget::Merged | KeyframeTarget::None => {}
        }
    }

    /// Queues a PLI on the local publisher's leg, past the throttle.
    fn deliver_keyframe_request(&mut self, track: TrackId, layer: Layer, now: Instant) {
        let Some((slot, mid)) = self.fabric.routes.get(&track).and_then(|r| r.publisher) else { return };
        self.fabric.stats.keyframe_requests += 1;
        if let Some(p) = self.peers.get_mut(slot) {
            p.request_keyframe(mid, layer);
            self.drive(slot, now);
        }
    }
}
