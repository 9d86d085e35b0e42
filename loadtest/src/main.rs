//! `loadtest`: synthetic str0m peers against a running switchboard (or Janus).
//!
//! ```text
//! cargo run --release -p loadtest -- pairs --peers 10 --duration 10s --keys data/keys.json
//! ```
//! Peers join through the real signalling (tokens minted with the server's API
//! key), exchange DTLS-SRTP media over UDP, and measure what arrives. The
//! server's CPU and packet counters come from its `/metrics`.

mod churn;
mod janus;
mod measure;
mod media;
mod peer;
mod report;
mod scenario;
mod server;
mod signal;
mod switchboard;
mod token;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};

use crate::measure::latency_histogram;
use crate::peer::{Live, PeerConfig, PeerPlan, PeerResult};
use crate::report::{Point, Quantiles, Report, ServerReport, SubscriberReport};
use crate::scenario::Scenario;
use crate::server::{ServerProbe, ServerSample};

const MAX_PEERS: u32 = 2000;
const MAX_DURATION: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Switchboard,
    /// Janus VideoRoom over its HTTP API (`--url http://…:8088/janus`).
    Janus,
}

#[derive(Parser, Debug)]
#[command(name = "loadtest", about = "Synthetic WebRTC peers against a switchboard server")]
struct Cli {
    /// What to run.
    #[arg(value_enum)]
    scenario: Scenario,
    /// Which server the load goes to.
    #[arg(long, value_enum, default_value = "switchboard")]
    target: Target,
    /// The server's HTTP address (switchboard: /ws and /metrics below it;
    /// Janus: its API path). Only addresses of this host (or namespace).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Address the peers' UDP sockets bind: a local address the server's
    /// candidates are reachable from (Janus in a namespace needs its veth address).
    #[arg(long, default_value = "127.0.0.1")]
    bind_ip: std::net::IpAddr,
    /// Number of peers (pairs: rooms × 2; webinar: 1 publisher + subscribers).
    #[arg(long, default_value_t = 10)]
    peers: u32,
    /// How long every peer sends, once all have joined.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Video bitrate per publisher.
    #[arg(long, default_value_t = 1500)]
    video_kbps: u64,
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Publishers send video as three simulcast layers (rids q, h, f at a
    /// tenth, a third and all of --video-kbps; 320×180, 640×360, 1280×720).
    #[arg(long)]
    simulcast: bool,
    /// Downlink caps for the peers that receive video, in kb/s, taken in
    /// turn (0: none). A capped peer receives through the harness's own
    /// shaper (drop-tail, 300 ms queue) and reports its estimate of that
    /// link with REMB, as a browser does. E.g. `--downlink-kbps 300,1000,0`.
    #[arg(long, value_delimiter = ',')]
    downlink_kbps: Vec<u64>,
    /// Video packets leave at this multiple of the bitrate, spread over the
    /// frame as a browser's pacer does (libwebrtc uses 2.5); 0 sends each
    /// frame as one burst, the harshest case for the server's latency.
    #[arg(long, default_value_t = 2.5)]
    pacing: f64,
    /// Joins per second while ramping up.
    #[arg(long, default_value_t = 20.0)]
    ramp: f64,
    /// The server's API keys file (its data dir's keys.json).
    #[arg(long, default_value = "data/keys.json")]
    keys: PathBuf,
    /// Sample this process's CPU and memory instead of the server's /metrics.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a self-contained HTML report with charts here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Worker threads for the peers (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    if cli.peers == 0 || cli.peers > MAX_PEERS {
        bail!("--peers must be between 1 and {MAX_PEERS}");
    }
    if cli.duration > MAX_DURATION || cli.duration.is_zero() {
        bail!("--duration must be more than 0 and at most {MAX_DURATION:?}");
    }
    if cli.ramp.is_nan() || cli.ramp <= 0.0 {
        bail!("--ramp must be positive");
    }
    let url = url::Url::parse(&cli.url).with_context(|| format!("bad --url {}", cli.url))?;
    let addr = url
        .socket_addrs(|| Some(80))
        .with_context(|| format!("resolving {url}"))?
        .into_iter()
        .next()
        .context("the --url host has no address")?;
    peer::local_only(addr.ip())?;
    peer::local_only(cli.bind_ip)?;
    let key = match cli.target {
        Target::Switchboard => Some(token::ApiKey::from_keys_file(&cli.keys)?),
        Target::Janus => None,
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cli.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = rt.enable_all().build()?;
    if cli.scenario == Scenario::Churn {
        let key = key.context("churn runs against switchboard only")?;
        let churn = churn::Churn {
            ws_url: ws_url(&url),
            key,
            workers: cli.peers,
            duration: cli.duration,
            bind_ip: cli.bind_ip,
            video_bps: cli.video_kbps * 1000,
            fps: cli.fps,
            run_id: run_id()?,
        };
        let report = rt.block_on(churn::run(churn))?;
        print!("{}", report.summary());
        if let Some(path) = &cli.json {
            std::fs::write(path, serde_json::to_vec_pretty(&report)?)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        return Ok(());
    }
    let report = rt.block_on(run(&cli, url, key))?;
    print!("{}", report.summary());
    if let Some(path) = &cli.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &cli.html {
        std::fs::write(path, report.html()).with_context(|| format!("writing {}", path.display()))?;
    }
    if report.connected < cli.peers {
        bail!("{} of {} peers did not connect", cli.peers - report.connected, cli.peers);
    }
    Ok(())
}

/// The signalling WebSocket below the server's HTTP address.
fn ws_url(url: &url::Url) -> String {
    let ws_scheme = if url.scheme() == "https" { "wss" } else { "ws" };
    format!(
        "{ws_scheme}://{}{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().map(|p| format!(":{p}")).unwrap_or_default()
    ) + "/ws"
}

/// Keeps room names apart between runs.
fn run_id() -> anyhow::Result<String> {
    Ok(format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() % 0xffff_ffff))
}

async fn run(cli: &Cli, url: url::Url, key: Option<token::ApiKey>) -> anyhow::Result<Report> {
    let base = url.as_str().trim_end_matches('/').to_string();
    let probe = ServerProbe::new((cli.target == Target::Switchboard).then_some(base.as_str()), cli.server_pid)?;
    let before = probe.sample().await.with_context(|| format!("is the server running at {base}?"))?;
    let ws_url = ws_url(&url);
    let run_id = run_id()?;
    let plans = scenario::plan(cli.scenario, cli.peers, &run_id);
    let expected_streams: Vec<usize> = plans.iter().map(|p| scenario::expected_streams(&plans, p)).collect();
    let downlinks = downlink_caps(&plans, &cli.downlink_kbps);
    let epoch = Instant::now();
    let ramp = Duration::from_secs_f64(f64::from(cli.peers) / cli.ramp);
    // Everyone joins during the ramp; a second more for the last to connect.
    let steady_from = epoch + ramp + Duration::from_secs(1);
    let send_until = steady_from + cli.duration;
    let live = Arc::new(Live::default());
    let token_ttl = ramp + cli.duration + Duration::from_secs(600);
    // Janus: one room per scenario room; a peer that sends and receives is
    // two PeerConnections there (publisher + subscriber), merged afterwards.
    let mut janus_rooms = std::collections::BTreeMap::new();
    if cli.target == Target::Janus {
        for plan in &plans {
            let next = janus_rooms.len() as u64;
            janus_rooms
                .entry(plan.room.clone())
                .or_insert(u64::from_str_radix(&run_id, 16).unwrap_or(1) % 1_000_000 * 1000 + next + 1);
        }
        for id in janus_rooms.values() {
            janus::create_room(&base, *id, cli.peers).await?;
        }
    }

    let mut handles = Vec::with_capacity(plans.len());
    for (i, plan) in plans.iter().enumerate() {
        let start = epoch + Duration::from_secs_f64(i as f64 / cli.ramp);
        let parts: Vec<(PeerPlan, signal::Connect)> = match &key {
            Some(key) => {
                let token = key.mint(&plan.room, &plan.identity, plan.audio || plan.video, token_ttl)?;
                vec![(plan.clone(), Box::pin(switchboard::connect(ws_url.clone(), token)))]
            }
            None => {
                let room = janus_rooms[&plan.room];
                let mut parts: Vec<(PeerPlan, signal::Connect)> = Vec::new();
                if plan.audio || plan.video {
                    parts.push((plan.clone(), Box::pin(janus::publisher(base.clone(), room, plan.identity.clone()))));
                }
                let feeds =
                    plans.iter().filter(|p| p.room == plan.room && p.id != plan.id && (p.audio || p.video)).count();
                if feeds > 0 {
                    let receive_only = PeerPlan { audio: false, video: false, ..plan.clone() };
                    parts.push((
                        receive_only,
                        Box::pin(janus::subscriber(base.clone(), room, plan.identity.clone(), feeds)),
                    ));
                }
                parts
            }
        };
        let mut tasks = Vec::new();
        for (part, connect) in parts {
            let cfg = PeerConfig {
                bind_ip: cli.bind_ip,
                always_offer: cli.target == Target::Switchboard,
                video_bps: cli.video_kbps * 1000,
                fps: cli.fps,
                simulcast: cli.simulcast,
                downlink_bps: downlinks[i].map(|kbps| kbps * 1000),
                pacing: cli.pacing,
                send_until,
                epoch,
                live: live.clone(),
                vanish: false,
            };
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep_until(start.into()).await;
                peer::run(part, cfg, connect).await
            }));
        }
        handles.push(tasks);
    }

    // Once a second: the time series, the progress line, the steady-state window.
    let bar = ProgressBar::new(u64::from(cli.peers));
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} [{bar:30}] {pos}/{len} connected  {msg}")
            .expect("valid template"),
    );
    let mut series = Vec::new();
    let (mut last_sent, mut last_rx, mut last_cpu) = (0u64, 0u64, before.cpu_seconds);
    let mut window: (Option<ServerSample>, Option<ServerSample>) = (None, None);
    let mut rss_max = before.rss_bytes;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let end = send_until + peer::DRAIN + Duration::from_millis(300);
    while Instant::now() < end {
        tick.tick().await;
        let now = Instant::now();
        let (sent, rx) = (live.sent.load(Ordering::Relaxed), live.received.load(Ordering::Relaxed));
        let sample = probe.sample().await.ok().map(|s| ServerSample { peers_received: rx as f64, ..s });
        let cpu_pct = sample.map(|s| {
            let pct = (s.cpu_seconds - last_cpu) * 100.0;
            last_cpu = s.cpu_seconds;
            rss_max = rss_max.max(s.rss_bytes);
            pct
        });
        if now >= steady_from && window.0.is_none() {
            window.0 = sample;
        }
        if now <= send_until && window.0.is_some() {
            window.1 = sample;
        }
        let point = Point {
            t: now.duration_since(epoch).as_secs_f64(),
            connected: live.connected.load(Ordering::Relaxed),
            sent_pps: (sent - last_sent) as f64,
            received_pps: (rx - last_rx) as f64,
            server_cpu_pct: cpu_pct,
        };
        (last_sent, last_rx) = (sent, rx);
        bar.set_position(point.connected);
        bar.set_message(format!(
            "out {:.0} pkt/s  in {:.0} pkt/s  server {}  failed {}",
            point.sent_pps,
            point.received_pps,
            cpu_pct.map_or("?".into(), |c| format!("{c:.0}% CPU")),
            live.failed.load(Ordering::Relaxed)
        ));
        series.push(point);
    }
    let mut results: Vec<PeerResult> = Vec::with_capacity(handles.len());
    for tasks in handles {
        let mut merged: Option<PeerResult> = None;
        for t in tasks {
            let r = t.await.context("a peer task panicked")?;
            merged = Some(match merged {
                None => r,
                Some(m) => m.merge(r),
            });
        }
        results.extend(merged);
    }
    bar.finish_and_clear();
    let after = probe
        .sample()
        .await
        .ok()
        .map(|s| ServerSample { peers_received: live.received.load(Ordering::Relaxed) as f64, ..s });
    Ok(build_report(cli, &base, results, &expected_streams, &downlinks, before, after, window, rss_max, series))
}

/// Each peer's downlink cap (kb/s): `caps` in turn over the peers that
/// receive video; `None` for the others and for a cap of 0.
fn downlink_caps(plans: &[PeerPlan], caps: &[u64]) -> Vec<Option<u64>> {
    let mut next = caps.iter().cycle();
    plans
        .iter()
        .map(|me| {
            let receives_video = plans.iter().any(|p| p.room == me.room && p.id != me.id && p.video);
            receives_video.then(|| next.next().copied()).flatten().filter(|c| *c > 0)
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn build_report(
    cli: &Cli,
    base: &str,
    results: Vec<PeerResult>,
    expected_streams: &[usize],
    downlinks: &[Option<u64>],
    before: ServerSample,
    after: Option<ServerSample>,
    window: (Option<ServerSample>, Option<ServerSample>),
    rss_max: f64,
    series: Vec<Point>,
) -> Report {
    let mut latency = latency_histogram();
    let mut joins = latency_histogram();
    let mut subscribers = Vec::new();
    let (mut received, mut expected, mut duplicates, mut reordered, mut jitter_sum, mut jitter_n) =
        (0, 0, 0, 0, 0.0, 0usize);
    let mut failed = Vec::new();
    for ((r, &want), &downlink_kbps) in results.iter().zip(expected_streams).zip(downlinks) {
        let _ = latency.add(&r.rx.latency_us);
        if let Some(j) = r.join_to_media {
            let _ = joins.record(j.as_millis().max(1) as u64);
        }
        if let Some(e) = &r.error {
            failed.push(report::PeerFailure { identity: r.identity.clone(), error: e.clone() });
        }
        received += r.rx.unique();
        expected += r.rx.expected();
        for s in r.rx.streams.values() {
            duplicates += s.duplicates();
            reordered += s.reordered();
            jitter_sum += s.jitter_ns() / 1000.0;
            jitter_n += 1;
        }
        if want > 0 {
            // A stream that never arrived counts as nothing delivered.
            let delivery = if r.rx.streams.len() < want || r.rx.expected() == 0 {
                0.0
            } else {
                r.rx.unique() as f64 / r.rx.expected() as f64
            };
            subscribers.push(SubscriberReport {
                identity: r.identity.clone(),
                streams: r.rx.streams.len(),
                expected_streams: want,
                received: r.rx.unique(),
                expected: r.rx.expected(),
                delivery,
                downlink_kbps,
                video: r
                    .rx
                    .streams
                    .iter()
                    .filter(|((_, kind), _)| *kind == media::Kind::Video)
                    .map(|(&(sender, _), f)| report::VideoReport {
                        sender: format!("peer-{sender}"),
                        layer: f.layer,
                        switches: f.switches,
                        layer_packets: f.layer_packets.to_vec(),
                    })
                    .collect(),
            });
        }
    }
    let server = after.map(|a| {
        let (w0, w1) = (window.0.unwrap_or(before), window.1.unwrap_or(a));
        let (cpu, fwd) = (w1.cpu_seconds - w0.cpu_seconds, w1.forwarded() - w0.forwarded());
        ServerReport {
            cpu_seconds: a.cpu_seconds - before.cpu_seconds,
            forwarded_packets: a.forwarded() - before.forwarded(),
            received_packets: a.rtp_received.zip(before.rtp_received).map(|(a, b)| a - b),
            forwarded_per_cpu_second: if cpu > 0.0 { fwd / cpu } else { 0.0 },
            cpu_us_per_forwarded_packet: if fwd > 0.0 { cpu * 1e6 / fwd } else { 0.0 },
            rss_bytes_max: rss_max.max(a.rss_bytes),
            forwarding_delay_us: w0.delay.zip(w1.delay).and_then(|(d0, d1)| {
                let total = w1.delay_count - w0.delay_count;
                Some(report::DelayQuantiles {
                    p50: server::delay_quantile(&d0, &d1, total, 0.5)?,
                    p99: server::delay_quantile(&d0, &d1, total, 0.99)?,
                    mean: (w1.delay_sum - w0.delay_sum) * 1e6 / total,
                })
            }),
        }
    });
    Report {
        target: format!("{:?} at {base}", cli.target).to_lowercase(),
        scenario: cli.scenario,
        peers: cli.peers,
        duration_s: cli.duration.as_secs_f64(),
        video_kbps: cli.video_kbps,
        fps: cli.fps,
        simulcast: cli.simulcast,
        pacing: cli.pacing,
        connected: results.iter().filter(|r| r.error.is_none()).count() as u32,
        failed,
        join_to_media_ms: Quantiles::of(&joins),
        sent_packets: results.iter().map(|r| r.sent).sum(),
        received_packets: received,
        expected_packets: expected,
        delivery_ratio: if expected > 0 { received as f64 / expected as f64 } else { 0.0 },
        min_subscriber_delivery: subscribers.iter().map(|s| s.delivery).fold(1.0, f64::min),
        duplicates,
        reordered,
        latency_histogram: report::buckets(&latency),
        latency_us: Quantiles::of(&latency),
        jitter_us_mean: if jitter_n > 0 { jitter_sum / jitter_n as f64 } else { 0.0 },
        subscribers,
        server,
        series,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downlink_caps_go_in_turn_to_the_peers_that_receive_video() {
        let plans = scenario::plan(Scenario::Webinar, 5, "x");
        // The publisher receives no video; 0 means no cap.
        assert_eq!(downlink_caps(&plans, &[300, 0]), [None, Some(300), None, Some(300), None]);
        assert_eq!(downlink_caps(&plans, &[]), [None; 5]);
    }
}
