//! Caps on what clients can make the server hold: signalling connections
//! (in total and per source address), participants (in total and per
//! room), rooms, and join attempts per second per address. Each share is taken with a guard that gives it back on
//! drop, so a session that ends in any way (left, vanished, refused, its
//! task cancelled) frees its place. Refusals are counted by their error code
//! (`switchboard_signalling_errors_total`).
//!
//! Control plane only: taken once per connection and per join, never per
//! packet, so one mutex each is enough.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sfu::ErrorCode;

/// The configured caps (see the README's configuration table).
#[derive(Debug, Clone)]
pub struct CapsConfig {
    pub connections: usize,
    pub connections_per_ip: usize,
    pub participants: usize,
    pub participants_per_room: usize,
    pub rooms: usize,
    /// Signalling messages a connection may send per second (twice that
    /// in a burst: a join's offer and its candidates come together).
    pub messages_per_second: u32,
    /// Joins (and resumes) one address may attempt per second, twice that
    /// in a burst: a page that reloads in a loop, or one guessing tokens.
    pub joins_per_second_per_ip: u32,
    /// Call requests waiting for an agent, beyond which new ones are refused.
    pub queued_calls: usize,
}

impl Default for CapsConfig {
    fn default() -> Self {
        CapsConfig {
            connections: 10_000,
            connections_per_ip: 100,
            participants: 5_000,
            participants_per_room: 500,
            rooms: 2_000,
            messages_per_second: 50,
            joins_per_second_per_ip: 20,
            queued_calls: 1_000,
        }
    }
}

/// A refusal: the code the client gets and why.
pub type Refused = (ErrorCode, String);

#[derive(Default)]
struct Counts {
    total: usize,
    by_key: HashMap<String, usize>,
}

impl Counts {
    /// Takes one share of `key` unless the total or the key is at its cap.
    fn take(&mut self, key: &str, total_cap: usize, key_cap: usize) -> Result<(), CapHit> {
        let of_key = self.by_key.get(key).copied().unwrap_or(0);
        if self.total >= total_cap {
            return Err(CapHit::Total);
        }
        if of_key >= key_cap {
            return Err(CapHit::Key);
        }
        self.total += 1;
        *self.by_key.entry(key.to_string()).or_default() += 1;
        Ok(())
    }

    fn give_back(&mut self, key: &str) {
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.by_key.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                self.by_key.remove(key);
            }
        }
    }
}

enum CapHit {
    Total,
    Key,
}

/// Participants: counted per room, and per identity in a room (whose
/// seat a rejoin takes over).
#[derive(Default)]
struct Seats {
    counts: Counts,
    of_identity: HashMap<String, usize>,
}

fn seat_key(room: &str, identity: &str) -> String {
    format!("{room}\u{0}{identity}")
}

pub struct Caps {
    pub config: CapsConfig,
    connections: Mutex<Counts>,
    participants: Mutex<Seats>,
    joins: DefaultKeyedRateLimiter<IpAddr>,
}

impl Caps {
    pub fn new(config: CapsConfig) -> Arc<Caps> {
        let per_second = NonZeroU32::new(config.joins_per_second_per_ip.max(1)).expect("at least 1");
        let quota =
            Quota::per_second(per_second).allow_burst(per_second.saturating_mul(NonZeroU32::MIN.saturating_add(1)));
        let joins = RateLimiter::keyed(quota);
        Arc::new(Caps { config, connections: Mutex::default(), participants: Mutex::default(), joins })
    }

    /// A join or resume from `ip`, unless it has made too many this second.
    pub fn join_attempt(&self, ip: IpAddr) -> Result<(), Refused> {
        let n = self.config.joins_per_second_per_ip;
        self.joins
            .check_key(&ip)
            .map_err(|_| (ErrorCode::RateLimited, format!("more than {n} joins a second from your address")))
    }

    /// Forgets addresses that made no join lately; run periodically.
    pub fn forget_idle(&self) {
        self.joins.retain_recent();
    }

    /// A signalling connection from `ip`, held until the guard drops.
    pub fn connect(self: &Arc<Self>, ip: IpAddr) -> Result<Held, Refused> {
        let key = ip.to_string();
        let c = &self.config;
        let taken = lock(&self.connections).take(&key, c.connections, c.connections_per_ip);
        match taken {
            Ok(()) => Ok(Held { caps: self.clone(), kind: Kind::Connection, key }),
            Err(CapHit::Total) => Err((ErrorCode::ServerFull, "the server has all the connections it takes".into())),
            Err(CapHit::Key) => Err((
                ErrorCode::TooManyConnections,
                format!("{} connections from your address already", c.connections_per_ip),
            )),
        }
    }

    /// `identity` as a participant of `room`, held until the guard drops.
    /// The same identity joining again (a reloaded page, before its old
    /// session has gone) is let in whatever the caps: it replaces its old
    /// self, whose seat is given back soon after. Unless `may_open_room`,
    /// only a room in progress is joined (a draining server opens none).
    pub fn admit(self: &Arc<Self>, room: &str, identity: &str, may_open_room: bool) -> Result<Held, Refused> {
        let c = &self.config;
        let key = seat_key(room, identity);
        // The guard is made after the lock is released: dropping it locks.
        let held = |key| Held { caps: self.clone(), kind: Kind::Participant(key), key: room.to_string() };
        let mut seats = lock(&self.participants);
        if seats.of_identity.contains_key(&key) {
            seats.counts.take(room, usize::MAX, usize::MAX).ok();
            *seats.of_identity.entry(key.clone()).or_default() += 1;
            drop(seats);
            return Ok(held(key));
        }
        let counts = &mut seats.counts;
        if !counts.by_key.contains_key(room) && !may_open_room {
            return Err((
                ErrorCode::Draining,
                "the server is restarting and opens no new rooms; try again shortly".into(),
            ));
        }
        if !counts.by_key.contains_key(room) && counts.by_key.len() >= c.rooms {
            return Err((ErrorCode::ServerFull, format!("the server has {} rooms, its most", c.rooms)));
        }
        match counts.take(room, c.participants, c.participants_per_room) {
            Ok(()) => {
                *seats.of_identity.entry(key.clone()).or_default() += 1;
                drop(seats);
                Ok(held(key))
            }
            Err(CapHit::Total) => Err((ErrorCode::ServerFull, "the server has all the participants it takes".into())),
            Err(CapHit::Key) => {
                Err((ErrorCode::RoomFull, format!("the room has {} participants, its most", c.participants_per_room)))
            }
        }
    }

    /// Participants now (for tests and metrics).
    pub fn participants(&self) -> usize {
        lock(&self.participants).counts.total
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Counts stay consistent even if a holder panicked: take them as they are.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

enum Kind {
    Connection,
    /// With its seat key (room and identity).
    Participant(String),
}

/// One share of a cap; given back on drop.
pub struct Held {
    caps: Arc<Caps>,
    kind: Kind,
    key: String,
}

impl Drop for Held {
    fn drop(&mut self) {
        match &self.kind {
            Kind::Connection => lock(&self.caps.connections).give_back(&self.key),
            Kind::Participant(seat) => {
                let mut seats = lock(&self.caps.participants);
                seats.counts.give_back(&self.key);
                if let Some(n) = seats.of_identity.get_mut(seat) {
                    *n -= 1;
                    if *n == 0 {
                        seats.of_identity.remove(seat);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps() -> Arc<Caps> {
        Caps::new(CapsConfig {
            connections: 3,
            connections_per_ip: 2,
            participants: 3,
            participants_per_room: 2,
            rooms: 2,
            messages_per_second: 1,
            joins_per_second_per_ip: 1,
            queued_calls: 1,
        })
    }

    fn code<T>(r: Result<T, Refused>) -> ErrorCode {
        r.err().expect("refused").0
    }

    #[test]
    fn connections_are_capped_per_address_and_in_total_and_given_back() {
        let caps = caps();
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let first = caps.connect(a).unwrap();
        let _second = caps.connect(a).unwrap();
        assert_eq!(code(caps.connect(a)), ErrorCode::TooManyConnections);
        let _third = caps.connect(b).unwrap();
        assert_eq!(code(caps.connect(b)), ErrorCode::ServerFull);
        drop(first);
        assert!(caps.connect(a).is_ok(), "a closed connection gives its place back");
    }

    #[test]
    fn joins_are_limited_per_address_each_on_its_own() {
        let caps = caps();
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        assert!(caps.join_attempt(a).is_ok() && caps.join_attempt(a).is_ok(), "a burst of two");
        assert_eq!(code(caps.join_attempt(a)), ErrorCode::RateLimited);
        assert!(caps.join_attempt(b).is_ok(), "another address is not held back");
    }

    #[test]
    fn participants_are_capped_per_room_in_total_and_rooms_by_number() {
        let caps = caps();
        let a1 = caps.admit("a", "ann", true).unwrap();
        let _a2 = caps.admit("a", "bob", true).unwrap();
        assert_eq!(code(caps.admit("a", "cy", true)), ErrorCode::RoomFull);
        let _b1 = caps.admit("b", "dee", true).unwrap();
        assert_eq!(code(caps.admit("c", "eve", true)), ErrorCode::ServerFull, "a third room");
        assert_eq!(code(caps.admit("b", "fay", true)), ErrorCode::ServerFull, "a fourth participant");
        drop(a1);
        let _a3 = caps.admit("a", "cy", true).expect("a leaver gives its place back");
        assert_eq!(caps.participants(), 3);
    }

    #[test]
    fn a_rejoin_takes_over_its_own_seat_in_a_full_room() {
        let caps = caps();
        let old = caps.admit("a", "ann", true).unwrap();
        let _bob = caps.admit("a", "bob", true).unwrap();
        assert_eq!(code(caps.admit("a", "cy", true)), ErrorCode::RoomFull);
        let new = caps.admit("a", "ann", true).expect("ann reloading her page gets in");
        drop(old); // her old session, replaced, ends
        assert_eq!(code(caps.admit("a", "cy", true)), ErrorCode::RoomFull, "she still holds one seat");
        drop(new);
        assert!(caps.admit("a", "cy", true).is_ok());
    }

    #[test]
    fn a_room_in_progress_takes_joins_that_may_not_open_one() {
        let caps = caps();
        let ann = caps.admit("a", "ann", true).unwrap();
        assert!(caps.admit("a", "bob", false).is_ok(), "joining the room in progress");
        assert_eq!(code(caps.admit("b", "cy", false)), ErrorCode::Draining, "opening another");
        drop(ann);
        assert_eq!(code(caps.admit("a", "ann", false)), ErrorCode::Draining, "a room that emptied is over");
    }
}
