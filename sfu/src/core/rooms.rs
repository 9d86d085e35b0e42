//! The room directory: who is in which room, on which shard, publishing what.
//!
//! Sans-IO: every call appends what must happen to `out`; the runtime (or a
//! test) delivers it. Subscriptions are automatic: every participant that may
//! subscribe receives every other participant's tracks.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::command::{
    ClientEvent, ErrorCode, JoinRequest, ParticipantInfo, ShardCommand, ShardEvent, Speaker, TrackInfo,
};
use super::ids::{ParticipantId, ShardId, TrackId};
use super::placement::Placement;

#[derive(Debug)]
pub enum ControlOutput {
    Shard(ShardId, ShardCommand),
    Client(ParticipantId, ClientEvent),
}

#[derive(Debug, Clone)]
pub struct Joined {
    pub participant: ParticipantId,
    pub shard: ShardId,
    /// The others already in the room, with their tracks.
    pub others: Vec<ParticipantInfo>,
}

struct Member {
    identity: Arc<str>,
    name: Option<Arc<str>>,
    shard: ShardId,
    can_subscribe: bool,
}

#[derive(Default)]
struct Room {
    members: BTreeMap<ParticipantId, Member>,
    tracks: BTreeMap<TrackId, TrackInfo>,
    /// Who speaks, as each shard with publishers of the room last said.
    speakers: BTreeMap<ShardId, Vec<Speaker>>,
    /// The speakers last announced to the room, loudest first (also told
    /// to whoever joins).
    announced: Vec<Speaker>,
    /// The recording in progress: every member is recorded, joiners too.
    recording: Option<Arc<str>>,
}

impl Room {
    fn info(&self, pid: ParticipantId) -> Option<ParticipantInfo> {
        let m = self.members.get(&pid)?;
        Some(ParticipantInfo {
            participant: pid,
            identity: m.identity.clone(),
            name: m.name.clone(),
            tracks: self.tracks.values().filter(|t| t.participant == pid).cloned().collect(),
        })
    }

    /// Members per shard.
    fn shards(&self) -> BTreeMap<ShardId, usize> {
        let mut by = BTreeMap::new();
        for m in self.members.values() {
            *by.entry(m.shard).or_default() += 1;
        }
        by
    }

    /// Tells each shard of the room which other shards hold members of it
    /// (data channel relay), after that set changed.
    fn announce_shards(&self, room: &Arc<str>, out: &mut Vec<ControlOutput>) {
        let shards = self.shards();
        for s in shards.keys() {
            let others = shards.keys().copied().filter(|o| o != s).collect();
            out.push(ControlOutput::Shard(*s, ShardCommand::SetRoomShards { room: room.clone(), shards: others }));
        }
    }

    /// Merges a shard's speakers into the room's and tells every member when
    /// the list (who, in which order) changed.
    fn speakers_changed(&mut self, shard: ShardId, speakers: Vec<Speaker>, out: &mut Vec<ControlOutput>) {
        self.speakers.insert(shard, speakers);
        let mut all: Vec<Speaker> =
            self.speakers.values().flatten().filter(|s| self.members.contains_key(&s.participant)).cloned().collect();
        all.sort_by(|a, b| b.level.cmp(&a.level).then(a.participant.cmp(&b.participant)));
        if all.iter().map(|s| s.participant).eq(self.announced.iter().map(|s| s.participant)) {
            return;
        }
        for pid in self.members.keys() {
            out.push(ControlOutput::Client(*pid, ClientEvent::Speakers { speakers: all.clone() }));
        }
        self.announced = all;
    }

    /// Shards other than the publisher's that have a subscriber of `track`.
    fn remote_shards(&self, track: &TrackInfo, publisher_shard: ShardId) -> Vec<ShardId> {
        let set: BTreeSet<ShardId> = self
            .members
            .iter()
            .filter(|(pid, m)| **pid != track.participant && m.can_subscribe && m.shard != publisher_shard)
            .map(|(_, m)| m.shard)
            .collect();
        set.into_iter().collect()
    }
}

pub struct Rooms {
    rooms: HashMap<Arc<str>, Room>,
    /// Participant → room name, for events that only carry the participant.
    index: HashMap<ParticipantId, Arc<str>>,
    placement: Placement,
}

impl Rooms {
    /// `spill_at`: members of one room per shard before it spills onto
    /// another (see [`Placement`]).
    pub fn new(shards: usize, spill_at: usize) -> Self {
        Rooms { rooms: HashMap::new(), index: HashMap::new(), placement: Placement::new(shards, spill_at) }
    }

    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    pub fn participant_count(&self) -> usize {
        self.index.len()
    }

    /// Published tracks, and subscriptions (track × subscribing member).
    pub fn track_counts(&self) -> (usize, usize) {
        self.rooms.values().fold((0, 0), |(tracks, subs), room| {
            let subscribed = room
                .tracks
                .values()
                .map(|t| room.members.iter().filter(|(pid, m)| **pid != t.participant && m.can_subscribe).count())
                .sum::<usize>();
            (tracks + room.tracks.len(), subs + subscribed)
        })
    }

    /// Admits a participant whose grant signalling has verified. A second
    /// connection with the same identity replaces the first (a page reload).
    pub fn join(&mut self, pid: ParticipantId, req: JoinRequest, out: &mut Vec<ControlOutput>) -> Joined {
        let existing = self
            .rooms
            .get(&req.room)
            .and_then(|r| r.members.iter().find(|(_, m)| m.identity == req.identity).map(|(p, _)| *p));
        if let Some(old) = existing {
            self.remove(old, Some((ErrorCode::Replaced, "joined again from another connection".into())), out);
        }

        let room = self.rooms.entry(req.room.clone()).or_default();
        let before = room.shards();
        let shard = self.placement.choose(&before);
        self.placement.add(shard);
        self.index.insert(pid, req.room.clone());
        let others: Vec<ParticipantInfo> = room.members.keys().filter_map(|p| room.info(*p)).collect();
        room.members.insert(
            pid,
            Member {
                identity: req.identity.clone(),
                name: req.name.clone(),
                shard,
                can_subscribe: req.permissions.can_subscribe,
            },
        );

        if !room.announced.is_empty() {
            out.push(ControlOutput::Client(pid, ClientEvent::Speakers { speakers: room.announced.clone() }));
        }
        let info = ParticipantInfo {
            participant: pid,
            identity: req.identity.clone(),
            name: req.name.clone(),
            tracks: vec![],
        };
        for other in room.members.keys().filter(|p| **p != pid) {
            out.push(ControlOutput::Client(*other, ClientEvent::ParticipantJoined { participant: info.clone() }));
        }

        let can_subscribe = req.permissions.can_subscribe;
        let room_name = req.room.clone();
        out.push(ControlOutput::Shard(shard, ShardCommand::AddParticipant { participant: pid, request: req }));
        if let Some(recording) = &room.recording {
            out.push(ControlOutput::Shard(
                shard,
                ShardCommand::Record { participant: pid, recording: Some(recording.clone()) },
            ));
            out.push(ControlOutput::Client(pid, ClientEvent::Recording { on: true, error: None }));
        }
        if !before.contains_key(&shard) && !before.is_empty() {
            room.announce_shards(&room_name, out);
        }
        if can_subscribe {
            let tracks: Vec<TrackInfo> = room.tracks.values().cloned().collect();
            for track in tracks {
                self.subscribe(pid, shard, track, out);
            }
        }
        Joined { participant: pid, shard, others }
    }

    /// Starts recording every member of `room` (and whoever joins) for
    /// `recording`, or stops (`None`, with the `error` that stopped it);
    /// everyone is told. False if there is no such room to stop.
    pub fn set_recording(
        &mut self,
        room: &str,
        recording: Option<Arc<str>>,
        error: Option<String>,
        out: &mut Vec<ControlOutput>,
    ) -> bool {
        // A room to be recorded may be empty yet (an accepted call whose
        // pages are still joining): it waits for them.
        let r = match (self.rooms.get_mut(room), &recording) {
            (Some(r), _) => r,
            (None, Some(_)) => self.rooms.entry(Arc::from(room)).or_default(),
            (None, None) => return false,
        };
        if r.recording == recording {
            return true;
        }
        r.recording = recording.clone();
        for (pid, m) in &r.members {
            out.push(ControlOutput::Shard(
                m.shard,
                ShardCommand::Record { participant: *pid, recording: recording.clone() },
            ));
            let event = ClientEvent::Recording { on: recording.is_some(), error: error.clone() };
            out.push(ControlOutput::Client(*pid, event));
        }
        true
    }

    /// The recording in progress in `room`, if any.
    pub fn recording(&self, room: &str) -> Option<Arc<str>> {
        self.rooms.get(room).and_then(|r| r.recording.clone())
    }

    fn subscribe(&self, subscriber: ParticipantId, shard: ShardId, track: TrackInfo, out: &mut Vec<ControlOutput>) {
        let Some(room) = self.index.get(&track.participant).and_then(|r| self.rooms.get(r)) else { return };
        let Some(publisher_shard) = room.members.get(&track.participant).map(|m| m.shard) else { return };
        if shard != publisher_shard {
            out.push(ControlOutput::Shard(
                publisher_shard,
                ShardCommand::SetRemoteShards {
                    track: track.track,
                    shards: room.remote_shards(&track, publisher_shard),
                },
            ));
        }
        out.push(ControlOutput::Shard(shard, ShardCommand::Subscribe { subscriber, track, publisher_shard }));
    }

    /// The client left or its connection died. Idempotent.
    pub fn remove(&mut self, pid: ParticipantId, reason: Option<(ErrorCode, String)>, out: &mut Vec<ControlOutput>) {
        let Some(room_name) = self.index.remove(&pid) else { return };
        let Some(room) = self.rooms.get_mut(&room_name) else { return };
        let Some(member) = room.members.remove(&pid) else { return };
        self.placement.remove(member.shard);
        out.push(ControlOutput::Shard(member.shard, ShardCommand::RemoveParticipant { participant: pid }));
        if !room.members.values().any(|m| m.shard == member.shard) && !room.members.is_empty() {
            room.announce_shards(&room_name, out);
        }
        if let Some((code, message)) = reason {
            out.push(ControlOutput::Client(pid, ClientEvent::Closed { code, message }));
        }

        let gone: Vec<TrackId> = room.tracks.values().filter(|t| t.participant == pid).map(|t| t.track).collect();
        for track in gone {
            Self::unpublish_in(room, pid, track, out);
        }
        // The shards the leaver subscribed from may have one shard fewer to feed.
        for track in room.tracks.values() {
            if let Some(publisher) = room.members.get(&track.participant) {
                if publisher.shard != member.shard {
                    let shards = room.remote_shards(track, publisher.shard);
                    out.push(ControlOutput::Shard(
                        publisher.shard,
                        ShardCommand::SetRemoteShards { track: track.track, shards },
                    ));
                }
            }
        }
        for other in room.members.keys() {
            out.push(ControlOutput::Client(
                *other,
                ClientEvent::ParticipantLeft { participant: pid, identity: member.identity.clone() },
            ));
        }
        if room.members.is_empty() {
            self.rooms.remove(&room_name);
        }
    }

    pub fn handle_shard_event(&mut self, ev: ShardEvent, out: &mut Vec<ControlOutput>) {
        match ev {
            ShardEvent::TrackPublished { track } => self.publish(track, out),
            ShardEvent::TrackUnpublished { participant, track } => self.unpublish(participant, track, out),
            ShardEvent::TrackMuted { participant, track, muted } => {
                let Some(room) = self.index.get(&participant).and_then(|r| self.rooms.get_mut(r)) else { return };
                let Some(t) = room.tracks.get_mut(&track) else { return };
                t.muted = muted;
                let ev = ClientEvent::TrackMuted { track, identity: t.identity.clone(), muted };
                for other in room.members.keys().filter(|p| **p != participant) {
                    out.push(ControlOutput::Client(*other, ev.clone()));
                }
            }
            ShardEvent::Speakers { room, shard, speakers } => {
                if let Some(r) = self.rooms.get_mut(&room) {
                    r.speakers_changed(shard, speakers, out);
                }
            }
            ShardEvent::ParticipantGone { participant } => {
                self.remove(participant, Some((ErrorCode::ConnectionLost, "media connection lost".into())), out)
            }
        }
    }

    fn publish(&mut self, track: TrackInfo, out: &mut Vec<ControlOutput>) {
        let Some(room) = self.index.get(&track.participant).and_then(|r| self.rooms.get_mut(r)) else { return };
        if !room.members.contains_key(&track.participant) {
            return;
        }
        room.tracks.insert(track.track, track.clone());
        let subscribers: Vec<(ParticipantId, ShardId)> = room
            .members
            .iter()
            .filter(|(p, m)| **p != track.participant && m.can_subscribe)
            .map(|(p, m)| (*p, m.shard))
            .collect();
        for other in room.members.keys().filter(|p| **p != track.participant) {
            out.push(ControlOutput::Client(*other, ClientEvent::TrackPublished { track: track.clone() }));
        }
        for (sub, shard) in subscribers {
            self.subscribe(sub, shard, track.clone(), out);
        }
    }

    fn unpublish(&mut self, pid: ParticipantId, track: TrackId, out: &mut Vec<ControlOutput>) {
        if let Some(room) = self.index.get(&pid).and_then(|r| self.rooms.get_mut(r)) {
            Self::unpublish_in(room, pid, track, out);
        }
    }

    fn unpublish_in(room: &mut Room, pid: ParticipantId, track: TrackId, out: &mut Vec<ControlOutput>) {
        let Some(info) = room.tracks.remove(&track) else { return };
        for (other, m) in room.members.iter().filter(|(p, _)| **p != pid) {
            out.push(ControlOutput::Client(
                *other,
                ClientEvent::TrackUnpublished { track, participant: pid, identity: info.identity.clone() },
            ));
            if m.can_subscribe {
                out.push(ControlOutput::Shard(m.shard, ShardCommand::Unsubscribe { subscriber: *other, track }));
            }
        }
    }
}
