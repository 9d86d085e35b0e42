//! The customer's side of the call flow: start a request, watch its place
//! in the queue (server-sent events), cancel it, hang up. A customer holds
//! one token, for one call; nothing here shows the queue's other entries.

use sfu::ErrorCode;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::Json;
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;

use crate::agents::ApiError;
use crate::calls::CallEvent;
use crate::store::{now_ms, Call, CallStatus};
use crate::AppState;

#[derive(Deserialize)]
pub struct NewCall {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub topic: String,
}

#[derive(Serialize)]
struct Created<'a> {
    id: &'a str,
    room: &'a str,
    token: &'a str,
    status: CallStatus,
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(body): Json<NewCall>,
) -> Result<impl IntoResponse, ApiError> {
    state.limits.call_creation(peer.ip())?;
    if state.drain.is_draining() {
        let m = "the service is restarting; please try again in a minute";
        return Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Draining, m.into()));
    }
    let cap = state.caps.config.queued_calls;
    if state.calls.store.queued_calls().await? >= cap as i64 {
        let m = "every agent is busy and the queue is full; please try again later";
        return Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::ServerFull, m.into()));
    }
    let pass = state.calls.create(&body.name, &body.topic).await?;
    let c = &pass.call;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!(Created { id: &c.id, room: &c.room, token: &pass.token, status: c.status })),
    ))
}

/// What a waiting customer sees.
#[derive(Serialize, PartialEq)]
struct Waiting {
    status: CallStatus,
    /// 1-based place in the queue while queued.
    position: Option<i64>,
    waited_ms: i64,
    agent: Option<String>,
}

async fn waiting(state: &AppState, call: &Call) -> Result<Waiting, ApiError> {
    let position = match call.status {
        CallStatus::Queued => Some(state.calls.store.queue_position(call).await?),
        _ => None,
    };
    Ok(Waiting { status: call.status, position, waited_ms: now_ms() - call.created_at, agent: call.agent.clone() })
}

#[derive(Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

/// Server-sent events: the call's status and queue position, sent at once
/// and again on every change, until the call is over. The customer's token
/// comes in `Authorization: Bearer` (the page reads the stream with fetch);
/// one in the query is refused, since URLs get logged.
pub async fn events(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    if q.token.is_some() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadToken,
            "send the token as Authorization: Bearer, not in the URL".into(),
        ));
    }
    state.calls.call_for_token(&id, bearer(&headers).unwrap_or_default()).await?;
    let rx = state.calls.subscribe();
    let stream =
        futures_util::stream::unfold((state, id, rx, true, false), |(state, id, mut rx, first, done)| async move {
            if done {
                return None;
            }
            if !first {
                loop {
                    match rx.recv().await {
                        Ok(CallEvent::QueueChanged | CallEvent::CallChanged { .. }) | Err(RecvError::Lagged(_)) => {
                            break
                        }
                        Ok(_) => continue,
                        Err(RecvError::Closed) => return None,
                    }
                }
            }
            let call = state.calls.get(&id).await.ok()?;
            let w = waiting(&state, &call).await.ok()?;
            let over = !call.status.is_live();
            let ev = Event::default().json_data(&w).ok()?;
            Some((Ok(ev), (state, id, rx, false, over)))
        });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// `Authorization: Bearer <customer token>` for this call.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")
}

pub async fn cancel(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let token = bearer(&headers).unwrap_or_default();
    let call = state.calls.call_for_token(&id, token).await?;
    if call.status != CallStatus::Queued {
        return Err(ApiError(
            StatusCode::CONFLICT,
            ErrorCode::NotQueued,
            format!("the call is {}", call.status.as_str()),
        ));
    }
    let call = state.calls.finish(&id).await?;
    Ok(Json(serde_json::json!({ "status": call.status })))
}

/// Hang-up by the customer (bearer token) or by an agent in the call
/// (session cookie): the call ends for everyone.
pub async fn hangup(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    agent: Result<crate::agents::SignedInAgent, ApiError>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    match (bearer(&headers), agent) {
        (Some(token), _) => {
            state.calls.call_for_token(&id, token).await?;
        }
        (None, Ok(agent)) => {
            state.calls.live_call_of(&id, agent.id).await?;
        }
        (None, Err(e)) => return Err(e),
    }
    let call = state.calls.finish(&id).await?;
    state.recordings.stop(&call.room).await?;
    let duration_ms = call.accepted_at.zip(call.ended_at).map(|(a, e)| e - a);
    Ok(Json(serde_json::json!({ "status": call.status, "duration_ms": duration_ms })))
}
