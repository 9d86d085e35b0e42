//! One WebSocket signalling session: join with a token, then relay messages
//! between the client and its shard until either side ends it.

use sfu::ErrorCode;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use sfu::{ClientEvent, JoinRequest, ParticipantId, Permissions, ShardId, Signal};
use tokio::time::{interval, timeout, Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

use crate::calls::CallEvent;
use crate::protocol::{ClientMsg, ServerMsg, MAX_CLIENT_MESSAGE};
use crate::AppState;

/// A client must join this soon after connecting.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Ping period; a client silent for `PEER_TIMEOUT` is dropped.
const PING_EVERY: Duration = Duration::from_secs(10);
const PEER_TIMEOUT: Duration = Duration::from_secs(30);

// Close codes (RFC 6455 section 7.4): 1008 policy violation for auth
// failures, 1009 too big, 1001 going away on shutdown, 1000 otherwise.
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_AWAY: u16 = 1001;
const CLOSE_POLICY: u16 = 1008;
const CLOSE_TOO_BIG: u16 = 1009;

type Tx = futures_util::stream::SplitSink<WebSocket, Message>;
type Rx = futures_util::stream::SplitStream<WebSocket>;

pub async fn session(socket: WebSocket, state: Arc<AppState>) {
    let _open = crate::metrics::ConnectionGuard::new("room");
    let (mut tx, mut rx) = socket.split();
    let Some((pid, shard, room, mut events)) = join(&mut tx, &mut rx, &state).await else { return };
    let mut shutdown = state.shutdown.clone();
    let mut calls = state.calls.subscribe();
    let mut ping = interval(PING_EVERY);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_seen = Instant::now();

    loop {
        tokio::select! {
            msg = rx.next() => {
                last_seen = Instant::now();
                match msg {
                    Some(Ok(Message::Text(text))) => {
                        if text.len() > MAX_CLIENT_MESSAGE {
                            let m = format!("message of {} bytes exceeds {MAX_CLIENT_MESSAGE}", text.len());
                            close(&mut tx, ErrorCode::MessageTooLarge, &m, CLOSE_TOO_BIG).await;
                            break;
                        }
                        match serde_json::from_str::<ClientMsg>(&text) {
                            Ok(ClientMsg::Leave {}) => {
                                close(&mut tx, ErrorCode::Left, "you left the room", CLOSE_NORMAL).await;
                                break;
                            }
                            Ok(msg) => handle(&state, pid, shard, msg, &mut tx).await,
                            Err(e) => send_error(&mut tx, ErrorCode::BadMessage, &format!("unreadable message: {e}")).await,
                        }
                    }
                    Some(Ok(Message::Binary(_))) => send_error(&mut tx, ErrorCode::BadMessage, "binary messages are not part of the protocol").await,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(e)) => {
                        debug!(participant = %pid, "websocket error: {e}");
                        // Oversized frames surface here; say so before closing.
                        if e.to_string().contains("too long") || e.to_string().contains("Space limit") {
                            close(&mut tx, ErrorCode::MessageTooLarge, "message too large", CLOSE_TOO_BIG).await;
                        }
                        break;
                    }
                }
            }
            ev = events.recv() => match ev {
                Some(ClientEvent::Closed { code, message }) => {
                    close(&mut tx, code, &message, CLOSE_NORMAL).await;
                    break;
                }
                Some(ev) => {
                    if let ClientEvent::Error { code, .. } = &ev {
                        crate::metrics::count_error(*code);
                    }
                    if send_json(&mut tx, &ev).await.is_err() { break; }
                }
                None => {
                    close(&mut tx, ErrorCode::SlowConsumer, "too many undelivered events", CLOSE_POLICY).await;
                    break;
                }
            },
            _ = ping.tick() => {
                if last_seen.elapsed() > PEER_TIMEOUT {
                    info!(participant = %pid, "signalling peer timed out");
                    break;
                }
                if tx.send(Message::Ping(Default::default())).await.is_err() { break; }
            }
            ev = calls.recv() => {
                if let Ok(CallEvent::RoomClosed { room: closed }) = ev {
                    if closed == room {
                        close(&mut tx, ErrorCode::CallEnded, "the call has ended", CLOSE_NORMAL).await;
                        break;
                    }
                }
            }
            _ = shutdown.changed() => {
                close(&mut tx, ErrorCode::ServerShutdown, "the server is shutting down", CLOSE_AWAY).await;
                break;
            }
        }
    }
    state.clients.unregister(pid);
    state.sfu.leave(pid);
    info!(participant = %pid, "signalling session ended");
}

/// Waits for the join message and admits the participant, or refuses and closes.
async fn join(
    tx: &mut Tx,
    rx: &mut Rx,
    state: &AppState,
) -> Option<(ParticipantId, ShardId, String, tokio::sync::mpsc::Receiver<ClientEvent>)> {
    let first = match timeout(JOIN_TIMEOUT, rx.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => t,
        Ok(Some(Ok(_))) => {
            close(tx, ErrorCode::JoinRequired, "the first message must be a join", CLOSE_POLICY).await;
            return None;
        }
        Ok(_) => return None,
        Err(_) => {
            close(tx, ErrorCode::JoinTimeout, "no join message received in time", CLOSE_POLICY).await;
            return None;
        }
    };
    let (token, room) = match serde_json::from_str::<ClientMsg>(&first) {
        Ok(ClientMsg::Join { token, room }) => (token, room),
        Ok(_) => {
            close(tx, ErrorCode::JoinRequired, "the first message must be a join", CLOSE_POLICY).await;
            return None;
        }
        Err(e) => {
            close(tx, ErrorCode::BadMessage, &format!("unreadable join: {e}"), CLOSE_POLICY).await;
            return None;
        }
    };
    let claims = match state.keys.verify(&token) {
        Ok(c) => c,
        Err(e) => {
            info!("join refused: {e}");
            close(tx, e.code(), &e.to_string(), CLOSE_POLICY).await;
            return None;
        }
    };
    if let Some(room) = room.filter(|r| *r != claims.video.room) {
        info!(identity = %claims.sub, %room, granted = %claims.video.room, "join refused: wrong room");
        let m = format!("the token grants room {:?}, not {room:?}", claims.video.room);
        close(tx, ErrorCode::WrongRoom, &m, CLOSE_POLICY).await;
        return None;
    }
    // Call-flow tokens are good only while their call is live.
    if let Some(call) = &claims.call {
        if let Err((code, message)) = state.calls.admits(call).await {
            info!(identity = %claims.sub, %call, "join refused: {message}");
            close(tx, code, &message, CLOSE_POLICY).await;
            return None;
        }
    }

    let pid = state.sfu.allocate_participant();
    let events = state.clients.register(pid);
    let permissions = Permissions { can_publish: claims.video.can_publish, can_subscribe: claims.video.can_subscribe };
    let request =
        JoinRequest { room: claims.video.room.as_str().into(), identity: claims.sub.as_str().into(), permissions };
    let joined = state.sfu.join(pid, request);
    info!(participant = %pid, room = %claims.video.room, identity = %claims.sub, shard = joined.shard, "joined");
    let msg = ServerMsg::Joined {
        participant: pid,
        identity: &claims.sub,
        room: &claims.video.room,
        can_publish: permissions.can_publish,
        can_subscribe: permissions.can_subscribe,
        participants: &joined.others,
        ice_servers: &state.ice_servers.for_participant(&claims.sub, std::time::SystemTime::now()),
    };
    if send_json(tx, &msg).await.is_err() {
        state.clients.unregister(pid);
        state.sfu.leave(pid);
        return None;
    }
    Some((pid, joined.shard, claims.video.room, events))
}

async fn handle(state: &AppState, pid: ParticipantId, shard: ShardId, msg: ClientMsg, tx: &mut Tx) {
    let signal = match msg {
        ClientMsg::Offer { sdp, tracks } => {
            Signal::Offer { sdp, sources: tracks.into_iter().map(|t| (t.mid, t.source)).collect() }
        }
        ClientMsg::Answer { sdp } => Signal::Answer { sdp },
        ClientMsg::Candidate { candidate, .. } if candidate.is_empty() => return, // end of candidates
        ClientMsg::Candidate { candidate, .. } => Signal::Candidate { candidate },
        ClientMsg::Mute { mid, muted } => Signal::Mute { mid, muted },
        ClientMsg::Subscription { mid, max_height, enabled } => Signal::Subscription { mid, max_height, enabled },
        ClientMsg::Join { .. } => {
            send_error(tx, ErrorCode::AlreadyJoined, "this connection has joined already").await;
            return;
        }
        ClientMsg::Leave {} => return,
    };
    state.sfu.signal(pid, shard, signal);
}

async fn send_json<T: serde::Serialize>(tx: &mut Tx, msg: &T) -> Result<(), axum::Error> {
    // Invariant: our message types always serialize.
    let text = serde_json::to_string(msg).expect("serializable message");
    tx.send(Message::Text(text.into())).await
}

async fn send_error(tx: &mut Tx, code: ErrorCode, message: &str) {
    crate::metrics::count_error(code);
    if send_json(tx, &ServerMsg::Error { code, message }).await.is_err() {
        warn!("could not send error {code}");
    }
}

/// Tells the client why, then closes with a matching close frame.
async fn close(tx: &mut Tx, code: ErrorCode, message: &str, close_code: u16) {
    if !code.is_normal_close() {
        crate::metrics::count_error(code);
    }
    let _ = send_json(tx, &ServerMsg::Closed { code, message }).await;
    let reason = code.as_str();
    let _ = tx.send(Message::Close(Some(CloseFrame { code: close_code, reason: Utf8Bytes::from(reason) }))).await;
    let _ = tx.close().await;
}
