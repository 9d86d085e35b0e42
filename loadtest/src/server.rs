//! The server's side of a run: its CPU time, memory and packet counters,
//! sampled from switchboard's `/metrics`, and from `/proc/<pid>` when
//! `--server-pid` is given (the only source for a server without `/metrics`).

use std::time::Duration;

use anyhow::Context;

#[derive(Debug, Clone, Copy, Default)]
pub struct ServerSample {
    pub cpu_seconds: f64,
    pub rss_bytes: f64,
    /// The server's own count, when it has `/metrics`.
    pub rtp_forwarded: Option<f64>,
    pub rtp_received: Option<f64>,
    /// What all peers had received by then (filled in by the caller): the
    /// forwarded count of a server that does not count.
    pub peers_received: f64,
    /// Cumulative forwarding-delay buckets summed over shards: (upper bound
    /// in µs, count); switchboard only.
    pub delay: Option<[(u64, f64); DELAY_LE_US.len()]>,
    /// The same histogram's sum (seconds) and count.
    pub delay_sum: f64,
    pub delay_count: f64,
}

/// switchboard_forwarding_delay_seconds bucket bounds in µs (+Inf excluded).
pub const DELAY_LE_US: [u64; 12] = [25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000, 100_000];

impl ServerSample {
    pub fn forwarded(&self) -> f64 {
        self.rtp_forwarded.unwrap_or(self.peers_received)
    }
}

pub struct ServerProbe {
    metrics_url: Option<String>,
    pid: Option<u32>,
    http: reqwest::Client,
}

impl ServerProbe {
    /// `metrics_base`: switchboard's HTTP address; `None` for other servers.
    pub fn new(metrics_base: Option<&str>, pid: Option<u32>) -> anyhow::Result<Self> {
        anyhow::ensure!(
            metrics_base.is_some() || pid.is_some(),
            "without /metrics, --server-pid is needed to measure the server"
        );
        let http = reqwest::Client::builder().timeout(Duration::from_secs(3)).build()?;
        Ok(ServerProbe { metrics_url: metrics_base.map(|b| format!("{b}/metrics")), pid, http })
    }

    pub async fn sample(&self) -> anyhow::Result<ServerSample> {
        let mut s = ServerSample::default();
        if let Some(url) = &self.metrics_url {
            s = self.scrape(url).await?;
        }
        if let Some(pid) = self.pid {
            let (cpu, rss) = proc_stat(pid)?;
            s.cpu_seconds = cpu;
            s.rss_bytes = rss;
        }
        Ok(s)
    }

    async fn scrape(&self, url: &str) -> anyhow::Result<ServerSample> {
        let text = self
            .http
            .get(url)
            .send()
            .await
            .with_context(|| format!("fetching {url}"))?
            .error_for_status()?
            .text()
            .await?;
        Ok(ServerSample {
            cpu_seconds: sum(&text, "switchboard_cpu_seconds_total"),
            rss_bytes: sum(&text, "process_resident_memory_bytes"),
            rtp_forwarded: Some(sum(&text, "switchboard_rtp_packets_forwarded_total")),
            rtp_received: Some(sum(&text, "switchboard_rtp_packets_received_total")),
            peers_received: 0.0,
            delay: delay_buckets(&text),
            delay_sum: sum(&text, "switchboard_forwarding_delay_seconds_sum"),
            delay_count: sum(&text, "switchboard_forwarding_delay_seconds_count"),
        })
    }
}

/// Sum of every sample of metric `name` in Prometheus text (all label sets).
fn sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b' ' | b'{')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `switchboard_forwarding_delay_seconds_bucket` summed over shards.
fn delay_buckets(text: &str) -> Option<[(u64, f64); DELAY_LE_US.len()]> {
    let mut out = DELAY_LE_US.map(|le| (le, 0.0));
    let mut seen = false;
    for line in text.lines().filter(|l| l.starts_with("switchboard_forwarding_delay_seconds_bucket{")) {
        let le = line.split("le=\"").nth(1).and_then(|r| r.split('"').next()).and_then(|v| v.parse::<f64>().ok());
        let value = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        if let (Some(le), Some(value)) = (le, value) {
            let us = (le * 1e6).round() as u64;
            if let Some(b) = out.iter_mut().find(|(b, _)| *b == us) {
                b.1 += value;
                seen = true;
            }
        }
    }
    seen.then_some(out)
}

/// The `q` quantile (µs, a bucket's upper bound) of the packets counted
/// between two cumulative bucket snapshots; None when nothing was counted.
pub fn delay_quantile(from: &[(u64, f64)], to: &[(u64, f64)], total: f64, q: f64) -> Option<f64> {
    if total <= 0.0 {
        return None;
    }
    let hit = from.iter().zip(to).find(|((_, a), (_, b))| b - a >= q * total).map(|(_, (le, _))| *le as f64);
    // Beyond the last bound: report the bound as a floor.
    Some(hit.unwrap_or(DELAY_LE_US[DELAY_LE_US.len() - 1] as f64))
}

/// CPU seconds (user + system) and resident bytes of a process.
fn proc_stat(pid: u32) -> anyhow::Result<(f64, f64)> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat.rsplit_once(") ").context("malformed stat")?.1.split(' ').collect();
    let ticks = 100.0; // USER_HZ on Linux
    let cpu = (fields[11].parse::<f64>()? + fields[12].parse::<f64>()?) / ticks;
    let rss_pages: f64 = fields[21].parse()?;
    Ok((cpu, rss_pages * 4096.0))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sums_labelled_samples() {
        let text = "# HELP x\nswitchboard_rtp_packets_forwarded_total{shard=\"0\"} 10\nswitchboard_rtp_packets_forwarded_total{shard=\"1\"} 5\nswitchboard_rtp_packets_forwarded_totalx 99\n";
        assert_eq!(super::sum(text, "switchboard_rtp_packets_forwarded_total"), 15.0);
    }
}
