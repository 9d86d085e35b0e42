//! ICE over TCP (RFC 6544, passive candidates): for clients whose network
//! lets no UDP through to us.
//!
//! - `framing`: RFC 4571 framing (a two-byte length before each packet).
//! - `listener`: the one listening socket; hands a new connection to the
//!   shard owning the participant its first STUN request names.
//! - `conns`: a shard's connections: frames in, bounded queues out.

pub mod conns;
pub mod framing;
pub mod listener;
