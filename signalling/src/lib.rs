//! Switchboard's control plane: HTTP + WebSocket signalling in front of the
//! `sfu` media plane.
//!
//! # Layout
//! - [`auth`]: access tokens (JWT grants) and API keys.
//! - [`protocol`]: the JSON messages of the signalling protocol.
//! - [`ws`]: one signalling session per WebSocket.
//! - [`http`]: routes and embedded pages.
//! - [`metrics`]: `/metrics` for Prometheus.
//! - [`sink`]: hands media-plane events to the right session.
//! - [`store`]: SQLite records (agents, call requests, invitations).
//! - [`calls`]: the call flow's rules; [`customer_api`] and [`agent_api`]
//!   are its HTTP faces, [`agents`] signs agents in, [`ratelimit`] limits.
//! - [`ice_servers`]: STUN/TURN servers and per-participant TURN credentials.
//! - [`tls`]: HTTPS/WSS without a proxy.
//! - [`config`]: command-line flags, [`config_file`] the same from a file;
//!   `main.rs` wires it all up.
//! - [`drain`]: a stop that lets the calls in progress end first.

pub mod agent_api;
pub mod agents;
pub mod auth;
pub mod calls;
pub mod caps;
pub mod config;
pub mod config_file;
pub mod customer_api;
pub mod drain;
pub mod headers;
pub mod heap;
pub mod http;
pub mod ice_servers;
pub mod metrics;
pub mod presence;
pub mod protocol;
pub mod ratelimit;
pub mod recordings;
pub mod resume;
pub mod server_api;
pub mod sink;
pub mod store;
pub mod tls;
pub mod ws;

use std::future::Future;
use std::sync::Arc;

use sfu::Sfu;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Everything a request handler needs.
pub struct AppState {
    pub sfu: Sfu,
    pub clients: Arc<sink::Clients>,
    pub keys: auth::Keys,
    pub ice_servers: ice_servers::IceServers,
    /// Flips to true when the server is stopping; sessions tell their clients.
    pub shutdown: watch::Receiver<bool>,
    pub calls: calls::Calls,
    pub limits: ratelimit::Limits,
    /// Mark the session cookie `Secure` (when served over HTTPS).
    pub secure_cookies: bool,
    pub metrics: metrics::Metrics,
    /// Signalling sessions by resume token.
    pub sessions: resume::Sessions,
    /// How long a session whose connection dropped waits for a resume.
    pub resume_grace: std::time::Duration,
    pub recordings: Arc<recordings::Recordings>,
    /// Which agents can take calls now.
    pub presence: presence::Presence,
    /// Recordings older than this are deleted.
    pub recording_retention: Option<std::time::Duration>,
    /// The pages' Content-Security-Policy (see `headers`).
    pub page_policy: axum::http::HeaderValue,
    /// Connections, participants and rooms held, against their caps.
    pub caps: Arc<caps::Caps>,
    pub metrics_token: Option<String>,
    /// Set once a stop signal starts the drain (see [`drain`]).
    pub drain: drain::Drain,
}

/// The call flow's settings.
pub struct FlowConfig {
    pub store: store::Store,
    /// A queued call nobody accepted within this is marked missed.
    pub queue_timeout: std::time::Duration,
    pub calls_per_minute: u32,
    pub logins_per_minute: u32,
    pub secure_cookies: bool,
    /// How long a session whose WebSocket dropped waits for the client to
    /// resume it before the participant leaves.
    pub resume_grace: std::time::Duration,
    /// Record every accepted call (recording needs the media plane's
    /// `recordings_dir`).
    pub record_calls: bool,
    pub recording_retention: Option<std::time::Duration>,
    /// Who may show the pages in a frame (CSP `frame-ancestors` sources).
    pub frame_ancestors: Vec<String>,
    /// What `/metrics` asks for as a bearer token; open when `None`.
    pub metrics_token: Option<String>,
    pub caps: caps::CapsConfig,
}

/// A running server's parts, for `main` and for tests.
pub struct Server {
    pub state: Arc<AppState>,
    shutdown_tx: watch::Sender<bool>,
    recording_events: tokio::sync::mpsc::UnboundedReceiver<sfu::RecordingEvent>,
}

impl Server {
    /// Starts the media plane with `sfu_config` and builds the state.
    pub fn new(
        sfu_config: sfu::SfuConfig,
        keys: auth::Keys,
        ice_servers: ice_servers::IceServers,
        flow: FlowConfig,
    ) -> std::io::Result<Server> {
        let clients = Arc::new(sink::Clients::default());
        let (recording_tx, recording_events) = tokio::sync::mpsc::unbounded_channel();
        clients.follow_recordings(recording_tx);
        let recordings_dir = sfu_config.recordings_dir.clone();
        let sfu = Sfu::start(sfu_config, clients.clone())?;
        let recordings =
            recordings::Recordings::new(flow.store.clone(), sfu.clone(), recordings_dir, flow.record_calls);
        let (shutdown_tx, shutdown) = watch::channel(false);
        let calls = calls::Calls::new(flow.store, keys.clone(), flow.queue_timeout);
        let limits = ratelimit::Limits::new(flow.calls_per_minute, flow.logins_per_minute);
        let secure_cookies = flow.secure_cookies;
        let metrics = metrics::Metrics::new(sfu.clone());
        let page_policy = headers::content_security_policy(&flow.frame_ancestors)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let state = AppState {
            sfu,
            clients,
            keys,
            ice_servers,
            shutdown,
            calls,
            limits,
            secure_cookies,
            metrics,
            sessions: resume::Sessions::default(),
            resume_grace: flow.resume_grace,
            recordings: Arc::new(recordings),
            presence: presence::Presence::default(),
            recording_retention: flow.recording_retention,
            page_policy,
            caps: caps::Caps::new(flow.caps),
            metrics_token: flow.metrics_token,
            drain: drain::Drain::default(),
        };
        Ok(Server { state: Arc::new(state), shutdown_tx, recording_events })
    }

    /// Serves HTTP on `listener` until `signal` resolves, then tells every
    /// client, drains connections and stops the media plane.
    pub async fn run(
        self,
        listener: TcpListener,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.run_on(listener, None, signal).await
    }

    /// [`Server::run`], over TLS (HTTPS and WSS) when `tls` is given.
    pub async fn run_on(
        self,
        listener: TcpListener,
        tls: Option<axum_server::tls_rustls::RustlsConfig>,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = http::router(self.state.clone());
        match self.state.recordings.mark_interrupted().await {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!("{n} recording(s) were interrupted by the last stop; they play up to where they got")
            }
            Err(e) => tracing::error!("marking interrupted recordings: {e}"),
        }
        let follower = tokio::spawn(recordings::follow(self.state.recordings.clone(), self.recording_events));
        let tx = self.shutdown_tx;
        let mut done = self.state.shutdown.clone();
        let graceful = async move {
            signal.await;
            tracing::info!("shutting down");
            let _ = tx.send(true);
        };
        let housekeeping = tokio::spawn(housekeeping(self.state.clone()));
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        // Sessions close within a round trip; don't let a stuck one hold the exit.
        let drained = async {
            let _ = done.wait_for(|v| *v).await;
            tokio::time::sleep(std::time::Duration::from_secs(5)).await
        };
        let res = match tls {
            None => {
                let serve = axum::serve(listener, app).with_graceful_shutdown(graceful);
                tokio::select! { r = serve => r, _ = drained => Ok(()) }
            }
            Some(config) => {
                let handle = axum_server::Handle::new();
                let stopper = handle.clone();
                tokio::spawn(async move {
                    graceful.await;
                    stopper.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
                });
                let serve = axum_server::from_tcp_rustls(listener.into_std()?, config).handle(handle).serve(app);
                tokio::select! { r = serve => r, _ = drained => Ok(()) }
            }
        };
        housekeeping.abort();
        // Joins the recorder too: every file is finished, and its last
        // report kept before we exit.
        let sfu = self.state.sfu.clone();
        let _ = tokio::task::spawn_blocking(move || sfu.shutdown()).await;
        self.state.clients.stop_following_recordings();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), follower).await;
        if let Err(e) = self.state.recordings.finish_all().await {
            tracing::error!("closing recordings: {e}");
        }
        res
    }
}

/// Periodic chores: queued calls time out into "missed"; idle rate-limit
/// entries are forgotten.
async fn housekeeping(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    for n in 0u64.. {
        tick.tick().await;
        state.calls.sweep_missed().await;
        if n % 60 == 0 {
            state.limits.forget_idle();
            state.caps.forget_idle();
        }
        if n % 3600 == 0 {
            if let Err(e) = state.calls.store.forget_old_sessions().await {
                tracing::error!("forgetting old agent sessions: {e}");
            }
        }
        if let Some(retention) = state.recording_retention.filter(|_| n % 600 == 0) {
            if let Err(e) = state.recordings.expire(retention).await {
                tracing::error!("deleting old recordings: {e}");
            }
        }
    }
}
