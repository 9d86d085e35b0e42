//! The signalling server over a real WebSocket on loopback. Invariants:
//! nobody joins without a valid grant for that room, and bad input gets a
//! clear error without disturbing anyone else.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use signalling::auth::{unix_now, Claims, Keys, VideoGrant};
use signalling::caps::CapsConfig;
use signalling::ice_servers::{rest_credential, IceServers, TurnAuth};
use signalling::Server;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const KEY: &str = "testkey";
const SECRET: &str = "test-secret-test-secret-test-secret";
const TURN_SECRET: &str = "shared-with-coturn";

async fn start() -> (String, tokio::sync::oneshot::Sender<()>) {
    start_with(CapsConfig::default()).await
}

async fn start_with(caps: CapsConfig) -> (String, tokio::sync::oneshot::Sender<()>) {
    start_configured(caps, None).await
}

async fn start_configured(caps: CapsConfig, metrics_token: Option<&str>) -> (String, tokio::sync::oneshot::Sender<()>) {
    let config = sfu::SfuConfig {
        shards: 2,
        udp_bind: vec![[127, 0, 0, 1].into()],
        udp_port: 0,
        public_ip: vec![],
        room_spill_at: sfu::DEFAULT_SPILL_AT,
        tcp_port: Some(0),
        recordings_dir: None,
        participant_limits: sfu::core::participant::ParticipantLimits { tracks: 4, ..Default::default() },
    };
    let dir = tempfile::tempdir().unwrap();
    let store = signalling::store::Store::open(dir.path()).await.unwrap();
    std::mem::forget(dir); // lives as long as the test process
    let flow = signalling::FlowConfig {
        store,
        queue_timeout: Duration::from_secs(600),
        calls_per_minute: 10,
        resume_grace: Duration::from_secs(2),
        logins_per_minute: 10,
        secure_cookies: false,
        record_calls: false,
        recording_retention: None,
        frame_ancestors: vec!["'self'".into()],
        metrics_token: metrics_token.map(String::from),
        caps,
    };
    let turn = TurnAuth::Secret { secret: TURN_SECRET.into(), ttl: Duration::from_secs(3600) };
    let ice = IceServers::new(vec!["stun:127.0.0.1:3478".into(), "turn:127.0.0.1:3478".into()], turn).unwrap();
    let server = Server::new(config, Keys::single(KEY, SECRET), ice, flow).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(listener, async {
        let _ = rx.await;
    }));
    (format!("ws://{addr}/ws"), tx)
}

fn token(room: &str, identity: &str) -> String {
    Keys::single(KEY, SECRET).mint(room, identity, Duration::from_secs(60), true, true).unwrap()
}

async fn connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// Next JSON message, skipping pings; `None` when the socket closed.
async fn next_json(ws: &mut Ws) -> Option<Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("server answered in time") {
            Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(&t).unwrap()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            _ => return None,
        }
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// Sends `join` with `tok` and returns the server's reply.
async fn join_with(url: &str, tok: &str, room: Option<&str>) -> (Ws, Value) {
    let mut ws = connect(url).await;
    let mut msg = json!({"type": "join", "token": tok});
    if let Some(r) = room {
        msg["room"] = json!(r);
    }
    send(&mut ws, msg).await;
    let reply = next_json(&mut ws).await.expect("a reply");
    (ws, reply)
}

async fn assert_refused(url: &str, tok: &str, room: Option<&str>, code: &str) {
    let (mut ws, reply) = join_with(url, tok, room).await;
    assert_eq!(reply["type"], "closed", "{reply}");
    assert_eq!(reply["code"], code, "{reply}");
    assert!(next_json(&mut ws).await.is_none(), "socket closed after refusal");
}

#[tokio::test]
async fn joins_without_a_valid_grant_are_refused() {
    let (url, _stop) = start().await;
    // Missing, garbage and forged (signed with another secret).
    assert_refused(&url, "", None, "missing_token").await;
    assert_refused(&url, "not-a-jwt", None, "bad_token").await;
    let forged = Keys::single(KEY, "some-other-secret-some-other-secret")
        .mint("r", "eve", Duration::from_secs(60), true, true)
        .unwrap();
    assert_refused(&url, &forged, None, "bad_token").await;
    // Expired.
    let expired = Claims {
        iss: KEY.into(),
        sub: "late".into(),
        name: None,
        exp: unix_now() - 600,
        nbf: None,
        video: VideoGrant {
            room: "r".into(),
            room_join: true,
            can_publish: true,
            can_subscribe: true,
            room_record: false,
            room_admin: false,
        },
        call: None,
    };
    assert_refused(&url, &Keys::single(KEY, SECRET).sign(&expired).unwrap(), None, "token_expired").await;
    // A valid token for another room.
    assert_refused(&url, &token("room-a", "mallory"), Some("room-b"), "wrong_room").await;
    // No first-message join at all.
    let mut ws = connect(&url).await;
    send(&mut ws, json!({"type": "offer", "sdp": "v=0"})).await;
    assert_eq!(next_json(&mut ws).await.unwrap()["code"], "join_required");

    // And a valid one is admitted.
    let (_ws, reply) = join_with(&url, &token("room-a", "alice"), Some("room-a")).await;
    assert_eq!(reply["type"], "joined", "{reply}");
    assert_eq!(reply["identity"], "alice");
}

/// Forward compatibility: fields a message does not define are ignored.
#[tokio::test]
async fn unknown_fields_are_ignored_and_unknown_types_refused() {
    let (url, _stop) = start().await;
    let mut ws = connect(&url).await;
    send(&mut ws, json!({"type": "join", "token": token("r", "newer"), "sdk": "switchboard-client/9.0"})).await;
    assert_eq!(next_json(&mut ws).await.unwrap()["type"], "joined", "a join with a field from a newer client");
    // A browser's `{type: 'candidate', ...e.candidate.toJSON()}`.
    let candidate = json!({"type": "candidate", "candidate": "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host",
        "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": "abcd"});
    send(&mut ws, candidate).await;
    send(&mut ws, json!({"type": "subscription", "mid": "nope", "enabled": false, "quality": "best"})).await;
    send(&mut ws, json!({"type": "teleport", "to": "mars"})).await;
    // What comes back within a second: the unknown type refused, the
    // unknown mid refused (by the media plane: it may come first or after),
    // and nothing about the candidate or the extra fields.
    let mut errors = Vec::new();
    while let Ok(Some(reply)) = tokio::time::timeout(Duration::from_secs(1), next_json(&mut ws)).await {
        errors.push(format!("{} {}", reply["code"].as_str().unwrap_or("-"), reply["message"].as_str().unwrap_or("")));
    }
    errors.sort();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].starts_with("bad_message") && errors[0].contains("teleport"), "{errors:?}");
    assert!(errors[1].starts_with("not_allowed"), "{errors:?}");
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_others_are_untouched() {
    let (url, _stop) = start().await;
    let (mut bystander, reply) = join_with(&url, &token("r", "bystander"), None).await;
    assert_eq!(reply["type"], "joined");
    let (mut ws, reply) = join_with(&url, &token("r", "clumsy"), None).await;
    assert_eq!(reply["type"], "joined");
    assert_eq!(next_json(&mut bystander).await.unwrap()["type"], "participant_joined");

    let cases: Vec<(Value, &str)> = vec![
        (json!("{not json"), "bad_message"),
        (json!({"type": "teleport"}), "bad_message"),
        (json!({"type": "offer"}), "bad_message"),
        (json!({"type": "offer", "sdp": "this is not sdp"}), "bad_sdp"),
        (
            json!({"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=rtpmap:102 H264/90000\r\na=sendonly\r\n"}),
            "unsupported_codec",
        ),
        // This server lets a participant publish four tracks at once.
        (
            json!({"type": "offer", "sdp": format!("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n{}",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\na=sendonly\r\n".repeat(5))}),
            "too_many_tracks",
        ),
        (json!({"type": "candidate", "candidate": "candidate:garbage"}), "bad_candidate"),
        (json!({"type": "join", "token": "x"}), "already_joined"),
    ];
    for (msg, code) in cases {
        let text = if let Value::String(s) = &msg { s.clone() } else { msg.to_string() };
        ws.send(Message::Text(text.into())).await.unwrap();
        let reply = next_json(&mut ws).await.expect("error reply");
        assert_eq!(reply["type"], "error", "{msg} -> {reply}");
        assert_eq!(reply["code"], code, "{msg} -> {reply}");
    }

    // An oversized message closes this session with a clear reason...
    let huge = json!({"type": "answer", "sdp": "x".repeat(200 * 1024)}).to_string();
    ws.send(Message::Text(huge.into())).await.unwrap();
    let reply = next_json(&mut ws).await.expect("closing reply");
    assert_eq!(reply["code"], "message_too_large", "{reply}");
    assert!(next_json(&mut ws).await.is_none());

    // ...and the bystander only sees that participant leave.
    let ev = next_json(&mut bystander).await.unwrap();
    assert_eq!(ev["type"], "participant_left", "{ev}");
    assert_eq!(ev["identity"], "clumsy");
    send(&mut bystander, json!({"type": "mute", "mid": "nope", "muted": true})).await;
    assert_eq!(next_json(&mut bystander).await.unwrap()["type"], "error", "bystander's session still answers");
}

/// Sends one text message of about `size` bytes (a join when `first`, an
/// answer otherwise) while reading, as a browser does; returns the
/// server's `closed` message and close frame code (`None`: no close frame,
/// the connection was just lost).
async fn send_oversized(ws: Ws, first: bool, size: usize) -> (Option<Value>, Option<u16>) {
    let filler = "x".repeat(size);
    let msg = match first {
        true => json!({"type": "join", "token": filler}),
        false => json!({"type": "answer", "sdp": filler}),
    };
    let (mut sink, mut stream) = ws.split();
    // The server may stop reading part way: the rest of the send can fail.
    let sending = tokio::spawn(async move {
        let _ = sink.send(Message::Text(msg.to_string().into())).await;
    });
    let (mut closed, mut code) = (None, None);
    let read = async {
        while let Some(Ok(m)) = stream.next().await {
            match m {
                Message::Text(t) => closed = Some(serde_json::from_str::<Value>(&t).unwrap()),
                Message::Close(f) => {
                    code = f.map(|f| u16::from(f.code));
                    break;
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read).await.expect("the server closed in time");
    sending.abort();
    (closed, code)
}

#[tokio::test]
async fn every_oversized_message_gets_message_too_large_and_close_1009() {
    let (url, _stop) = start().await;
    // Over the protocol's 64 KiB, and over what the WebSocket layer reads at all (1 MiB).
    for size in [100 * 1024, 2 * 1024 * 1024] {
        for first in [true, false] {
            let ws = match first {
                true => connect(&url).await,
                false => {
                    let (ws, reply) = join_with(&url, &token("big", &format!("p{size}")), None).await;
                    assert_eq!(reply["type"], "joined", "{reply}");
                    ws
                }
            };
            let case = format!("{size} bytes as the {} message", if first { "first" } else { "a later" });
            let (closed, code) = send_oversized(ws, first, size).await;
            let closed = closed.unwrap_or_else(|| panic!("{case}: no closed message"));
            assert_eq!(closed["type"], "closed", "{case}: {closed}");
            assert_eq!(closed["code"], "message_too_large", "{case}: {closed}");
            assert_eq!(code, Some(1009), "{case}");
        }
    }
}

#[tokio::test]
async fn joined_carries_turn_credentials_minted_for_the_participant() {
    let (url, _stop) = start().await;
    let (_ws, joined) = join_with(&url, &token("r", "carol"), None).await;
    assert_eq!(joined["type"], "joined", "{joined}");
    let servers = joined["ice_servers"].as_array().unwrap();
    assert_eq!(servers[0], json!({"urls": ["stun:127.0.0.1:3478"]}), "STUN gets no credential");
    let user = servers[1]["username"].as_str().unwrap();
    let (expiry, identity) = user.split_once(':').unwrap();
    let expiry: u64 = expiry.parse().unwrap();
    assert_eq!(identity, "carol");
    assert!((unix_now() + 3590..=unix_now() + 3610).contains(&expiry), "valid for the TTL: {user}");
    let at = std::time::UNIX_EPOCH + Duration::from_secs(expiry);
    assert_eq!(servers[1]["credential"].as_str(), Some(rest_credential(TURN_SECRET, "carol", at).1.as_str()));
}

#[tokio::test]
async fn second_connection_with_same_identity_replaces_the_first() {
    let (url, _stop) = start().await;
    let (mut first, _) = join_with(&url, &token("r", "dup"), None).await;
    let (_second, reply) = join_with(&url, &token("r", "dup"), None).await;
    assert_eq!(reply["type"], "joined");
    let ev = next_json(&mut first).await.unwrap();
    assert_eq!((ev["type"].as_str(), ev["code"].as_str()), (Some("closed"), Some("replaced")), "{ev}");
}

#[tokio::test]
async fn shutdown_tells_connected_clients() {
    let (url, stop) = start().await;
    let (mut ws, _) = join_with(&url, &token("r", "a"), None).await;
    stop.send(()).unwrap();
    let ev = next_json(&mut ws).await.unwrap();
    assert_eq!(ev["code"], "server_shutdown", "{ev}");
}

/// Drops a connection the way a network does: no close frame.
fn vanish(ws: Ws) {
    drop(ws);
}

async fn resume_with(url: &str, resume_token: &str, received: u64) -> (Ws, Value) {
    let mut ws = connect(url).await;
    send(&mut ws, json!({"type": "resume", "token": resume_token, "received": received})).await;
    let reply = next_json(&mut ws).await.expect("a reply");
    (ws, reply)
}

#[tokio::test]
async fn a_dropped_connection_resumes_the_same_participant_with_nothing_lost() {
    let (url, _stop) = start().await;
    let (mut alice, joined) = join_with(&url, &token("r", "alice"), None).await;
    let resume_token = joined["resume"]["token"].as_str().unwrap().to_string();
    assert_eq!(joined["resume"]["grace_ms"], 2000);
    let (mut bob, _) = join_with(&url, &token("r", "bob"), None).await;
    assert_eq!(next_json(&mut alice).await.unwrap()["type"], "participant_joined"); // alice's message 1
    vanish(alice);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // While alice is away carol comes: alice must hear of it after resuming.
    let (_carol, _) = join_with(&url, &token("r", "carol"), None).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (mut alice, reply) = resume_with(&url, &resume_token, 1).await;
    assert_eq!(reply, json!({"type": "resumed", "received": 0}), "nothing of alice's was received before");
    let replayed = next_json(&mut alice).await.unwrap();
    assert_eq!(replayed["type"], "participant_joined");
    assert_eq!(replayed["participant"]["identity"], "carol", "what happened meanwhile is replayed");
    // The same participant: bob saw carol join, never alice leave.
    assert_eq!(next_json(&mut bob).await.unwrap()["participant"]["identity"], "carol");
    // The session goes on: requests reach the shard and signalling, and
    // their errors come back on the new connection.
    send(&mut alice, json!({"type": "mute", "mid": "nope", "muted": true})).await;
    assert_eq!(next_json(&mut alice).await.unwrap()["code"], "not_allowed", "from the shard");
    send(&mut alice, json!({"type": "join", "token": "x"})).await;
    assert_eq!(next_json(&mut alice).await.unwrap()["code"], "already_joined");

    // A second drop and a resume that says it saw everything: no replay.
    vanish(alice);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (mut alice, reply) = resume_with(&url, &resume_token, 4).await;
    assert_eq!(reply, json!({"type": "resumed", "received": 2}));
    send(&mut alice, json!({"type": "join", "token": "x"})).await;
    assert_eq!(next_json(&mut alice).await.unwrap()["code"], "already_joined", "no replayed message came first");

    // Past the grace period the participant is gone, and its token with it.
    vanish(alice);
    let left = next_json(&mut bob).await.unwrap();
    assert_eq!((left["type"].as_str(), left["identity"].as_str()), (Some("participant_left"), Some("alice")), "{left}");
    let (_, reply) = resume_with(&url, &resume_token, 5).await;
    assert_eq!((reply["type"].as_str(), reply["code"].as_str()), (Some("closed"), Some("resume_failed")), "{reply}");
    let (_, reply) = resume_with(&url, "made-up", 0).await;
    assert_eq!(reply["code"], "resume_failed");
}

#[tokio::test]
async fn a_full_room_and_too_many_connections_are_refused_with_their_codes_and_a_leaver_frees_its_place() {
    let caps = CapsConfig { participants_per_room: 2, connections_per_ip: 4, ..CapsConfig::default() };
    let (url, _stop) = start_with(caps).await;
    let (mut a, reply) = join_with(&url, &token("capped", "a"), None).await;
    assert_eq!(reply["type"], "joined", "{reply}");
    let (_b, reply) = join_with(&url, &token("capped", "b"), None).await;
    assert_eq!(reply["type"], "joined", "{reply}");
    assert_refused(&url, &token("capped", "c"), None, "room_full").await;

    // a reloads her page: the new session gets in at once, the old one is replaced.
    let (mut a2, reply) = join_with(&url, &token("capped", "a"), None).await;
    assert_eq!(reply["type"], "joined", "a rejoin takes over its own seat: {reply}");
    let mut old_end = None;
    while let Some(m) = next_json(&mut a).await {
        if m["type"] == "closed" {
            old_end = m["code"].as_str().map(str::to_owned);
        }
    }
    assert_eq!(old_end.as_deref(), Some("replaced"));
    assert_refused(&url, &token("capped", "c"), None, "room_full").await;

    // a leaves: c gets its place (once a's session has ended).
    send(&mut a2, json!({"type": "leave"})).await;
    while next_json(&mut a2).await.is_some() {}
    let mut c = None;
    for _ in 0..40 {
        let (ws, reply) = join_with(&url, &token("capped", "c"), None).await;
        if reply["type"] == "joined" {
            c = Some(ws);
            break;
        }
        assert_eq!(reply["code"], "room_full", "{reply}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(c.is_some(), "c joined after a left");

    // b and c hold two of this address's four connections; two idle ones
    // take the rest, and a fifth is told why it is refused.
    let _idle = (connect(&url).await, connect(&url).await);
    let mut fifth = connect(&url).await;
    let reply = next_json(&mut fifth).await.expect("a reason");
    assert_eq!(
        (reply["type"].as_str(), reply["code"].as_str()),
        (Some("closed"), Some("too_many_connections")),
        "{reply}"
    );
}

#[tokio::test]
async fn a_connection_flooding_messages_is_closed_as_rate_limited() {
    let (url, _stop) = start_with(CapsConfig { messages_per_second: 5, ..CapsConfig::default() }).await;
    let (mut ws, reply) = join_with(&url, &token("r", "chatty"), None).await;
    assert_eq!(reply["type"], "joined", "{reply}");
    // Within the burst (10): each gets its answer.
    for _ in 0..5 {
        send(&mut ws, json!({"type": "mute", "mid": "nope", "muted": true})).await;
        assert_eq!(next_json(&mut ws).await.unwrap()["type"], "error");
    }
    for _ in 0..30 {
        if ws
            .send(Message::Text(json!({"type": "mute", "mid": "nope", "muted": true}).to_string().into()))
            .await
            .is_err()
        {
            break;
        }
    }
    let mut last = None;
    while let Some(m) = next_json(&mut ws).await {
        last = Some(m);
    }
    let last = last.expect("messages before the close");
    assert_eq!((last["type"].as_str(), last["code"].as_str()), (Some("closed"), Some("rate_limited")), "{last}");
}

#[tokio::test]
async fn join_attempts_beyond_the_rate_per_address_are_refused_as_rate_limited() {
    let (url, _stop) = start_with(CapsConfig { joins_per_second_per_ip: 2, ..CapsConfig::default() }).await;
    // A burst of four (twice the rate) is let through to the token check...
    for _ in 0..4 {
        assert_refused(&url, "not-a-token", None, "bad_token").await;
    }
    // ...the next is not, even with a valid token.
    assert_refused(&url, &token("r", "late"), None, "rate_limited").await;
}

/// One plain HTTP/1.1 GET to the server behind `ws_url`: status and body.
async fn http_get(ws_url: &str, path: &str, headers: &[&str]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = ws_url.trim_start_matches("ws://").trim_end_matches("/ws");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).await.unwrap();
    let status = raw.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, raw.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

#[tokio::test]
async fn metrics_ask_for_the_metrics_token_when_one_is_set() {
    let (open, _stop_open) = start().await;
    let (status, body) = http_get(&open, "/metrics", &[]).await;
    assert_eq!(status, 200, "open without a token configured");
    assert!(body.contains("switchboard_participants"), "{body}");

    let (url, _stop) = start_configured(CapsConfig::default(), Some("scrape-me")).await;
    for headers in [
        &[][..],
        &["Authorization: Bearer wrong"],
        &["Authorization: Basic scrape-me"],
        &["Authorization: Bearer scrape-m"],
    ] {
        let (status, body) = http_get(&url, "/metrics", headers).await;
        assert_eq!(status, 401, "{headers:?}");
        assert!(!body.contains("switchboard_"), "nothing is revealed: {body}");
    }
    let (status, body) = http_get(&url, "/metrics", &["Authorization: Bearer scrape-me"]).await;
    assert_eq!(status, 200);
    assert!(body.contains("switchboard_participants"), "{body}");
    let (status, _) = http_get(&url, "/healthz", &[]).await;
    assert_eq!(status, 200, "health checks stay open");
}
