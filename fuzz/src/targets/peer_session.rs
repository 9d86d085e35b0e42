//! Two connected participants (in the test bed, through the production
//! loop turn) doing what a hostile client can: raw datagrams from their own
//! admitted address, real SRTP carrying arbitrary RTP (sequence jumps, any
//! payload, on any simulcast layer), data channel messages, edited offers
//! and answers, candidates, mutes and subscriptions for made-up mids, time
//! passing, leaving. Nothing may panic or hang the shard.

use std::time::Duration;

use crate::{bed, sdp, wire::Datagram};
use arbitrary::Arbitrary;
use sfu::testbed::Bed;
use sfu::{ParticipantId, Signal};
use str0m::media::MediaKind;

#[derive(Arbitrary, Debug)]
pub enum Action {
    FromPeer { bob: bool, d: Datagram },
    Rtp { bob: bool, video: bool, seq_step: i16, ts_step: i32, marker: bool, payload: Vec<u8> },
    Layer { layer: u8, seq_step: i16, ts_step: i32, marker: bool, payload: Vec<u8> },
    Data { bob: bool, binary: bool, bytes: Vec<u8> },
    Offer { bob: bool, edits: Vec<sdp::Edit> },
    Answer { bob: bool, edits: Vec<sdp::Edit> },
    Candidate { bob: bool, line: String },
    Mute { bob: bool, mid: Mid, muted: bool },
    Subscription { bob: bool, mid: Mid, max_height: Option<u32>, enabled: bool },
    Wait(u16),
    Leave { bob: bool },
}

/// Mids the participants really have (0..8), or anything.
#[derive(Arbitrary, Debug)]
pub enum Mid {
    Index(u8),
    Any(String),
}

impl Mid {
    fn text(&self) -> String {
        match self {
            Mid::Index(i) => (i % 8).to_string(),
            Mid::Any(s) => s.clone(),
        }
    }
}

/// What one run does, in order.
pub type Input = Vec<Action>;

pub fn run(actions: Input) {
    bed::with_connected(|b, alice, bob| {
        let mut peers = [Peer::new(alice), Peer::new(bob)];
        let mut intact = true;
        for a in actions.iter().take(32) {
            intact &= !matches!(a, Action::Offer { .. } | Action::Answer { .. } | Action::Leave { .. });
            act(b, a, &mut peers);
            b.run(Duration::from_millis(20));
        }
        b.run(Duration::from_millis(200));
        assert!(b.shards[0].participant_count() <= 2);
        intact
    })
}

struct Peer {
    pid: ParticipantId,
    gone: bool,
}

impl Peer {
    fn new(pid: ParticipantId) -> Self {
        Peer { pid, gone: false }
    }
}

/// The next sequence number of a stream, kept on the client (whose SRTP
/// context outlives this run when the bed is reused: numbers it already
/// sent would only be dropped as replays).
fn step(seq: &mut u64, seq_step: i16) -> u64 {
    *seq = seq.saturating_add_signed(i64::from(seq_step)).max(1);
    *seq + 10_000
}

fn act(b: &mut Bed, a: &Action, peers: &mut [Peer; 2]) {
    let who = |bob: bool| usize::from(bob);
    match a {
        Action::FromPeer { bob, d } => {
            let c = b.client(peers[who(*bob)].pid);
            let (from, to) = (c.addr, sfu::testbed::shard_addr(c.shard));
            b.forward_through(0, vec![(from, to, d.to_bytes(&[]))]);
        }
        Action::Rtp { bob, video, seq_step, ts_step, marker, payload } => {
            let pid = peers[who(*bob)].pid;
            // Bob publishes a single-layer video; alice's video is simulcast (`Layer`).
            let kind = if *video && *bob { MediaKind::Video } else { MediaKind::Audio };
            let c = b.clients.get_mut(&pid).expect("a client");
            let seq = step(&mut c.seq[usize::from(kind == MediaKind::Video)], *seq_step);
            let ts = seq.wrapping_mul(960) as u32 ^ *ts_step as u32;
            let now = b.now;
            b.send_rtp_at(pid, kind, (seq, ts, now), *marker, payload.clone());
        }
        Action::Layer { layer, seq_step, ts_step, marker, payload } => {
            let layer = usize::from(layer % 3);
            let c = b.clients.get_mut(&peers[0].pid).expect("a client");
            let seq = step(&mut c.layer_seq[layer], *seq_step);
            let ts = seq.wrapping_mul(3000) as u32 ^ *ts_step as u32;
            b.send_layer_rtp(peers[0].pid, layer, (seq, ts), *marker, payload.clone());
        }
        Action::Data { bob, binary, bytes } => {
            let c = b.clients.get_mut(&peers[who(*bob)].pid).expect("a client");
            if let Some(mut ch) = c.channel.and_then(|id| c.rtc.channel(id)) {
                let _ = ch.write(*binary, bytes);
            }
        }
        Action::Offer { bob, edits } => {
            b.signal(peers[who(*bob)].pid, Signal::Offer { sdp: sdp::edited(edits), sources: vec![] })
        }
        Action::Answer { bob, edits } => b.signal(peers[who(*bob)].pid, Signal::Answer { sdp: sdp::edited(edits) }),
        Action::Candidate { bob, line } => {
            b.signal(peers[who(*bob)].pid, Signal::Candidate { candidate: line.clone() })
        }
        Action::Mute { bob, mid, muted } => {
            b.signal(peers[who(*bob)].pid, Signal::Mute { mid: mid.text(), muted: *muted })
        }
        Action::Subscription { bob, mid, max_height, enabled } => b.signal(
            peers[who(*bob)].pid,
            Signal::Subscription { mid: mid.text(), max_height: *max_height, enabled: *enabled },
        ),
        Action::Wait(ms) => b.run(Duration::from_millis(u64::from(ms % 5000))),
        Action::Leave { bob } => {
            let p = &mut peers[who(*bob)];
            if !p.gone {
                p.gone = true;
                b.leave(p.pid);
            }
        }
    }
}
