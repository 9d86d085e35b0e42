//! Threads and sockets around the sans-IO core.

pub mod batch;
pub mod worker;
