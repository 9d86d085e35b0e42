//! Switchboard's signalling for a synthetic peer: join with a token over
//! `/ws`, then relay offers and answers (docs/protocol.md).

use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

use crate::signal::{pair, FromServer, Signaller, ToServer};

const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Joins with `token`; returns once the server said `joined`.
pub async fn connect(ws_url: String, token: String) -> anyhow::Result<Signaller> {
    let (mut ws, _) = timeout(JOIN_TIMEOUT, tokio_tungstenite::connect_async(&ws_url))
        .await
        .context("signalling did not answer in time")?
        .with_context(|| format!("connecting to {ws_url}"))?;
    send(&mut ws, json!({ "type": "join", "token": token })).await?;
    let joined = timeout(JOIN_TIMEOUT, next_json(&mut ws)).await.context("no answer to join")??;
    match joined["type"].as_str() {
        Some("joined") => {}
        Some("closed") => bail!("join refused: {} ({})", joined["message"], joined["code"]),
        _ => bail!("unexpected first message {joined}"),
    }
    let (peer, mut server) = pair();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                msg = server.from_peer.recv() => {
                    let v = match msg {
                        Some(ToServer::Offer(sdp)) => json!({ "type": "offer", "sdp": sdp, "tracks": [] }),
                        Some(ToServer::Answer(sdp)) => json!({ "type": "answer", "sdp": sdp }),
                        // Dropping the socket: the TCP connection ends, no close frame.
                        Some(ToServer::Vanish) => return,
                        Some(ToServer::Leave) | None => {
                            let _ = send(&mut ws, json!({ "type": "leave" })).await;
                            let _ = ws.close(None).await;
                            return;
                        }
                    };
                    if send(&mut ws, v).await.is_err() { return; }
                }
                msg = next_json(&mut ws) => {
                    let out = match msg {
                        Ok(m) => match m["type"].as_str() {
                            Some("offer") => FromServer::Offer(m["sdp"].as_str().unwrap_or_default().into()),
                            Some("answer") => FromServer::Answer(m["sdp"].as_str().unwrap_or_default().into()),
                            Some("closed") => FromServer::Closed(format!("{} ({})", m["message"], m["code"])),
                            Some("error") => {
                                tracing::warn!("server error: {m}");
                                continue;
                            }
                            _ => continue,
                        },
                        Err(e) => FromServer::Closed(format!("{e:#}")),
                    };
                    let closed = matches!(out, FromServer::Closed(_));
                    if server.to_peer.send(out).await.is_err() || closed { return; }
                }
            }
        }
    });
    Ok(peer)
}

async fn send(ws: &mut Ws, v: Value) -> anyhow::Result<()> {
    ws.send(Message::Text(v.to_string().into())).await.context("signalling send")
}

/// The next JSON text message; pings are answered by tungstenite itself.
async fn next_json(ws: &mut Ws) -> anyhow::Result<Value> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t)?),
            Some(Ok(Message::Close(_))) | None => bail!("signalling connection closed"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e).context("signalling"),
        }
    }
}
