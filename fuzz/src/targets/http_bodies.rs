//! The call-flow, agent and server HTTP APIs through the real router (the
//! same one the server serves; store, calls and media plane real): a
//! sequence of requests with JSON bodies of any shape (the fields each
//! endpoint reads, of any type), raw bytes, wrong content types, made-up
//! call and recording ids, and no, garbage or a signed-in agent's
//! credentials. A bad request gets a 4xx with a reason; a 5xx (an error
//! the server did not expect) or a panic is a bug.

use crate::json::{object, Json};
use crate::server;
use arbitrary::{Arbitrary, Unstructured};
use axum::body::Body;
use axum::http::{header, Method, Request};
use serde_json::Value;

#[derive(Arbitrary, Debug)]
pub struct Req {
    endpoint: Endpoint,
    auth: Auth,
    body: BodyKind,
    /// The call the path names: one this input created, or any text.
    call: CallRef,
    json_content_type: bool,
}

#[derive(Arbitrary, Debug)]
pub enum Endpoint {
    CreateCall,
    Cancel,
    Hangup,
    Me,
    Queue,
    History(String),
    Agents,
    Status,
    Accept,
    Invite,
    Join,
    Record,
    Recording(String),
    StartRoomRecording(String),
    StopRoomRecording(String),
    RoomRecordings(String),
    Config,
    /// Rarely (argon2 is slow on purpose): signing in.
    Login(u8),
}

#[derive(Arbitrary, Debug)]
pub enum Auth {
    None,
    Agent,
    Cookie(String),
    Bearer(String),
}

#[derive(Arbitrary, Debug)]
pub enum CallRef {
    Created(u8),
    Any(String),
}

#[derive(Debug)]
pub enum BodyKind {
    Fields(serde_json::Map<String, Value>),
    Json(Value),
    Raw(Vec<u8>),
    Empty,
}

impl<'a> Arbitrary<'a> for BodyKind {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        const KNOWN: &[&str] = &["name", "topic", "email", "password", "status", "on"];
        Ok(match u.int_in_range(0..=3)? {
            0 => BodyKind::Fields(object(u, 1, KNOWN)?),
            1 => BodyKind::Json(Json::arbitrary(u)?.0),
            2 => BodyKind::Raw(u.arbitrary()?),
            _ => BodyKind::Empty,
        })
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// What one run does, in order.
pub type Input = Vec<Req>;

pub fn run(reqs: Input) {
    let s = server::get();
    s.rt.block_on(async {
        let mut created: Vec<String> = Vec::new();
        for r in reqs.iter().take(8) {
            let call = match &r.call {
                CallRef::Created(i) if !created.is_empty() => created[*i as usize % created.len()].clone(),
                CallRef::Created(_) => "none".into(),
                CallRef::Any(s) => encode(s),
            };
            let (method, path) = match &r.endpoint {
                Endpoint::CreateCall => (Method::POST, "/api/calls".to_string()),
                Endpoint::Cancel => (Method::POST, format!("/api/calls/{call}/cancel")),
                Endpoint::Hangup => (Method::POST, format!("/api/calls/{call}/hangup")),
                Endpoint::Me => (Method::GET, "/api/agent/me".into()),
                Endpoint::Queue => (Method::GET, "/api/agent/queue".into()),
                Endpoint::History(q) => (Method::GET, format!("/api/agent/history?{}", q.replace(['#', ' '], ""))),
                Endpoint::Agents => (Method::GET, "/api/agent/agents".into()),
                Endpoint::Status => (Method::POST, "/api/agent/status".into()),
                Endpoint::Accept => (Method::POST, format!("/api/calls/{call}/accept")),
                Endpoint::Invite => (Method::POST, format!("/api/calls/{call}/invite")),
                Endpoint::Join => (Method::POST, format!("/api/calls/{call}/join")),
                Endpoint::Record => (Method::POST, format!("/api/calls/{call}/record")),
                Endpoint::Recording(id) => (Method::GET, format!("/api/recordings/{}", encode(id))),
                Endpoint::StartRoomRecording(room) => (Method::POST, format!("/api/rooms/{}/recording", encode(room))),
                Endpoint::StopRoomRecording(room) => (Method::DELETE, format!("/api/rooms/{}/recording", encode(room))),
                Endpoint::RoomRecordings(room) => (Method::GET, format!("/api/rooms/{}/recordings", encode(room))),
                Endpoint::Config => (Method::GET, "/api/config".into()),
                Endpoint::Login(0xA5) => (Method::POST, "/api/agent/login".into()),
                Endpoint::Login(_) => (Method::GET, "/api/agent/me".into()),
            };
            let mut req = Request::builder().method(method).uri(path.as_str());
            if r.json_content_type {
                req = req.header(header::CONTENT_TYPE, "application/json");
            }
            req = match &r.auth {
                Auth::None => req,
                Auth::Agent => req.header(header::COOKIE, &s.agent_cookie),
                Auth::Cookie(c) => req.header(header::COOKIE, format!("sb_session={}", encode(c))),
                Auth::Bearer(t) => req.header(header::AUTHORIZATION, format!("Bearer {}", encode(t))),
            };
            let body = match &r.body {
                BodyKind::Fields(m) => Body::from(Value::Object(m.clone()).to_string()),
                BodyKind::Json(v) => Body::from(v.to_string()),
                BodyKind::Raw(b) => Body::from(b.clone()),
                BodyKind::Empty => Body::empty(),
            };
            let Ok(req) = req.body(body) else { continue };
            let res = server::request(&s.router, req).await;
            let status = res.status();
            assert!(!status.is_server_error(), "{path} answered {status}");
            if matches!(r.endpoint, Endpoint::CreateCall) && status.is_success() {
                let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.expect("a body");
                let v: Value = serde_json::from_slice(&bytes).expect("JSON");
                created.push(v["id"].as_str().expect("an id").to_owned());
            }
        }
    });
}
