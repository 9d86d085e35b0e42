//! Threads and sockets around the sans-IO core.

pub mod worker;
