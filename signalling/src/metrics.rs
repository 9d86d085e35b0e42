//! `GET /metrics` in Prometheus text format. Media-plane counters are read
//! from the shards' published copies at scrape time (see `sfu::stats`);
//! signalling counts in its own registry; process metrics come from the
//! `prometheus` crate's process collector.

use std::sync::LazyLock;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Encoder, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};
use sfu::Sfu;

/// Open signalling WebSockets (room sessions and agent consoles).
pub static SIGNALLING_CONNECTIONS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    IntGaugeVec::new(Opts::new("switchboard_signalling_connections", "Open signalling WebSockets"), &["kind"])
        .expect("valid metric")
});

/// Errors and refusals sent to signalling clients, by stable code.
pub static SIGNALLING_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new("switchboard_signalling_errors_total", "Errors and refusals sent to signalling clients"),
        &["code"],
    )
    .expect("valid metric")
});

pub fn count_error(code: sfu::ErrorCode) {
    SIGNALLING_ERRORS.with_label_values(&[code.as_str()]).inc();
}

/// Counts an open connection of `kind` until dropped.
pub struct ConnectionGuard(&'static str);

impl ConnectionGuard {
    pub fn new(kind: &'static str) -> Self {
        SIGNALLING_CONNECTIONS.with_label_values(&[kind]).inc();
        ConnectionGuard(kind)
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        SIGNALLING_CONNECTIONS.with_label_values(&[self.0]).dec();
    }
}

pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    pub fn new(sfu: Sfu) -> Metrics {
        let registry = Registry::new();
        // Invariant: each collector is registered once, with distinct names.
        registry.register(Box::new(SIGNALLING_CONNECTIONS.clone())).expect("register");
        registry.register(Box::new(SIGNALLING_ERRORS.clone())).expect("register");
        registry.register(Box::new(MediaPlane::new(sfu))).expect("register");
        #[cfg(target_os = "linux")]
        registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self())).expect("register");
        Metrics { registry }
    }

    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Invariant: text encoding of gathered families cannot fail.
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("encode");
        String::from_utf8(out).expect("prometheus text is UTF-8")
    }
}

/// Reads the media plane at scrape time.
struct MediaPlane {
    sfu: Sfu,
    descs: Vec<Desc>,
}

/// Reads one counter of a shard's stats.
type Field = fn(&sfu::stats::ShardStats) -> u64;

/// Per-shard counters: (name, help, field).
const SHARD_COUNTERS: &[(&str, &str, Field)] = &[
    ("switchboard_udp_datagrams_received_total", "UDP datagrams received", |s| s.datagrams_in),
    ("switchboard_udp_received_bytes_total", "UDP payload bytes received", |s| s.bytes_in),
    ("switchboard_udp_datagrams_sent_total", "UDP datagrams sent", |s| s.datagrams_out),
    ("switchboard_udp_sent_bytes_total", "UDP payload bytes sent", |s| s.bytes_out),
    (
        "switchboard_udp_send_messages_total",
        "Messages handed to the kernel for the datagrams sent (GSO carries several in one)",
        |s| s.send_messages,
    ),
    ("switchboard_rtp_packets_received_total", "RTP packets received from publishers", |s| s.rtp_in),
    ("switchboard_rtp_packets_forwarded_total", "RTP packets written on subscriber legs", |s| s.rtp_forwarded),
    ("switchboard_nacks_received_total", "NACKs received from subscribers (counted every few seconds)", |s| {
        s.nacks_received
    }),
    ("switchboard_nacks_sent_total", "NACKs sent to publishers (counted every few seconds)", |s| s.nacks_sent),
    ("switchboard_keyframe_requests_received_total", "PLI/FIR received from subscribers", |s| s.keyframe_requests_in),
    ("switchboard_keyframe_requests_sent_total", "Keyframe requests sent to publishers, after merging", |s| {
        s.keyframe_requests
    }),
    ("switchboard_data_messages_relayed_total", "Data channel messages relayed to a participant", |s| s.data_relayed),
    ("switchboard_data_messages_dropped_total", "Data channel messages dropped (recipient buffer full)", |s| {
        s.data_dropped
    }),
    (
        "switchboard_data_messages_rate_limited_total",
        "Data channel messages dropped because their sender was over --data-bytes-per-second",
        |s| s.data_rate_limited,
    ),
    ("switchboard_rtc_timer_timeouts_total", "str0m timeouts a participant's own deadlines asked for", |s| {
        s.rtc_timer_timeouts
    }),
    ("switchboard_rtc_drain_timeouts_total", "str0m timeouts that release packets written on a leg", |s| {
        s.rtc_drain_timeouts
    }),
];

/// Dropped packets by reason.
const DROPS: &[(&str, Field)] = &[
    ("unknown_source", |s| s.dropped_unknown_source),
    ("unparseable", |s| s.dropped_unparseable),
    ("not_ready", |s| s.dropped_not_ready),
    ("lane_full", |s| s.dropped_lane_full),
    ("tcp_send_queue_full", |s| s.tcp_send_dropped),
    ("recorder_lane_full", |s| s.record_dropped),
];

impl MediaPlane {
    fn new(sfu: Sfu) -> Self {
        let mut m = MediaPlane { sfu, descs: vec![] };
        m.descs = m.families().iter().flat_map(|c| c.desc().into_iter().cloned().collect::<Vec<_>>()).collect();
        m.descs.push(
            Desc::new(DELAY_NAME.into(), DELAY_HELP.into(), vec!["shard".into()], Default::default())
                .expect("valid metric"),
        );
        m
    }

    /// Fresh collectors filled with the current values.
    fn families(&self) -> Vec<Box<dyn Collector>> {
        let mut out: Vec<Box<dyn Collector>> = Vec::new();
        let counts = self.sfu.room_counts();
        for (name, help, v) in [
            ("switchboard_rooms", "Rooms with at least one participant", counts.rooms),
            ("switchboard_participants", "Participants in rooms", counts.participants),
            ("switchboard_published_tracks", "Tracks being published", counts.tracks),
            ("switchboard_subscriptions", "Track subscriptions (track x subscriber)", counts.subscriptions),
        ] {
            let g = IntGauge::new(name, help).expect("valid metric");
            g.set(v as i64);
            out.push(Box::new(g));
        }
        if let Some(cpu) = process_cpu_seconds() {
            let c = prometheus::Counter::new(
                "switchboard_cpu_seconds_total",
                "CPU time of this process (user + system), 10 ms resolution",
            )
            .expect("valid metric");
            c.inc_by(cpu);
            out.push(Box::new(c));
        }
        if let Some(heap) = crate::heap::stats() {
            for (name, help, v) in [
                ("switchboard_heap_allocated_bytes", "Bytes in live heap allocations", heap.allocated),
                (
                    "switchboard_heap_resident_bytes",
                    "Bytes of heap pages the allocator holds resident (live, cached, its own)",
                    heap.resident,
                ),
            ] {
                let g = IntGauge::new(name, help).expect("valid metric");
                g.set(v as i64);
                out.push(Box::new(g));
            }
        }
        let shards = self.sfu.shard_stats();
        for (name, help, field) in SHARD_COUNTERS {
            let c = IntCounterVec::new(Opts::new(*name, *help), &["shard"]).expect("valid metric");
            for (i, s) in shards.iter().enumerate() {
                c.with_label_values(&[&i.to_string()]).inc_by(field(s));
            }
            out.push(Box::new(c));
        }
        let drops = IntCounterVec::new(
            Opts::new("switchboard_packets_dropped_total", "Datagrams and packets dropped, by reason"),
            &["shard", "reason"],
        )
        .expect("valid metric");
        for (i, s) in shards.iter().enumerate() {
            for (reason, field) in DROPS {
                drops.with_label_values(&[i.to_string().as_str(), reason]).inc_by(field(s));
            }
        }
        out.push(Box::new(drops));
        let tcp = IntGaugeVec::new(
            Opts::new("switchboard_ice_tcp_connections", "ICE-TCP connections a shard serves"),
            &["shard"],
        )
        .expect("valid metric");
        for (i, s) in shards.iter().enumerate() {
            tcp.with_label_values(&[&i.to_string()]).set(s.tcp_opened.saturating_sub(s.tcp_closed) as i64);
        }
        out.push(Box::new(tcp));
        if let Some(l) = self.sfu.tcp_listener_stats() {
            let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
            let c = IntCounterVec::new(
                Opts::new(
                    "switchboard_ice_tcp_listener_connections_total",
                    "Connections the ICE-TCP listener accepted, by what became of them",
                ),
                &["outcome"],
            )
            .expect("valid metric");
            for (outcome, v) in [
                ("accepted", load(&l.accepted)),
                ("handed_over", load(&l.handed_over)),
                ("refused_limit", load(&l.refused_limit)),
                ("timed_out", load(&l.timed_out)),
                ("bad_first_frame", load(&l.bad_first_frame)),
            ] {
                c.with_label_values(&[outcome]).inc_by(v);
            }
            out.push(Box::new(c));
        }
        out
    }

    /// `switchboard_forwarding_delay_seconds`, per shard, from the shards' bucket counts.
    fn delay_family(&self) -> MetricFamily {
        use prometheus::proto::{Bucket, Histogram, LabelPair, Metric, MetricType};
        let mut family = MetricFamily::default();
        family.set_name(DELAY_NAME.into());
        family.set_help(DELAY_HELP.into());
        family.set_field_type(MetricType::HISTOGRAM);
        for (i, s) in self.sfu.shard_stats().iter().enumerate() {
            let mut h = Histogram::default();
            let mut cumulative = 0;
            let mut buckets = Vec::with_capacity(sfu::stats::DELAY_BUCKETS.len());
            for (le, n) in sfu::stats::DELAY_BUCKETS.iter().zip(s.delay.counts.iter()) {
                cumulative += n;
                let mut b = Bucket::default();
                b.set_upper_bound(*le);
                b.set_cumulative_count(cumulative);
                buckets.push(b);
            }
            h.set_bucket(buckets);
            h.set_sample_count(s.delay.count());
            h.set_sample_sum(s.delay.sum_ns as f64 / 1e9);
            let mut label = LabelPair::default();
            label.set_name("shard".into());
            label.set_value(i.to_string());
            let mut m = Metric::default();
            m.set_label(vec![label]);
            m.set_histogram(h);
            family.mut_metric().push(m);
        }
        family
    }
}

const DELAY_NAME: &str = "switchboard_forwarding_delay_seconds";
const DELAY_HELP: &str = "Time forwarded packets spent in a shard: from the recvmmsg that brought them until the sendmmsg that sent them returned (time queued in the socket before that excluded)";

/// User + system CPU seconds of this process from `/proc/self/stat`. (The
/// process collector's `process_cpu_seconds_total` counts whole seconds only,
/// too coarse for CPU-per-packet figures.)
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split(' ').collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ
}

impl Collector for MediaPlane {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut out: Vec<MetricFamily> = self.families().iter().flat_map(|c| c.collect()).collect();
        out.push(self.delay_family());
        out
    }
}
