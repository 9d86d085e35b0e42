//! Media-plane behaviour through real shards and str0m peers, in memory.
//! Invariants: what a publisher sends reaches every subscriber unchanged;
//! a subscriber's leg stays continuous when its source is replaced; keyframe
//! requests reach the publisher; data channel messages reach everyone else.

use std::time::Duration;

use sfu::core::participant::ParticipantLimits;
use sfu::testbed::{payload, tag, Bed};
use sfu::ClientEvent;
use str0m::media::MediaKind;

const AV: &[MediaKind] = &[MediaKind::Audio, MediaKind::Video];

/// A bed whose rooms spread over all `shards` (one member per shard while
/// shards last), so that with two shards media and data cross between them.
fn spread(shards: usize) -> Bed {
    Bed::with_spill_at(shards, 1)
}

fn connected_room(shards: usize, names: &[&str]) -> (Bed, Vec<sfu::ParticipantId>) {
    let mut bed = spread(shards);
    let pids: Vec<_> = names.iter().map(|n| bed.join("r", n, AV)).collect();
    bed.run(Duration::from_secs(2));
    for p in &pids {
        assert!(bed.client(*p).connected, "{} connected", bed.client(*p).identity);
    }
    (bed, pids)
}

fn publish_and_check(shards: usize, names: &[&str], kinds: &[MediaKind]) {
    let mut bed = spread(shards);
    let pids: Vec<_> =
        names.iter().enumerate().map(|(i, n)| bed.join("r", n, if i == 0 { kinds } else { &[] })).collect();
    bed.run(Duration::from_secs(2));
    let publisher = pids[0];
    let tag_of = |k: MediaKind| if k == MediaKind::Audio { "a" } else { "v" };
    for n in 0..50 {
        for k in kinds {
            bed.send_rtp(publisher, *k, &payload(tag_of(*k), n));
        }
        bed.run(Duration::from_millis(20));
    }
    bed.run(Duration::from_millis(200));
    for sub in &pids[1..] {
        let c = bed.client(*sub);
        let got: Vec<&Vec<u8>> = c.rtp.iter().map(|r| &r.payload).collect();
        for n in 0..50 {
            for k in kinds {
                assert!(
                    got.contains(&&payload(tag_of(*k), n)),
                    "{} got {k:?} packet {n} ({shards} shards)",
                    c.identity
                );
            }
        }
    }
    // The publisher does not get its own media back.
    assert!(bed.client(publisher).rtp.is_empty());
}

#[test]
fn publisher_packets_reach_the_subscriber_unchanged() {
    // One shard: local forwarding. Two shards: the subscriber sits on the
    // other shard, so packets cross the media lane.
    for shards in [1, 2] {
        publish_and_check(shards, &["pub", "sub"], &[MediaKind::Video]);
        publish_and_check(shards, &["pub", "sub"], &[MediaKind::Audio]);
    }
}

#[test]
fn audio_and_video_reach_two_subscribers_unchanged() {
    publish_and_check(2, &["pub", "sub1", "sub2"], AV);
}

#[test]
fn sequence_numbers_continue_across_publisher_rejoin() {
    let (mut bed, pids) = connected_room(2, &["pub", "sub"]);
    let (publisher, sub) = (pids[0], pids[1]);
    for n in 0..20 {
        bed.send_rtp(publisher, MediaKind::Video, &payload("first", n));
        bed.run(Duration::from_millis(30));
    }
    let offers_before = bed.client(sub).events.iter().filter(|e| matches!(e, ClientEvent::Offer { .. })).count();

    bed.leave(publisher);
    bed.run(Duration::from_millis(500));
    assert!(bed.client(sub).has_event(|e| matches!(e, ClientEvent::ParticipantLeft { .. })));

    let again = bed.join("r", "pub", AV);
    bed.run(Duration::from_secs(2));
    for n in 0..20 {
        bed.send_rtp(again, MediaKind::Video, &payload("second", n));
        bed.run(Duration::from_millis(30));
    }
    let c = bed.client(sub);
    let video: Vec<&sfu::testbed::Received> = c
        .rtp
        .iter()
        .filter(|r| tag(&r.payload).starts_with(b"first") || tag(&r.payload).starts_with(b"second"))
        .collect();
    assert_eq!(video.len(), 40, "all packets of both sessions arrived");
    assert!(video.iter().all(|r| r.mid == video[0].mid), "the rejoin reused the same m-line");
    for w in video.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1, "sequence numbers are continuous");
    }
    let offers_after = c.events.iter().filter(|e| matches!(e, ClientEvent::Offer { .. })).count();
    assert_eq!(offers_before, offers_after, "no renegotiation was needed for the rejoin");
}

fn routes(bed: &Bed) -> usize {
    bed.shards.iter().map(|s| s.route_count()).sum()
}

/// A churn of short sessions (the load test's `churn`) leaves before its
/// offers are answered: whatever state a subscription was in, nothing of it
/// stays on the shard (a route kept per session grew the heap ~1.5 KB each).
#[test]
fn leaving_before_a_subscription_is_negotiated_leaves_no_route_behind() {
    let mut bed = Bed::new(1);
    for round in 0..3 {
        let room = format!("r{round}");
        let a = bed.join(&room, "a", AV);
        bed.run(Duration::from_secs(2));
        // b is subscribed to a's tracks as it joins, and leaves before its
        // first negotiation is over; c never answers the offer of them.
        let b = bed.join(&room, "b", AV);
        bed.run(Duration::from_millis(5));
        bed.leave(b);
        let c = bed.join(&room, "c", AV);
        bed.clients.get_mut(&c).unwrap().hold_offers = true;
        bed.run(Duration::from_secs(2));
        assert!(routes(&bed) >= 4, "a and c publish: {} routes", routes(&bed));
        bed.leave(c);
        bed.run(Duration::from_millis(200));
        bed.leave(a);
        bed.run(Duration::from_millis(200));
        assert_eq!(bed.shards[0].participant_count(), 0);
        assert_eq!(routes(&bed), 0, "round {round}: routes left after everyone left");
    }
}

/// A publisher who rejoins replaces its old tracks for the subscriber: the
/// old tracks' routes go, though the subscriber stays.
#[test]
fn a_replaced_source_leaves_no_route_behind() {
    for shards in [1, 2] {
        // Four tracks; with two shards each also has a route where it is received.
        let (mut bed, pids) = connected_room(shards, &["pub", "sub"]);
        assert_eq!(routes(&bed), 4 * shards);
        let mut publisher = pids[0];
        for _ in 0..3 {
            bed.leave(publisher);
            bed.run(Duration::from_millis(300));
            publisher = bed.join("r", "pub", AV);
            bed.run(Duration::from_secs(2));
            assert_eq!(routes(&bed), 4 * shards, "{shards} shards: two publishers' audio and video");
        }
        bed.leave(publisher);
        bed.leave(pids[1]);
        bed.run(Duration::from_millis(300));
        assert_eq!(routes(&bed), 0, "{shards} shards: nothing left");
    }
}

/// A publisher ("pub") whose video reaches a subscriber ("sub").
fn video_flowing(shards: usize) -> (Bed, sfu::ParticipantId, sfu::ParticipantId) {
    let (mut bed, pids) = connected_room(shards, &["pub", "sub"]);
    for n in 0..5 {
        bed.send_rtp(pids[0], MediaKind::Video, &payload("v", n));
        bed.run(Duration::from_millis(30));
    }
    bed.run(Duration::from_secs(1));
    (bed, pids[0], pids[1])
}

/// The subscriber's client asks for a keyframe on the video it receives.
fn send_pli(bed: &mut Bed, sub: sfu::ParticipantId) {
    let c = bed.clients.get_mut(&sub).unwrap();
    let mid = c.rtp.iter().find(|r| tag(&r.payload).starts_with(b"v:")).expect("video arrived").mid;
    c.rtc.direct_api().stream_rx_by_mid(mid, None).unwrap().request_keyframe(str0m::media::KeyframeRequestKind::Pli);
}

#[test]
fn subscriber_pli_reaches_publisher() {
    for shards in [1, 2] {
        let (mut bed, publisher, sub) = video_flowing(shards);
        let before = bed.client(publisher).keyframe_requests;
        send_pli(&mut bed, sub);
        bed.run(Duration::from_millis(500));
        assert!(bed.client(publisher).keyframe_requests > before, "PLI reached the publisher ({shards} shards)");
    }
}

#[test]
fn new_subscriber_triggers_a_keyframe_request() {
    let (mut bed, pids) = connected_room(2, &["pub"]);
    let publisher = pids[0];
    bed.run(Duration::from_secs(1));
    let before = bed.client(publisher).keyframe_requests;
    bed.join("r", "late", AV);
    bed.run(Duration::from_secs(1));
    assert!(
        bed.client(publisher).keyframe_requests > before,
        "a keyframe was requested within a second of subscribing"
    );
}

#[test]
fn data_channel_message_reaches_everyone_else_tagged() {
    let (mut bed, pids) = connected_room(2, &["alice", "bob", "carol"]);
    bed.run(Duration::from_millis(500));
    bed.send_data(pids[0], "hello room");
    bed.run(Duration::from_millis(500));
    for other in &pids[1..] {
        let c = bed.client(*other);
        let msg = c.data.iter().find(|(bin, _)| !bin).expect("a text message arrived");
        let v: serde_json::Value = serde_json::from_slice(&msg.1).unwrap();
        assert_eq!(v["from"], "alice");
        assert_eq!(v["data"], "hello room");
    }
    assert!(bed.client(pids[0]).data.is_empty(), "the sender does not get its own message");
}

/// A burst of binary messages well past str0m's default SCTP buffer (128 KiB)
/// but within our per-recipient bound is relayed whole and in order.
#[test]
fn a_burst_of_binary_data_is_relayed_without_loss() {
    let (mut bed, pids) = connected_room(2, &["sender", "receiver"]);
    bed.run(Duration::from_millis(500));
    let chunk = |i: u8| vec![i; 16 * 1024];
    let mut sent = 0u8;
    for i in 0..40u8 {
        // The sender's own channel takes what it can; let it drain between bursts.
        while !bed.send_binary(pids[0], &chunk(i)) {
            bed.run(Duration::from_millis(5));
        }
        sent += 1;
    }
    bed.run(Duration::from_secs(2));
    let got: Vec<&Vec<u8>> = bed.client(pids[1]).data.iter().filter(|(bin, _)| *bin).map(|(_, d)| d).collect();
    assert_eq!(got.len(), sent as usize, "every chunk arrived");
    for (i, d) in got.iter().enumerate() {
        // One length byte, the identity, then the payload.
        assert_eq!(&d[1..1 + "sender".len()], b"sender");
        assert!(d[1 + "sender".len()..].iter().all(|b| *b == i as u8), "chunk {i} in order and intact");
    }
}

/// A sender over its data rate loses what exceeds it (the others get the
/// burst and then the rate), is told once, and is relayed again later.
#[test]
fn data_past_the_senders_byte_rate_is_dropped_and_it_is_told() {
    let mut bed = Bed::new(1);
    let rate = 64 * 1024;
    bed.shards[0].set_limits(ParticipantLimits { data_bytes_per_second: rate, ..Default::default() });
    let pids: Vec<_> = ["sender", "receiver"].iter().map(|n| bed.join("r", n, AV)).collect();
    bed.run(Duration::from_secs(2));
    let chunk = vec![7u8; 16 * 1024];
    // 640 KiB within about a second: a 128 KiB burst and 64 KiB/s fit.
    for _ in 0..40 {
        while !bed.send_binary(pids[0], &chunk) {
            bed.run(Duration::from_millis(5));
        }
        bed.run(Duration::from_millis(25));
    }
    bed.run(Duration::from_millis(500));
    let got = bed.client(pids[1]).data.len();
    assert!((8..=16).contains(&got), "the burst and the rate were relayed, the rest dropped: {got} of 40");
    let told = |bed: &Bed| {
        bed.client(pids[0])
            .events
            .iter()
            .filter(|e| matches!(e, ClientEvent::Error { code: sfu::ErrorCode::RateLimited, .. }))
            .count()
    };
    assert_eq!(told(&bed), 1, "the sender is told once, not per message");
    assert_eq!(bed.shards[0].stats().data_rate_limited as usize, 40 - got);
    bed.run(Duration::from_secs(3));
    bed.send_binary(pids[0], &chunk);
    bed.run(Duration::from_millis(500));
    assert_eq!(bed.client(pids[1]).data.len(), got + 1, "the budget refills");
}

#[test]
fn vanished_peer_is_removed_and_others_are_told() {
    let (mut bed, pids) = connected_room(1, &["stays", "vanishes"]);
    // The client stops answering entirely: no more packets from it.
    bed.clients.get_mut(&pids[1]).unwrap().gone = true;
    bed.run(Duration::from_secs(40));
    assert!(bed
        .client(pids[0])
        .has_event(|e| matches!(e, ClientEvent::ParticipantLeft { identity, .. } if &**identity == "vanishes")));
    assert_eq!(bed.shards[0].participant_count(), 1);
}

/// A burst of PLIs inside one throttle window costs the publisher one
/// request now and one when the window ends, and later bursts still get
/// through (a merged request must not swallow the ones after it).
#[test]
fn bursts_of_plis_are_merged_not_lost() {
    for shards in [1, 2] {
        let (mut bed, publisher, sub) = video_flowing(shards);
        for burst in 0..3 {
            let before = bed.client(publisher).keyframe_requests;
            for _ in 0..4 {
                send_pli(&mut bed, sub);
                bed.run(Duration::from_millis(60));
            }
            bed.run(Duration::from_secs(1));
            let got = bed.client(publisher).keyframe_requests - before;
            assert_eq!(got, 2, "burst {burst} ({shards} shards): one request at once, one merged after the window");
        }
    }
}

/// Glare: the client offers a new track while our offer is unanswered. We are
/// the impolite side: its offer is ignored, it rolls back and answers ours,
/// then offers again, and both changes land.
#[test]
fn crossing_offers_resolve_without_failing_the_session() {
    let (mut bed, pids) = connected_room(1, &["a"]);
    let a = pids[0];
    bed.clients.get_mut(&a).unwrap().hold_offers = true;
    let b = bed.join("r", "b", AV);
    bed.run(Duration::from_millis(500));
    assert!(!bed.client(a).held.is_empty(), "the server offered b's tracks to a");

    // a's own offer crosses ours and is ignored, not refused.
    bed.offer_new_track(a, MediaKind::Video);
    bed.run(Duration::from_millis(100));
    assert!(!bed.client(a).has_event(|e| matches!(e, ClientEvent::Error { .. })), "no error for a crossing offer");

    // The polite client rolls back, answers, and offers its track again.
    bed.answer_held_offers(a);
    bed.clients.get_mut(&a).unwrap().send_mids.pop();
    bed.offer_new_track(a, MediaKind::Video);
    bed.run(Duration::from_millis(500));
    assert!(bed.client(a).pending.is_none(), "a's second offer was answered");

    // b's media reaches a (our offer landed) and a's new track reaches b (a's offer landed).
    for n in 0..10 {
        bed.send_rtp(b, MediaKind::Video, &payload("b", n));
        bed.run(Duration::from_millis(30));
    }
    let c = bed.clients.get_mut(&a).unwrap();
    let mid = c.send_mids.last().unwrap().1;
    let pt = c.pt(str0m::format::Codec::Vp8);
    let now = bed.now;
    for n in 0..10u64 {
        let c = bed.clients.get_mut(&a).unwrap();
        let mut api = c.rtc.direct_api();
        let tx = api.stream_tx_by_mid(mid, None).expect("new track's send stream");
        tx.write_rtp(
            str0m::rtp::RtpWrite::new(pt, (n + 1).into(), n as u32 * 3000, now, payload("screen", n as usize))
                .marker(true),
        );
        bed.run(Duration::from_millis(30));
    }
    bed.run(Duration::from_millis(300));
    assert!(bed.client(a).rtp.iter().any(|r| tag(&r.payload).starts_with(b"b:")), "b's video reached a");
    assert!(bed.client(b).rtp.iter().any(|r| tag(&r.payload).starts_with(b"screen:")), "a's new track reached b");
}

/// A packet lost on the way to a subscriber is NACKed, retransmitted by the
/// server's leg, and counted.
#[test]
fn a_lost_packet_is_nacked_and_retransmitted() {
    let (mut bed, publisher, sub) = video_flowing(1);
    bed.clients.get_mut(&sub).unwrap().lose_rtp = 1;
    for n in 100..130 {
        bed.send_rtp(publisher, MediaKind::Video, &payload("v", n));
        bed.run(Duration::from_millis(30));
    }
    bed.run(Duration::from_secs(6)); // past one stats interval
    let got = &bed.client(sub).rtp;
    for n in 100..130 {
        assert!(got.iter().any(|r| r.payload == payload("v", n)), "packet {n} arrived, if need be retransmitted");
    }
    assert!(bed.shards[0].stats().nacks_received >= 1, "the NACK was counted");
}

/// A link that loses a quarter of what we send it, retransmissions too:
/// every packet still arrives, repaired by NACK and retransmission (str0m's
/// default would stop retransmitting past 15 % of the leg's traffic).
#[test]
fn steady_loss_on_a_subscriber_link_is_repaired_by_retransmission() {
    let (mut bed, publisher, sub) = video_flowing(1);
    bed.clients.get_mut(&sub).unwrap().lose_every = Some(4);
    for n in 200..300 {
        bed.send_rtp(publisher, MediaKind::Video, &payload("v", n));
        bed.run(Duration::from_millis(30));
    }
    // A few packets more over a clean link: a receiver learns of a lost
    // packet only from a later one.
    bed.clients.get_mut(&sub).unwrap().lose_every = None;
    for n in 300..305 {
        bed.send_rtp(publisher, MediaKind::Video, &payload("v", n));
        bed.run(Duration::from_millis(30));
    }
    bed.run(Duration::from_secs(1));
    let got = &bed.client(sub).rtp;
    let missing: Vec<usize> = (200..300).filter(|n| !got.iter().any(|r| r.payload == payload("v", *n))).collect();
    assert!(missing.is_empty(), "packets never repaired: {missing:?}");
}

/// A viewer (no publish grant) negotiates no transport-cc (estimating what
/// it sends is moot), but abs-send-time and REMB: its browser estimates what
/// we send it. Media, NACK and retransmission work on its legs.
#[test]
fn a_viewer_gets_media_without_transport_cc() {
    let mut bed = Bed::new(1);
    let publisher = bed.join("r", "pub", AV);
    let viewer = bed.join_viewer("r", "viewer");
    bed.run(Duration::from_secs(2));
    let offers: Vec<&String> = bed
        .client(viewer)
        .events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Offer { sdp, .. } => Some(sdp),
            _ => None,
        })
        .collect();
    assert!(!offers.is_empty() && offers.iter().all(|sdp| sdp.contains("m=video")), "the viewer was offered the video");
    for sdp in &offers {
        assert!(!sdp.contains("transport-wide-cc"), "no transport-cc offered to a viewer:\n{sdp}");
        assert!(sdp.contains("abs-send-time") && sdp.contains("goog-remb"), "REMB estimation offered:\n{sdp}");
    }
    assert!(
        bed.client(publisher)
            .events
            .iter()
            .any(|e| matches!(e, ClientEvent::Answer { sdp } if sdp.contains("transport-wide-cc"))),
        "a publisher keeps transport-cc for its browser's bandwidth estimation"
    );

    // After a few packets the viewer's link loses one video packet (Opus is
    // not retransmitted, so audio starts after the loss).
    for n in 0..30 {
        if n == 5 {
            bed.clients.get_mut(&viewer).unwrap().lose_rtp = 1;
        }
        bed.send_rtp(publisher, MediaKind::Video, &payload("v", n));
        if n > 5 {
            bed.send_rtp(publisher, MediaKind::Audio, &payload("a", n));
        }
        bed.run(Duration::from_millis(30));
    }
    bed.run(Duration::from_millis(500));
    let got = &bed.client(viewer).rtp;
    for n in 0..30 {
        assert!(got.iter().any(|r| r.payload == payload("v", n)), "video {n} arrived, if need be retransmitted");
    }
    for n in 6..30 {
        assert!(got.iter().any(|r| r.payload == payload("a", n)), "audio {n} arrived");
    }
}

/// With the production placement a two-party room never straddles shards:
/// its packets are forwarded on the shard that received them, nothing
/// crosses a lane.
#[test]
fn a_two_party_room_stays_on_one_shard() {
    let mut bed = Bed::new(2);
    let rooms: Vec<(sfu::ParticipantId, sfu::ParticipantId)> = (0..4)
        .map(|r| (bed.join(&format!("call{r}"), "agent", AV), bed.join(&format!("call{r}"), "customer", AV)))
        .collect();
    bed.run(Duration::from_secs(2));
    for (a, b) in &rooms {
        assert_eq!(bed.client(*a).shard, bed.client(*b).shard, "both sides of a call on one shard");
    }
    let used: std::collections::BTreeSet<usize> = rooms.iter().map(|(a, _)| bed.client(*a).shard).collect();
    assert_eq!(used.len(), 2, "calls are spread over the shards");
    for n in 0..20 {
        for (a, b) in &rooms {
            bed.send_rtp(*a, MediaKind::Video, &payload("a", n));
            bed.send_rtp(*b, MediaKind::Video, &payload("b", n));
        }
        bed.run(Duration::from_millis(30));
    }
    bed.run(Duration::from_millis(300));
    for (a, b) in &rooms {
        assert!(bed.client(*b).rtp.iter().any(|r| r.payload == payload("a", 19)), "agent's video reached the customer");
        assert!(bed.client(*a).rtp.iter().any(|r| r.payload == payload("b", 19)), "customer's video reached the agent");
    }
    for s in &bed.shards {
        assert_eq!(s.stats().dropped_lane_full, 0);
    }
    assert_eq!(
        bed.shards.iter().map(|s| s.stats().rtp_forwarded).sum::<u64>(),
        bed.shards.iter().map(|s| s.stats().rtp_in).sum::<u64>(),
        "each packet forwarded once, on its own shard"
    );
}

/// A room larger than a shard's share spills onto another shard; members
/// there still get media and data, and data reaches only the room's shards.
#[test]
fn a_room_past_its_share_spills_and_still_reaches_everyone() {
    let mut bed = Bed::with_spill_at(3, 2);
    let pids: Vec<_> = ["a", "b", "c"].iter().map(|n| bed.join("big", n, AV)).collect();
    let other = bed.join("small", "alone", AV);
    bed.run(Duration::from_secs(2));
    let shard_of = |bed: &Bed, p| bed.client(p).shard;
    assert_eq!(shard_of(&bed, pids[0]), shard_of(&bed, pids[1]), "the first two share a shard");
    assert_ne!(shard_of(&bed, pids[2]), shard_of(&bed, pids[0]), "the third spilled");
    for n in 0..10 {
        bed.send_rtp(pids[0], MediaKind::Video, &payload("v", n));
        bed.run(Duration::from_millis(30));
    }
    bed.send_data(pids[2], "from the spill shard");
    bed.run(Duration::from_millis(500));
    for p in &pids[1..] {
        assert!(
            bed.client(*p).rtp.iter().any(|r| r.payload == payload("v", 9)),
            "video reached {}",
            bed.client(*p).identity
        );
    }
    for p in &pids[..2] {
        assert!(bed.client(*p).data.iter().any(|(_, d)| String::from_utf8_lossy(d).contains("from the spill shard")));
    }
    let lonely = shard_of(&bed, other);
    if lonely != shard_of(&bed, pids[0]) && lonely != shard_of(&bed, pids[2]) {
        assert_eq!(bed.shards[lonely].stats().data_relayed, 0, "a shard without the room gets none of its data");
    }
    assert!(bed.client(other).data.is_empty(), "another room hears nothing");
}

/// In a call, a peer's periodic NACK checks and transport-cc feedback ride
/// on the drains that forwarding does anyway instead of waking it on their
/// own (str0m asks for ~50 such timeouts per publishing peer per second).
#[test]
fn nack_and_feedback_timers_ride_on_forwarding() {
    let mut bed = Bed::new(1);
    let (a, b) = (bed.join("call", "agent", AV), bed.join("call", "customer", AV));
    bed.run(Duration::from_secs(2));
    let before = bed.shards[0].stats().rtc_timer_timeouts;
    // Two seconds of audio (every 20 ms) and video (every 10 ms) both ways.
    for n in 0..200 {
        for p in [a, b] {
            bed.send_rtp(p, MediaKind::Video, &payload("v", n));
            if n % 2 == 0 {
                bed.send_rtp(p, MediaKind::Audio, &payload("a", n));
            }
        }
        bed.run(Duration::from_millis(10));
    }
    let timers = bed.shards[0].stats().rtc_timer_timeouts - before;
    assert!(bed.client(b).rtp.iter().any(|r| r.payload == payload("v", 199)), "media flowed");
    // Unabsorbed, this is ~200 (2 peers × 2 s × ~50/s).
    assert!(timers < 60, "{timers} timer-driven timeouts in 2 s of a two-party call");
}

/// We run no bandwidth estimation of our own on what we send, so nothing
/// we send carries a transport-wide sequence number, even to a publisher
/// that negotiated transport-cc (for what it sends us): its browser then
/// estimates our packets itself and reports with REMB.
#[test]
fn forwarded_packets_carry_no_transport_wide_sequence_numbers() {
    let mut bed = Bed::new(1);
    let a = bed.join("r", "a", AV);
    let b = bed.join("r", "b", AV);
    bed.run(Duration::from_secs(2));
    for n in 0..20 {
        bed.send_rtp(a, MediaKind::Video, &payload("v", n));
        bed.run(Duration::from_millis(30));
    }
    let got = &bed.client(b).rtp;
    assert!(got.len() >= 20, "b got a's video: {}", got.len());
    assert!(got.iter().all(|r| r.transport_cc.is_none()), "no transport-wide sequence numbers");
    assert!(got.iter().all(|r| r.abs_send_time), "abs-send-time on every packet");
}
