//! Switchboard's control plane: HTTP + WebSocket signalling in front of the
//! `sfu` media plane.
//!
//! # Layout
//! - [`auth`]: access tokens (JWT grants) and API keys.
//! - [`protocol`]: the JSON messages of the signalling protocol.
//! - [`ws`]: one signalling session per WebSocket.
//! - [`http`]: routes and embedded pages.
//! - [`sink`]: hands media-plane events to the right session.
//! - [`config`]: command-line flags; `main.rs` wires it all up.

pub mod auth;
pub mod config;
pub mod http;
pub mod protocol;
pub mod sink;
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
    pub ice_servers: Vec<protocol::IceServer>,
    /// Flips to true when the server is stopping; sessions tell their clients.
    pub shutdown: watch::Receiver<bool>,
}

/// A running server's parts, for `main` and for tests.
pub struct Server {
    pub state: Arc<AppState>,
    shutdown_tx: watch::Sender<bool>,
}

impl Server {
    /// Starts the media plane with `sfu_config` and builds the state.
    pub fn new(sfu_config: sfu::SfuConfig, keys: auth::Keys, ice_servers: Vec<protocol::IceServer>) -> std::io::Result<Server> {
        let clients = Arc::new(sink::Clients::default());
        let sfu = Sfu::start(sfu_config, clients.clone())?;
        let (shutdown_tx, shutdown) = watch::channel(false);
        Ok(Server { state: Arc::new(AppState { sfu, clients, keys, ice_servers, shutdown }), shutdown_tx })
    }

    /// Serves HTTP on `listener` until `signal` resolves, then tells every
    /// client, drains connections and stops the media plane.
    pub async fn run(self, listener: TcpListener, signal: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let app = http::router(self.state.clone());
        let tx = self.shutdown_tx;
        let mut done = self.state.shutdown.clone();
        let graceful = async move {
            signal.await;
            tracing::info!("shutting down");
            let _ = tx.send(true);
        };
        let serve = axum::serve(listener, app).with_graceful_shutdown(graceful);
        // Sessions close within a round trip; don't let a stuck one hold the exit.
        let res = tokio::select! {
            r = serve => r,
            _ = async { let _ = done.wait_for(|v| *v).await; tokio::time::sleep(std::time::Duration::from_secs(5)).await } => Ok(()),
        };
        self.state.sfu.shutdown();
        res
    }
}
