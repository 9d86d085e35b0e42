//! The signalling protocol, one JSON object per WebSocket text message, with
//! a `type` field. Documented in docs/protocol.md; keep the two in step.

use serde::{Deserialize, Serialize};
use sfu::{ErrorCode, ParticipantId, ParticipantInfo, TrackSource};

/// Largest message a client may send (an SDP offer with many m-lines is ~20 KB).
pub const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

/// Fields a message does not define are ignored, not refused: clients may
/// send more than this version knows (a browser's `candidate.toJSON()`
/// adds `usernameFragment`), and a newer client still talks to an older
/// server. An unknown `type` is refused.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    Join {
        token: String,
        #[serde(default)]
        room: Option<String>,
    },
    /// Instead of `join` on a new connection: carry on the session that
    /// `token` (from `joined`) names, having received `received` of its
    /// messages.
    Resume {
        token: String,
        received: u64,
    },
    Offer {
        sdp: String,
        #[serde(default)]
        tracks: Vec<TrackSourceDecl>,
    },
    Answer {
        sdp: String,
    },
    Candidate {
        candidate: String,
        #[serde(default, rename = "sdpMid")]
        sdp_mid: Option<String>,
        #[serde(default, rename = "sdpMLineIndex")]
        sdp_mline_index: Option<u32>,
    },
    Mute {
        mid: String,
        muted: bool,
    },
    /// What the client wants of the video it receives on `mid`.
    Subscription {
        mid: String,
        #[serde(default)]
        max_height: Option<u32>,
        #[serde(default = "yes")]
        enabled: bool,
    },
    Leave {},
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
pub struct TrackSourceDecl {
    pub mid: String,
    pub source: TrackSource,
}

#[derive(Debug, Serialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Resume<'a> {
    pub token: &'a str,
    pub grace_ms: u64,
}

/// Messages only signalling sends; the rest are `sfu::ClientEvent`s, which
/// serialize into the same `{"type": ...}` shape.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg<'a> {
    Joined {
        participant: ParticipantId,
        identity: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<&'a str>,
        room: &'a str,
        can_publish: bool,
        can_subscribe: bool,
        participants: &'a [ParticipantInfo],
        ice_servers: &'a [IceServer],
        /// Presented in `resume` by a new connection within `grace_ms` of
        /// this one dropping.
        resume: Resume<'a>,
    },
    /// The session carries on on this connection; the client sends again
    /// what it sent after the first `received` of its messages.
    Resumed {
        received: u64,
    },
    Error {
        code: ErrorCode,
        message: &'a str,
    },
    Closed {
        code: ErrorCode,
        message: &'a str,
    },
}
