//! Who joins which room and publishes what, per scenario.

use clap::ValueEnum;
use serde::Serialize;

use crate::peer::PeerPlan;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Rooms of two peers, both publishing audio and video (agent and customer).
    Pairs,
    /// One room, every peer publishes audio and video.
    Conference,
    /// One room, one audio + video publisher, everyone else only receives.
    Webinar,
    /// Rooms of two peers publishing audio only.
    AudioOnly,
    /// `--peers` clients that join rooms of two, publish for a few seconds
    /// and leave or vanish (no goodbye), again and again for `--duration`:
    /// what the server holds afterwards is the test (see `churn`).
    Churn,
}

/// The peers of a run; `run_id` keeps room names apart between runs.
pub fn plan(scenario: Scenario, peers: u32, run_id: &str) -> Vec<PeerPlan> {
    (0..peers)
        .map(|i| {
            let (room, audio, video) = match scenario {
                Scenario::Pairs | Scenario::Churn => (format!("lt-{run_id}-pair-{}", i / 2), true, true),
                Scenario::AudioOnly => (format!("lt-{run_id}-pair-{}", i / 2), true, false),
                Scenario::Conference => (format!("lt-{run_id}-conference"), true, true),
                Scenario::Webinar => (format!("lt-{run_id}-webinar"), i == 0, i == 0),
            };
            PeerPlan { id: i + 1, room, identity: format!("peer-{}", i + 1), audio, video }
        })
        .collect()
}

/// Streams each peer should receive (publishers of its room but itself,
/// times their kinds), to tell a silent leg from a quiet room.
pub fn expected_streams(plans: &[PeerPlan], me: &PeerPlan) -> usize {
    plans.iter().filter(|p| p.room == me.room && p.id != me.id).map(|p| p.audio as usize + p.video as usize).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let p = plan(Scenario::Pairs, 4, "x");
        assert_eq!(p[0].room, p[1].room);
        assert_ne!(p[1].room, p[2].room);
        assert_eq!(expected_streams(&p, &p[0]), 2);
        let w = plan(Scenario::Webinar, 5, "x");
        assert_eq!(expected_streams(&w, &w[3]), 2);
        assert_eq!(expected_streams(&w, &w[0]), 0);
        let c = plan(Scenario::Conference, 8, "x");
        assert_eq!(expected_streams(&c, &c[0]), 14);
    }
}
