//! The agents' side: sign-in, the live console (queue and invitations over a
//! WebSocket), accepting, inviting, joining when invited, and history. Every
//! endpoint but sign-in needs a [`SignedInAgent`].

use sfu::ErrorCode;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use axum::extract::{ConnectInfo, Path, State, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use axum_extra::extract::CookieJar;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;

use crate::agents::{self, ApiError, SignedInAgent};
use crate::calls::{CallEvent, RoomPass};
use crate::server_api::RecordingReader;
use crate::store::{now_ms, Call};
use crate::AppState;

#[derive(Deserialize)]
pub struct Login {
    email: String,
    password: String,
}

pub async fn login(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    jar: CookieJar,
    Json(body): Json<Login>,
) -> Result<impl IntoResponse, ApiError> {
    state.limits.login_attempt(peer.ip())?;
    let agent = state.calls.store.agent_by_email(body.email.trim()).await?;
    // Verify against a dummy hash for unknown emails: same cost, same answer.
    let hash = agent.as_ref().map_or(agents::dummy_hash(), |a| a.password_hash.as_str()).to_string();
    let password = body.password;
    let ok = tokio::task::spawn_blocking(move || agents::verify_password(&password, &hash)).await.unwrap_or(false);
    let Some(agent) = agent.filter(|_| ok) else {
        tracing::info!(ip = %peer.ip(), "agent sign-in failed");
        return Err(ApiError(StatusCode::UNAUTHORIZED, ErrorCode::BadCredentials, "wrong email or password".into()));
    };
    let sid = state.calls.store.create_session(agent.id, agents::SESSION_TTL).await?;
    let token = state.keys.sign_session(agent.id, &agent.email, &sid, agents::SESSION_TTL).map_err(|e| {
        tracing::error!("signing a session: {e}");
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::TokenError, "could not sign you in".into())
    })?;
    tracing::info!(agent = %agent.email, "agent signed in");
    Ok((
        jar.add(agents::session_cookie(token, state.secure_cookies)),
        Json(serde_json::json!({ "email": agent.email })),
    ))
}

/// Ends the session server-side too: a copy of the cookie is worthless after.
pub async fn logout(State(state): State<Arc<AppState>>, jar: CookieJar) -> Result<impl IntoResponse, ApiError> {
    let token = jar.get(agents::SESSION_COOKIE).map(|c| c.value().to_string()).unwrap_or_default();
    if let Ok(session) = state.keys.verify_session(&token) {
        state.calls.store.revoke_session(&session.sid).await?;
        state.calls.announce(CallEvent::SignedOut { sid: session.sid });
        tracing::info!(agent = %session.email, "agent signed out");
    }
    Ok((jar.remove(agents::cleared_cookie()), Json(serde_json::json!({}))))
}

pub async fn me(agent: SignedInAgent) -> impl IntoResponse {
    Json(serde_json::json!({ "id": agent.id, "email": agent.email }))
}

/// A call as the console shows it.
#[derive(Serialize)]
struct CallView<'a> {
    #[serde(flatten)]
    call: &'a Call,
    waited_ms: i64,
    duration_ms: Option<i64>,
}

fn view(call: &Call) -> CallView<'_> {
    let duration_ms = call.accepted_at.zip(call.ended_at).map(|(a, e)| e - a);
    CallView { call, waited_ms: call.accepted_at.unwrap_or_else(now_ms) - call.created_at, duration_ms }
}

fn pass_json(pass: &RoomPass) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "call": view(&pass.call), "room": pass.call.room, "token": pass.token }))
}

pub async fn accept(
    State(state): State<Arc<AppState>>,
    agent: SignedInAgent,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let pass = state.calls.accept(&id, agent.id, &agent.email).await?;
    if state.recordings.record_calls {
        // Recorded from the first packet: the room waits for its pages.
        state.recordings.start(&pass.call.room, Some(&pass.call.id), Some(agent.id)).await?;
    }
    Ok(pass_json(&pass))
}

#[derive(Deserialize)]
pub struct Record {
    on: bool,
}

/// An agent in the call starts or stops recording it.
pub async fn record(
    State(state): State<Arc<AppState>>,
    agent: SignedInAgent,
    Path(id): Path<String>,
    Json(body): Json<Record>,
) -> Result<impl IntoResponse, ApiError> {
    let call = state.calls.live_call_of(&id, agent.id).await?;
    let recording = if body.on {
        Some(state.recordings.start(&call.room, Some(&call.id), Some(agent.id)).await?)
    } else {
        state.recordings.stop(&call.room).await?;
        None
    };
    tracing::info!(call = %id, agent = %agent.email, on = body.on, "recording toggled");
    Ok(Json(serde_json::json!({ "recording": recording })))
}

/// A recording's file, for a signed-in agent or a server token granting
/// its room: played in the console (ranges, for seeking) or downloaded
/// (`?download`).
pub async fn recording_file(
    State(state): State<Arc<AppState>>,
    reader: RecordingReader,
    Path(id): Path<String>,
    req: axum::extract::Request,
) -> Result<axum::response::Response, ApiError> {
    let (path, room) = state.recordings.file(&id).await?;
    if !reader.may_read(&room) {
        // As for a file that does not exist: ids of other rooms are not confirmed.
        return Err(ApiError(StatusCode::NOT_FOUND, ErrorCode::NoSuchRecording, "no such recording".into()));
    }
    let download =
        req.uri().query().is_some_and(|q| q.split('&').any(|p| p == "download" || p.starts_with("download=")));
    let mut res = tower_http::services::ServeFile::new_with_mime(&path, &"video/webm".parse().expect("mime"))
        .try_call(req)
        .await
        .map_err(|e| {
            ApiError(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::StorageError, format!("reading the recording: {e}"))
        })?
        .map(axum::body::Body::new);
    let headers = res.headers_mut();
    headers.insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("private, no-store"));
    if download {
        let name = format!("attachment; filename=\"recording-{id}.webm\"");
        if let Ok(v) = axum::http::HeaderValue::from_str(&name) {
            headers.insert(axum::http::header::CONTENT_DISPOSITION, v);
        }
    }
    Ok(res)
}

#[derive(Deserialize)]
pub struct Invite {
    email: String,
}

pub async fn invite(
    State(state): State<Arc<AppState>>,
    agent: SignedInAgent,
    Path(id): Path<String>,
    Json(body): Json<Invite>,
) -> Result<impl IntoResponse, ApiError> {
    state.calls.invite(&id, agent.id, &agent.email, &body.email).await?;
    Ok(Json(serde_json::json!({ "invited": body.email })))
}

pub async fn join(
    State(state): State<Arc<AppState>>,
    agent: SignedInAgent,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(pass_json(&state.calls.join_invited(&id, agent.id, &agent.email).await?))
}

/// `GET /api/agent/history?q=&from=&to=&before=&limit=`: finished calls,
/// newest first; `q` searches customer, topic and agent; `from`/`to` are
/// ms since 1970; `before` is the previous page's `next`.
#[derive(Deserialize)]
pub struct HistoryParams {
    #[serde(default)]
    q: String,
    from: Option<i64>,
    to: Option<i64>,
    before: Option<String>,
    limit: Option<i64>,
}

const HISTORY_PAGE: i64 = 50;

pub async fn history(
    State(state): State<Arc<AppState>>,
    _agent: SignedInAgent,
    axum::extract::Query(p): axum::extract::Query<HistoryParams>,
) -> Result<impl IntoResponse, ApiError> {
    let limit = p.limit.unwrap_or(HISTORY_PAGE).clamp(1, 200);
    let before = match p.before.as_deref() {
        None | Some("") => None,
        Some(cursor) => {
            Some(cursor.split_once(':').and_then(|(at, id)| Some((at.parse().ok()?, id.to_string()))).ok_or_else(
                || ApiError(StatusCode::BAD_REQUEST, ErrorCode::BadMessage, "before: not a page cursor".into()),
            )?)
        }
    };
    let query = crate::store::HistoryQuery { text: p.q, from: p.from, to: p.to, before, limit: limit + 1 };
    let mut calls = state.calls.store.search_history(&query).await?;
    let next = (calls.len() as i64 > limit).then(|| {
        calls.truncate(limit as usize);
        calls.last().map(|c| format!("{}:{}", c.created_at, c.id))
    });
    let ids: Vec<String> = calls.iter().map(|c| c.id.clone()).collect();
    let mut recordings = state.recordings.of_calls(&ids).await?;
    let rows: Vec<serde_json::Value> = calls
        .iter()
        .map(|c| {
            let mut v = serde_json::json!(view(c));
            v["recordings"] = serde_json::json!(recordings.remove(&c.id).unwrap_or_default());
            v
        })
        .collect();
    Ok(Json(serde_json::json!({ "calls": rows, "next": next.flatten() })))
}

pub async fn queue(State(state): State<Arc<AppState>>, _agent: SignedInAgent) -> Result<impl IntoResponse, ApiError> {
    let calls = state.calls.store.queue().await?;
    Ok(Json(serde_json::json!({ "calls": calls.iter().map(view).collect::<Vec<_>>() })))
}

pub async fn list_agents(
    State(state): State<Arc<AppState>>,
    _agent: SignedInAgent,
) -> Result<impl IntoResponse, ApiError> {
    let agents = state.calls.store.agents().await?;
    Ok(Json(serde_json::json!({ "agents": agents })))
}

/// The console's live feed: the whole queue now and after every change, and
/// invitations addressed to this agent.
pub async fn console(
    ws: WebSocketUpgrade,
    State(state): State<Arc<AppState>>,
    agent: SignedInAgent,
) -> impl IntoResponse {
    ws.on_upgrade(move |socket| feed(socket, state, agent))
}

async fn feed(socket: WebSocket, state: Arc<AppState>, agent: SignedInAgent) {
    let _open = crate::metrics::ConnectionGuard::new("console");
    let (mut tx, mut rx) = socket.split();
    let mut events = state.calls.subscribe();
    let mut shutdown = state.shutdown.clone();
    let mut ping = tokio::time::interval(Duration::from_secs(20));
    state.presence.console_opened(agent.id);
    state.calls.announce(CallEvent::TeamChanged);
    let (mut send_queue, mut send_team) = (true, true);
    loop {
        if std::mem::take(&mut send_team) {
            match state.presence.team(&state.calls.store).await {
                Ok(team) => {
                    let msg =
                        serde_json::json!({ "type": "team", "agents": team, "away": state.presence.is_away(agent.id) });
                    if tx.send(Message::Text(msg.to_string().into())).await.is_err() {
                        break;
                    }
                }
                Err(e) => tracing::error!("reading the team: {e}"),
            }
        }
        if std::mem::take(&mut send_queue) {
            let queue = match state.calls.store.queue().await {
                Ok(q) => q,
                Err(e) => {
                    tracing::error!("reading the queue: {e}");
                    break;
                }
            };
            let msg = serde_json::json!({ "type": "queue", "calls": queue.iter().map(view).collect::<Vec<_>>() });
            if tx.send(Message::Text(msg.to_string().into())).await.is_err() {
                break;
            }
        }
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(CallEvent::QueueChanged) | Err(RecvError::Lagged(_)) => (send_queue, send_team) = (true, true),
                Ok(CallEvent::TeamChanged | CallEvent::CallChanged { .. }) => send_team = true,
                // Signed out here or elsewhere: the feed is for signed-in agents only.
                Ok(CallEvent::SignedOut { sid }) if sid == agent.sid => break,
                Ok(CallEvent::Invited { agent: to, call, room, customer, by }) if to == agent.id => {
                    let msg = serde_json::json!({ "type": "invite", "call": call, "room": room, "customer": customer, "by": by });
                    if tx.send(Message::Text(msg.to_string().into())).await.is_err() { break; }
                }
                Ok(_) => {}
                Err(RecvError::Closed) => break,
            },
            msg = rx.next() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {} // the feed is one-way
            },
            _ = ping.tick() => {
                // A session revoked by `switchboard agent passwd` (another
                // process) is noticed here.
                if !state.calls.store.session_live(&agent.sid, agent.id).await.unwrap_or(true) { break; }
                if tx.send(Message::Ping(Default::default())).await.is_err() { break; }
            }
            _ = shutdown.changed() => break,
        }
    }
    let _ = tx.close().await;
    state.presence.console_closed(agent.id);
    state.calls.announce(CallEvent::TeamChanged);
}

#[derive(Deserialize)]
pub struct SetStatus {
    status: String,
}

/// `POST /api/agent/status {"status": "available" | "away"}`: what the team sees.
pub async fn set_status(
    State(state): State<Arc<AppState>>,
    agent: SignedInAgent,
    Json(body): Json<SetStatus>,
) -> Result<impl IntoResponse, ApiError> {
    let away = match body.status.as_str() {
        "available" => false,
        "away" => true,
        other => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadMessage,
                format!("status {other:?}: expected \"available\" or \"away\""),
            ))
        }
    };
    state.presence.set_away(agent.id, away);
    state.calls.announce(CallEvent::TeamChanged);
    tracing::info!(agent = %agent.email, status = %body.status, "agent status");
    Ok(Json(serde_json::json!({ "status": body.status })))
}
