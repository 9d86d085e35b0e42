//! A shard's thread: one UDP socket, a command lane, a media lane, and the
//! `ShardCore` it drives, one [`Driver::turn`] per wake-up. Nothing here is
//! shared with other shards except the channel senders and wakers used to
//! hand them values; events for the control plane go over a channel too, so
//! a shard never waits on a lock of the control plane.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::{Events, Interest, Poll, Token, Waker};
use str0m::net::Transmit;
use tracing::{debug, warn};

use super::batch::{RecvBatch, SendBatch, Sent};
use super::turn::{Driver, ShardIo};
use crate::core::command::{MediaMsg, ShardCommand};
use crate::core::ids::ShardId;
use crate::core::shard::{ShardCore, ShardOutput, ShardStats};
use crate::stats::SharedStats;

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);

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
    /// Unbounded: commands are rare and must never be lost.
    pub commands: Sender<ShardCommand>,
    /// Bounded: a full lane drops media rather than stall the sender.
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
    pub socket: UdpSocket,
    /// Address written in candidates; passed to str0m as the destination.
    pub candidate_addr: SocketAddr,
    pub lanes: ShardLanes,
    pub peers: Vec<ShardHandle>,
    /// Events for the control plane's thread (unbounded: never dropped).
    pub control: Sender<ShardOutput>,
    /// Where this shard publishes its counters once per loop turn.
    pub stats: Arc<SharedStats>,
}

/// The worker's side of a turn: the socket and the channels.
struct UdpIo {
    socket: UdpSocket,
    candidate_addr: SocketAddr,
    rx: RecvBatch,
    tx: SendBatch,
    commands: Receiver<ShardCommand>,
    media: Receiver<MediaMsg>,
    peers: Vec<ShardHandle>,
    /// Shards handed a message since the last wake-up.
    wake: Vec<bool>,
    control: Sender<ShardOutput>,
    stats: Arc<SharedStats>,
}

impl ShardIo for UdpIo {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn command(&mut self) -> Option<ShardCommand> {
        self.commands.try_recv().ok()
    }

    fn media(&mut self) -> Option<MediaMsg> {
        self.media.try_recv().ok()
    }

    fn recv(&mut self, core: &mut ShardCore, now: Instant) -> std::io::Result<usize> {
        let n = self.rx.recv(&self.socket)?;
        for i in 0..n {
            if let Some((source, data)) = self.rx.get(i) {
                core.handle_receive(now, source, self.candidate_addr, data);
            }
        }
        Ok(n)
    }

    fn send(&mut self, batch: &mut Vec<Transmit>) -> Sent {
        self.tx.send(&self.socket, batch, |t| (t.destination, &t.contents[..]))
    }

    fn to_shard(&mut self, shard: ShardId, msg: MediaMsg) -> bool {
        let ok = self.peers[shard].media.try_send(msg).is_ok();
        self.wake[shard] |= ok;
        ok
    }

    fn wake_shards(&mut self) {
        for (shard, w) in self.wake.iter_mut().enumerate() {
            if std::mem::take(w) {
                let _ = self.peers[shard].waker.wake();
            }
        }
    }

    fn to_control(&mut self, out: ShardOutput) {
        // The control thread outlives the shards; after it is gone nobody listens.
        let _ = self.control.send(out);
    }

    fn publish(&mut self, stats: &ShardStats) {
        self.stats.publish(stats);
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
        let wake = vec![false; peers.len()];
        let mut io = UdpIo {
            socket,
            candidate_addr,
            rx: RecvBatch::default(),
            tx: SendBatch::default(),
            commands,
            media,
            peers,
            wake,
            control,
            stats,
        };
        let mut events = Events::with_capacity(64);
        let mut driver = Driver::default();
        loop {
            let wait = if driver.readable {
                Duration::ZERO
            } else {
                let now = Instant::now();
                core.next_timeout().map_or(MAX_WAIT, |t| t.saturating_duration_since(now)).min(MAX_WAIT)
            };
            if let Err(e) = poll.poll(&mut events, Some(wait)) {
                if e.kind() != ErrorKind::Interrupted {
                    warn!(shard = core.id(), "poll: {e}");
                }
            }
            driver.readable |= events.iter().any(|e| e.token() == SOCKET);
            if driver.turn(&mut core, &mut io) {
                debug!(shard = core.id(), "shard stopped");
                return;
            }
        }
    }
}
