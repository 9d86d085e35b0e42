//! Which participant a datagram belongs to: first the transport address
//! (protocol and source: one hash lookup for established peers; over TCP the
//! source is the connection's far end), then, for STUN from a new address,
//! the server-chosen ICE ufrag in USERNAME. The caller admits the new address only
//! if the participant's `Rtc::accepts` verifies the message.

use std::collections::HashMap;
use std::net::SocketAddr;

use rustc_hash::FxHashMap;
use str0m::net::Protocol;

/// Addresses remembered per participant. Browsers try a handful of
/// candidate pairs; more than this is either a very odd host or abuse.
pub const MAX_ADDRS_PER_PEER: usize = 8;

/// Slot index of a participant inside its shard.
pub type Slot = usize;

/// Where a participant's packets come from: UDP source address, or the far
/// end of its ICE-TCP connection.
pub type Transport = (Protocol, SocketAddr);

#[derive(Default)]
pub struct Demux {
    // FxHash: a key only gets in after `Rtc::accepts` verified STUN from it,
    // so strangers cannot choose colliding keys to insert.
    by_addr: FxHashMap<Transport, Slot>,
    by_ufrag: HashMap<String, Slot>,
}

impl Demux {
    pub fn by_addr(&self, addr: &Transport) -> Option<Slot> {
        self.by_addr.get(addr).copied()
    }

    pub fn by_ufrag(&self, ufrag: &str) -> Option<Slot> {
        self.by_ufrag.get(ufrag).copied()
    }

    pub fn insert_ufrag(&mut self, ufrag: String, slot: Slot) {
        self.by_ufrag.insert(ufrag, slot);
    }

    pub fn insert_addr(&mut self, addr: Transport, slot: Slot) {
        self.by_addr.insert(addr, slot);
    }

    pub fn remove(&mut self, ufrag: &str, addrs: &[Transport]) {
        self.by_ufrag.remove(ufrag);
        for a in addrs {
            self.by_addr.remove(a);
        }
    }

    pub fn addr_count(&self) -> usize {
        self.by_addr.len()
    }
}

/// The local (server) ufrag from a STUN binding request's USERNAME
/// (`server_ufrag:client_ufrag`), without allocating. `None` if `buf` is not
/// a STUN message with a USERNAME attribute.
pub fn stun_server_ufrag(buf: &[u8]) -> Option<&str> {
    const MAGIC: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
    const USERNAME: u16 = 0x0006;
    if buf.len() < 20 || buf[0] & 0xC0 != 0 || buf[4..8] != MAGIC {
        return None;
    }
    let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    let body = buf.get(20..20 + len)?;
    let mut i = 0;
    while i + 4 <= body.len() {
        let typ = u16::from_be_bytes([body[i], body[i + 1]]);
        let alen = u16::from_be_bytes([body[i + 2], body[i + 3]]) as usize;
        let value = body.get(i + 4..i + 4 + alen)?;
        if typ == USERNAME {
            let s = std::str::from_utf8(value).ok()?;
            return s.split(':').next();
        }
        i += 4 + alen.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stun_with_username(user: &str) -> Vec<u8> {
        let mut attr = vec![0x00, 0x06];
        attr.extend((user.len() as u16).to_be_bytes());
        attr.extend(user.as_bytes());
        while attr.len() % 4 != 0 {
            attr.push(0);
        }
        let mut m = vec![0x00, 0x01];
        m.extend((attr.len() as u16).to_be_bytes());
        m.extend([0x21, 0x12, 0xA4, 0x42]);
        m.extend([7u8; 12]);
        m.extend(attr);
        m
    }

    #[test]
    fn finds_server_ufrag() {
        assert_eq!(stun_server_ufrag(&stun_with_username("srv1:cli")), Some("srv1"));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(stun_server_ufrag(&[0u8; 10]), None);
        assert_eq!(stun_server_ufrag(&[0x80; 64]), None);
        let mut m = stun_with_username("a:b");
        m[3] = 200; // length past the end
        assert_eq!(stun_server_ufrag(&m), None);
    }
}
