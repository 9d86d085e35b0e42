//! Threads and sockets around the sans-IO core.
//!
//! - `batch`: batched UDP (recvmmsg/sendmmsg, GSO).
//! - `turn`: one loop turn of a shard, shared with the test bed.
//! - `worker`: a shard's thread, socket and lanes.

pub mod batch;
pub mod turn;
pub mod worker;
