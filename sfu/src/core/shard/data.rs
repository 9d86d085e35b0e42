//! Data channel relay: a message from one participant goes to every other
//! member of its room, tagged with the sender; other shards get one copy
//! each, and only those the directory says hold members of the room.

use std::sync::Arc;
use std::time::Instant;

use tracing::debug;

use super::{ShardCore, MAX_DATA_BUFFERED};
use crate::core::command::{MediaMsg, RoomData};
use crate::core::ids::ParticipantId;

impl ShardCore {
    pub(super) fn relay_data(&mut self, msg: Arc<RoomData>, from_remote: bool, now: Instant) {
        let f = &mut self.fabric;
        if !from_remote {
            for &shard in f.room_shards.get(&msg.room).into_iter().flatten() {
                f.media_out.push_back((shard, MediaMsg::Data(msg.clone())));
            }
        }
        let Some(members) = f.rooms.get(&msg.room).cloned() else { return };
        for slot in members {
            let gen = self.peers.generation(slot);
            let Some(p) = self.peers.get_mut(slot) else { continue };
            if p.id == msg.from {
                continue;
            }
            let stats = &mut self.fabric.stats;
            let Some(cid) = p.channel else {
                stats.data_dropped += 1;
                continue;
            };
            let Some(mut ch) = p.rtc.channel(cid) else { continue };
            let sent = ch.buffered_amount() <= MAX_DATA_BUFFERED && ch.write(msg.binary, &msg.payload).unwrap_or(false);
            if sent {
                stats.data_relayed += 1;
            } else {
                stats.data_dropped += 1;
                debug!(participant = %p.id, room = %p.room, "data channel full; relayed message dropped");
            }
            self.fabric.drive(p, slot, gen, now);
        }
    }
}

/// Tags a relayed data channel message with its sender. Text becomes JSON
/// `{"from","participant","data"}`; binary gets a prefix of one length byte
/// and the sender's identity (truncated to 255 bytes).
pub fn tag_data(identity: &str, pid: ParticipantId, binary: bool, data: &[u8]) -> Arc<[u8]> {
    if binary {
        let id = &identity.as_bytes()[..identity.len().min(255)];
        let mut v = Vec::with_capacity(1 + id.len() + data.len());
        v.push(id.len() as u8);
        v.extend_from_slice(id);
        v.extend_from_slice(data);
        v.into()
    } else {
        let text = String::from_utf8_lossy(data);
        serde_json::json!({ "from": identity, "participant": pid, "data": text }).to_string().into_bytes().into()
    }
}
