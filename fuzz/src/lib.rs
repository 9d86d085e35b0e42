//! What the fuzz targets share: structure-aware inputs (so the fuzzer gets
//! past the first check a parser makes) and the set-ups they run them in.
//!
//! - `wire`: datagrams shaped like STUN, DTLS or RTP, or plain bytes.
//! - `sdp`: offers and answers edited from a real one.
//! - `bed`: the media plane's test bed with participants joined or connected.
//! - `json`: JSON values of bounded depth.
//! - `server`: the real signalling server, started once per fuzz process.
//! - `targets`: the fuzz targets themselves.

pub mod bed;
pub mod json;
pub mod sdp;
pub mod server;
pub mod targets;
pub mod wire;
