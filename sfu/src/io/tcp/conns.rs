//! A shard's ICE-TCP connections, handed over by the listener: framed
//! packets in (to `ShardCore::handle_receive` as `Protocol::Tcp`, from the
//! connection's far end), and packets out, queued per connection up to a
//! cap so a client that reads slowly loses its own packets and never holds
//! the shard.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustc_hash::FxHashMap;
use str0m::net::{Protocol, Transmit};
use tracing::debug;

use super::framing::{FrameReader, FrameWriter, ReadOutcome};
use super::listener::Handoff;
use crate::core::shard::{ShardCore, ShardStats};
use crate::io::batch::Sent;

/// Poll tokens from here on are connections (index + this).
pub const FIRST_TOKEN: usize = 16;
/// Connections one shard keeps; more are closed as they come.
pub const MAX_CONNS: usize = 4096;
/// Bytes queued towards one connection: about half a second of a 720p
/// stream; past it packets for that client are dropped.
pub const SEND_QUEUE_CAP: usize = 512 * 1024;
/// A connection nothing came in on for this long is closed: a live ICE
/// peer sends consent checks every few seconds.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes read from one connection before the others get a turn.
const READ_BUDGET: usize = 64 * 1024;

struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    reader: FrameReader,
    writer: FrameWriter,
    last_rx: Instant,
    /// In `ready` (may have bytes to read).
    ready: bool,
    /// In `dirty` (has bytes to write).
    dirty: bool,
}

/// Counts since they were last added to the shard's counters.
#[derive(Default)]
struct Counts {
    opened: u64,
    closed: u64,
    send_dropped: u64,
}

pub struct TcpConns {
    /// Our candidate address, the destination of what they send.
    local: SocketAddr,
    registry: Registry,
    handoffs: Receiver<Handoff>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    // FxHash: far ends are only added after the listener saw a STUN request
    // for one of our participants; and there are at most MAX_CONNS.
    by_peer: FxHashMap<SocketAddr, usize>,
    ready: VecDeque<usize>,
    dirty: Vec<usize>,
    next_sweep: Instant,
    counts: Counts,
}

impl TcpConns {
    pub fn new(local: SocketAddr, registry: Registry, handoffs: Receiver<Handoff>, now: Instant) -> Self {
        TcpConns {
            local,
            registry,
            handoffs,
            conns: Vec::new(),
            free: Vec::new(),
            by_peer: FxHashMap::default(),
            ready: VecDeque::new(),
            dirty: Vec::new(),
            next_sweep: now + IDLE_TIMEOUT,
            counts: Counts::default(),
        }
    }

    /// Takes the connections the listener handed over.
    pub fn adopt(&mut self, now: Instant) {
        while let Ok(Handoff { mut stream, peer, reader }) = self.handoffs.try_recv() {
            if self.by_peer.len() >= MAX_CONNS {
                debug!(%peer, "ICE-TCP connection dropped: shard has {MAX_CONNS}");
                continue;
            }
            let i = self.free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            let interest = Interest::READABLE | Interest::WRITABLE;
            if let Err(e) = self.registry.register(&mut stream, Token(FIRST_TOKEN + i), interest) {
                debug!(%peer, "ICE-TCP register: {e}");
                self.free.push(i);
                continue;
            }
            if let Some(old) = self.by_peer.insert(peer, i) {
                self.close(old);
                self.by_peer.insert(peer, i);
            }
            // Its first frame (at least) is already read: handle it now.
            let conn =
                Conn { stream, peer, reader, writer: FrameWriter::default(), last_rx: now, ready: true, dirty: false };
            self.conns[i] = Some(conn);
            self.ready.push_back(i);
            self.counts.opened += 1;
        }
    }

    /// A poll event for `token`; false if it is not one of ours.
    pub fn on_event(&mut self, token: Token, readable: bool, writable: bool) -> bool {
        let Some(i) = token.0.checked_sub(FIRST_TOKEN) else { return false };
        let Some(c) = self.conns.get_mut(i).and_then(|c| c.as_mut()) else { return true };
        if readable && !c.ready {
            c.ready = true;
            self.ready.push_back(i);
        }
        if writable && c.writer.queued() > 0 && !c.dirty {
            c.dirty = true;
            self.dirty.push(i);
        }
        true
    }

    /// Whether some connection may have bytes waiting.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Reads from the connections with bytes waiting and feeds their frames
    /// to the core; returns how many frames.
    pub fn recv(&mut self, core: &mut ShardCore, now: Instant) -> usize {
        let mut frames = 0;
        for _ in 0..self.ready.len() {
            let Some(i) = self.ready.pop_front() else { break };
            let Some(c) = self.conns.get_mut(i).and_then(|c| c.as_mut()) else { continue };
            let mut read = 0;
            let mut gone = false;
            // Frames already buffered (a handed-over first frame) go first.
            while let Some(f) = c.reader.next_frame() {
                core.handle_receive(now, Protocol::Tcp, c.peer, self.local, f);
                frames += 1;
            }
            let more = loop {
                if read >= READ_BUDGET {
                    break true;
                }
                match c.reader.read_from(&mut c.stream) {
                    Ok(ReadOutcome::Data(n)) => {
                        read += n;
                        c.last_rx = now;
                        while let Some(f) = c.reader.next_frame() {
                            core.handle_receive(now, Protocol::Tcp, c.peer, self.local, f);
                            frames += 1;
                        }
                    }
                    Ok(ReadOutcome::WouldBlock) => break false,
                    Ok(ReadOutcome::Closed) | Err(_) => {
                        gone = true;
                        break false;
                    }
                }
            };
            if gone {
                self.close(i);
            } else if more {
                self.ready.push_back(i);
            } else {
                c.ready = false;
            }
        }
        frames
    }

    /// Queues one packet for the connection to its destination.
    pub fn send(&mut self, t: &Transmit, sent: &mut Sent) {
        let Some(c) = self.by_peer.get(&t.destination).and_then(|i| self.conns[*i].as_mut()) else {
            sent.failed += 1; // the connection is gone; ICE will notice
            return;
        };
        if !c.writer.queue(&t.contents, SEND_QUEUE_CAP) {
            sent.failed += 1;
            self.counts.send_dropped += 1;
            return;
        }
        sent.datagrams += 1;
        sent.bytes += t.contents.len() as u64;
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(self.by_peer[&t.destination]);
        }
    }

    /// Writes what is queued, one write per connection as far as it goes.
    pub fn flush(&mut self, sent: &mut Sent) {
        let dirty = std::mem::take(&mut self.dirty);
        for &i in &dirty {
            let Some(c) = self.conns.get_mut(i).and_then(|c| c.as_mut()) else { continue };
            c.dirty = false;
            match c.writer.flush_to(&mut c.stream) {
                Ok(_) => sent.messages += 1,
                Err(e) => {
                    debug!(peer = %c.peer, "ICE-TCP write: {e}");
                    self.close(i);
                }
            }
        }
        self.dirty = dirty;
        self.dirty.clear();
    }

    /// Closes connections idle past [`IDLE_TIMEOUT`] (checked every so
    /// often) and adds the counts to the shard's counters.
    pub fn maintain(&mut self, now: Instant, stats: &mut ShardStats) {
        if now >= self.next_sweep {
            self.next_sweep = now + IDLE_TIMEOUT / 4;
            for i in 0..self.conns.len() {
                if self.conns[i].as_ref().is_some_and(|c| now.saturating_duration_since(c.last_rx) > IDLE_TIMEOUT) {
                    self.close(i);
                }
            }
        }
        let c = std::mem::take(&mut self.counts);
        stats.tcp_opened += c.opened;
        stats.tcp_closed += c.closed;
        stats.tcp_send_dropped += c.send_dropped;
    }

    fn close(&mut self, i: usize) {
        let Some(mut c) = self.conns.get_mut(i).and_then(|c| c.take()) else { return };
        let _ = self.registry.deregister(&mut c.stream);
        if self.by_peer.get(&c.peer) == Some(&i) {
            self.by_peer.remove(&c.peer);
        }
        self.free.push(i);
        self.counts.closed += 1;
        debug!(peer = %c.peer, "ICE-TCP connection closed");
    }
}
