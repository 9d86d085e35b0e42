//! The ICE-TCP listener: one thread that accepts connections and hands each
//! to the shard owning the participant its first STUN message names (by
//! the server ufrag in USERNAME, the same rule as for UDP).
//!
//! A stranger can open connections for free, so a connection costs little
//! until it proves itself: it must send one framed STUN request within
//! [`FIRST_FRAME_TIMEOUT`], at most [`MAX_PENDING`] wait at once and
//! [`MAX_PENDING_PER_IP`] per source address, and the first frame may be no
//! longer than a STUN request is. Whether the STUN's integrity holds is for
//! the shard (`Rtc::accepts`) to check, as for UDP.
//!
//! Which shard owns a ufrag is told to this thread by the shards themselves
//! ([`RouteUpdate`] over a channel), so nobody shares a map or takes a lock.

use std::collections::HashMap;
use std::io::{self, ErrorKind};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use tracing::{debug, info, warn};

use super::framing::{FrameReader, ReadOutcome};
use crate::core::demux::stun_server_ufrag;
use crate::core::ids::ShardId;
use crate::core::shard::UfragChange;

/// A connection must send its first STUN request within this.
pub const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections waiting for their first STUN request, in all.
pub const MAX_PENDING: usize = 256;
/// ... and from one IP address (a NAT may hide a few honest clients).
pub const MAX_PENDING_PER_IP: usize = 16;
/// A STUN binding request from a browser is a couple of hundred bytes.
pub const MAX_FIRST_FRAME: usize = 1024;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONN: usize = 2;

/// A shard's news for the listener: which ufrags it now owns.
#[derive(Debug)]
pub struct RouteUpdate {
    pub shard: ShardId,
    pub change: UfragChange,
}

/// A connection handed to a shard, with what was read of it so far (its
/// first frame at least).
pub struct Handoff {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub reader: FrameReader,
}

/// How to reach a shard from the listener.
#[derive(Clone)]
pub struct ShardTcp {
    pub conns: Sender<Handoff>,
    pub waker: Arc<Waker>,
}

/// What the listener has done, for /metrics.
#[derive(Debug, Default)]
pub struct ListenerStats {
    pub accepted: AtomicU64,
    pub handed_over: AtomicU64,
    /// Refused at once: too many pending in all or from that address.
    pub refused_limit: AtomicU64,
    /// Closed for sending no STUN request in time.
    pub timed_out: AtomicU64,
    /// Closed for a first frame that is not a STUN request with a USERNAME.
    pub bad_first_frame: AtomicU64,
}

/// Why a waiting connection is closed.
enum Closed {
    TimedOut,
    BadFirstFrame,
    /// The far end closed it or it failed.
    Gone,
}

struct Pending {
    stream: TcpStream,
    peer: SocketAddr,
    reader: FrameReader,
    deadline: Instant,
    /// The ufrag of its first frame, once read (it may name a participant
    /// whose route is still on its way).
    ufrag: Option<String>,
}

/// The listener's thread state.
pub struct Listener {
    poll: Poll,
    listener: TcpListener,
    shards: Vec<ShardTcp>,
    routes: Receiver<RouteUpdate>,
    owner: HashMap<String, ShardId>,
    pending: HashMap<Token, Pending>,
    per_ip: HashMap<IpAddr, usize>,
    next_token: usize,
    stats: Arc<ListenerStats>,
}

/// What the runtime keeps of a listener before its thread starts.
pub struct Parts {
    pub listener: Listener,
    /// Wakes the thread (route updates, shutdown).
    pub waker: Arc<Waker>,
    /// For the shards to send [`RouteUpdate`]s on.
    pub routes: Sender<RouteUpdate>,
    pub local_addr: SocketAddr,
}

impl Listener {
    /// Binds the listener; the shards' ends are filled in by [`Listener::run`].
    pub fn bind(addr: SocketAddr, stats: Arc<ListenerStats>) -> io::Result<Parts> {
        let std = std::net::TcpListener::bind(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("binding ICE-TCP {addr}: {e}")))?;
        std.set_nonblocking(true)?;
        let local_addr = std.local_addr()?;
        let mut listener = TcpListener::from_std(std);
        let poll = Poll::new()?;
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, rx) = crossbeam_channel::unbounded();
        let listener = Listener {
            poll,
            listener,
            shards: Vec::new(),
            routes: rx,
            owner: HashMap::new(),
            pending: HashMap::new(),
            per_ip: HashMap::new(),
            next_token: FIRST_CONN,
            stats,
        };
        Ok(Parts { listener, waker, routes: tx, local_addr })
    }

    /// Serves until every shard has dropped its route sender (the media
    /// plane stopped) and the thread is woken.
    pub fn run(mut self, shards: Vec<ShardTcp>) {
        self.shards = shards;
        let mut events = Events::with_capacity(64);
        loop {
            let now = Instant::now();
            let wait = self.pending.values().map(|p| p.deadline).min().map(|d| d.saturating_duration_since(now));
            if let Err(e) = self.poll.poll(&mut events, wait.or(Some(Duration::from_secs(1)))) {
                if e.kind() != ErrorKind::Interrupted {
                    warn!("ICE-TCP poll: {e}");
                    return;
                }
            }
            if !self.take_routes() {
                debug!("ICE-TCP listener stopped");
                return;
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    t => self.read_first(t),
                }
            }
            self.retry_unrouted();
            self.expire(Instant::now());
        }
    }

    /// Applies the shards' route updates; false once they are all gone.
    fn take_routes(&mut self) -> bool {
        loop {
            match self.routes.try_recv() {
                Ok(RouteUpdate { shard, change: UfragChange::Added(u) }) => {
                    self.owner.insert(u, shard);
                }
                Ok(RouteUpdate { shard, change: UfragChange::Removed(u) }) => {
                    if self.owner.get(&u) == Some(&shard) {
                        self.owner.remove(&u);
                    }
                }
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn accept(&mut self) {
        loop {
            let (mut stream, peer) = match self.listener.accept() {
                Ok(c) => c,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    // EMFILE and the like: the next readiness will try again.
                    debug!("ICE-TCP accept: {e}");
                    return;
                }
            };
            self.stats.accepted.fetch_add(1, Ordering::Relaxed);
            let from_ip = self.per_ip.get(&peer.ip()).copied().unwrap_or(0);
            if self.pending.len() >= MAX_PENDING || from_ip >= MAX_PENDING_PER_IP {
                self.stats.refused_limit.fetch_add(1, Ordering::Relaxed);
                debug!(%peer, "ICE-TCP connection refused: too many waiting");
                continue; // dropped: closed
            }
            let token = Token(self.next_token);
            self.next_token = self.next_token.checked_add(1).unwrap_or(FIRST_CONN);
            if let Err(e) = self.poll.registry().register(&mut stream, token, Interest::READABLE) {
                debug!(%peer, "ICE-TCP register: {e}");
                continue;
            }
            let _ = stream.set_nodelay(true);
            *self.per_ip.entry(peer.ip()).or_default() += 1;
            let deadline = Instant::now() + FIRST_FRAME_TIMEOUT;
            self.pending.insert(token, Pending { stream, peer, reader: FrameReader::default(), deadline, ufrag: None });
        }
    }

    /// Reads what a waiting connection sent; hands it over once its first
    /// frame names a known participant.
    fn read_first(&mut self, token: Token) {
        let Some(p) = self.pending.get_mut(&token) else { return };
        loop {
            match p.reader.read_from(&mut p.stream) {
                Ok(ReadOutcome::Data(_)) if p.reader.buffered() <= 2 + MAX_FIRST_FRAME => continue,
                Ok(ReadOutcome::WouldBlock) => break,
                Ok(ReadOutcome::Data(_)) => {
                    // More than a first frame before we answered anything: not ICE.
                    if p.reader.pending_len().is_none_or(|l| l > MAX_FIRST_FRAME) {
                        return self.close(token, Closed::BadFirstFrame);
                    }
                    break;
                }
                Ok(ReadOutcome::Closed) | Err(_) => return self.close(token, Closed::Gone),
            }
        }
        let Some(len) = p.reader.pending_len() else { return };
        if !(20..=MAX_FIRST_FRAME).contains(&len) {
            return self.close(token, Closed::BadFirstFrame);
        }
        if p.reader.buffered() < 2 + len {
            return;
        }
        if p.ufrag.is_none() {
            let bytes = p.reader.peek_frame().unwrap_or_default();
            match stun_server_ufrag(bytes) {
                Some(u) => p.ufrag = Some(u.to_string()),
                None => return self.close(token, Closed::BadFirstFrame),
            }
        }
        self.route(token);
    }

    /// Hands the connection to its shard if the ufrag's owner is known.
    fn route(&mut self, token: Token) {
        let Some(p) = self.pending.get(&token) else { return };
        let Some(shard) = p.ufrag.as_ref().and_then(|u| self.owner.get(u)).copied() else { return };
        let Some(mut p) = self.remove(token) else { return };
        let _ = self.poll.registry().deregister(&mut p.stream);
        let Some(to) = self.shards.get(shard) else { return };
        let peer = p.peer;
        if to.conns.send(Handoff { stream: p.stream, peer, reader: p.reader }).is_ok() {
            let _ = to.waker.wake();
            self.stats.handed_over.fetch_add(1, Ordering::Relaxed);
            debug!(%peer, shard, "ICE-TCP connection handed over");
        }
    }

    /// Connections whose ufrag was unknown when they sent it: its route may
    /// have come since.
    fn retry_unrouted(&mut self) {
        let waiting: Vec<Token> = self.pending.iter().filter(|(_, p)| p.ufrag.is_some()).map(|(t, _)| *t).collect();
        for t in waiting {
            self.route(t);
        }
    }

    fn expire(&mut self, now: Instant) {
        let late: Vec<Token> = self.pending.iter().filter(|(_, p)| p.deadline <= now).map(|(t, _)| *t).collect();
        for t in late {
            match self.pending.get(&t) {
                // Browsers open a connection to every passive candidate and
                // use it only if UDP fails: silence is the normal case.
                Some(p) if p.ufrag.is_none() => debug!(peer = %p.peer, "ICE-TCP connection closed: no STUN request"),
                Some(p) => {
                    info!(peer = %p.peer, ufrag = ?p.ufrag, "ICE-TCP connection closed: its ufrag names nobody here")
                }
                None => {}
            }
            self.close(t, Closed::TimedOut);
        }
    }

    fn close(&mut self, token: Token, why: Closed) {
        let counter = match why {
            Closed::TimedOut => Some(&self.stats.timed_out),
            Closed::BadFirstFrame => Some(&self.stats.bad_first_frame),
            Closed::Gone => None,
        };
        if let Some(c) = counter {
            c.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(mut p) = self.remove(token) {
            let _ = self.poll.registry().deregister(&mut p.stream);
        }
    }

    fn remove(&mut self, token: Token) -> Option<Pending> {
        let p = self.pending.remove(&token)?;
        if let Some(n) = self.per_ip.get_mut(&p.peer.ip()) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&p.peer.ip());
            }
        }
        Some(p)
    }
}
