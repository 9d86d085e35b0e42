//! A WebSocket signalling session against the real server (real token
//! checks, caps lifted): a first message (usually a join with a valid,
//! expired, forged, premature or garbage token), then any sequence of
//! client messages (edited offers and answers, candidates, mutes,
//! subscriptions, resumes, unknown types, wrong field types, binary frames,
//! oversized text), then a close or a vanished client. The server must
//! neither panic nor stop answering: it closes the connection soon after
//! the client does.

use std::time::Duration;

use crate::json::{object, Json};
use crate::{sdp, server};
use arbitrary::{Arbitrary, Unstructured};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use signalling::auth::{unix_now, Claims, Keys, VideoGrant};
use tokio_tungstenite::tungstenite::Message;

#[derive(Arbitrary, Debug)]
pub struct Input {
    first: Msg,
    rest: Vec<Msg>,
    /// Close properly (else the TCP connection is just dropped).
    close: bool,
}

#[derive(Arbitrary, Debug)]
pub enum Msg {
    Join {
        token: Token,
        room: Option<String>,
    },
    Resume {
        token: String,
        received: u64,
    },
    Offer {
        edits: Vec<sdp::Edit>,
        tracks: Vec<(String, String)>,
    },
    Answer {
        edits: Vec<sdp::Edit>,
    },
    Candidate {
        candidate: String,
        sdp_mid: Option<String>,
        index: Option<u32>,
    },
    Mute {
        mid: String,
        muted: bool,
    },
    Subscription {
        mid: String,
        max_height: Option<u32>,
        enabled: Option<bool>,
    },
    Leave,
    /// A known type with fields of any type.
    Typed(Kind, Fields),
    Json(Json),
    Text(String),
    Binary(Vec<u8>),
    /// Text past the 64 KiB limit, by this many KiB.
    Oversized(u8),
    Ping(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
pub enum Kind {
    Join,
    Resume,
    Offer,
    Answer,
    Candidate,
    Mute,
    Subscription,
    Leave,
    Other(String),
}

/// Fields named as the server's messages name theirs, of any JSON type.
#[derive(Debug)]
pub struct Fields(serde_json::Map<String, Value>);

impl<'a> Arbitrary<'a> for Fields {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        const KNOWN: &[&str] =
            &["token", "room", "received", "sdp", "tracks", "candidate", "sdpMid", "mid", "muted", "max_height"];
        object(u, 2, KNOWN).map(Fields)
    }
}

#[derive(Arbitrary, Debug)]
pub enum Token {
    Valid { room: u8, identity: String, publish: bool, subscribe: bool },
    Expired,
    NotYetValid,
    Forged,
    Garbage(String),
}

impl Token {
    fn text(&self, keys: &Keys) -> String {
        let claims = |room: &str, exp: u64, nbf: Option<u64>| Claims {
            iss: server::KEY.into(),
            sub: "fuzz".into(),
            name: None,
            exp,
            nbf,
            video: VideoGrant {
                room: room.into(),
                room_join: true,
                can_publish: true,
                can_subscribe: true,
                room_record: false,
                room_admin: false,
            },
            call: None,
        };
        match self {
            Token::Valid { room, identity, publish, subscribe } => keys
                .mint(&format!("room{}", room % 4), identity, Duration::from_secs(600), *publish, *subscribe)
                .unwrap_or_default(),
            Token::Expired => keys.sign(&claims("room0", unix_now() - 600, None)).expect("signs"),
            Token::NotYetValid => keys.sign(&claims("room0", unix_now() + 600, Some(unix_now() + 300))).expect("signs"),
            Token::Forged => Keys::single(server::KEY, "not-the-secret-not-the-secret-xx")
                .mint("room0", "eve", Duration::from_secs(600), true, true)
                .expect("signs"),
            Token::Garbage(s) => s.clone(),
        }
    }
}

impl Msg {
    fn to_message(&self, keys: &Keys) -> Message {
        let v = match self {
            Msg::Join { token, room } => json!({"type": "join", "token": token.text(keys), "room": room}),
            Msg::Resume { token, received } => json!({"type": "resume", "token": token, "received": received}),
            Msg::Offer { edits, tracks } => {
                let tracks: Vec<Value> = tracks.iter().take(8).map(|(m, s)| json!({"mid": m, "source": s})).collect();
                json!({"type": "offer", "sdp": sdp::edited(edits), "tracks": tracks})
            }
            Msg::Answer { edits } => json!({"type": "answer", "sdp": sdp::edited(edits)}),
            Msg::Candidate { candidate, sdp_mid, index } => {
                json!({"type": "candidate", "candidate": candidate, "sdpMid": sdp_mid, "sdpMLineIndex": index})
            }
            Msg::Mute { mid, muted } => json!({"type": "mute", "mid": mid, "muted": muted}),
            Msg::Subscription { mid, max_height, enabled } => {
                let mut v = json!({"type": "subscription", "mid": mid, "max_height": max_height});
                if let Some(e) = enabled {
                    v["enabled"] = json!(e);
                }
                v
            }
            Msg::Leave => json!({"type": "leave"}),
            Msg::Typed(kind, Fields(fields)) => {
                let kind = match kind {
                    Kind::Join => "join",
                    Kind::Resume => "resume",
                    Kind::Offer => "offer",
                    Kind::Answer => "answer",
                    Kind::Candidate => "candidate",
                    Kind::Mute => "mute",
                    Kind::Subscription => "subscription",
                    Kind::Leave => "leave",
                    Kind::Other(s) => s,
                };
                let mut m = fields.clone();
                m.insert("type".into(), json!(kind));
                Value::Object(m)
            }
            Msg::Json(Json(v)) => v.clone(),
            Msg::Text(s) => return Message::Text(s.clone().into()),
            Msg::Binary(b) => return Message::Binary(b.clone().into()),
            Msg::Oversized(k) => {
                let n = 64 * 1024 + 1 + usize::from(*k) * 1024;
                return Message::Text(format!("{{\"type\":\"offer\",\"sdp\":\"{}\"}}", "v".repeat(n)).into());
            }
            Msg::Ping(b) => return Message::Ping(b.iter().copied().take(125).collect::<Vec<u8>>().into()),
        };
        Message::Text(v.to_string().into())
    }
}

pub fn run(input: Input) {
    let s = server::get();
    s.rt.block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(&s.ws_url, None, true)
            .await
            .expect("the server takes connections");
        for m in std::iter::once(&input.first).chain(input.rest.iter().take(15)) {
            if ws.send(m.to_message(&s.keys)).await.is_err() {
                break;
            }
        }
        if !input.close {
            return; // vanished: the server must clean up by itself
        }
        let _ = ws.send(Message::Close(None)).await;
        // The server finishes with us promptly, whatever came before: its
        // close frame (or the end of the stream) comes soon.
        let drained = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(Ok(m)) = ws.next().await {
                if m.is_close() {
                    break;
                }
            }
        })
        .await;
        assert!(drained.is_ok(), "the server closed the session after the client did");
    });
}
