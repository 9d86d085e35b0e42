//! `Sfu`: starts the shard threads and the control thread, and is the
//! control plane's entry point.
//!
//! Shards never take a lock of the control plane: their events (a track
//! published, a peer gone, an SDP answer for a client) go over one channel
//! to the control thread, which updates the room directory and answers with
//! commands. The directory sits behind a `std::sync::Mutex` that only the
//! control thread and signalling's calls (`join`, `leave`, counts) take: it
//! is touched on joins, leaves and publications (never per packet), and no
//! `.await` happens while it is held, so a blocking lock is the simple
//! right choice.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::Receiver;

use tracing::info;

use crate::core::command::{ClientEvent, JoinRequest, ShardCommand, ShardEvent, Signal};
use crate::core::ids::{ParticipantId, ShardId};
use crate::core::placement::DEFAULT_SPILL_AT;
use crate::core::rooms::{ControlOutput, Joined, Rooms};
use crate::core::shard::{ShardCore, ShardOutput};
use crate::io::tcp::listener::{Listener, ListenerStats};
use crate::io::worker::{self, ShardHandle, TcpSide, Worker};
use crate::record::{self, RecordingEvent};
use crate::stats::{ShardStats, SharedStats};

/// Each bind address with the address written into its candidates: the
/// public IP of its family if given, else the bind address itself.
fn bind_plan(config: &SfuConfig) -> std::io::Result<Vec<(IpAddr, IpAddr)>> {
    let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
    if config.udp_bind.is_empty() || config.udp_bind.len() > 2 {
        return Err(invalid("give one or two UDP bind addresses (at most one per family)".into()));
    }
    let mut plan = Vec::new();
    for &bind in &config.udp_bind {
        if plan.iter().any(|(b, _): &(IpAddr, IpAddr)| b.is_ipv6() == bind.is_ipv6()) {
            return Err(invalid(format!("two UDP bind addresses of one family ({bind})")));
        }
        let public = config.public_ip.iter().copied().find(|p| p.is_ipv6() == bind.is_ipv6());
        let public = match (public, bind.is_unspecified()) {
            (Some(p), _) => p,
            (None, false) => bind,
            (None, true) => {
                return Err(invalid(format!("binding {bind} needs a public IP of its family to write into candidates")))
            }
        };
        plan.push((bind, public));
    }
    Ok(plan)
}

/// A UDP socket on `addr`; an IPv6 one takes IPv6 only (an IPv4 socket
/// beside it serves IPv4), so each socket sees one family.
fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let err = |e: std::io::Error| std::io::Error::new(e.kind(), format!("binding UDP {addr}: {e}"));
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
    if addr.is_ipv6() {
        s.set_only_v6(true).map_err(err)?;
    }
    s.bind(&addr.into()).map_err(err)?;
    Ok(s.into())
}

/// Where signalling delivers events for one participant's connection.
pub trait EventSink: Send + Sync + 'static {
    fn deliver(&self, to: ParticipantId, event: ClientEvent);
    /// What the recorder did (files started, progressing, finished).
    fn recording(&self, _event: RecordingEvent) {}
}

#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// Worker threads, each with its own UDP socket.
    pub shards: usize,
    /// Addresses the UDP sockets bind to, at most one per family: each
    /// shard has a socket on each (an IPv6 socket takes IPv6 only).
    pub udp_bind: Vec<IpAddr>,
    /// First UDP port; shard `i` uses `udp_port + i`. 0 picks free ports.
    pub udp_port: u16,
    /// Addresses written into ICE candidates when a bind address is not
    /// what clients reach (1:1 NAT, or binding 0.0.0.0 / ::): the one of
    /// the socket's family.
    pub public_ip: Vec<IpAddr>,
    /// Members of one room a shard takes before the room spills onto
    /// another (see `core::placement`).
    pub room_spill_at: usize,
    /// Port of the ICE-TCP listener (on `udp_bind`), for clients whose
    /// network blocks UDP; `None`: no TCP candidates. 0 picks a free port.
    pub tcp_port: Option<u16>,
    /// Where recordings are written; `None`: rooms cannot be recorded.
    pub recordings_dir: Option<PathBuf>,
    /// What one participant may hold or do (tracks, data rate).
    pub participant_limits: crate::core::participant::ParticipantLimits,
}

impl Default for SfuConfig {
    fn default() -> Self {
        SfuConfig {
            shards: std::thread::available_parallelism().map_or(1, |n| n.get()),
            udp_bind: vec![IpAddr::from([127, 0, 0, 1])],
            udp_port: 50000,
            public_ip: Vec::new(),
            room_spill_at: DEFAULT_SPILL_AT,
            tcp_port: None,
            recordings_dir: None,
            participant_limits: Default::default(),
        }
    }
}

/// The control plane: room directory plus the means to reach shards and clients.
pub struct Control {
    rooms: Mutex<Rooms>,
    shards: Vec<ShardHandle>,
    sink: Arc<dyn EventSink>,
}

impl Control {
    fn run(&self, f: impl FnOnce(&mut Rooms, &mut Vec<ControlOutput>)) {
        let mut out = Vec::new();
        {
            // Invariant: no code panics while holding this lock (Rooms is plain data).
            let mut rooms = self.rooms.lock().expect("rooms lock poisoned");
            f(&mut rooms, &mut out);
        }
        self.dispatch(out);
    }

    fn dispatch(&self, out: Vec<ControlOutput>) {
        for o in out {
            match o {
                ControlOutput::Shard(shard, cmd) => self.shards[shard].command(cmd),
                ControlOutput::Client(pid, ev) => self.sink.deliver(pid, ev),
            }
        }
    }

    /// The control thread: what shards report, in the order each sent it.
    /// Ends when every shard has stopped (their senders are dropped).
    fn serve(&self, events: Receiver<ShardOutput>) {
        for out in events {
            match out {
                ShardOutput::Control(ev) => self.on_shard_event(ev),
                ShardOutput::Client(pid, ev) => self.sink.deliver(pid, ev),
            }
        }
    }

    fn on_shard_event(&self, ev: ShardEvent) {
        self.run(|rooms, out| rooms.handle_shard_event(ev, out));
    }
}

#[derive(Clone)]
pub struct Sfu {
    inner: Arc<Inner>,
}

struct Inner {
    control: Arc<Control>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    next_participant: AtomicU64,
    udp_addrs: Vec<SocketAddr>,
    stats: Vec<Arc<SharedStats>>,
    tcp: Option<TcpListening>,
}

/// The ICE-TCP listener's thread and what it is known by.
struct TcpListening {
    candidate_addr: SocketAddr,
    stats: Arc<ListenerStats>,
    /// Joined after the shards (their route senders gone, it stops when woken).
    thread: Mutex<Option<JoinHandle<()>>>,
    waker: Arc<mio::Waker>,
}

/// What the room directory holds right now.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoomCounts {
    pub rooms: usize,
    pub participants: usize,
    pub tracks: usize,
    pub subscriptions: usize,
}

impl Sfu {
    /// Binds one UDP socket per shard and starts the shard threads.
    pub fn start(config: SfuConfig, sink: Arc<dyn EventSink>) -> std::io::Result<Sfu> {
        let n = config.shards.max(1);
        let binds = bind_plan(&config)?;
        let mut sockets: Vec<Vec<(UdpSocket, SocketAddr)>> = Vec::with_capacity(n);
        for i in 0..n {
            let port = if config.udp_port == 0 { 0 } else { config.udp_port + i as u16 };
            let mut shard = Vec::with_capacity(binds.len());
            for &(bind, public) in &binds {
                let s = bind_udp(SocketAddr::new(bind, port))?;
                let candidate = SocketAddr::new(public, s.local_addr()?.port());
                shard.push((s, candidate));
            }
            sockets.push(shard);
        }
        let tcp_stats = Arc::new(ListenerStats::default());
        let (tcp_bind, tcp_public) = binds[0];
        let listener = match config.tcp_port {
            Some(port) => Some(Listener::bind(SocketAddr::new(tcp_bind, port), tcp_stats.clone())?),
            None => None,
        };
        let tcp_addr = listener.as_ref().map(|l| SocketAddr::new(tcp_public, l.local_addr.port()));
        let mut handles = Vec::with_capacity(n);
        let mut lanes = Vec::with_capacity(n);
        for _ in 0..n {
            let (h, l) = worker::lanes()?;
            handles.push(h);
            lanes.push(l);
        }
        let rooms = Rooms::new(n, config.room_spill_at);
        let control = Arc::new(Control { rooms: Mutex::new(rooms), shards: handles.clone(), sink });
        let (events_tx, events_rx) = crossbeam_channel::unbounded();
        let recorder = config.recordings_dir.clone().map(|dir| (dir, record::tap::lanes()));
        let mut threads = Vec::with_capacity(n + 1);
        let c = control.clone();
        threads.push(std::thread::Builder::new().name("control".into()).spawn(move || c.serve(events_rx))?);
        let mut udp_addrs = Vec::with_capacity(n);
        let stats: Vec<Arc<SharedStats>> = (0..n).map(|_| Arc::default()).collect();
        for (i, (sockets, lanes)) in sockets.into_iter().zip(lanes).enumerate() {
            let candidates: Vec<SocketAddr> = sockets.iter().map(|(_, c)| *c).collect();
            udp_addrs.extend(&candidates);
            let tcp = listener.as_ref().zip(tcp_addr).map(|(l, candidate_addr)| TcpSide {
                candidate_addr,
                routes: l.routes.clone(),
                listener: l.waker.clone(),
            });
            let mut core = ShardCore::new(i, candidates, tcp_addr);
            core.set_limits(config.participant_limits);
            if let Some((_, (lanes, _))) = &recorder {
                core.set_recorder(lanes.clone());
            }
            let w = Worker {
                core,
                sockets,
                lanes,
                peers: handles.clone(),
                control: events_tx.clone(),
                stats: stats[i].clone(),
                tcp,
            };
            threads.push(std::thread::Builder::new().name(format!("shard-{i}")).spawn(move || w.run())?);
        }
        // Only the shards hold the recorder's senders: it stops after them.
        if let Some((dir, (_, inbox))) = recorder {
            let (shards, sink) = (handles.clone(), control.sink.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("recorder".into())
                    .spawn(move || record::run(dir, inbox, shards, sink))?,
            );
        }
        let tcp = match (listener, tcp_addr) {
            (Some(parts), Some(candidate_addr)) => {
                let shards = handles.iter().map(|h| h.tcp()).collect();
                let l = parts.listener;
                let thread = std::thread::Builder::new().name("ice-tcp".into()).spawn(move || l.run(shards))?;
                // Only the shards hold route senders now: it stops after them.
                drop(parts.routes);
                Some(TcpListening {
                    candidate_addr,
                    stats: tcp_stats,
                    thread: Mutex::new(Some(thread)),
                    waker: parts.waker,
                })
            }
            _ => None,
        };
        info!(shards = n, udp = ?udp_addrs, tcp = ?tcp_addr, "media plane started");
        Ok(Sfu {
            inner: Arc::new(Inner {
                control,
                threads: Mutex::new(threads),
                next_participant: AtomicU64::new(1),
                udp_addrs,
                stats,
                tcp,
            }),
        })
    }

    /// Mints a participant id; register the event sink for it before `join`.
    pub fn allocate_participant(&self) -> ParticipantId {
        ParticipantId(self.inner.next_participant.fetch_add(1, Ordering::Relaxed))
    }

    /// Admits a participant whose grant has been verified by the caller.
    pub fn join(&self, pid: ParticipantId, request: JoinRequest) -> Joined {
        let mut joined = None;
        self.inner.control.run(|rooms, out| joined = Some(rooms.join(pid, request, out)));
        // Invariant: the closure above always runs exactly once.
        joined.expect("join ran")
    }

    pub fn signal(&self, pid: ParticipantId, shard: ShardId, signal: Signal) {
        if let Some(h) = self.inner.control.shards.get(shard) {
            h.command(ShardCommand::Signal { participant: pid, signal });
        }
    }

    /// Records every member of `room` (and whoever joins it, also into a
    /// room nobody is in yet) under `recording`.
    pub fn record(&self, room: &str, recording: Arc<str>) {
        self.inner.control.run(|rooms, out| {
            rooms.set_recording(room, Some(recording), None, out);
        });
    }

    /// Stops recording `room`; `error` tells its members why, if it failed.
    pub fn stop_recording(&self, room: &str, error: Option<String>) {
        self.inner.control.run(|rooms, out| {
            rooms.set_recording(room, None, error, out);
        });
    }

    /// The recording in progress in `room`.
    pub fn recording(&self, room: &str) -> Option<Arc<str>> {
        self.inner.control.rooms.lock().ok().and_then(|r| r.recording(room))
    }

    pub fn leave(&self, pid: ParticipantId) {
        self.inner.control.run(|rooms, out| rooms.remove(pid, None, out));
    }

    pub fn room_count(&self) -> usize {
        self.inner.control.rooms.lock().map_or(0, |r| r.room_count())
    }

    pub fn participant_count(&self) -> usize {
        self.inner.control.rooms.lock().map_or(0, |r| r.participant_count())
    }

    pub fn room_counts(&self) -> RoomCounts {
        let Ok(r) = self.inner.control.rooms.lock() else { return RoomCounts::default() };
        let (tracks, subscriptions) = r.track_counts();
        RoomCounts { rooms: r.room_count(), participants: r.participant_count(), tracks, subscriptions }
    }

    /// Each shard's counters as last published (at most one loop turn old).
    pub fn shard_stats(&self) -> Vec<ShardStats> {
        self.inner.stats.iter().map(|s| s.snapshot()).collect()
    }

    /// The UDP addresses (one per shard and address family) that clients send media to.
    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.inner.udp_addrs
    }

    /// The ICE-TCP candidate address, if the listener is on.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.inner.tcp.as_ref().map(|t| t.candidate_addr)
    }

    /// What the ICE-TCP listener has done, if it is on.
    pub fn tcp_listener_stats(&self) -> Option<&ListenerStats> {
        self.inner.tcp.as_ref().map(|t| &*t.stats)
    }

    /// Stops the shard threads, the control thread and the ICE-TCP
    /// listener, and waits for them.
    pub fn shutdown(&self) {
        for h in &self.inner.control.shards {
            h.command(ShardCommand::Shutdown);
        }
        let threads = std::mem::take(&mut *self.inner.threads.lock().expect("threads lock"));
        for t in threads {
            let _ = t.join();
        }
        if let Some(tcp) = &self.inner.tcp {
            let _ = tcp.waker.wake();
            if let Some(t) = tcp.thread.lock().expect("tcp thread lock").take() {
                let _ = t.join();
            }
        }
    }
}
