//! A shard's thread: one UDP socket, its ICE-TCP connections, a command
//! lane, a media lane, and the `ShardCore` it drives, one [`Driver::turn`]
//! per wake-up. Nothing here is
//! shared with other shards except the channel senders and wakers used to
//! hand them values; events for the control plane go over a channel too, so
//! a shard never waits on a lock of the control plane.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::{Events, Interest, Poll, Token, Waker};
use str0m::net::{Protocol, Transmit};
use tracing::{debug, warn};

use super::batch::{RecvBatch, SendBatch, Sent};
use super::tcp::conns::TcpConns;
use super::tcp::listener::{Handoff, RouteUpdate, ShardTcp};
use super::turn::{Driver, ShardIo, SEND_CHUNK};
use crate::core::command::{MediaMsg, ShardCommand};
use crate::core::ids::ShardId;
use crate::core::shard::{ShardCore, ShardOutput, ShardStats, UfragChange};
use crate::stats::SharedStats;

const WAKER: Token = Token(0);
/// UDP sockets (one per address family) are tokens 1 and 2.
const FIRST_SOCKET: usize = 1;

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
    /// ICE-TCP connections from the listener.
    pub tcp: Sender<Handoff>,
}

impl ShardHandle {
    /// The listener's way to hand this shard connections.
    pub fn tcp(&self) -> ShardTcp {
        ShardTcp { conns: self.tcp.clone(), waker: self.waker.clone() }
    }

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
    pub tcp: Receiver<Handoff>,
}

/// Creates the lanes and handle for one shard.
pub fn lanes() -> std::io::Result<(ShardHandle, ShardLanes)> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let (ctx, crx) = crossbeam_channel::unbounded();
    let (mtx, mrx) = crossbeam_channel::bounded(MEDIA_LANE_DEPTH);
    let (ttx, trx) = crossbeam_channel::unbounded();
    let handle = ShardHandle { commands: ctx, media: mtx, waker, tcp: ttx };
    Ok((handle, ShardLanes { poll, commands: crx, media: mrx, tcp: trx }))
}

pub struct Worker {
    pub core: ShardCore,
    /// One UDP socket per address family, each with the address written in
    /// its candidates (passed to str0m as the destination).
    pub sockets: Vec<(UdpSocket, SocketAddr)>,
    pub lanes: ShardLanes,
    pub peers: Vec<ShardHandle>,
    /// Events for the control plane's thread (unbounded: never dropped).
    pub control: Sender<ShardOutput>,
    /// Where this shard publishes its counters once per loop turn.
    pub stats: Arc<SharedStats>,
    /// With ICE-TCP: our TCP candidate address, and where to tell the
    /// listener which ufrags are ours.
    pub tcp: Option<TcpSide>,
}

pub struct TcpSide {
    pub candidate_addr: SocketAddr,
    pub routes: Sender<RouteUpdate>,
    pub listener: Arc<Waker>,
}

/// One of a shard's UDP sockets.
struct Udp {
    socket: UdpSocket,
    candidate_addr: SocketAddr,
    /// It may have datagrams waiting (edge-triggered: set by the poller,
    /// cleared on `WouldBlock`).
    readable: bool,
    tx: SendBatch,
}

/// The worker's side of a turn: the sockets and the channels.
struct UdpIo {
    shard: ShardId,
    udp: Vec<Udp>,
    tcp: Option<(TcpConns, Sender<RouteUpdate>, Arc<Waker>)>,
    rx: RecvBatch,
    /// A send batch split by address family when there are two sockets.
    first_family: Vec<Transmit>,
    other_family: Vec<Transmit>,
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
        let mut n = 0;
        for udp in self.udp.iter_mut().filter(|u| u.readable) {
            match self.rx.recv(&udp.socket) {
                Ok(k) => {
                    for i in 0..k {
                        if let Some((source, data)) = self.rx.get(i) {
                            core.handle_receive(now, Protocol::Udp, source, udp.candidate_addr, data);
                        }
                    }
                    n += k;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => udp.readable = false,
                Err(e) => return Err(e),
            }
        }
        let mut tcp_ready = false;
        if let Some((tcp, ..)) = &mut self.tcp {
            n += tcp.recv(core, now);
            tcp_ready = tcp.has_ready();
        }
        if n == 0 && !self.udp.iter().any(|u| u.readable) && !tcp_ready {
            return Err(ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    fn send(&mut self, batch: &mut Vec<Transmit>) -> Sent {
        let mut sent = Sent::default();
        if let Some((tcp, ..)) = &mut self.tcp {
            if batch.iter().any(|t| t.proto == Protocol::Tcp) {
                batch.retain(|t| {
                    let udp = t.proto == Protocol::Udp;
                    if !udp {
                        tcp.send(t, &mut sent);
                    }
                    udp
                });
                tcp.flush(&mut sent);
            }
        }
        if let [first, second] = &self.udp[..] {
            let v6 = second.candidate_addr.is_ipv6();
            if first.candidate_addr.is_ipv6() != v6 && batch.iter().any(|t| t.destination.is_ipv6() == v6) {
                // Split by family, keeping each destination's order; the
                // vectors are swapped, not reallocated.
                let mut first_family = std::mem::take(&mut self.first_family);
                for t in batch.drain(..) {
                    match t.destination.is_ipv6() == v6 {
                        true => self.other_family.push(t),
                        false => first_family.push(t),
                    }
                }
                std::mem::swap(batch, &mut first_family);
                self.first_family = first_family;
            }
        }
        for (udp, items) in self.udp.iter_mut().zip([&*batch, &self.other_family]) {
            if !items.is_empty() {
                let s = udp.tx.send(&udp.socket, items, |t| (t.destination, &t.contents[..]));
                sent.datagrams += s.datagrams;
                sent.bytes += s.bytes;
                sent.failed += s.failed;
                sent.messages += s.messages;
            }
        }
        self.other_family.clear();
        sent
    }

    fn ufrag_changed(&mut self, change: UfragChange) {
        if let Some((_, routes, listener)) = &self.tcp {
            // The listener outlives the shards; after it is gone nobody asks.
            if routes.send(RouteUpdate { shard: self.shard, change }).is_ok() {
                let _ = listener.wake();
            }
        }
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
        let Worker { mut core, sockets, lanes, peers, control, stats, tcp } = self;
        let ShardLanes { mut poll, commands, media, tcp: handoffs } = lanes;
        let mut udp = Vec::with_capacity(sockets.len());
        for (i, (socket, candidate_addr)) in sockets.into_iter().enumerate() {
            if let Err(e) = socket.set_nonblocking(true) {
                warn!(shard = core.id(), "socket: {e}");
                return;
            }
            // The std socket does the batched I/O; mio only watches its descriptor.
            let sock = socket2::SockRef::from(&socket);
            let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
            let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
            let fd = std::os::fd::AsRawFd::as_raw_fd(&socket);
            let token = Token(FIRST_SOCKET + i);
            if let Err(e) = poll.registry().register(&mut mio::unix::SourceFd(&fd), token, Interest::READABLE) {
                warn!(shard = core.id(), "register socket: {e}");
                return;
            }
            udp.push(Udp { socket, candidate_addr, readable: true, tx: SendBatch::default() });
        }
        let wake = vec![false; peers.len()];
        let tcp = match tcp.map(|t| poll.registry().try_clone().map(|r| (t, r))).transpose() {
            Ok(t) => t.map(|(t, registry)| {
                (TcpConns::new(t.candidate_addr, registry, handoffs, Instant::now()), t.routes, t.listener)
            }),
            Err(e) => {
                warn!(shard = core.id(), "registry: {e}");
                return;
            }
        };
        let mut io = UdpIo {
            shard: core.id(),
            udp,
            tcp,
            rx: RecvBatch::default(),
            first_family: Vec::with_capacity(SEND_CHUNK),
            other_family: Vec::with_capacity(SEND_CHUNK),
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
            for e in events.iter() {
                let socket = e.token().0.checked_sub(FIRST_SOCKET).and_then(|i| io.udp.get_mut(i));
                match (e.token(), socket, &mut io.tcp) {
                    (WAKER, ..) => {}
                    (_, Some(udp), _) => udp.readable = true,
                    (t, None, Some((tcp, ..))) => {
                        tcp.on_event(t, e.is_readable() || e.is_read_closed() || e.is_error(), e.is_writable());
                    }
                    _ => {}
                }
            }
            let mut tcp_ready = false;
            if let Some((tcp, ..)) = &mut io.tcp {
                let now = Instant::now();
                tcp.adopt(now);
                // What a full socket left queued, now that it has room.
                tcp.flush(&mut Sent::default());
                tcp.maintain(now, core.stats_mut());
                tcp_ready = tcp.has_ready();
            }
            driver.readable |= io.udp.iter().any(|u| u.readable) || tcp_ready;
            if driver.turn(&mut core, &mut io) {
                debug!(shard = core.id(), "shard stopped");
                return;
            }
        }
    }
}
