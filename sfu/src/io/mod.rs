//! Threads and sockets around the sans-IO core.
//!
//! - `batch`: batched UDP (recvmmsg/sendmmsg, GSO).
//! - `tcp`: ICE over TCP: the listener, framing, a shard's connections.
//! - `turn`: one loop turn of a shard, shared with the test bed.
//! - `worker`: a shard's thread, socket and lanes.

pub mod batch;
pub mod tcp;
pub mod turn;
pub mod worker;
