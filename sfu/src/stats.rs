//! Shard counters. A shard counts in plain integers on its own thread
//! ([`ShardStats`]) and publishes a copy into relaxed atomics once per loop
//! turn ([`SharedStats`]), so the packet path takes no lock and shares no
//! cache line with other shards; a scrape reads the atomics.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (seconds) of the forwarding-delay buckets; one more for +Inf.
pub const DELAY_BUCKETS: [f64; 12] =
    [25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3];

/// How long forwarded packets spent inside the shard: from the receive batch
/// that brought them until the send call that took them returned. Every
/// packet of a send counts the time of its last, so this is an upper bound;
/// time spent queued in the socket before the receive is not seen.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DelayHistogram {
    /// Non-cumulative counts per bucket of [`DELAY_BUCKETS`], then +Inf.
    pub counts: [u64; DELAY_BUCKETS.len() + 1],
    pub sum_ns: u64,
}

impl DelayHistogram {
    /// Records `n` packets that each took `d`.
    pub fn record(&mut self, d: std::time::Duration, n: u64) {
        let s = d.as_secs_f64();
        let i = DELAY_BUCKETS.iter().position(|b| s <= *b).unwrap_or(DELAY_BUCKETS.len());
        self.counts[i] += n;
        self.sum_ns += d.as_nanos() as u64 * n;
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Counters of one shard; plain integers, written by the owner thread only.
        #[derive(Debug, Default, Clone, PartialEq, Eq)]
        pub struct ShardStats {
            $($(#[$doc])* pub $name: u64,)*
            /// Time from receiving a batch to sending what it made.
            pub delay: DelayHistogram,
        }

        /// The last published copy of a shard's [`ShardStats`].
        #[derive(Debug, Default)]
        pub struct SharedStats {
            $($name: AtomicU64,)*
            delay: [AtomicU64; DELAY_BUCKETS.len() + 2],
        }

        impl SharedStats {
            pub fn publish(&self, s: &ShardStats) {
                $(self.$name.store(s.$name, Ordering::Relaxed);)*
                for (a, v) in self.delay.iter().zip(s.delay.counts.iter().chain([&s.delay.sum_ns])) {
                    a.store(*v, Ordering::Relaxed);
                }
            }

            pub fn snapshot(&self) -> ShardStats {
                let mut delay = DelayHistogram::default();
                for (i, a) in self.delay.iter().enumerate() {
                    let v = a.load(Ordering::Relaxed);
                    match delay.counts.get_mut(i) {
                        Some(c) => *c = v,
                        None => delay.sum_ns = v,
                    }
                }
                ShardStats { $($name: self.$name.load(Ordering::Relaxed),)* delay }
            }
        }
    };
}

counters! {
    /// UDP datagrams (and ICE-TCP frames) received.
    datagrams_in,
    bytes_in,
    /// UDP datagrams (and ICE-TCP frames) sent.
    datagrams_out,
    bytes_out,
    /// RTP packets received from publishers.
    rtp_in,
    /// RTP packets written on subscriber legs.
    rtp_forwarded,
    /// Datagrams from an unknown address without a verifiable STUN request.
    dropped_unknown_source,
    dropped_unparseable,
    /// Packets for a subscriber leg not yet negotiated or connected.
    dropped_not_ready,
    /// Datagrams the kernel refused to send (full buffer, unreachable).
    send_failed,
    /// Messages given to the kernel for `datagrams_out`: fewer when GSO
    /// carried a leg's run of packets in one.
    send_messages,
    /// Media messages for another shard dropped because its lane was full.
    dropped_lane_full,
    /// NACKs received from subscribers (str0m retransmits from its buffer);
    /// counted from str0m's periodic stats, so up to one interval late.
    nacks_received,
    /// NACKs sent to publishers.
    nacks_sent,
    /// PLI/FIR received from subscribers.
    keyframe_requests_in,
    /// Keyframe requests sent to publishers (after merging).
    keyframe_requests,
    data_relayed,
    data_dropped,
    /// Data channel messages dropped: their sender was over its byte rate.
    data_rate_limited,
    /// str0m timeouts a participant's own deadline asked for (ICE, RTCP,
    /// NACK and TWCC timers, pacing): a fixed cost per peer, whatever it forwards.
    rtc_timer_timeouts,
    /// str0m timeouts that release packets written on a leg (one per leg
    /// and receive batch): the per-leg cost of forwarding.
    rtc_drain_timeouts,
    /// ICE-TCP connections this shard took over from the listener, and
    /// closed (by the far end, on error, or idle).
    tcp_opened,
    tcp_closed,
    /// Packets dropped because an ICE-TCP connection's send queue was full.
    tcp_send_dropped,
    /// Recorded packets dropped because the recorder's lane was full (a
    /// stalled disk): the file gets a gap, forwarding goes on.
    record_dropped,
}
