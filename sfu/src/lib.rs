//! Switchboard's media plane: a selective forwarding unit built on str0m.
//!
//! # Layout
//! - [`core`]: sans-IO state. [`core::shard::ShardCore`] owns the participants
//!   of one shard (one str0m `Rtc` each, in RTP mode), demultiplexes datagrams,
//!   and forwards RTP, keyframe requests and data channel messages.
//!   [`core::rooms::Rooms`] is the room directory: who is where, publishing what.
//! - [`io`]: one thread per shard with its own UDP socket and bounded lanes;
//!   [`io::turn`] is the loop turn it runs, shared with the test bed.
//! - [`runtime`]: [`Sfu`], which starts the shards and is what signalling calls.
//! - [`record`]: the recorder thread: tapped packets → WebM files.
//! - [`stats`]: per-shard counters, published without locks for scraping.
//!
//! # Run loop of a shard
//! Wait for the socket, a lane or the next deadline → feed inputs to
//! `ShardCore::handle_*` → drain `poll_transmit` to the socket, `poll_media`
//! to other shards (right after each receive batch) and `poll_output` to the
//! control thread. Inside the core, every `Rtc` mutation is followed by
//! draining it to `Output::Timeout`.
//!
//! # Shard rules
//! A participant lives on one shard, and a room stays on one shard while it
//! fits (`core::placement`). A packet never waits on another thread's lock:
//! media to other shards goes over bounded channels, one message per
//! destination shard, dropped and counted when full; events for the control
//! plane go over a channel to its thread, which answers with commands.
//!
//! # Panics
//! Network input never panics; an `expect` names the invariant it relies on.

pub mod core;
pub mod error;
pub mod io;
pub mod record;
pub mod runtime;
pub mod stats;
#[cfg(feature = "testbed")]
pub mod testbed;

pub use crate::core::command::{ClientEvent, JoinRequest, MidInfo, ParticipantInfo, Permissions, Signal, TrackInfo};
pub use crate::core::ids::{ParticipantId, ShardId, TrackId, TrackKind, TrackSource};
pub use crate::core::placement::DEFAULT_SPILL_AT;
pub use crate::core::rooms::Joined;
pub use crate::error::ErrorCode;
pub use record::RecordingEvent;
pub use runtime::{EventSink, Sfu, SfuConfig};
