//! Values exchanged between signalling, the room directory and the shards.
//!
//! Three lanes, each with its own type:
//! - [`ShardCommand`]: control plane → shard. Never dropped (unbounded, low rate).
//! - [`ShardEvent`]: shard → control plane. Never dropped (low rate).
//! - [`MediaMsg`]: shard → shard. Bounded; dropped and counted when full,
//!   because a late media packet is worth less than a stalled shard.
//!
//! [`ClientEvent`]s go to the signalling connection of one participant.

use std::sync::Arc;
use std::time::Instant;

use str0m::format::Codec;
use str0m::rtp::rtcp::SenderInfo;
use str0m::rtp::{ExtensionValues, Vp8Descriptor};

use super::ids::{ParticipantId, ShardId, TrackId, TrackKind, TrackSource};
use super::layers::Layer;
pub use crate::error::ErrorCode;

/// What a participant is allowed to do, from its access token's grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permissions {
    pub can_publish: bool,
    pub can_subscribe: bool,
}

/// A request to join a room; signalling builds it from a verified token.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub room: Arc<str>,
    pub identity: Arc<str>,
    /// What to call the participant (a display name), if not the identity.
    pub name: Option<Arc<str>>,
    pub permissions: Permissions,
}

/// Signalling messages from a client that its shard handles.
#[derive(Debug, Clone)]
pub enum Signal {
    /// SDP offer from the client, with the source of each track it sends (by mid).
    Offer { sdp: String, sources: Vec<(String, TrackSource)> },
    /// SDP answer to an offer the server made.
    Answer { sdp: String },
    /// A trickled ICE candidate (`candidate:...` line).
    Candidate { candidate: String },
    /// The client muted or unmuted the track it sends on `mid`.
    Mute { mid: String, muted: bool },
    /// What the client wants of the video it receives on `mid`: at most
    /// `max_height` lines tall (the smallest layer at least that tall; the top
    /// layer when `None`), or no video when not `enabled`.
    Subscription { mid: String, max_height: Option<u32>, enabled: bool },
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TrackInfo {
    pub track: TrackId,
    pub participant: ParticipantId,
    pub identity: Arc<str>,
    pub kind: TrackKind,
    pub source: TrackSource,
    pub muted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ParticipantInfo {
    pub participant: ParticipantId,
    pub identity: Arc<str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Arc<str>>,
    pub tracks: Vec<TrackInfo>,
}

/// Which remote participant's track a receiving m-line (mid) carries.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MidInfo {
    pub mid: String,
    pub identity: Arc<str>,
    pub source: TrackSource,
    pub kind: TrackKind,
}

/// A participant speaking, with its smoothed level (1..=100, percent of
/// full-scale amplitude).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Speaker {
    pub participant: ParticipantId,
    pub identity: Arc<str>,
    pub level: u8,
}

/// Events for one participant's signalling connection.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientEvent {
    Answer {
        sdp: String,
    },
    /// A server-made offer; `mids` tells which participant each new m-line carries.
    Offer {
        sdp: String,
        mids: Vec<MidInfo>,
    },
    ParticipantJoined {
        participant: ParticipantInfo,
    },
    ParticipantLeft {
        participant: ParticipantId,
        identity: Arc<str>,
    },
    TrackPublished {
        track: TrackInfo,
    },
    TrackUnpublished {
        track: TrackId,
        participant: ParticipantId,
        identity: Arc<str>,
    },
    TrackMuted {
        track: TrackId,
        identity: Arc<str>,
        muted: bool,
    },
    /// Who speaks in the room now, loudest first (empty: nobody). Sent when
    /// that list changes, at most once per `speech::SPEECH_INTERVAL`.
    Speakers {
        speakers: Vec<Speaker>,
    },
    /// Dynacast, to a simulcast publisher: send only these layers (rids) of
    /// the video on `mid`, pause the others; nobody takes them.
    LayersWanted {
        mid: String,
        rids: Vec<String>,
    },
    /// The video on receiving m-line `mid` stopped: not even its lowest
    /// layer fits what the link carries. Audio goes on.
    TrackPaused {
        mid: String,
        reason: PauseReason,
    },
    /// The video on `mid` flows again.
    TrackResumed {
        mid: String,
    },
    /// The room is being recorded (`on`), or no longer; `error` says why
    /// a recording stopped by itself (e.g. the disk is full).
    Recording {
        on: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Something the client sent was refused; the session goes on.
    Error {
        code: ErrorCode,
        message: String,
    },
    /// The server ended this participant's session (it should close its socket).
    Closed {
        code: ErrorCode,
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseReason {
    /// The subscriber's bandwidth estimate is below the lowest layer.
    Bandwidth,
}

/// Control plane → shard.
#[derive(Debug)]
pub enum ShardCommand {
    AddParticipant {
        participant: ParticipantId,
        request: JoinRequest,
    },
    RemoveParticipant {
        participant: ParticipantId,
    },
    Signal {
        participant: ParticipantId,
        signal: Signal,
    },
    /// Start sending `track` to `subscriber` (a participant of this shard).
    Subscribe {
        subscriber: ParticipantId,
        track: TrackInfo,
        publisher_shard: ShardId,
    },
    /// Stop sending `track` to `subscriber`; its downstream slot stays for a rejoin.
    Unsubscribe {
        subscriber: ParticipantId,
        track: TrackId,
    },
    /// On the publisher's shard: the other shards with subscribers of `track`.
    SetRemoteShards {
        track: TrackId,
        shards: Vec<ShardId>,
    },
    /// On every shard of `room`: the other shards with members of it, for
    /// data channel relay. Empty when the room is on this shard alone.
    SetRoomShards {
        room: Arc<str>,
        shards: Vec<ShardId>,
    },
    /// Record `participant`'s tracks for `recording` (`None`: stop).
    Record {
        participant: ParticipantId,
        recording: Option<Arc<str>>,
    },
    /// The recorder lost packets of `track` (or starts it): a keyframe, please.
    RecorderKeyframe {
        track: TrackId,
        layer: Layer,
    },
    Shutdown,
}

/// Shard → control plane.
#[derive(Debug, Clone)]
pub enum ShardEvent {
    TrackPublished {
        track: TrackInfo,
    },
    TrackUnpublished {
        participant: ParticipantId,
        track: TrackId,
    },
    TrackMuted {
        participant: ParticipantId,
        track: TrackId,
        muted: bool,
    },
    /// Who speaks among `room`'s publishers on `shard`, loudest first; sent
    /// when that changed. The directory merges the room's shards.
    Speakers {
        room: Arc<str>,
        shard: ShardId,
        speakers: Vec<Speaker>,
    },
    /// The participant's connection is gone (ICE timeout, DTLS close, error).
    ParticipantGone {
        participant: ParticipantId,
    },
}

/// One received RTP packet, shared (not copied) by every subscriber leg.
#[derive(Debug)]
pub struct MediaPacket {
    pub track: TrackId,
    pub codec: Codec,
    pub seq_no: u64,
    pub timestamp: u32,
    pub marker: bool,
    pub ext_vals: ExtensionValues,
    pub payload: Arc<[u8]>,
    pub arrival: Instant,
    /// Simulcast layer (0 without simulcast).
    pub layer: Layer,
    /// The packet starts a keyframe (VP8).
    pub keyframe: bool,
    /// Its VP8 payload descriptor, parsed once for every leg's renumbering.
    pub vp8: Option<Vp8Descriptor>,
    /// The publisher's last RTCP sender report for this stream (recording
    /// places RTP time on a wallclock with it).
    pub sender_info: Option<SenderInfo>,
}

/// A data channel message relayed to a room, already tagged with its sender.
#[derive(Debug)]
pub struct RoomData {
    pub room: Arc<str>,
    pub from: ParticipantId,
    pub binary: bool,
    pub payload: Arc<[u8]>,
}

/// Shard → shard.
#[derive(Debug)]
pub enum MediaMsg {
    Rtp(Arc<MediaPacket>),
    /// A subscriber on the sending shard asked for a keyframe of `track`'s `layer`.
    KeyframeRequest {
        track: TrackId,
        layer: Layer,
    },
    Data(Arc<RoomData>),
}
