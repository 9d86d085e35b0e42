//! What a shard holds of a recording: the tap on a recorded participant's
//! routes. Offering a packet never blocks: the media lane is bounded, and
//! a full one drops the packet (the recorder's reorder buffer then sees
//! the gap, marks it in the file's count and waits for a keyframe).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::core::command::MediaPacket;
use crate::core::ids::{ParticipantId, ShardId, TrackSource};

/// Packets in flight to the recorder at most (~4 s of a 1.5 Mb/s camera
/// and its audio): room for the disk to hiccup.
pub const MEDIA_LANE: usize = 2048;

/// Who is recorded, for which recording.
#[derive(Debug)]
pub struct TapInfo {
    /// Unique per tap (a participant's part in one recording).
    pub id: u64,
    pub recording: Arc<str>,
    pub participant: ParticipantId,
    pub identity: Arc<str>,
    /// Where the publisher is: keyframe requests go there.
    pub shard: ShardId,
    /// Packets the lane had no room for.
    pub dropped: AtomicU64,
}

#[derive(Debug)]
pub enum RecordMsg {
    Packet {
        tap: Arc<TapInfo>,
        source: TrackSource,
        pkt: Arc<MediaPacket>,
    },
    /// The tap ended (recording stopped, the participant left): its files close.
    Closed {
        tap: Arc<TapInfo>,
    },
}

/// The senders every shard gets: packets (bounded) and closes (never lost).
#[derive(Debug, Clone)]
pub struct RecorderLanes {
    pub media: Sender<RecordMsg>,
    pub control: Sender<RecordMsg>,
}

/// The recorder's receiving ends.
pub struct RecorderInbox {
    pub media: Receiver<RecordMsg>,
    pub control: Receiver<RecordMsg>,
}

pub fn lanes() -> (RecorderLanes, RecorderInbox) {
    let (media, media_rx) = crossbeam_channel::bounded(MEDIA_LANE);
    let (control, control_rx) = crossbeam_channel::unbounded();
    (RecorderLanes { media, control }, RecorderInbox { media: media_rx, control: control_rx })
}

/// One recorded participant on its shard.
#[derive(Debug, Clone)]
pub struct Tap {
    pub info: Arc<TapInfo>,
    lanes: RecorderLanes,
}

impl Tap {
    pub fn new(info: TapInfo, lanes: RecorderLanes) -> Self {
        Tap { info: Arc::new(info), lanes }
    }

    /// Hands a packet to the recorder; false (and counted) if the lane is full.
    pub fn offer(&self, source: TrackSource, pkt: &Arc<MediaPacket>) -> bool {
        let msg = RecordMsg::Packet { tap: self.info.clone(), source, pkt: pkt.clone() };
        match self.lanes.media.try_send(msg) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.info.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Ends the tap: the recorder closes its files after the packets sent so far.
    pub fn close(&self) {
        let _ = self.lanes.control.send(RecordMsg::Closed { tap: self.info.clone() });
    }
}
