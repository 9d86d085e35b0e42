//! HTTP routes: the pages (embedded, no build step), the room WebSocket,
//! the call flow's API and health.

use std::sync::Arc;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State, WebSocketUpgrade};
use axum::http::header;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use subtle::ConstantTimeEq;

use crate::AppState;

use crate::{agent_api, customer_api, server_api};

const CUSTOMER_HTML: &str = include_str!("../static/index.html");
const AGENT_HTML: &str = include_str!("../static/agent.html");
const ROOM_HTML: &str = include_str!("../static/room.html");
const STYLE_CSS: &str = include_str!("../static/style.css");
const FAVICON_SVG: &str = include_str!("../static/favicon.svg");
/// The client SDK (an ES module): the pages are built on it, and other
/// apps load it from any origin (it is public code; the token a page joins
/// with is the credential, and the WebSocket takes any origin).
const SDK_JS: &str = include_str!("../static/switchboard-client.js");
/// The pages' scripts (ES modules): `call.js` is the in-call view all pages
/// share, `page.js` their helpers.
const SCRIPTS: &[(&str, &str)] = &[
    ("call.js", include_str!("../static/call.js")),
    ("page.js", include_str!("../static/page.js")),
    ("room.js", include_str!("../static/room.js")),
    ("customer.js", include_str!("../static/customer.js")),
    ("agent.js", include_str!("../static/agent.js")),
];

/// WebSocket frames above this are refused by the transport itself; the
/// protocol's own, smaller limit is checked per message with a clear error.
const WS_TRANSPORT_LIMIT: usize = 1 << 20;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(CUSTOMER_HTML) }))
        .route("/agent", get(|| async { Html(AGENT_HTML) }))
        .route("/room/{room}", get(|| async { Html(ROOM_HTML) }))
        .route("/static/style.css", get(|| async { ([(header::CONTENT_TYPE, "text/css")], STYLE_CSS) }))
        .route("/static/{script}", get(script))
        .route("/sdk/switchboard-client.js", get(sdk))
        // Browsers ask for /favicon.ico whatever the pages link.
        .route("/favicon.ico", get(|| async { ([(header::CONTENT_TYPE, "image/svg+xml")], FAVICON_SVG) }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/ws", get(ws_upgrade))
        // Customers.
        .route("/api/calls", post(customer_api::create))
        .route("/api/calls/{id}/events", get(customer_api::events))
        .route("/api/calls/{id}/cancel", post(customer_api::cancel))
        .route("/api/calls/{id}/hangup", post(customer_api::hangup))
        // Agents.
        .route("/api/agent/login", post(agent_api::login))
        .route("/api/agent/logout", post(agent_api::logout))
        .route("/api/agent/me", get(agent_api::me))
        .route("/api/agent/console", get(agent_api::console))
        .route("/api/agent/queue", get(agent_api::queue))
        .route("/api/agent/history", get(agent_api::history))
        .route("/api/agent/agents", get(agent_api::list_agents))
        .route("/api/agent/status", post(agent_api::set_status))
        .route("/api/calls/{id}/accept", post(agent_api::accept))
        .route("/api/calls/{id}/invite", post(agent_api::invite))
        .route("/api/calls/{id}/join", post(agent_api::join))
        .route("/api/calls/{id}/record", post(agent_api::record))
        .route("/api/recordings/{id}", get(agent_api::recording_file))
        .route("/api/rooms/{room}/recording", post(server_api::start_recording).delete(server_api::stop_recording))
        .route("/api/rooms/{room}/recordings", get(server_api::room_recordings))
        .route("/api/config", get(page_config))
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::headers::add))
        .with_state(state)
}

/// What the pages need to know before a call: whether calls are recorded.
/// Whether to send this server new rooms and calls: not while it drains
/// (`/healthz` says only that the process is alive).
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.drain.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining").into_response()
    } else {
        "ready".into_response()
    }
}

async fn page_config(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    axum::Json(serde_json::json!({ "record_calls": state.recordings.record_calls && state.recordings.enabled() }))
}

async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(token) = &state.metrics_token {
        let given =
            headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        // Compared in constant time: the token is a password.
        if !given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(token.as_bytes()))) {
            let challenge = [(header::WWW_AUTHENTICATE, "Bearer")];
            return (StatusCode::UNAUTHORIZED, challenge, "metrics need the metrics token\n").into_response();
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}

async fn script(Path(name): Path<String>) -> impl IntoResponse {
    match SCRIPTS.iter().find(|(n, _)| *n == name) {
        Some((_, js)) => ([(header::CONTENT_TYPE, "text/javascript")], *js).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn sdk() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript"), (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")], SDK_JS)
}

async fn ws_upgrade(
    ws: WebSocketUpgrade,
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> impl IntoResponse {
    // Over the cap the connection is still upgraded, to tell the client why
    // (a browser cannot read a refused upgrade's status).
    let held = state.caps.connect(peer.ip());
    ws.max_message_size(WS_TRANSPORT_LIMIT)
        .max_frame_size(WS_TRANSPORT_LIMIT)
        .on_upgrade(move |socket| crate::ws::session(socket, state, peer.ip(), held))
}
