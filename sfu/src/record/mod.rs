//! Recording in-process, without transcoding: a route *tap* on the
//! publisher's shard hands each recorded packet (the shared
//! `Arc<MediaPacket>`, not a copy) to the recorder thread over a bounded
//! lane, and the thread reorders, reassembles and muxes them into WebM as
//! the call goes. The shard never waits on it: a full lane drops and counts.
//!
//! - `tap`: what a shard holds of a recording, and the lanes.
//! - `reorder`: a small jitter buffer per stream.
//! - `frames`: RTP → VP8 frames and Opus packets; keyframe gating after loss.
//! - `clock`: RTP time → one timeline, from the publishers' sender reports.
//! - `file`: one WebM file (libwebm), crash-safe as it is written.
//! - `recorder`: the state of every recorded participant and its files.

mod clock;
mod file;
mod frames;
mod recorder;
mod reorder;
pub mod tap;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::select;

pub use self::recorder::{RecorderCore, RecordingEvent};
use self::tap::RecorderInbox;
pub use self::tap::{RecordMsg, RecorderLanes, Tap, TapInfo};
use crate::core::command::ShardCommand;
use crate::io::worker::ShardHandle;
use crate::runtime::EventSink;

/// The recorder thread: until every shard has dropped its lanes.
pub fn run(dir: PathBuf, inbox: RecorderInbox, shards: Vec<ShardHandle>, sink: Arc<dyn EventSink>) {
    let mut core = RecorderCore::new(dir, Instant::now());
    let (mut media_open, mut control_open) = (true, true);
    // Both close together: when the shards have stopped.
    while media_open && control_open {
        let deadline = core.next_timeout(Instant::now());
        let msg = select! {
            recv(inbox.media) -> m => m.map_err(|_| media_open = false).ok(),
            recv(inbox.control) -> m => {
                // A close comes after the tap's last packets: write them first.
                if m.is_ok() {
                    while let Ok(p) = inbox.media.try_recv() {
                        core.handle(p, Instant::now());
                    }
                }
                m.map_err(|_| control_open = false).ok()
            }
            default(deadline.saturating_duration_since(Instant::now())) => None,
        };
        let now = Instant::now();
        if let Some(msg) = msg {
            core.handle(msg, now);
        }
        core.handle_timeout(now);
        while let Some((shard, track, layer)) = core.poll_keyframe_request() {
            if let Some(h) = shards.get(shard) {
                h.command(ShardCommand::RecorderKeyframe { track, layer });
            }
        }
        while let Some(ev) = core.poll_event() {
            sink.recording(ev);
        }
    }
    core.close_all(Instant::now());
    while let Some(ev) = core.poll_event() {
        sink.recording(ev);
    }
}
