//! What receivers measure, per received stream (sender × kind): delivery,
//! duplicates, reordering, RFC 3550 interarrival jitter, and the latency the
//! path adds (one clock for sender and receiver).

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use crate::media::{Kind, Probe};

/// Latencies are recorded in microseconds up to 60 s.
pub fn latency_histogram() -> Histogram<u64> {
    // Invariant: constant, valid bounds.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

#[derive(Debug, Default, Clone)]
pub struct StreamRx {
    first: u32,
    max: u32,
    /// Bit i: probe sequence `first + i` arrived.
    seen: Vec<u64>,
    pub unique: u64,
    pub duplicates: u64,
    pub reordered: u64,
    /// RFC 3550 jitter estimate, nanoseconds.
    pub jitter_ns: f64,
    last_transit: Option<i64>,
}

impl StreamRx {
    fn on_packet(&mut self, seq: u32, transit_ns: i64) {
        if self.unique == 0 && self.duplicates == 0 {
            self.first = seq;
            self.max = seq;
        }
        let Some(i) = seq.checked_sub(self.first).map(|i| i as usize) else {
            // Older than the first packet we saw: count it as reordered only.
            self.reordered += 1;
            return;
        };
        if self.seen.len() <= i / 64 {
            self.seen.resize(i / 64 + 1, 0);
        }
        let (word, bit) = (i / 64, 1u64 << (i % 64));
        if self.seen[word] & bit != 0 {
            self.duplicates += 1;
            return;
        }
        self.seen[word] |= bit;
        self.unique += 1;
        if seq < self.max {
            self.reordered += 1;
        }
        self.max = self.max.max(seq);
        if let Some(last) = self.last_transit {
            let d = (transit_ns - last).unsigned_abs() as f64;
            self.jitter_ns += (d - self.jitter_ns) / 16.0;
        }
        self.last_transit = Some(transit_ns);
    }

    /// Packets the sender sent from the first one we got to the last.
    pub fn expected(&self) -> u64 {
        if self.unique == 0 {
            0
        } else {
            u64::from(self.max - self.first) + 1
        }
    }
}

/// Everything one peer received.
#[derive(Debug)]
pub struct Receiver {
    pub streams: BTreeMap<(u32, Kind), StreamRx>,
    pub latency_us: Histogram<u64>,
    pub packets: u64,
    /// Payloads without a probe (not ours, or damaged).
    pub foreign: u64,
}

impl Default for Receiver {
    fn default() -> Self {
        Receiver { streams: BTreeMap::new(), latency_us: latency_histogram(), packets: 0, foreign: 0 }
    }
}

impl Receiver {
    /// Records a payload received at `now_ns` (the run's clock).
    pub fn on_payload(&mut self, payload: &[u8], now_ns: u64) -> Option<Probe> {
        self.packets += 1;
        let Some(p) = Probe::read(payload) else {
            self.foreign += 1;
            return None;
        };
        let transit = now_ns as i64 - p.sent_ns as i64;
        self.streams.entry((p.sender, p.kind)).or_default().on_packet(p.seq, transit);
        let _ = self.latency_us.record((transit.max(0) as u64 / 1000).max(1));
        Some(p)
    }

    pub fn expected(&self) -> u64 {
        self.streams.values().map(|s| s.expected()).sum()
    }

    pub fn unique(&self) -> u64 {
        self.streams.values().map(|s| s.unique).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_loss_duplicates_and_reordering() {
        let mut s = StreamRx::default();
        for seq in [10, 11, 13, 12, 12, 15] {
            s.on_packet(seq, 1000);
        }
        assert_eq!(s.unique, 5);
        assert_eq!(s.expected(), 6, "14 is missing");
        assert_eq!(s.duplicates, 1);
        assert_eq!(s.reordered, 1);
        assert_eq!(s.jitter_ns, 0.0, "constant transit: no jitter");
    }
}
