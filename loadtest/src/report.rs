//! The run's results: a summary table for people at the terminal, JSON for
//! machines, and one self-contained HTML page with SVG charts.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::scenario::Scenario;

#[derive(Debug, Serialize)]
pub struct Report {
    pub target: String,
    pub scenario: Scenario,
    pub peers: u32,
    pub duration_s: f64,
    pub video_kbps: u64,
    pub fps: u32,
    pub simulcast: bool,
    /// Video pacing as a multiple of the bitrate; 0 when frames went as bursts.
    pub pacing: f64,
    /// Peers whose media connected.
    pub connected: u32,
    pub failed: Vec<PeerFailure>,
    pub join_to_media_ms: Quantiles,
    pub sent_packets: u64,
    pub received_packets: u64,
    /// Packets the senders sent within each receiver's window (first to last seen).
    pub expected_packets: u64,
    pub delivery_ratio: f64,
    /// The worst receiver's share of what it should have got.
    pub min_subscriber_delivery: f64,
    pub duplicates: u64,
    pub reordered: u64,
    pub latency_us: Quantiles,
    pub jitter_us_mean: f64,
    pub subscribers: Vec<SubscriberReport>,
    pub server: Option<ServerReport>,
    pub series: Vec<Point>,
    pub latency_histogram: Vec<Bucket>,
}

#[derive(Debug, Serialize)]
pub struct PeerFailure {
    pub identity: String,
    pub error: String,
}

#[derive(Debug, Serialize)]
pub struct SubscriberReport {
    pub identity: String,
    pub streams: usize,
    pub expected_streams: usize,
    pub received: u64,
    pub expected: u64,
    pub delivery: f64,
    /// Its downlink's cap, if it had one.
    pub downlink_kbps: Option<u64>,
    /// Each video stream it received.
    pub video: Vec<VideoReport>,
}

/// Which layer of a sender's video a subscriber received.
#[derive(Debug, Serialize)]
pub struct VideoReport {
    pub sender: String,
    /// The layer arriving at the end (0 lowest; 0 without simulcast).
    pub layer: u8,
    /// How often the arriving layer changed.
    pub switches: u32,
    /// Packets received per layer, lowest first.
    pub layer_packets: Vec<u64>,
}

#[derive(Debug, Serialize, Default)]
pub struct Quantiles {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Quantiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Quantiles::default();
        }
        Quantiles {
            count: h.len(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.5) as f64,
            p95: h.value_at_quantile(0.95) as f64,
            p99: h.value_at_quantile(0.99) as f64,
            max: h.max() as f64,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ServerReport {
    pub cpu_seconds: f64,
    /// RTP packets the server wrote on subscriber legs during the run (its
    /// own count, or what the peers received when it has none).
    pub forwarded_packets: f64,
    pub received_packets: Option<f64>,
    pub forwarded_per_cpu_second: f64,
    pub cpu_us_per_forwarded_packet: f64,
    pub rss_bytes_max: f64,
    /// Time packets spent inside the server in the steady window (bucket
    /// upper bounds, µs), from its own histogram: switchboard only.
    pub forwarding_delay_us: Option<DelayQuantiles>,
}

#[derive(Debug, Serialize)]
pub struct DelayQuantiles {
    pub p50: f64,
    pub p99: f64,
    pub mean: f64,
}

/// One second of the run.
#[derive(Debug, Serialize, Clone, Copy)]
pub struct Point {
    pub t: f64,
    pub connected: u64,
    pub sent_pps: f64,
    pub received_pps: f64,
    /// Server CPU in % of one core, when known.
    pub server_cpu_pct: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Bucket {
    pub le_us: u64,
    pub count: u64,
}

/// Log-spaced latency buckets from 10 µs to 10 s.
pub fn buckets(h: &Histogram<u64>) -> Vec<Bucket> {
    let mut out = Vec::new();
    let mut prev = 0u64;
    let mut le = 10u64;
    while le <= 10_000_000 {
        for step in [1, 2, 5] {
            let edge = le * step;
            let count = h.count_between(prev + 1, edge);
            out.push(Bucket { le_us: edge, count });
            prev = edge;
        }
        le *= 10;
    }
    out
}

impl Report {
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let l = &self.latency_us;
        let _ = writeln!(s, "load test: {} → {}", scenario_name(self.scenario), self.target);
        let _ = writeln!(
            s,
            "  peers            {} ({} connected, {} failed), {:.1} s, video {} kb/s at {} fps, {}",
            self.peers,
            self.connected,
            self.failed.len(),
            self.duration_s,
            self.video_kbps,
            self.fps,
            if self.pacing > 0.0 { format!("paced at {}x", self.pacing) } else { "frames in bursts".into() }
        );
        let j = &self.join_to_media_ms;
        let _ = writeln!(s, "  join → media     p50 {:.0} ms  p95 {:.0} ms  max {:.0} ms", j.p50, j.p95, j.max);
        let _ = writeln!(
            s,
            "  packets          sent {}  received {}  expected {}",
            self.sent_packets, self.received_packets, self.expected_packets
        );
        let _ = writeln!(
            s,
            "  delivery         {:.2}% overall, worst subscriber {:.2}%, {} duplicates, {} reordered",
            self.delivery_ratio * 100.0,
            self.min_subscriber_delivery * 100.0,
            self.duplicates,
            self.reordered
        );
        let _ = writeln!(
            s,
            "  latency (µs)     p50 {:.0}  p95 {:.0}  p99 {:.0}  max {:.0}  (jitter {:.0} µs)",
            l.p50, l.p95, l.p99, l.max, self.jitter_us_mean
        );
        if let Some(d) = self.server.as_ref().and_then(|s| s.forwarding_delay_us.as_ref()) {
            let _ = writeln!(s, "  inside server    p50 ≤ {:.0} µs  p99 ≤ {:.0} µs  mean {:.0} µs (its histogram: recvmmsg → sendmmsg returned)", d.p50, d.p99, d.mean);
        }
        if let Some(sv) = &self.server {
            let _ = writeln!(
                s,
                "  server           {:.2} CPU-s, {:.0} packets forwarded → {:.0} per CPU-second, {:.2} µs CPU per packet, RSS max {:.1} MB",
                sv.cpu_seconds,
                sv.forwarded_packets,
                sv.forwarded_per_cpu_second,
                sv.cpu_us_per_forwarded_packet,
                sv.rss_bytes_max / 1e6
            );
        }
        if self.simulcast {
            for line in self.layer_lines() {
                let _ = writeln!(s, "  layers           {line}");
            }
        }
        for f in self.failed.iter().take(5) {
            let _ = writeln!(s, "  failed           {}: {}", f.identity, f.error);
        }
        s
    }

    /// Per downlink cap: on which layer its subscribers' video settled, and
    /// how often it switched.
    fn layer_lines(&self) -> Vec<String> {
        let mut caps: Vec<Option<u64>> = self.subscribers.iter().map(|s| s.downlink_kbps).collect();
        caps.sort();
        caps.dedup();
        caps.into_iter()
            .map(|cap| {
                let videos: Vec<&VideoReport> =
                    self.subscribers.iter().filter(|s| s.downlink_kbps == cap).flat_map(|s| &s.video).collect();
                let mut on = [0usize; 3];
                for v in &videos {
                    on[usize::from(v.layer).min(2)] += 1;
                }
                let switches = videos.iter().map(|v| v.switches).sum::<u32>() as f64 / videos.len().max(1) as f64;
                let cap = cap.map_or("no cap".to_string(), |c| format!("cap {c} kb/s"));
                format!(
                    "{cap}: {} streams ended on q {} / h {} / f {}, {switches:.1} switches each",
                    videos.len(),
                    on[0],
                    on[1],
                    on[2]
                )
            })
            .collect()
    }

    pub fn html(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_default().replace("</", "<\\/");
        let hist: Vec<(String, f64)> =
            self.latency_histogram.iter().filter(|b| b.count > 0).map(|b| (fmt_us(b.le_us), b.count as f64)).collect();
        let rx: Vec<(f64, f64)> = self.series.iter().map(|p| (p.t, p.received_pps)).collect();
        let tx: Vec<(f64, f64)> = self.series.iter().map(|p| (p.t, p.sent_pps)).collect();
        let cpu: Vec<(f64, f64)> = self.series.iter().filter_map(|p| Some((p.t, p.server_cpu_pct?))).collect();
        format!(
            r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Load test: {scenario}</title>
<style>
body {{ font: 15px/1.4 system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; padding: 0 1rem; color: #1f2328; }}
pre {{ background: #f6f8fa; padding: 1rem; white-space: pre-wrap; }}
figure {{ margin: 1.5rem 0; }} figcaption {{ font-weight: 600; margin-bottom: .4rem; }}
svg {{ width: 100%; height: auto; background: #fff; border: 1px solid #d0d7de; }}
.bar {{ fill: #3b82f6; }} .line {{ fill: none; stroke-width: 2; }} .rx {{ stroke: #3b82f6; }} .tx {{ stroke: #9ca3af; stroke-dasharray: 4 3; }} .cpu {{ stroke: #dc2626; }}
text {{ font-size: 11px; fill: #57606a; }} .axis {{ stroke: #d0d7de; }}
</style></head><body>
<h1>Load test: {scenario}</h1>
<pre>{summary}</pre>
<figure id="latency"><figcaption>Latency from send to receive through the server, same clock (packets per bucket, upper bound)</figcaption>{latency_svg}</figure>
<figure id="throughput"><figcaption>Packets per second: received by subscribers (blue), sent by publishers (grey)</figcaption>{throughput_svg}</figure>
<figure id="cpu"><figcaption>Server CPU, % of one core</figcaption>{cpu_svg}</figure>
<script type="application/json" id="report">{json}</script>
</body></html>
"#,
            scenario = scenario_name(self.scenario),
            summary = escape(&self.summary()),
            latency_svg = bars_svg(&hist),
            throughput_svg = lines_svg(&[(&rx, "rx"), (&tx, "tx")]),
            cpu_svg = lines_svg(&[(&cpu, "cpu")]),
        )
    }
}

fn scenario_name(s: Scenario) -> &'static str {
    match s {
        Scenario::Pairs => "pairs",
        Scenario::Conference => "conference",
        Scenario::Webinar => "webinar",
        Scenario::AudioOnly => "audio-only",
        Scenario::Churn => "churn",
    }
}

fn fmt_us(us: u64) -> String {
    match us {
        u if u >= 1_000_000 => format!("{} s", u / 1_000_000),
        u if u >= 1000 => format!("{} ms", u / 1000),
        u => format!("{u} µs"),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

const W: f64 = 800.0;
const H: f64 = 260.0;
const PAD: f64 = 40.0;

fn bars_svg(bars: &[(String, f64)]) -> String {
    let mut s = format!(r#"<svg viewBox="0 0 {W} {H}" role="img" aria-label="latency histogram">"#);
    let max = bars.iter().map(|b| b.1).fold(0.0, f64::max).max(1.0);
    let n = bars.len().max(1) as f64;
    let bw = (W - 2.0 * PAD) / n;
    for (i, (label, v)) in bars.iter().enumerate() {
        let h = (H - 2.0 * PAD) * v / max;
        let x = PAD + i as f64 * bw;
        let _ = write!(
            s,
            r#"<rect class="bar" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}"><title>≤ {label}: {v}</title></rect>"#,
            x + 2.0,
            H - PAD - h,
            (bw - 4.0).max(1.0),
            h
        );
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">≤{}</text>"#,
            x + bw / 2.0,
            H - PAD + 14.0,
            escape(label)
        );
    }
    let _ = write!(s, r#"<text x="{PAD}" y="{:.1}">{max:.0}</text></svg>"#, PAD - 8.0);
    s
}

fn lines_svg(series: &[(&Vec<(f64, f64)>, &str)]) -> String {
    let mut s = format!(r#"<svg viewBox="0 0 {W} {H}" role="img" aria-label="time series">"#);
    let xmax = series.iter().flat_map(|(p, _)| p.iter().map(|q| q.0)).fold(0.0, f64::max).max(1.0);
    let ymax = series.iter().flat_map(|(p, _)| p.iter().map(|q| q.1)).fold(0.0, f64::max).max(1.0);
    let _ = write!(s, r#"<line x1="{PAD}" y1="{:.1}" x2="{:.1}" y2="{:.1}" class="axis"/>"#, H - PAD, W - PAD, H - PAD);
    for (points, class) in series {
        if points.is_empty() {
            continue;
        }
        let d: Vec<String> = points
            .iter()
            .map(|(x, y)| {
                format!("{:.1},{:.1}", PAD + (W - 2.0 * PAD) * x / xmax, H - PAD - (H - 2.0 * PAD) * y / ymax)
            })
            .collect();
        let _ = write!(s, r#"<polyline class="line {class}" points="{}"/>"#, d.join(" "));
    }
    let _ = write!(
        s,
        r#"<text x="{PAD}" y="{:.1}">{ymax:.0}</text><text x="{:.1}" y="{:.1}" text-anchor="end">{xmax:.0} s</text></svg>"#,
        PAD - 8.0,
        W - PAD,
        H - PAD + 14.0
    );
    s
}
