//! The media plane's in-memory test bed, set up the way each target needs.
//!
//! A bed costs milliseconds to build (DTLS certificates, handshakes), far
//! more than a run, so the targets reuse one while nothing a run did can
//! have changed what the next one meets, and rebuild it otherwise. Set
//! `FUZZ_FRESH=1` to build a new bed for every run (exactly reproducible,
//! for minimising a crash).

use std::cell::RefCell;
use std::time::{Duration, Instant};

use sfu::core::shard::UfragChange;
use sfu::testbed::Bed;
use sfu::ParticipantId;
use str0m::media::MediaKind;

/// Runs a bed at most this many times before building a new one.
const REUSE: u32 = 1000;
/// Virtual time a joined bed may age before a run (which adds at most
/// 6.4 s): a participant that has not connected is gone after ~15 s
/// (str0m's ICE-lite agent gives up).
const MAX_AGE: Duration = Duration::from_secs(5);

fn fresh_every_run() -> bool {
    std::env::var_os("FUZZ_FRESH").is_some_and(|v| v != "0")
}

struct Reused<T> {
    bed: Bed,
    parts: T,
    born: Instant,
    runs: u32,
}

thread_local! {
    static JOINED: RefCell<Option<Reused<Vec<String>>>> = const { RefCell::new(None) };
    static CONNECTED: RefCell<Option<Reused<(ParticipantId, ParticipantId)>>> = const { RefCell::new(None) };
}

/// Runs `f` on a one-shard bed where `alice` has joined (her server ufrag
/// is in the demux) but nobody has connected: what a stranger's datagram
/// meets. `f` gets the server ufrags given out; `f` must not let more than
/// a few seconds of virtual time pass.
pub fn with_joined<R>(f: impl FnOnce(&mut Bed, &[String]) -> R) -> R {
    JOINED.with_borrow_mut(|slot| {
        let stale = |r: &Reused<Vec<String>>| {
            fresh_every_run()
                || r.runs >= REUSE
                || r.bed.now - r.born > MAX_AGE
                || r.bed.shards[0].participant_count() != 1
        };
        if slot.as_ref().is_none_or(stale) {
            let (bed, ufrags) = joined();
            *slot = Some(Reused { born: bed.now, bed, parts: ufrags, runs: 0 });
        }
        let r = slot.as_mut().expect("just made");
        r.runs += 1;
        f(&mut r.bed, &r.parts)
    })
}

/// Runs `f` on a one-shard bed with two connected participants in one room
/// (see [`connected`]). `f` says whether the bed is as it found it (nobody
/// left, nothing renegotiated), so that the next run may reuse it.
pub fn with_connected(f: impl FnOnce(&mut Bed, ParticipantId, ParticipantId) -> bool) {
    CONNECTED.with_borrow_mut(|slot| {
        let stale = |r: &Reused<(ParticipantId, ParticipantId)>| fresh_every_run() || r.runs >= REUSE;
        if slot.as_ref().is_none_or(stale) {
            let (bed, alice, bob) = connected();
            *slot = Some(Reused { born: bed.now, bed, parts: (alice, bob), runs: 0 });
        }
        let r = slot.as_mut().expect("just made");
        r.runs += 1;
        let (alice, bob) = r.parts;
        let intact = f(&mut r.bed, alice, bob);
        let connected = [alice, bob].iter().all(|p| r.bed.client(*p).connected);
        if !intact || !connected || r.bed.shards[0].participant_count() != 2 {
            *slot = None;
        }
    })
}

/// A one-shard bed where `alice` has joined but not connected, and the
/// server ufrags given out.
pub fn joined() -> (Bed, Vec<String>) {
    let mut bed = Bed::new(1);
    bed.join("room", "alice", &[MediaKind::Audio, MediaKind::Video]);
    bed.forward_through(0, Vec::new());
    let mut ufrags = Vec::new();
    while let Some(change) = bed.shards[0].poll_ufrag() {
        if let UfragChange::Added(u) = change {
            ufrags.push(u);
        }
    }
    (bed, ufrags)
}

/// A one-shard bed with two connected participants in one room: `alice`
/// publishes audio and simulcast video, `bob` audio and video; each
/// subscribes to the other.
pub fn connected() -> (Bed, ParticipantId, ParticipantId) {
    let mut bed = Bed::new(1);
    let alice = bed.join_simulcast("room", "alice");
    let bob = bed.join("room", "bob", &[MediaKind::Audio, MediaKind::Video]);
    bed.run(Duration::from_millis(500));
    assert!(bed.client(alice).connected && bed.client(bob).connected, "test bed peers connect");
    (bed, alice, bob)
}
