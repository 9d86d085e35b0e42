//! One WebSocket signalling session: join with a token, then relay messages
//! between the client and its shard until either side ends it. A dropped
//! connection leaves the session waiting for a `resume` (see `resume`).

use sfu::ErrorCode;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use sfu::{ClientEvent, JoinRequest, ParticipantId, Permissions, ShardId, Signal};
use tokio::time::{interval, timeout, Instant, MissedTickBehavior};
use tracing::{debug, info};

use crate::calls::CallEvent;
use crate::caps::{Held, Refused};
use crate::protocol::{ClientMsg, Resume, ServerMsg, MAX_CLIENT_MESSAGE};
use crate::resume::{Outbox, Rx, Takeover, Tx};
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
/// From the client: not a leave, it resumes on a new connection (private use range).
const CLOSE_MOVING: u16 = 4000;

/// One joined participant's signalling, across the connections it resumes on.
struct Session {
    pid: ParticipantId,
    shard: ShardId,
    room: String,
    events: tokio::sync::mpsc::Receiver<ClientEvent>,
    token: String,
    takeovers: tokio::sync::mpsc::Receiver<Takeover>,
    /// What we sent, numbered, for replay after a resume.
    outbox: Outbox,
    /// Text messages received from the client since `joined`.
    received: u64,
    /// Its place in the room (see `caps`), given back when the session ends.
    _seat: Held,
    /// Messages per second it may send.
    rate: DefaultDirectRateLimiter,
}

/// Why a connection stopped serving its session.
enum End {
    /// The session is over (left, closed by us, refused).
    Done,
    /// The connection broke; the client may come back.
    Dropped,
    /// A new connection presented the resume token.
    TakenOver(Takeover),
}

pub async fn session(socket: WebSocket, state: Arc<AppState>, ip: std::net::IpAddr, held: Result<Held, Refused>) {
    let _open = crate::metrics::ConnectionGuard::new("room");
    let (mut tx, mut rx) = socket.split();
    let _held = match held {
        Ok(h) => h,
        Err((code, why)) => {
            info!(%code, "signalling connection refused: {why}");
            close(&mut tx, code, &why, CLOSE_POLICY).await;
            return;
        }
    };
    let Some(first) = first_message(&mut tx, &mut rx).await else { return };
    if let Err((code, why)) = state.caps.join_attempt(ip) {
        info!(%ip, "join refused: {why}");
        close(&mut tx, code, &why, CLOSE_POLICY).await;
        return;
    }
    let (token, room) = match first {
        ClientMsg::Join { token, room } => (token, room),
        ClientMsg::Resume { token, received } => {
            // This connection now belongs to the session it names (its task
            // serves it); or there is none, and the client must join again.
            if let Err(mut t) = state.sessions.take_over(&token, Takeover { tx, rx, received }) {
                info!("resume refused: no such session");
                close(&mut t.tx, ErrorCode::ResumeFailed, "that session is over; join again", CLOSE_POLICY).await;
            }
            return;
        }
        _ => {
            close(&mut tx, ErrorCode::JoinRequired, "the first message must be a join", CLOSE_POLICY).await;
            return;
        }
    };
    let Some(mut s) = join(&mut tx, &state, token, room).await else { return };
    let mut conn = (tx, rx);
    loop {
        match s.serve(&state, &mut conn).await {
            End::Done => break,
            End::TakenOver(t) => {
                info!(participant = %s.pid, "signalling resumed on a new connection (the old one was still open)");
                // The old connection may be dead without knowing it: do not wait on it.
                let _ = timeout(Duration::from_secs(1), conn.0.close()).await;
                match s.resume(t).await {
                    Some(c) => conn = c,
                    None => break,
                }
            }
            End::Dropped => {
                info!(participant = %s.pid, grace = ?state.resume_grace, "signalling connection lost; waiting for the client to resume");
                let Some(t) = s.park(&state).await else { break };
                info!(participant = %s.pid, "signalling resumed");
                match s.resume(t).await {
                    Some(c) => conn = c,
                    None => break,
                }
            }
        }
    }
    state.sessions.unregister(&s.token);
    state.clients.unregister(s.pid);
    state.sfu.leave(s.pid);
    info!(participant = %s.pid, "signalling session ended");
}

impl Session {
    /// Relays between the client and the shard until the connection ends.
    async fn serve(&mut self, state: &AppState, (tx, rx): &mut (Tx, Rx)) -> End {
        let pid = self.pid;
        let mut shutdown = state.shutdown.clone();
        let mut calls = state.calls.subscribe();
        let mut ping = interval(PING_EVERY);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_seen = Instant::now();
        loop {
            tokio::select! {
                msg = rx.next() => {
                    last_seen = Instant::now();
                    if let Some(why) = msg.as_ref().and_then(too_large) {
                        close_too_large(tx, &why).await;
                        return End::Done;
                    }
                    match msg {
                        Some(Ok(Message::Text(_))) if self.rate.check().is_err() => {
                            let m = format!("more than {} messages a second", state.caps.config.messages_per_second);
                            info!(participant = %pid, "signalling closed: {m}");
                            close(tx, ErrorCode::RateLimited, &m, CLOSE_POLICY).await;
                            return End::Done;
                        }
                        Some(Ok(Message::Text(text))) => {
                            self.received += 1;
                            match serde_json::from_str::<ClientMsg>(&text) {
                                Ok(ClientMsg::Leave {}) => {
                                    close(tx, ErrorCode::Left, "you left the room", CLOSE_NORMAL).await;
                                    return End::Done;
                                }
                                Ok(msg) => {
                                    if let Err(e) = self.handle(state, msg) {
                                        if self.send_error(tx, e.0, e.1).await.is_err() { return End::Dropped; }
                                    }
                                }
                                Err(e) => {
                                    let m = format!("unreadable message: {e}");
                                    if self.send_error(tx, ErrorCode::BadMessage, &m).await.is_err() { return End::Dropped; }
                                }
                            }
                        }
                        Some(Ok(Message::Binary(_))) => {
                            let m = "binary messages are not part of the protocol";
                            if self.send_error(tx, ErrorCode::BadMessage, m).await.is_err() { return End::Dropped; }
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        // The client moves to a new connection (its network changed).
                        Some(Ok(Message::Close(Some(f)))) if f.code == CLOSE_MOVING => return End::Dropped,
                        // A close the client chose (a tab closed) ends the session.
                        Some(Ok(Message::Close(_))) => return End::Done,
                        None => return End::Dropped,
                        Some(Err(e)) => {
                            debug!(participant = %pid, "websocket error: {e}");
                            return End::Dropped;
                        }
                    }
                }
                ev = self.events.recv() => match ev {
                    Some(ClientEvent::Closed { code, message }) => {
                        close(tx, code, &message, CLOSE_NORMAL).await;
                        return End::Done;
                    }
                    Some(ev) => {
                        if let ClientEvent::Error { code, .. } = &ev {
                            crate::metrics::count_error(*code);
                        }
                        if self.send(tx, &ev).await.is_err() { return End::Dropped; }
                    }
                    None => {
                        close(tx, ErrorCode::SlowConsumer, "too many undelivered events", CLOSE_POLICY).await;
                        return End::Done;
                    }
                },
                _ = ping.tick() => {
                    if last_seen.elapsed() > PEER_TIMEOUT {
                        info!(participant = %pid, "signalling peer timed out");
                        return End::Dropped;
                    }
                    if tx.send(Message::Ping(Default::default())).await.is_err() { return End::Dropped; }
                }
                Some(t) = self.takeovers.recv() => return End::TakenOver(t),
                ev = calls.recv() => {
                    if let Ok(CallEvent::RoomClosed { room: closed }) = ev {
                        if closed == self.room {
                            close(tx, ErrorCode::CallEnded, "the call has ended", CLOSE_NORMAL).await;
                            return End::Done;
                        }
                    }
                }
                _ = shutdown.changed() => {
                    close(tx, ErrorCode::ServerShutdown, "the server is shutting down", CLOSE_AWAY).await;
                    return End::Done;
                }
            }
        }
    }

    /// Waits, without a connection, for the client to come back within the
    /// grace period. Events for it go into the outbox meanwhile, to be
    /// replayed; one that ends the session (the participant was removed,
    /// e.g. its media connection died) ends the wait.
    async fn park(&mut self, state: &AppState) -> Option<Takeover> {
        let mut shutdown = state.shutdown.clone();
        let mut calls = state.calls.subscribe();
        let deadline = tokio::time::sleep(state.resume_grace);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                Some(t) = self.takeovers.recv() => return Some(t),
                _ = &mut deadline => {
                    info!(participant = %self.pid, "no resume within the grace period");
                    return None;
                }
                ev = self.events.recv() => match ev {
                    Some(ClientEvent::Closed { code, .. }) => {
                        info!(participant = %self.pid, %code, "session ended while waiting for a resume");
                        return None;
                    }
                    Some(ev) => {
                        self.outbox.record(&to_text(&ev));
                    }
                    None => return None,
                },
                ev = calls.recv() => {
                    if matches!(ev, Ok(CallEvent::RoomClosed { room }) if room == self.room) { return None; }
                }
                _ = shutdown.changed() => return None,
            }
        }
    }

    /// Takes up a new connection: says how much of the client's we have,
    /// sends what it missed of ours. `None` if it cannot catch up.
    async fn resume(&mut self, t: Takeover) -> Option<(Tx, Rx)> {
        let Takeover { mut tx, rx, received } = t;
        let Some(missed) = self.outbox.after(received) else {
            let m = "too much happened while you were away; join again";
            close(&mut tx, ErrorCode::ResumeFailed, m, CLOSE_POLICY).await;
            return None;
        };
        let missed: Vec<String> = missed.cloned().collect();
        debug!(participant = %self.pid, replayed = missed.len(), "resuming");
        // If this connection fails too, the client may try again: stay parked.
        let _ = send_json(&mut tx, &ServerMsg::Resumed { received: self.received }).await;
        for text in missed {
            let _ = tx.send(Message::Text(text.into())).await;
        }
        Some((tx, rx))
    }

    fn handle(&self, state: &AppState, msg: ClientMsg) -> Result<(), (ErrorCode, &'static str)> {
        let signal = match msg {
            ClientMsg::Offer { sdp, tracks } => {
                Signal::Offer { sdp, sources: tracks.into_iter().map(|t| (t.mid, t.source)).collect() }
            }
            ClientMsg::Answer { sdp } => Signal::Answer { sdp },
            ClientMsg::Candidate { candidate, .. } if candidate.is_empty() => return Ok(()), // end of candidates
            ClientMsg::Candidate { candidate, .. } => Signal::Candidate { candidate },
            ClientMsg::Mute { mid, muted } => Signal::Mute { mid, muted },
            ClientMsg::Subscription { mid, max_height, enabled } => Signal::Subscription { mid, max_height, enabled },
            ClientMsg::Join { .. } | ClientMsg::Resume { .. } => {
                return Err((ErrorCode::AlreadyJoined, "this connection has joined already"));
            }
            ClientMsg::Leave {} => return Ok(()),
        };
        state.sfu.signal(self.pid, self.shard, signal);
        Ok(())
    }

    /// Sends a numbered message (kept for replay: if this send fails, the
    /// client gets it after resuming).
    async fn send<T: serde::Serialize>(&mut self, tx: &mut Tx, msg: &T) -> Result<(), axum::Error> {
        let text = to_text(msg);
        self.outbox.record(&text);
        tx.send(Message::Text(text.into())).await
    }

    async fn send_error(&mut self, tx: &mut Tx, code: ErrorCode, message: &str) -> Result<(), axum::Error> {
        crate::metrics::count_error(code);
        self.send(tx, &ServerMsg::Error { code, message }).await
    }
}

/// The first message of a connection: `join` or `resume`, within the
/// join timeout; anything else closes it.
async fn first_message(tx: &mut Tx, rx: &mut Rx) -> Option<ClientMsg> {
    let first = match timeout(JOIN_TIMEOUT, rx.next()).await {
        Ok(Some(msg)) if too_large(&msg).is_some() => {
            close_too_large(tx, &too_large(&msg).unwrap_or_default()).await;
            return None;
        }
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
    match serde_json::from_str::<ClientMsg>(&first) {
        Ok(m) => Some(m),
        Err(e) => {
            close(tx, ErrorCode::BadMessage, &format!("unreadable join: {e}"), CLOSE_POLICY).await;
            None
        }
    }
}

/// Admits the participant a `join` names, or refuses and closes.
async fn join(tx: &mut Tx, state: &AppState, token: String, room: Option<String>) -> Option<Session> {
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
    // A draining server opens no new rooms, but a live call's room (say,
    // a queued call accepted now) still opens: that call is in progress.
    let may_open_room = !state.drain.is_draining() || claims.call.is_some();
    let seat = match state.caps.admit(&claims.video.room, &claims.sub, may_open_room) {
        Ok(seat) => seat,
        Err((code, why)) => {
            info!(identity = %claims.sub, room = %claims.video.room, %code, "join refused: {why}");
            close(tx, code, &why, CLOSE_POLICY).await;
            return None;
        }
    };

    let pid = state.sfu.allocate_participant();
    let events = state.clients.register(pid);
    let permissions = Permissions { can_publish: claims.video.can_publish, can_subscribe: claims.video.can_subscribe };
    let request = JoinRequest {
        room: claims.video.room.as_str().into(),
        identity: claims.sub.as_str().into(),
        name: claims.name.as_deref().map(Into::into),
        permissions,
    };
    let joined = state.sfu.join(pid, request);
    let (resume_token, takeovers) = state.sessions.register();
    info!(participant = %pid, room = %claims.video.room, identity = %claims.sub, shard = joined.shard, "joined");
    let msg = ServerMsg::Joined {
        participant: pid,
        identity: &claims.sub,
        name: claims.name.as_deref(),
        room: &claims.video.room,
        can_publish: permissions.can_publish,
        can_subscribe: permissions.can_subscribe,
        participants: &joined.others,
        ice_servers: &state.ice_servers.for_participant(&claims.sub, std::time::SystemTime::now()),
        resume: Resume { token: &resume_token, grace_ms: state.resume_grace.as_millis() as u64 },
    };
    if send_json(tx, &msg).await.is_err() {
        state.sessions.unregister(&resume_token);
        state.clients.unregister(pid);
        state.sfu.leave(pid);
        return None;
    }
    Some(Session {
        pid,
        shard: joined.shard,
        room: claims.video.room,
        events,
        token: resume_token,
        takeovers,
        outbox: Outbox::default(),
        received: 0,
        _seat: seat,
        rate: message_rate(state.caps.config.messages_per_second),
    })
}

/// `per_second` messages a second, twice that in a burst.
fn message_rate(per_second: u32) -> DefaultDirectRateLimiter {
    let n = std::num::NonZeroU32::new(per_second.max(1)).expect("at least 1");
    let burst = n.saturating_mul(std::num::NonZeroU32::new(2).expect("2"));
    RateLimiter::direct(Quota::per_second(n).allow_burst(burst))
}

fn to_text<T: serde::Serialize>(msg: &T) -> String {
    // Invariant: our message types always serialize.
    serde_json::to_string(msg).expect("serializable message")
}

async fn send_json<T: serde::Serialize>(tx: &mut Tx, msg: &T) -> Result<(), axum::Error> {
    tx.send(Message::Text(to_text(msg).into())).await
}

/// Why a message from the client is refused for its size, if it is: longer
/// than the protocol allows, or so long that the WebSocket layer stopped
/// reading it at its frame header (the transport limit).
fn too_large(msg: &Result<Message, axum::Error>) -> Option<String> {
    let len = match msg {
        Ok(Message::Text(t)) => t.len(),
        Ok(Message::Binary(b)) => b.len(),
        Err(e) => {
            // axum's error wraps tungstenite's (the version axum uses: a
            // test sends 2 MiB and fails if the two drift apart).
            let inner = std::error::Error::source(e).and_then(|s| s.downcast_ref::<tungstenite::Error>());
            return matches!(inner, Some(tungstenite::Error::Capacity(_)))
                .then(|| format!("message exceeds {MAX_CLIENT_MESSAGE} bytes"));
        }
        _ => return None,
    };
    (len > MAX_CLIENT_MESSAGE).then(|| format!("message of {len} bytes exceeds {MAX_CLIENT_MESSAGE}"))
}

/// How long a connection refused for an oversized message stays open after
/// the close frame. The client is usually still sending the rest of it,
/// which nobody reads: closing the socket at once would reset the
/// connection, and a reset can overtake the close frame on the client's
/// side, which then sees a connection lost instead of the reason.
const OVERSIZED_LINGER: Duration = Duration::from_secs(1);

async fn close_too_large(tx: &mut Tx, why: &str) {
    close(tx, ErrorCode::MessageTooLarge, why, CLOSE_TOO_BIG).await;
    tokio::time::sleep(OVERSIZED_LINGER).await;
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
