//! Sans-IO media plane: no sockets, no threads, no clock reads. Time comes in
//! as an argument, so tests drive it faster than real time.

pub mod allocate;
pub mod command;
pub mod demux;
pub mod dynacast;
pub mod forwarder;
pub mod ids;
pub mod keyframe;
pub mod layers;
pub mod participant;
pub mod placement;
pub mod rate;
pub mod rooms;
pub mod shard;
pub mod speech;
pub mod timer;
