//! Shard counters. A shard counts in plain integers on its own thread
//! ([`ShardStats`]) and publishes a copy into relaxed atomics once per loop
//! turn ([`SharedStats`]), so the packet path takes no lock and shares no
//! cache line with other shards; a scrape reads the atomics.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Counters of one shard; plain integers, written by the owner thread only.
        #[derive(Debug, Default, Clone, PartialEq, Eq)]
        pub struct ShardStats {
            $($(#[$doc])* pub $name: u64,)*
        }

        /// The last published copy of a shard's [`ShardStats`].
        #[derive(Debug, Default)]
        pub struct SharedStats {
            $($name: AtomicU64,)*
        }

        impl SharedStats {
            pub fn publish(&self, s: &ShardStats) {
                $(self.$name.store(s.$name, Ordering::Relaxed);)*
            }

            pub fn snapshot(&self) -> ShardStats {
                ShardStats { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

counters! {
    /// UDP datagrams received.
    datagrams_in,
    bytes_in,
    /// UDP datagrams sent.
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
    /// Media messages for another shard dropped because its lane was full.
    dropped_lane_full,
    /// PLI/FIR received from subscribers.
    keyframe_requests_in,
    /// Keyframe requests sent to publishers (after merging).
    keyframe_requests,
    data_relayed,
    data_dropped,
}
