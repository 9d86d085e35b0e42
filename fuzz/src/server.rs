//! The real signalling server (its router, its media plane with one shard,
//! a SQLite store in a temporary directory), started once per fuzz process
//! on loopback. Caps and rate limits are lifted so that every input reaches
//! the code behind them; dropped connections leave at once (no resume
//! grace), so inputs do not pile up sessions.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use signalling::auth::Keys;
use signalling::caps::CapsConfig;
use signalling::ice_servers::{IceServers, TurnAuth};
use signalling::{AppState, Server};
use tokio::runtime::Runtime;
use tower::ServiceExt;

pub const KEY: &str = "fuzzkey";
pub const SECRET: &str = "fuzz-secret-fuzz-secret-fuzz-secret";
pub const AGENT_EMAIL: &str = "agent@example.com";
pub const AGENT_PASSWORD: &str = "fuzz-password";
/// The address requests come from (the router reads it for rate limits).
pub const CLIENT: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 40_000);

pub struct Served {
    pub rt: Runtime,
    /// `ws://…/ws` of the listening server.
    pub ws_url: String,
    /// The same server's routes, for in-process requests.
    pub router: axum::Router,
    pub state: Arc<AppState>,
    pub keys: Keys,
    /// `sb_session=…` of a signed-in agent.
    pub agent_cookie: String,
}

pub fn get() -> &'static Served {
    static SERVED: OnceLock<Served> = OnceLock::new();
    SERVED.get_or_init(start)
}

fn start() -> Served {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let keys = Keys::single(KEY, SECRET);
    let (ws_url, router, state) = rt.block_on(async {
        let store = signalling::store::Store::open(dir.path()).await.expect("the store opens");
        let hash = signalling::agents::hash_password(AGENT_PASSWORD).expect("a hash");
        store.add_agent(AGENT_EMAIL, Some("Agent"), &hash).await.expect("an agent");
        let sfu = sfu::SfuConfig {
            shards: 1,
            udp_bind: vec![[127, 0, 0, 1].into()],
            udp_port: 0,
            public_ip: vec![],
            room_spill_at: sfu::DEFAULT_SPILL_AT,
            tcp_port: None,
            recordings_dir: Some(dir.path().join("recordings")),
            participant_limits: Default::default(),
        };
        let lifted = CapsConfig {
            connections_per_ip: 100_000,
            messages_per_second: 1_000_000,
            joins_per_second_per_ip: 1_000_000,
            queued_calls: 1_000_000,
            participants: 100_000,
            rooms: 100_000,
            ..CapsConfig::default()
        };
        let flow = signalling::FlowConfig {
            store,
            queue_timeout: Duration::from_secs(600),
            calls_per_minute: 1_000_000,
            resume_grace: Duration::ZERO,
            logins_per_minute: 1_000_000,
            secure_cookies: false,
            record_calls: false,
            recording_retention: None,
            frame_ancestors: vec!["'self'".into()],
            metrics_token: None,
            caps: lifted,
        };
        let ice = IceServers::new(vec![], TurnAuth::None).expect("no ICE servers");
        let server = Server::new(sfu, keys.clone(), ice, flow).expect("the server starts");
        let state = server.state.clone();
        let router = signalling::http::router(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let addr = listener.local_addr().expect("its address");
        tokio::spawn(server.run(listener, std::future::pending()));
        (format!("ws://{addr}/ws"), router, state)
    });
    std::mem::forget(dir); // lives as long as the fuzz process
    let login = Request::post("/api/agent/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(format!(r#"{{"email":"{AGENT_EMAIL}","password":"{AGENT_PASSWORD}"}}"#)))
        .expect("a request");
    let res = rt.block_on(request(&router, login));
    assert_eq!(res.status(), StatusCode::OK, "the agent signs in");
    let cookie =
        res.headers()[header::SET_COOKIE].to_str().expect("text").split(';').next().expect("a cookie").to_owned();
    Served { rt, ws_url, router, state, keys, agent_cookie: cookie }
}

/// One request through the router, from [`CLIENT`].
pub async fn request(router: &axum::Router, mut req: Request<Body>) -> axum::response::Response {
    req.extensions_mut().insert(ConnectInfo(CLIENT));
    router.clone().oneshot(req).await.expect("the router is infallible")
}
