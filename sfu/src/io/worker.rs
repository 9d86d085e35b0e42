//! A shard's thread: one UDP socket, a command lane, a media lane, and the
//! `ShardCore` it drives. Nothing here is shared with other shards except the
//! channel senders and wakers used to hand them values.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::{Events, Interest, Poll, Token, Waker};
use tracing::{debug, warn};

use crate::core::command::{MediaMsg, ShardCommand};
use crate::core::shard::{ShardCore, ShardOutput};
use crate::runtime::Control;
use crate::stats::SharedStats;
use super::batch::{RecvBatch, SendBatch};

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);

/// Receive batches per loop turn before commands and timers get a look in;
/// bounds the latency a burst can add to control work.
const RECV_BATCHES: usize = 8;
/// Commands and media messages taken per loop turn, for the same reason.
const LANE_BUDGET: usize = 1024;
/// Media messages one shard may queue for another. At ~50k packets/s per
/// shard this is ~80 ms of media; beyond it a late packet is useless anyway.
pub const MEDIA_LANE_DEPTH: usize = 4096;
/// Upper bound on a poll wait, so a lost wake-up costs at most this much.
const MAX_WAIT: Duration = Duration::from_millis(100);
/// Socket buffers: a burst of a few hundred full-size datagrams fits.
const SOCKET_BUFFER: usize = 4 << 20;

/// What other threads hold to reach a shard.
#[derive(Clone)]
pub struct ShardHandle {
    pub commands: Sender<ShardCommand>,
    pub media: Sender<MediaMsg>,
    pub waker: Arc<Waker>,
}

impl ShardHandle {
    pub fn command(&self, cmd: ShardCommand) {
        // The receiver lives as long as the shard; after shutdown there is nobody to tell.
        if self.commands.send(cmd).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

/// The receiving ends a worker owns.
pub struct ShardLanes {
    pub poll: Poll,
    pub commands: Receiver<ShardCommand>,
    pub media: Receiver<MediaMsg>,
}

/// Creates the lanes and handle for one shard.
pub fn lanes() -> std::io::Result<(ShardHandle, ShardLanes)> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let (ctx, crx) = crossbeam_channel::unbounded();
    let (mtx, mrx) = crossbeam_channel::bounded(MEDIA_LANE_DEPTH);
    Ok((ShardHandle { commands: ctx, media: mtx, waker }, ShardLanes { poll, commands: crx, media: mrx }))
}

pub struct Worker {
    pub core: ShardCore,
    pub socket: std::net::UdpSocket,
    /// Address written in candidates; passed to str0m as the destination.
    pub candidate_addr: SocketAddr,
    pub lanes: ShardLanes,
    pub peers: Vec<ShardHandle>,
    pub control: Arc<Control>,
    /// Where this shard publishes its counters once per loop turn.
    pub stats: Arc<SharedStats>,
}

/// Datagrams handed to one `sendmmsg`: enough that a turn's fan-out goes in
/// a few calls and a leg's run of packets is rarely cut in two.
const SEND_CHUNK: usize = 128;

/// Sends everything the core has queued. With `since` (when the packets
/// that made it were received), each call's datagrams count that long in
/// the forwarding-delay histogram.
fn flush(core: &mut ShardCore, socket: &std::net::UdpSocket, tx: &mut SendBatch, out: &mut Vec<str0m::net::Transmit>, since: Option<Instant>) {
    loop {
        out.clear();
        out.extend(std::iter::from_fn(|| core.poll_transmit()).take(SEND_CHUNK));
        if out.is_empty() {
            return;
        }
        let sent = tx.send(socket, out, |t| (t.destination, &t.contents[..]));
        core.stats.datagrams_out += sent.datagrams;
        core.stats.bytes_out += sent.bytes;
        core.stats.send_failed += sent.failed;
        core.stats.send_messages += sent.messages;
        if let Some(t) = since {
            core.stats.delay.record(t.elapsed(), sent.datagrams);
        }
    }
}

/// Subscriber legs drained per send: a room of hundreds gets its copies out
/// in waves instead of all after the last leg is done.
const DRAIN_LEGS: usize = 32;

/// Drains the legs that packets received at `since` were written to, and
/// sends what they release, wave by wave.
fn send_written(core: &mut ShardCore, socket: &std::net::UdpSocket, tx: &mut SendBatch, out: &mut Vec<str0m::net::Transmit>, since: Instant) {
    loop {
        let more = core.drain_written(Instant::now(), DRAIN_LEGS);
        flush(core, socket, tx, out, Some(since));
        if !more {
            return;
        }
    }
}

impl Worker {
    pub fn run(self) {
        let Worker { mut core, socket, candidate_addr, lanes, peers, control, stats } = self;
        let ShardLanes { mut poll, commands, media } = lanes;
        if let Err(e) = socket.set_nonblocking(true) {
            warn!(shard = core.id(), "socket: {e}");
            return;
        }
        // The std socket does the batched I/O; mio only watches its descriptor.
        let sock = socket2::SockRef::from(&socket);
        let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
        let fd = std::os::fd::AsRawFd::as_raw_fd(&socket);
        if let Err(e) = poll.registry().register(&mut mio::unix::SourceFd(&fd), SOCKET, Interest::READABLE) {
            warn!(shard = core.id(), "register socket: {e}");
            return;
        }
        let mut events = Events::with_capacity(64);
        let mut rx = RecvBatch::default();
        let mut tx = SendBatch::default();
        let mut out: Vec<str0m::net::Transmit> = Vec::with_capacity(SEND_CHUNK);
        // Edge-triggered readiness: remember that the socket still has data
        // when the budget ran out before WouldBlock.
        let mut readable = true;
        let mut wake = vec![false; peers.len()];
        loop {
            let now = Instant::now();
            let wait = if readable {
                Duration::ZERO
            } else {
                core.next_timeout().map_or(MAX_WAIT, |t| t.saturating_duration_since(now)).min(MAX_WAIT)
            };
            if let Err(e) = poll.poll(&mut events, Some(wait)) {
                if e.kind() != ErrorKind::Interrupted {
                    warn!(shard = core.id(), "poll: {e}");
                }
            }
            readable |= events.iter().any(|e| e.token() == SOCKET);
            let now = Instant::now();
            let mut shutdown = false;
            for cmd in commands.try_iter().take(LANE_BUDGET) {
                shutdown |= matches!(cmd, ShardCommand::Shutdown);
                core.handle_command(now, cmd);
            }
            let mut relayed = false;
            for msg in media.try_iter().take(LANE_BUDGET) {
                core.handle_media(now, msg);
                relayed = true;
            }
            if relayed {
                // Packets other shards passed on: out now, like a receive batch.
                send_written(&mut core, &socket, &mut tx, &mut out, now);
            }
            if readable {
                for _ in 0..RECV_BATCHES {
                    match rx.recv(&socket) {
                        Ok(n) => {
                            let now = Instant::now();
                            for i in 0..n {
                                if let Some((source, data)) = rx.get(i) {
                                    core.handle_receive(now, source, candidate_addr, data);
                                }
                            }
                            // The batch's fan-out goes out before anything
                            // else is done: forwarding latency stays one batch.
                            send_written(&mut core, &socket, &mut tx, &mut out, now);
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            readable = false;
                            break;
                        }
                        // ICMP errors from earlier sends surface here; they are not fatal.
                        Err(e) => debug!(shard = core.id(), "recv: {e}"),
                    }
                }
            }
            core.handle_timeout(Instant::now());
            flush(&mut core, &socket, &mut tx, &mut out, None);
            while let Some(out) = core.poll_output() {
                match out {
                    ShardOutput::Control(ev) => control.on_shard_event(ev),
                    ShardOutput::Client(pid, ev) => control.deliver(pid, ev),
                    ShardOutput::Media(shard, msg) => match peers[shard].media.try_send(msg) {
                        Ok(()) => wake[shard] = true,
                        Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => core.stats.dropped_lane_full += 1,
                    },
                }
            }
            for (shard, w) in wake.iter_mut().enumerate() {
                if std::mem::take(w) {
                    let _ = peers[shard].waker.wake();
                }
            }
            stats.publish(&core.stats);
            if shutdown {
                debug!(shard = core.id(), "shard stopped");
                return;
            }
        }
    }
}
