//! One loop turn of a shard, shared by the worker thread (a UDP socket and
//! channels) and the test bed (queues in memory, virtual time), so the
//! in-process tests run the production loop.
//!
//! A turn: commands → media from other shards → up to [`RECV_BATCHES`]
//! receive batches → timers → hand outputs on. After every input batch,
//! media for other shards is handed over at once (they forward it in
//! parallel) and the legs the batch wrote to are drained and sent, so the
//! forwarding delay stays one batch whatever else the turn has to do.

use std::io;
use std::time::Instant;

use str0m::net::Transmit;

use super::batch::Sent;
use crate::core::command::{MediaMsg, ShardCommand};
use crate::core::ids::ShardId;
use crate::core::shard::{ShardCore, ShardOutput, ShardStats, UfragChange};

/// Receive batches per loop turn before commands and timers get a look in;
/// bounds the latency a burst can add to control work.
pub const RECV_BATCHES: usize = 8;
/// Commands and media messages taken per loop turn, for the same reason.
pub const LANE_BUDGET: usize = 1024;
/// Messages from other shards handled before the legs they wrote to are
/// drained: a receive batch's worth, so relayed media waits no longer than
/// local media, and a burst from another shard cannot fill a leg's send
/// buffer (str0m's holds 1,000 video packets) before it is drained.
pub const MEDIA_BATCH: usize = 32;
/// Subscriber legs drained per send: a room of hundreds gets its copies out
/// in waves instead of all after the last leg is done.
pub const DRAIN_LEGS: usize = 32;
/// Datagrams handed to one send: enough that a turn's fan-out goes in a few
/// calls and a leg's run of packets is rarely cut in two.
pub const SEND_CHUNK: usize = 128;

/// What a turn needs from the shard's surroundings.
pub trait ShardIo {
    fn now(&self) -> Instant;
    /// The next command from the control plane.
    fn command(&mut self) -> Option<ShardCommand>;
    /// The next media message another shard handed over.
    fn media(&mut self) -> Option<MediaMsg>;
    /// Feeds one batch of received datagrams to `core.handle_receive`;
    /// `Err(WouldBlock)` when nothing is waiting.
    fn recv(&mut self, core: &mut ShardCore, now: Instant) -> io::Result<usize>;
    /// Sends the datagrams (and may take them out of `batch`).
    fn send(&mut self, batch: &mut Vec<Transmit>) -> Sent;
    /// Hands a message to another shard; false if its lane is full.
    fn to_shard(&mut self, shard: ShardId, msg: MediaMsg) -> bool;
    /// Wakes the shards handed messages since the last call.
    fn wake_shards(&mut self);
    /// Hands an event to the control plane (or a client).
    fn to_control(&mut self, out: ShardOutput);
    /// Publishes the counters for scraping, once per turn.
    fn publish(&mut self, _stats: &ShardStats) {}
    /// A ufrag of this shard's participants came or went (for ICE-TCP).
    fn ufrag_changed(&mut self, _change: UfragChange) {}
}

/// The loop state a shard keeps between turns.
pub struct Driver {
    /// The socket may have datagrams waiting (edge-triggered readiness:
    /// set by the poller, cleared on `WouldBlock`).
    pub readable: bool,
    out: Vec<Transmit>,
}

impl Default for Driver {
    fn default() -> Self {
        Driver { readable: true, out: Vec::with_capacity(SEND_CHUNK) }
    }
}

impl Driver {
    /// Runs one turn; true once a `Shutdown` command was handled.
    pub fn turn(&mut self, core: &mut ShardCore, io: &mut impl ShardIo) -> bool {
        let now = io.now();
        let mut shutdown = false;
        for _ in 0..LANE_BUDGET {
            let Some(cmd) = io.command() else { break };
            shutdown |= matches!(cmd, ShardCommand::Shutdown);
            core.handle_command(now, cmd);
        }
        for _ in 0..LANE_BUDGET / MEDIA_BATCH {
            let now = io.now();
            let mut n = 0;
            while n < MEDIA_BATCH {
                let Some(msg) = io.media() else { break };
                core.handle_media(now, msg);
                n += 1;
            }
            if n == 0 {
                break;
            }
            // Packets other shards passed on: out now, like a receive batch.
            self.after_input(core, io, now);
        }
        if self.readable {
            for _ in 0..RECV_BATCHES {
                let now = io.now();
                match io.recv(core, now) {
                    Ok(_) => self.after_input(core, io, now),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.readable = false;
                        break;
                    }
                    // ICMP errors from earlier sends surface here; they are not fatal.
                    Err(e) => tracing::debug!(shard = core.id(), "recv: {e}"),
                }
            }
        }
        core.handle_timeout(io.now());
        self.flush(core, io, None);
        hand_over_media(core, io);
        while let Some(out) = core.poll_output() {
            io.to_control(out);
        }
        while let Some(change) = core.poll_ufrag() {
            io.ufrag_changed(change);
        }
        io.publish(core.stats());
        shutdown
    }

    /// After an input batch received at `since`: media for other shards
    /// first (they work on it in parallel), then the written legs, wave by
    /// wave.
    fn after_input(&mut self, core: &mut ShardCore, io: &mut impl ShardIo, since: Instant) {
        hand_over_media(core, io);
        loop {
            let more = core.drain_written(io.now(), DRAIN_LEGS);
            self.flush(core, io, Some(since));
            if !more {
                break;
            }
        }
        // Drains can make media for others too (keyframe requests).
        hand_over_media(core, io);
    }

    /// Sends everything the core has queued. With `since` (when the input
    /// that made it arrived), each send's datagrams count that long in the
    /// forwarding-delay histogram.
    fn flush(&mut self, core: &mut ShardCore, io: &mut impl ShardIo, since: Option<Instant>) {
        loop {
            self.out.clear();
            self.out.extend(std::iter::from_fn(|| core.poll_transmit()).take(SEND_CHUNK));
            if self.out.is_empty() {
                return;
            }
            let sent = io.send(&mut self.out);
            let stats = core.stats_mut();
            stats.datagrams_out += sent.datagrams;
            stats.bytes_out += sent.bytes;
            stats.send_failed += sent.failed;
            stats.send_messages += sent.messages;
            if let Some(t) = since {
                stats.delay.record(io.now().saturating_duration_since(t), sent.datagrams);
            }
        }
    }
}

fn hand_over_media(core: &mut ShardCore, io: &mut impl ShardIo) {
    let mut any = false;
    while let Some((shard, msg)) = core.poll_media() {
        if io.to_shard(shard, msg) {
            any = true;
        } else {
            core.stats_mut().dropped_lane_full += 1;
        }
    }
    if any {
        io.wake_shards();
    }
}
