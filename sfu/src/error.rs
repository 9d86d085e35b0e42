//! Stable error codes: the one vocabulary of every `code` the server sends
//! to clients, over the WebSocket (`error`, `closed`) and in HTTP error
//! bodies. Clients and tests match on them, so never rename one. The media
//! plane uses a few; signalling the rest.

macro_rules! codes {
    ($($(#[$doc:meta])* $name:ident = $text:literal,)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
        #[serde(rename_all = "snake_case")]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[$doc])* $name,)*
        }

        impl ErrorCode {
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => $text,)*
                }
            }

            /// Every code, for documentation and tests.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name,)*];
        }
    };
}

codes! {
    // The media session (from the shards and the room directory).
    BadSdp = "bad_sdp",
    UnsupportedCodec = "unsupported_codec",
    BadCandidate = "bad_candidate",
    NotAllowed = "not_allowed",
    /// An offer would publish more tracks than a participant may.
    TooManyTracks = "too_many_tracks",
    /// Another connection joined with the same identity and room.
    Replaced = "replaced",
    /// The peer's ICE/DTLS connection failed or timed out.
    ConnectionLost = "connection_lost",
    ServerShutdown = "server_shutdown",
    /// The server is draining for a restart: no new rooms or calls.
    Draining = "draining",
    /// The client fell behind reading its signalling events.
    SlowConsumer = "slow_consumer",

    // The signalling session.
    BadMessage = "bad_message",
    MessageTooLarge = "message_too_large",
    /// The server holds all the connections, participants or rooms it takes.
    ServerFull = "server_full",
    /// The room holds all the participants it takes.
    RoomFull = "room_full",
    /// The client's address holds all the signalling connections it may.
    TooManyConnections = "too_many_connections",
    JoinRequired = "join_required",
    JoinTimeout = "join_timeout",
    AlreadyJoined = "already_joined",
    /// A `resume` for a session that is over (or too far behind to catch up).
    ResumeFailed = "resume_failed",
    WrongRoom = "wrong_room",
    /// The client said `leave` (a normal close).
    Left = "left",
    CallEnded = "call_ended",

    // Access tokens and agent sessions.
    MissingToken = "missing_token",
    BadToken = "bad_token",
    TokenExpired = "token_expired",
    BadCredentials = "bad_credentials",
    NotSignedIn = "not_signed_in",
    CrossOrigin = "cross_origin",
    TokenError = "token_error",
    RateLimited = "rate_limited",

    // The call flow's HTTP API.
    BadName = "bad_name",
    BadTopic = "bad_topic",
    NoSuchCall = "no_such_call",
    NoSuchAgent = "no_such_agent",
    AlreadyTaken = "already_taken",
    NotQueued = "not_queued",
    NotLive = "not_live",
    NotInvited = "not_invited",
    NotInCall = "not_in_call",
    SelfInvite = "self_invite",
    StorageError = "storage_error",

    // Recordings.
    /// Recording is off on this server, or the room has nobody to record.
    RecordingUnavailable = "recording_unavailable",
    NoSuchRecording = "no_such_recording",
}

impl ErrorCode {
    /// Codes that end a session normally rather than report a fault (not
    /// counted as errors).
    pub fn is_normal_close(self) -> bool {
        matches!(self, ErrorCode::Left | ErrorCode::ServerShutdown | ErrorCode::CallEnded)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialized_codes_are_their_names_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert_eq!(serde_json::to_string(code).unwrap(), format!("\"{}\"", code.as_str()));
            assert!(seen.insert(code.as_str()), "{code} listed twice");
        }
    }
}
