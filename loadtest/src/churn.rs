//! The churn scenario: `--peers` clients, each in a loop for `--duration`:
//! join a room of two, publish audio and video for 0.5-3 s, then leave with
//! a goodbye or vanish (the WebSocket and UDP socket just drop). It checks
//! nothing itself: the test around it looks at what the server still holds
//! afterwards (participants, file descriptors, threads, memory).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::peer::{self, Live, PeerConfig, PeerPlan};
use crate::{switchboard, token};

/// How long one cycle publishes, at least and at most.
const STAY: (u64, u64) = (500, 3000);
/// Errors kept for the report (the rest are only counted).
const KEEP_ERRORS: usize = 10;

pub struct Churn {
    pub ws_url: String,
    pub key: token::ApiKey,
    pub workers: u32,
    pub duration: Duration,
    pub bind_ip: std::net::IpAddr,
    pub video_bps: u64,
    pub fps: u32,
    pub run_id: String,
}

#[derive(Debug, Default, Serialize)]
pub struct ChurnReport {
    /// Sessions that got media flowing, then left with a goodbye.
    pub left: u64,
    /// Sessions that got media flowing, then vanished.
    pub vanished: u64,
    /// Sessions that failed (join refused, media never connected…).
    pub failed: u64,
    pub errors: Vec<String>,
    pub seconds: f64,
}

impl ChurnReport {
    pub fn summary(&self) -> String {
        format!(
            "churn: {} sessions in {:.0} s: {} left, {} vanished, {} failed{}\n",
            self.left + self.vanished + self.failed,
            self.seconds,
            self.left,
            self.vanished,
            self.failed,
            self.errors.first().map(|e| format!(" (first: {e})")).unwrap_or_default()
        )
    }
}

pub async fn run(c: Churn) -> anyhow::Result<ChurnReport> {
    let c = Arc::new(c);
    let start = Instant::now();
    let end = start + c.duration;
    let live = Arc::new(Live::default());
    let workers: Vec<_> = (0..c.workers)
        .map(|w| {
            let (c, live) = (c.clone(), live.clone());
            tokio::spawn(async move { worker(&c, w, end, live).await })
        })
        .collect();
    let mut report = ChurnReport::default();
    for w in workers {
        let r = w.await??;
        report.left += r.left;
        report.vanished += r.vanished;
        report.failed += r.failed;
        for e in r.errors {
            if report.errors.len() < KEEP_ERRORS {
                report.errors.push(e);
            }
        }
    }
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

async fn worker(c: &Churn, w: u32, end: Instant, live: Arc<Live>) -> anyhow::Result<ChurnReport> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(u64::from(w));
    let mut report = ChurnReport::default();
    for cycle in 0u64.. {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let plan = PeerPlan {
            id: w * 100_000 + cycle as u32 + 1,
            room: format!("lt-{}-churn-{}", c.run_id, w / 2),
            identity: format!("churn-{w}-{cycle}"),
            audio: true,
            video: true,
        };
        let vanish = rng.gen_bool(0.5);
        let stay = Duration::from_millis(rng.gen_range(STAY.0..=STAY.1));
        let cfg = PeerConfig {
            bind_ip: c.bind_ip,
            always_offer: true,
            video_bps: c.video_bps,
            fps: c.fps,
            simulcast: false,
            downlink_bps: None,
            pacing: 2.5,
            send_until: now + stay,
            epoch: now,
            live: live.clone(),
            vanish,
        };
        let token = c.key.mint(&plan.room, &plan.identity, true, Duration::from_secs(600))?;
        let result = peer::run(plan, cfg, switchboard::connect(c.ws_url.clone(), token)).await;
        match result.error {
            Some(e) => {
                report.failed += 1;
                if report.errors.len() < KEEP_ERRORS {
                    report.errors.push(e);
                }
            }
            None if vanish => report.vanished += 1,
            None => report.left += 1,
        }
    }
    Ok(report)
}
