//! The server API for backends: endpoints authenticated with an
//! API-key-signed token (`Authorization: Bearer …`) carrying server grants
//! (`video.roomRecord`, `video.roomAdmin`; for `video.room` only when it is
//! set), as LiveKit's server SDKs mint them. Mint one with
//! `switchboard token --record`. Documented in `docs/api.md`.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use sfu::ErrorCode;

use crate::agents::{ApiError, SignedInAgent};
use crate::auth::{AuthError, VideoGrant};
use crate::AppState;

/// The grants of the request's bearer token; 401 without a valid one,
/// 403 when it grants no server access.
pub struct ServerToken(pub VideoGrant);

impl FromRequestParts<Arc<AppState>> for ServerToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or(AuthError::Missing).map_err(refused)?;
        let claims = state.keys.verify_server(token).map_err(refused)?;
        Ok(ServerToken(claims.video))
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(str::trim)
}

fn refused(e: AuthError) -> ApiError {
    let status = match e {
        AuthError::NoServerGrant | AuthError::NoJoinGrant => StatusCode::FORBIDDEN,
        _ => StatusCode::UNAUTHORIZED,
    };
    ApiError(status, e.code(), e.to_string())
}

fn not_granted(room: &str) -> ApiError {
    ApiError(StatusCode::FORBIDDEN, ErrorCode::NotAllowed, format!("the token does not grant recording room {room:?}"))
}

/// Who may read recordings: a signed-in agent (the console), or a server
/// token granting recording of the file's room.
pub enum RecordingReader {
    Agent,
    Server(VideoGrant),
}

impl RecordingReader {
    pub fn may_read(&self, room: &str) -> bool {
        match self {
            RecordingReader::Agent => true,
            RecordingReader::Server(grant) => grant.may_record(room),
        }
    }
}

impl FromRequestParts<Arc<AppState>> for RecordingReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        if bearer(parts).is_some() {
            return Ok(RecordingReader::Server(ServerToken::from_request_parts(parts, state).await?.0));
        }
        SignedInAgent::from_request_parts(parts, state).await.map(|_| RecordingReader::Agent)
    }
}

/// `POST /api/rooms/{room}/recording`: starts recording the room (its
/// members now and whoever joins until it stops); the recording's id.
/// Already recording: that recording.
pub async fn start_recording(
    State(state): State<Arc<AppState>>,
    ServerToken(grant): ServerToken,
    Path(room): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    if !grant.may_record(&room) {
        return Err(not_granted(&room));
    }
    let id = state.recordings.start(&room, None, None).await?;
    Ok(Json(serde_json::json!({ "recording": id })))
}

/// `DELETE /api/rooms/{room}/recording`: stops it (files finish in the background).
pub async fn stop_recording(
    State(state): State<Arc<AppState>>,
    ServerToken(grant): ServerToken,
    Path(room): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    if !grant.may_record(&room) {
        return Err(not_granted(&room));
    }
    state.recordings.stop(&room).await?;
    Ok(Json(serde_json::json!({ "recording": null })))
}

/// `GET /api/rooms/{room}/recordings`: the room's recordings with their
/// files (ids for `GET /api/recordings/{file}`), newest first.
pub async fn room_recordings(
    State(state): State<Arc<AppState>>,
    ServerToken(grant): ServerToken,
    Path(room): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    if !grant.may_record(&room) {
        return Err(not_granted(&room));
    }
    let recordings = state.recordings.of_room(&room).await?;
    Ok(Json(
        serde_json::json!({ "room": room, "recording": state.recordings.current(&room), "recordings": recordings }),
    ))
}
