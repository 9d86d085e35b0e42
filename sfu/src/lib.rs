//! Switchboard's media plane: a selective forwarding unit built on str0m.
//!
//! # Layout
//! - [`core`]: sans-IO state. [`core::shard::ShardCore`] owns the participants
//!   of one shard (one str0m `Rtc` each, in RTP mode), demultiplexes datagrams,
//!   and forwards RTP, keyframe requests and data channel messages.
//!   [`core::rooms::Rooms`] is the room directory: who is where, publishing what.
//! - [`io`]: one thread per shard with its own UDP socket and bounded lanes.
//! - [`runtime`]: [`Sfu`], which starts the shards and is what signalling calls.
//! - [`stats`]: per-shard counters, published without locks for scraping.
//!
//! # Run loop of a shard
//! Wait for the socket, a lane or the next deadline → feed inputs to
//! `ShardCore::handle_*` → drain `poll_transmit` to the socket and
//! `poll_output` to the control plane, other shards and clients. Inside the
//! core, every `Rtc` mutation is followed by draining it to `Output::Timeout`.
//!
//! # Shard rules
//! A participant lives on one shard. A packet never waits on another shard's
//! lock: media to other shards goes over bounded channels, one message per
//! destination shard, dropped and counted when full.
//!
//! # Panics
//! Network input never panics; an `expect` names the invariant it relies on.

pub mod core;
pub mod io;
pub mod runtime;
pub mod stats;
#[cfg(feature = "testbed")]
pub mod testbed;

pub use crate::core::command::{
    ClientEvent, ErrorCode, JoinRequest, MidInfo, ParticipantInfo, Permissions, Signal, TrackInfo,
};
pub use crate::core::ids::{ParticipantId, ShardId, TrackId, TrackKind, TrackSource};
pub use crate::core::rooms::Joined;
pub use runtime::{EventSink, Sfu, SfuConfig};
