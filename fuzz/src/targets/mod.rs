//! One module per fuzz target: its input (`Input`, built by `arbitrary`
//! from the fuzzer's bytes) and `run`, which panics on a bug. The
//! libFuzzer binaries in `fuzz_targets/` call these, and so does the
//! replay test (`tests/targets.rs`) that `make test` runs.

pub mod http_bodies;
pub mod peer_session;
pub mod recording;
pub mod signalling_session;
pub mod stranger_datagram;
pub mod tcp_framing;
