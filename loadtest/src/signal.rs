//! What a peer's media loop exchanges with its server's signalling, whatever
//! the server: switchboard's WebSocket ([`crate::switchboard`]) or Janus'
//! HTTP API ([`crate::janus`]). A signaller task translates both ways.

use tokio::sync::mpsc;

#[derive(Debug)]
pub enum FromServer {
    Offer(String),
    Answer(String),
    /// The server ended the session (reason).
    Closed(String),
}

#[derive(Debug)]
pub enum ToServer {
    Offer(String),
    Answer(String),
    Leave,
    /// Drop the connection without a goodbye (no leave, no close frame),
    /// as a client that crashed or lost its network.
    Vanish,
}

/// Joining a server: resolves to the media loop's ends once joined.
pub type Connect = std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<Signaller>> + Send>>;

/// The media loop's ends of a signalling session.
pub struct Signaller {
    pub to_server: mpsc::Sender<ToServer>,
    pub from_server: mpsc::Receiver<FromServer>,
}

/// The signaller task's ends.
pub struct ServerSide {
    pub to_peer: mpsc::Sender<FromServer>,
    pub from_peer: mpsc::Receiver<ToServer>,
}

pub fn pair() -> (Signaller, ServerSide) {
    let (to_server, from_peer) = mpsc::channel(16);
    let (to_peer, from_server) = mpsc::channel(16);
    (Signaller { to_server, from_server }, ServerSide { to_peer, from_peer })
}
