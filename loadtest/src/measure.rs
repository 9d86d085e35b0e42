//! What receivers measure, per received stream (sender × kind): delivery,
//! duplicates, reordering, RFC 3550 interarrival jitter, the latency the
//! path adds (one clock for sender and receiver), and for simulcast video
//! which layer arrives and how often that changed.

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

/// Counts of a stream segment that ended.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    unique: u64,
    expected: u64,
    duplicates: u64,
    reordered: u64,
}

impl Counts {
    fn add(&mut self, s: &StreamRx) {
        self.unique += s.unique;
        self.expected += s.expected();
        self.duplicates += s.duplicates;
        self.reordered += s.reordered;
    }
}

/// Highest simulcast layer counted separately (higher ones count here).
pub const MAX_LAYER: usize = 2;

/// One sender's stream of one kind as a receiver gets it. Simulcast layers
/// number their packets independently, so each stretch on one layer is its
/// own segment: a switch ends one and starts the next, and the gap between
/// a layer's stretches is not loss. The server numbers what it forwards
/// continuously across switches, so a packet numbered below the highest
/// seen is a repair (or reordered), never a switch.
#[derive(Debug, Default, Clone)]
pub struct Flow {
    /// The layer arriving now.
    pub layer: u8,
    current: StreamRx,
    /// The stretch before the last switch: repairs of it may still arrive.
    previous: Option<(u8, StreamRx)>,
    closed: Counts,
    /// The highest RTP sequence number received.
    rtp_max: Option<u64>,
    /// Times the arriving layer changed.
    pub switches: u32,
    /// Packets received per layer.
    pub layer_packets: [u64; MAX_LAYER + 1],
}

impl Flow {
    /// A packet of `layer` numbered `seq` by its sender and `rtp_seq` by
    /// the server.
    fn on_packet(&mut self, layer: u8, rtp_seq: u64, seq: u32, transit_ns: i64) {
        let late = self.rtp_max.is_some_and(|m| rtp_seq < m);
        self.rtp_max = self.rtp_max.max(Some(rtp_seq));
        let started = self.current.unique > 0 || self.current.duplicates > 0;
        if !started {
            self.layer = layer;
        }
        self.layer_packets[usize::from(layer).min(MAX_LAYER)] += 1;
        if layer == self.layer {
            self.current.on_packet(seq, transit_ns);
            return;
        }
        if late {
            match &mut self.previous {
                Some((l, prev)) if *l == layer => prev.on_packet(seq, transit_ns),
                // A repair from further back: it arrived, nothing more.
                _ => self.closed.unique += 1,
            }
            return;
        }
        if let Some((_, prev)) = self.previous.take() {
            self.closed.add(&prev);
        }
        self.previous = Some((self.layer, std::mem::take(&mut self.current)));
        self.layer = layer;
        self.switches += 1;
        self.current.on_packet(seq, transit_ns);
    }

    fn totals(&self) -> Counts {
        let mut c = self.closed;
        c.add(&self.current);
        if let Some((_, p)) = &self.previous {
            c.add(p);
        }
        c
    }

    pub fn unique(&self) -> u64 {
        self.totals().unique
    }

    /// Packets sent from the first one we got to the last, per segment.
    pub fn expected(&self) -> u64 {
        self.totals().expected
    }

    pub fn duplicates(&self) -> u64 {
        self.totals().duplicates
    }

    pub fn reordered(&self) -> u64 {
        self.totals().reordered
    }

    /// RFC 3550 jitter of the layer arriving now, nanoseconds.
    pub fn jitter_ns(&self) -> f64 {
        self.current.jitter_ns
    }
}

/// Everything one peer received.
#[derive(Debug)]
pub struct Receiver {
    pub streams: BTreeMap<(u32, Kind), Flow>,

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
    /// Records a payload that arrived numbered `rtp_seq` (extended) at
    /// `now_ns` (the run's clock).
    pub fn on_payload(&mut self, rtp_seq: u64, payload: &[u8], now_ns: u64) -> Option<Probe> {
        self.packets += 1;
        let Some(p) = Probe::read(payload) else {
            self.foreign += 1;
            return None;
        };
        let transit = now_ns as i64 - p.sent_ns as i64;
        self.streams.entry((p.sender, p.kind)).or_default().on_packet(p.layer, rtp_seq, p.seq, transit);
        let _ = self.latency_us.record((transit.max(0) as u64 / 1000).max(1));
        Some(p)
    }

    pub fn expected(&self) -> u64 {
        self.streams.values().map(|s| s.expected()).sum()
    }

    pub fn unique(&self) -> u64 {
        self.streams.values().map(|s| s.unique()).sum()
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

    #[test]
    fn a_layer_switch_starts_a_segment_and_late_repairs_count_in_the_old_one() {
        let mut f = Flow::default();
        // The server numbers what it forwards: layer 0's probes 1..=11 as
        // 101..=111, of which 105 and 111 are lost; then layer 1 from 112.
        for seq in (1..=10).filter(|s| *s != 5) {
            f.on_packet(0, 100 + u64::from(seq), seq, 1000);
        }
        for (rtp, seq) in (112..).zip(500..=509) {
            f.on_packet(1, rtp, seq, 1000);
        }
        // Their repairs arrive after the switch, one numbered past what
        // layer 0 had delivered.
        f.on_packet(0, 105, 5, 1000);
        f.on_packet(0, 111, 11, 1000);
        assert_eq!((f.layer, f.switches), (1, 1));
        assert_eq!((f.unique(), f.expected()), (21, 21), "the gap between layers is not loss");
        // Back to layer 0, further on in its numbering: a new segment.
        for (rtp, seq) in (122..).zip(900..=904) {
            f.on_packet(0, rtp, seq, 1000);
        }
        assert_eq!((f.layer, f.switches), (0, 2));
        assert_eq!((f.unique(), f.expected()), (26, 26));
        assert_eq!(f.layer_packets, [16, 10, 0]);
    }
}
