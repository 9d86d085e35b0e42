//! HTTP routes: the pages (embedded, no build step), the WebSocket endpoint
//! and health.

use std::sync::Arc;

use axum::extract::{State, WebSocketUpgrade};
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;

use crate::AppState;

const INDEX_HTML: &str = include_str!("../static/index.html");
const ROOM_HTML: &str = include_str!("../static/room.html");
const ROOM_JS: &str = include_str!("../static/room.js");
const STYLE_CSS: &str = include_str!("../static/style.css");

/// WebSocket frames above this are refused by the transport itself; the
/// protocol's own, smaller limit is checked per message with a clear error.
const WS_TRANSPORT_LIMIT: usize = 1 << 20;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(INDEX_HTML) }))
        .route("/room/{room}", get(|| async { Html(ROOM_HTML) }))
        .route("/static/room.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], ROOM_JS) }))
        .route("/static/style.css", get(|| async { ([(header::CONTENT_TYPE, "text/css")], STYLE_CSS) }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/ws", get(ws_upgrade))
        .with_state(state)
}

async fn ws_upgrade(ws: WebSocketUpgrade, State(state): State<Arc<AppState>>) -> impl IntoResponse {
    ws.max_message_size(WS_TRANSPORT_LIMIT)
        .max_frame_size(WS_TRANSPORT_LIMIT)
        .on_upgrade(move |socket| crate::ws::session(socket, state))
}
