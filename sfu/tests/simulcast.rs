//! Simulcast through real shards and str0m peers, in memory: a publisher
//! sends three layers (180, 360, 720 lines); each subscriber gets one, the
//! smallest active layer that fills the height it asked for (the top one
//! when it asked nothing), switched only at a keyframe of the new layer,
//! with sequence numbers and VP8 picture ids that go on by one.

use std::time::Duration;

use sfu::core::command::ShardCommand;
use sfu::testbed::{layer_tag, Bed, LAYER_RIDS};
use sfu::{ClientEvent, ParticipantId, Signal, TrackKind};
use str0m::media::Mid;
use str0m::rtp::Vp8Descriptor;

const FRAME: Duration = Duration::from_millis(33);

/// A simulcast publisher's client: sends a frame on each of its active
/// layers every 33 ms, a keyframe on a layer when it was asked for one.
struct Publisher {
    pid: ParticipantId,
    active: [bool; 3],
    want_key: [bool; 3],
    requests_seen: usize,
    /// Follows `layers_wanted` (dynacast) as the pages do.
    dynacast: bool,
    events_seen: usize,
    /// Packets (300 bytes) per frame on each layer.
    packets: [usize; 3],
    /// Also an audio packet per frame, as a microphone would.
    audio: bool,
}

impl Publisher {
    fn new(pid: ParticipantId) -> Self {
        Publisher {
            pid,
            active: [true; 3],
            want_key: [true; 3],
            requests_seen: 0,
            dynacast: false,
            events_seen: 0,
            packets: [1; 3],
            audio: false,
        }
    }

    fn frames(&mut self, bed: &mut Bed, d: Duration) {
        for _ in 0..(d.as_millis() / FRAME.as_millis()) {
            self.send_frame(bed);
            bed.run(FRAME);
        }
    }

    /// One frame on each active layer (a keyframe where one was asked for).
    fn send_frame(&mut self, bed: &mut Bed) {
        if self.audio {
            bed.send_speech(self.pid, -127);
        }
        let rids = &bed.client(self.pid).keyframe_rids;
        for rid in &rids[self.requests_seen..] {
            match rid.as_deref().and_then(|r| LAYER_RIDS.iter().position(|l| *l == r)) {
                Some(l) => self.want_key[l] = true,
                None => self.want_key = [true; 3],
            }
        }
        self.requests_seen = rids.len();
        let events = &bed.client(self.pid).events;
        for e in &events[self.events_seen..] {
            if let (ClientEvent::LayersWanted { rids, .. }, true) = (e, self.dynacast) {
                for (l, rid) in LAYER_RIDS.iter().enumerate() {
                    let on = rids.iter().any(|r| r == rid);
                    // A resumed layer starts with a keyframe, as an encoder's does.
                    self.want_key[l] |= on && !self.active[l];
                    self.active[l] = on;
                }
            }
        }
        self.events_seen = events.len();
        for l in 0..3 {
            if self.active[l] {
                let key = std::mem::take(&mut self.want_key[l]);
                bed.send_layer_frame(self.pid, l, key, self.packets[l]);
            }
        }
    }
}

/// The mid on which `sub` receives `publisher`'s video.
fn video_mid(bed: &Bed, sub: ParticipantId, publisher: &str) -> Mid {
    let c = bed.client(sub);
    let mid = c
        .events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Offer { mids, .. } => {
                mids.iter().find(|m| &*m.identity == publisher && m.kind == TrackKind::Video).map(|m| m.mid.clone())
            }
            _ => None,
        })
        .next()
        .expect("offered the publisher's video");
    Mid::from(mid.as_str())
}

/// (rid, seq, picture id) of the video `sub` received, in arrival order.
fn video_received(bed: &Bed, sub: ParticipantId, mid: Mid) -> Vec<(String, u64, u16)> {
    bed.client(sub)
        .rtp
        .iter()
        .filter(|r| r.mid == mid)
        .map(|r| {
            let rid = layer_tag(&r.payload).split(':').next().unwrap_or("").to_string();
            let pid = Vp8Descriptor::parse(&r.payload).ok().and_then(|d| d.picture_id()).expect("picture id");
            (rid, r.seq, pid)
        })
        .collect()
}

fn subscription(bed: &mut Bed, sub: ParticipantId, mid: Mid, max_height: Option<u32>, enabled: bool) {
    let shard = bed.client(sub).shard;
    let signal = Signal::Subscription { mid: mid.to_string(), max_height, enabled };
    bed.command(shard, ShardCommand::Signal { participant: sub, signal });
}

/// A room with a simulcast publisher and `n` subscribers, media flowing.
fn room(shards: usize, n: usize) -> (Bed, Publisher, Vec<ParticipantId>) {
    let mut bed = Bed::with_spill_at(shards, 1);
    let publisher = bed.join_simulcast("r", "pub");
    let subs: Vec<_> = (0..n).map(|i| bed.join("r", &format!("sub{i}"), &[])).collect();
    bed.run(Duration::from_secs(2));
    assert!(bed.client(publisher).connected && subs.iter().all(|s| bed.client(*s).connected));
    (bed, Publisher::new(publisher), subs)
}

/// Sequence numbers and picture ids go on by exactly one per packet.
fn assert_continuous(got: &[(String, u64, u16)]) {
    for w in got.windows(2) {
        assert_eq!(w[1].1, w[0].1 + 1, "seq continues across {} -> {}", w[0].0, w[1].0);
        assert_eq!(w[1].2, (w[0].2 + 1) % 32768, "picture id continues across {} -> {}", w[0].0, w[1].0);
    }
}

#[test]
fn a_subscriber_gets_only_the_top_layer() {
    for shards in [1, 2] {
        let (mut bed, mut publisher, subs) = room(shards, 1);
        publisher.frames(&mut bed, Duration::from_secs(2));
        let mid = video_mid(&bed, subs[0], "pub");
        let got = video_received(&bed, subs[0], mid);
        assert!(got.len() > 40, "video flows ({shards} shards): {}", got.len());
        let last: Vec<_> = got[got.len() - 20..].iter().map(|g| g.0.as_str()).collect();
        assert!(last.iter().all(|r| *r == "f"), "top layer only ({shards} shards): {last:?}");
        let lower = got.iter().filter(|g| g.0 != "f").count();
        assert!(lower <= 10, "no more than the start on a lower layer: {lower}");
        assert_continuous(&got);
    }
}

#[test]
fn a_small_tile_switches_down_at_a_keyframe_and_back_up() {
    for shards in [1, 2] {
        let (mut bed, mut publisher, subs) = room(shards, 2);
        publisher.frames(&mut bed, Duration::from_secs(2));
        let mid = video_mid(&bed, subs[0], "pub");
        subscription(&mut bed, subs[0], mid, Some(180), true);
        publisher.frames(&mut bed, Duration::from_secs(1));
        let got = video_received(&bed, subs[0], mid);
        let tail: Vec<_> = got[got.len() - 15..].iter().map(|g| g.0.as_str()).collect();
        assert!(tail.iter().all(|r| *r == "q"), "low layer for a 180-line tile ({shards} shards): {tail:?}");
        assert_continuous(&got);
        // The other subscriber asked for nothing and keeps the top layer.
        let other_mid = video_mid(&bed, subs[1], "pub");
        let other = video_received(&bed, subs[1], other_mid);
        assert_eq!(other.last().unwrap().0, "f");

        subscription(&mut bed, subs[0], mid, None, true);
        publisher.frames(&mut bed, Duration::from_secs(1));
        let got = video_received(&bed, subs[0], mid);
        assert_eq!(got.last().unwrap().0, "f", "back to the top layer ({shards} shards)");
        assert_continuous(&got);
    }
}

#[test]
fn switching_asks_the_publisher_for_a_keyframe_of_the_new_layer_only() {
    let (mut bed, mut publisher, subs) = room(1, 1);
    publisher.frames(&mut bed, Duration::from_secs(2));
    let mid = video_mid(&bed, subs[0], "pub");
    let before = bed.client(publisher.pid).keyframe_rids.len();
    subscription(&mut bed, subs[0], mid, Some(300), true);
    publisher.frames(&mut bed, Duration::from_millis(500));
    let asked: Vec<_> = bed.client(publisher.pid).keyframe_rids[before..].to_vec();
    assert_eq!(asked, vec![Some("h".to_string())], "one request, for the middle layer");
    let got = video_received(&bed, subs[0], mid);
    assert_eq!(got.last().unwrap().0, "h");
}

#[test]
fn when_the_top_layer_stops_the_subscriber_falls_back_to_the_next() {
    let (mut bed, mut publisher, subs) = room(1, 1);
    publisher.frames(&mut bed, Duration::from_secs(2));
    // The publisher's encoder drops its top layer (bandwidth or CPU).
    publisher.active[2] = false;
    publisher.frames(&mut bed, Duration::from_secs(2));
    let mid = video_mid(&bed, subs[0], "pub");
    let got = video_received(&bed, subs[0], mid);
    assert_eq!(got.last().unwrap().0, "h", "falls back to the middle layer");
    assert_continuous(&got);
    // It comes back: so does the subscriber.
    publisher.active[2] = true;
    publisher.want_key[2] = true;
    publisher.frames(&mut bed, Duration::from_secs(1));
    let got = video_received(&bed, subs[0], mid);
    assert_eq!(got.last().unwrap().0, "f");
    assert_continuous(&got);
}

#[test]
fn a_subscriber_that_turns_video_off_receives_none_until_it_turns_it_on() {
    let (mut bed, mut publisher, subs) = room(1, 1);
    publisher.frames(&mut bed, Duration::from_secs(1));
    let mid = video_mid(&bed, subs[0], "pub");
    subscription(&mut bed, subs[0], mid, None, false);
    bed.run(Duration::from_millis(100));
    let before = video_received(&bed, subs[0], mid).len();
    publisher.frames(&mut bed, Duration::from_secs(1));
    assert_eq!(video_received(&bed, subs[0], mid).len(), before, "no video while off");
    subscription(&mut bed, subs[0], mid, None, true);
    publisher.frames(&mut bed, Duration::from_secs(1));
    let got = video_received(&bed, subs[0], mid);
    assert!(got.len() > before + 10, "video again once on");
    assert_eq!(got.last().unwrap().0, "f");
    assert_continuous(&got);
}

#[test]
fn a_subscription_for_an_unknown_mid_is_refused_with_an_error() {
    let (mut bed, _publisher, subs) = room(1, 1);
    subscription(&mut bed, subs[0], Mid::from("99"), Some(100), true);
    bed.run(Duration::from_millis(50));
    assert!(bed.client(subs[0]).has_event(|e| matches!(e, ClientEvent::Error { .. })));
}

/// The rids of every `layers_wanted` the publisher was sent, in order.
fn layers_wanted(bed: &Bed, publisher: ParticipantId) -> Vec<Vec<String>> {
    let events = &bed.client(publisher).events;
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::LayersWanted { rids, .. } => Some(rids.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn dynacast_pauses_the_layers_nobody_takes_and_resumes_one_at_once() {
    let (mut bed, mut publisher, subs) = room(1, 2);
    publisher.dynacast = true;
    publisher.frames(&mut bed, Duration::from_secs(1));
    let mids: Vec<Mid> = subs.iter().map(|s| video_mid(&bed, *s, "pub")).collect();
    for (s, m) in subs.iter().zip(&mids) {
        subscription(&mut bed, *s, *m, Some(180), true);
    }
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // Nobody took the middle layer since publishing: it goes first.
    publisher.frames(&mut bed, Duration::from_secs(3));
    assert_eq!(layers_wanted(&bed, publisher.pid), vec![strings(&["q", "f"])]);
    // The top one goes a hold after the subscribers stopped wanting it.
    publisher.frames(&mut bed, Duration::from_secs(1));
    assert_eq!(layers_wanted(&bed, publisher.pid).len(), 1, "the top layer stays for a while after the last wanted it");
    publisher.frames(&mut bed, Duration::from_secs(2));
    assert_eq!(layers_wanted(&bed, publisher.pid).last().unwrap(), &strings(&["q"]), "thumbnails only: the low layer");
    let sent_f = bed.client(publisher.pid).layer_seq[2];
    publisher.frames(&mut bed, Duration::from_secs(1));
    assert_eq!(bed.client(publisher.pid).layer_seq[2], sent_f, "the publisher stopped the top layer");

    // One subscriber wants the full picture: the top layer comes back at
    // once (not the middle one), and it switches to it.
    subscription(&mut bed, subs[0], mids[0], None, true);
    publisher.frames(&mut bed, Duration::from_millis(300));
    assert_eq!(layers_wanted(&bed, publisher.pid).last().unwrap(), &strings(&["q", "f"]));
    publisher.frames(&mut bed, Duration::from_secs(2));
    let got = video_received(&bed, subs[0], mids[0]);
    assert_eq!(got.last().unwrap().0, "f", "back on the top layer");
    assert_continuous(&got);
    let other = video_received(&bed, subs[1], mids[1]);
    assert_eq!(other.last().unwrap().0, "q", "the other thumbnail stays low");
}

#[test]
fn dynacast_keeps_every_layer_while_subscribers_on_another_shard_take_the_track() {
    let (mut bed, mut publisher, subs) = room(2, 1);
    publisher.dynacast = true;
    publisher.frames(&mut bed, Duration::from_secs(1));
    let mid = video_mid(&bed, subs[0], "pub");
    subscription(&mut bed, subs[0], mid, Some(180), true);
    publisher.frames(&mut bed, Duration::from_secs(7));
    assert!(layers_wanted(&bed, publisher.pid).is_empty(), "remote demand is not known here");
}

/// Layers of about 80, 240 and 640 kb/s on the wire (1, 3 and 8 packets of
/// 300 bytes per frame at 30 frames a second).
const REAL_RATES: [usize; 3] = [1, 3, 8];

#[test]
fn each_subscriber_settles_on_the_layer_its_link_carries() {
    let (mut bed, mut publisher, subs) = room(1, 3);
    publisher.packets = REAL_RATES;
    publisher.audio = true;
    // sub0: no limit; sub1: 450 kb/s; sub2: 80 kb/s, below the low layer.
    // Each estimates its link and tells the server (REMB), as a browser does.
    bed.set_downlink(subs[0], None);
    bed.set_downlink(subs[1], Some(450_000));
    bed.set_downlink(subs[2], Some(80_000));
    // Until the thinnest link's video pauses (its lowest layer does not fit).
    let paused = |bed: &Bed, sub| bed.client(sub).has_event(|e| matches!(e, ClientEvent::TrackPaused { .. }));
    for _ in 0..60 {
        if paused(&bed, subs[2]) {
            break;
        }
        publisher.frames(&mut bed, Duration::from_millis(250));
    }
    assert!(paused(&bed, subs[2]), "the 80 kb/s link is told its video paused");
    // The newest video packet (repairs of older ones may still come), and
    // the audio packets.
    let received = |bed: &Bed, sub| {
        let video = video_mid(bed, sub, "pub");
        let newest = video_received(bed, sub, video).iter().map(|g| g.1).max();
        (newest, bed.client(sub).rtp.iter().filter(|r| r.mid != video).count())
    };
    // (What the link had queued still arrives.)
    publisher.frames(&mut bed, Duration::from_millis(400));
    let before = received(&bed, subs[2]);
    publisher.frames(&mut bed, Duration::from_secs(2));
    let after = received(&bed, subs[2]);
    assert_eq!(after.0, before.0, "no new video while paused");
    assert!(after.1 > before.1 + 50, "audio goes on: {before:?} -> {after:?}");
    // The others have settled.
    publisher.frames(&mut bed, Duration::from_secs(8));
    let tail = |bed: &Bed, sub: ParticipantId| -> Vec<String> {
        let got = video_received(bed, sub, video_mid(bed, sub, "pub"));
        got[got.len().saturating_sub(20)..].iter().map(|g| g.0.clone()).collect()
    };
    let (t0, t1) = (tail(&bed, subs[0]), tail(&bed, subs[1]));
    assert!(t0.iter().all(|r| r == "f"), "the unlimited link gets the top layer: {t0:?}");
    assert!(t1.iter().all(|r| r == "h"), "the 450 kb/s link gets the middle layer: {t1:?}");

    // The limits go: both climb to the top layer and the pause ends.
    for s in &subs[1..] {
        bed.set_downlink(*s, None);
    }
    // (Lifts that fell back while the links were capped lengthen the hold:
    // the 80 kb/s one has tried and failed often, up to a 48 s hold, since
    // a step down no longer takes a second step while the estimate settles.)
    publisher.frames(&mut bed, Duration::from_secs(60));
    assert!(bed.client(subs[2]).has_event(|e| matches!(e, ClientEvent::TrackResumed { .. })), "video resumed");
    for s in &subs {
        let t = tail(&bed, *s);
        assert!(t.iter().all(|r| r == "f"), "{} back on the top layer: {t:?}", bed.client(*s).identity);
    }
}

#[test]
fn the_active_speakers_camera_gets_the_better_layer_when_the_link_is_short() {
    // Whichever of the two joined first (the order tracks reach the leg).
    for speaker_first in [true, false] {
        let mut bed = Bed::with_spill_at(1, 10);
        let a = Publisher::new(bed.join_simulcast("r", "a"));
        let b = Publisher::new(bed.join_simulcast("r", "b"));
        let (mut speaker, mut quiet, names) = match speaker_first {
            true => (a, b, ("a", "b")),
            false => (b, a, ("b", "a")),
        };
        let sub = bed.join("r", "sub", &[]);
        bed.run(Duration::from_secs(2));
        for p in [&mut quiet, &mut speaker] {
            p.packets = REAL_RATES;
            p.audio = true;
        }
        // Room for one middle layer and one low one, not for two middle ones.
        bed.set_downlink(sub, Some(450_000));
        let (s, q) = (video_mid(&bed, sub, names.0), video_mid(&bed, sub, names.1));
        let mut layers = |bed: &mut Bed, secs: u64| {
            let from = bed.client(sub).rtp.len();
            for _ in 0..(secs * 1000 / FRAME.as_millis() as u64) {
                quiet.send_frame(bed);
                speaker.send_frame(bed);
                // Only one of them speaks.
                bed.send_speech(speaker.pid, -20);
                bed.run(FRAME);
            }
            let got = &bed.client(sub).rtp[from..];
            let share = |mid: Mid, rid: &str| {
                let of: Vec<_> = got.iter().filter(|r| r.mid == mid).collect();
                of.iter().filter(|r| layer_tag(&r.payload).starts_with(rid)).count() * 100 / of.len().max(1)
            };
            (share(s, "h"), share(q, "q"))
        };
        layers(&mut bed, 10);
        let (speaker_h, quiet_q) = layers(&mut bed, 5);
        assert!(speaker_h >= 75, "the speaker's camera on the middle layer: {speaker_h} % ({speaker_first})");
        assert!(quiet_q >= 75, "the quiet camera on the low layer: {quiet_q} % ({speaker_first})");
    }
}
