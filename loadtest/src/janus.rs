//! Janus VideoRoom as a load target, over Janus' HTTP API: a session and a
//! videoroom handle per PeerConnection, events by long poll. In VideoRoom a
//! participant that sends and receives has two PeerConnections: a publisher
//! (joins, publishes with our offer) and a subscriber (joins with the other
//! publishers' feeds, answers Janus' offer).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::signal::{pair, FromServer, Signaller, ToServer};

const PLUGIN: &str = "janus.plugin.videoroom";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a subscriber waits for the publisher to appear.
const PUBLISHER_WAIT: Duration = Duration::from_secs(20);

#[derive(Clone)]
struct Handle {
    http: reqwest::Client,
    base: String,
    session: u64,
    handle: u64,
}

fn http() -> anyhow::Result<reqwest::Client> {
    // Long polls last up to 30 s on Janus' side.
    Ok(reqwest::Client::builder().timeout(Duration::from_secs(40)).build()?)
}

fn transaction() -> String {
    format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()))
}

async fn post(http: &reqwest::Client, url: &str, mut body: Value) -> anyhow::Result<Value> {
    body["transaction"] = json!(transaction());
    let v: Value = tokio::time::timeout(REQUEST_TIMEOUT, async {
        http.post(url).json(&body).send().await?.error_for_status()?.json().await
    })
    .await
    .with_context(|| format!("Janus did not answer {url} in time"))?
    .with_context(|| format!("Janus request to {url}"))?;
    if v["janus"] == "error" {
        bail!("Janus refused {}: {}", body["janus"], v["error"]);
    }
    Ok(v)
}

impl Handle {
    /// A new session with a videoroom handle.
    async fn open(base: &str) -> anyhow::Result<Handle> {
        let http = http()?;
        let base = base.trim_end_matches('/').to_string();
        let s = post(&http, &base, json!({ "janus": "create" })).await?;
        let session = s["data"]["id"].as_u64().context("no session id")?;
        let h = post(&http, &format!("{base}/{session}"), json!({ "janus": "attach", "plugin": PLUGIN })).await?;
        let handle = h["data"]["id"].as_u64().context("no handle id")?;
        Ok(Handle { http, base, session, handle })
    }

    /// A plugin request; synchronous ones answer in `plugindata.data`.
    async fn message(&self, body: Value, jsep: Option<Value>) -> anyhow::Result<Value> {
        let mut msg = json!({ "janus": "message", "body": body });
        if let Some(j) = jsep {
            msg["jsep"] = j;
        }
        let v = post(&self.http, &format!("{}/{}/{}", self.base, self.session, self.handle), msg).await?;
        if let Some(err) = v["plugindata"]["data"]["error"].as_str() {
            bail!("videoroom: {err}");
        }
        Ok(v["plugindata"]["data"].clone())
    }

    /// Our candidates are in the SDP; tell Janus there are no more.
    async fn end_of_candidates(&self) -> anyhow::Result<()> {
        let url = format!("{}/{}/{}", self.base, self.session, self.handle);
        post(&self.http, &url, json!({ "janus": "trickle", "candidate": { "completed": true } })).await.map(|_| ())
    }

    /// The next events of the session (long poll).
    async fn events(&self) -> anyhow::Result<Vec<Value>> {
        let url = format!("{}/{}?maxev=10", self.base, self.session);
        let v: Value = self.http.get(&url).send().await?.error_for_status()?.json().await?;
        Ok(match v {
            Value::Array(a) => a,
            other => vec![other],
        })
    }

    async fn destroy(&self) {
        let _ = post(&self.http, &format!("{}/{}", self.base, self.session), json!({ "janus": "destroy" })).await;
    }
}

/// Creates videoroom `room` for up to `publishers` publishers.
pub async fn create_room(base: &str, room: u64, publishers: u32) -> anyhow::Result<()> {
    let h = Handle::open(base).await.with_context(|| format!("is Janus running at {base}?"))?;
    let r = h
        .message(
            json!({ "request": "create", "room": room, "publishers": publishers, "bitrate": 0,
                    "audiocodec": "opus", "videocodec": "vp8", "notify_joining": false }),
            None,
        )
        .await;
    h.destroy().await;
    r.map(|_| ())
}

/// A publisher: joins `room` and publishes with the peer's offer.
pub async fn publisher(base: String, room: u64, display: String) -> anyhow::Result<Signaller> {
    let h = Handle::open(&base).await?;
    h.message(json!({ "request": "join", "ptype": "publisher", "room": room, "display": display }), None).await?;
    // Our offer goes with the publish request.
    Ok(relay(h, |msg| match msg {
        ToServer::Offer(sdp) => Some((
            json!({ "request": "publish", "audio": true, "video": true }),
            json!({ "type": "offer", "sdp": sdp }),
        )),
        _ => None,
    }))
}

/// A subscriber to the `feeds` publishers of `room` other than `own`
/// (display name): waits until they all publish, then Janus offers, we answer.
pub async fn subscriber(base: String, room: u64, own: String, feeds: usize) -> anyhow::Result<Signaller> {
    let h = Handle::open(&base).await?;
    let deadline = Instant::now() + PUBLISHER_WAIT;
    let streams = loop {
        let list = h.message(json!({ "request": "listparticipants", "room": room }), None).await?;
        let others: Vec<Value> = list["participants"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|p| p["publisher"] == true && p["display"] != own.as_str())
                    .map(|p| json!({ "feed": p["id"] }))
                    .collect()
            })
            .unwrap_or_default();
        if others.len() >= feeds {
            break others;
        }
        if Instant::now() > deadline {
            bail!("only {} of {feeds} publishers appeared in Janus room {room}", others.len());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    h.message(json!({ "request": "join", "ptype": "subscriber", "room": room, "streams": streams }), None).await?;
    // Our answer to Janus' offer goes with the start request.
    Ok(relay(h, |msg| match msg {
        ToServer::Answer(sdp) => Some((json!({ "request": "start" }), json!({ "type": "answer", "sdp": sdp }))),
        _ => None,
    }))
}

/// Runs a handle's signalling: events go to the peer; the peer's offers or
/// answers become the plugin requests `request` makes of them (with the
/// JSEP), followed by end-of-candidates. Leave or an error ends the session.
fn relay(h: Handle, request: impl Fn(ToServer) -> Option<(Value, Value)> + Send + 'static) -> Signaller {
    let (peer, mut server) = pair();
    let poller = spawn_events(h.clone(), server.to_peer.clone());
    tokio::spawn(async move {
        while let Some(msg) = server.from_peer.recv().await {
            if matches!(msg, ToServer::Leave | ToServer::Vanish) {
                break;
            }
            let Some((body, jsep)) = request(msg) else { continue };
            let r = match h.message(body, Some(jsep)).await {
                Ok(_) => h.end_of_candidates().await,
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                let _ = server.to_peer.send(FromServer::Closed(format!("{e:#}"))).await;
                break;
            }
        }
        poller.abort();
        h.destroy().await;
    });
    peer
}

/// Forwards the session's JSEPs (offers to subscribers, answers to
/// publishers) and hang-ups to the peer.
fn spawn_events(h: Handle, to_peer: tokio::sync::mpsc::Sender<FromServer>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let events = match h.events().await {
                Ok(e) => e,
                Err(e) => {
                    let _ = to_peer.send(FromServer::Closed(format!("Janus events: {e:#}"))).await;
                    return;
                }
            };
            for ev in events {
                let out = match (ev["janus"].as_str(), ev["jsep"]["type"].as_str()) {
                    (_, Some("offer")) => FromServer::Offer(ev["jsep"]["sdp"].as_str().unwrap_or_default().into()),
                    (_, Some("answer")) => FromServer::Answer(ev["jsep"]["sdp"].as_str().unwrap_or_default().into()),
                    (Some("hangup"), _) => FromServer::Closed(format!("Janus hung up: {}", ev["reason"])),
                    _ => continue,
                };
                if to_peer.send(out).await.is_err() {
                    return;
                }
            }
        }
    })
}
