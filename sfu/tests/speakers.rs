//! Active speaker through real shards and str0m peers, in memory: the
//! audio level each publisher's packets carry decides who the room is told
//! speaks, loudest first, and silence empties the list.

use std::time::Duration;

use sfu::testbed::Bed;
use sfu::{ClientEvent, ParticipantId};
use str0m::media::MediaKind;

const PACKET: Duration = Duration::from_millis(20);

/// Each participant sends a 20 ms Opus packet at its level for `d`.
fn talk(bed: &mut Bed, levels: &[(ParticipantId, i8)], d: Duration) {
    for _ in 0..(d.as_millis() / PACKET.as_millis()) {
        for (pid, level) in levels {
            bed.send_speech(*pid, *level);
        }
        bed.run(PACKET);
    }
}

/// The identities in the last `speakers` event `pid` received, in order.
fn last_speakers(bed: &Bed, pid: ParticipantId) -> Option<Vec<String>> {
    bed.client(pid).events.iter().rev().find_map(|e| match e {
        ClientEvent::Speakers { speakers } => Some(speakers.iter().map(|s| s.identity.to_string()).collect()),
        _ => None,
    })
}

fn speakers_events(bed: &Bed, pid: ParticipantId) -> usize {
    bed.client(pid).events.iter().filter(|e| matches!(e, ClientEvent::Speakers { .. })).count()
}

fn room(shards: usize, spill_at: usize) -> (Bed, Vec<ParticipantId>) {
    let mut bed = Bed::with_spill_at(shards, spill_at);
    let pids: Vec<_> = ["ann", "bob", "cy"].iter().map(|n| bed.join("r", n, &[MediaKind::Audio])).collect();
    bed.run(Duration::from_secs(2));
    assert!(pids.iter().all(|p| bed.client(*p).connected));
    (bed, pids)
}

#[test]
fn the_speaker_is_reported_to_everyone_and_silence_clears_it() {
    // One shard, and the room spread over three (merged by the directory).
    for (shards, spill_at) in [(1, 100), (3, 1)] {
        let (mut bed, p) = room(shards, spill_at);
        talk(&mut bed, &[(p[0], -127), (p[1], -15), (p[2], -127)], Duration::from_secs(1));
        for who in &p {
            assert_eq!(last_speakers(&bed, *who), Some(vec!["bob".into()]), "{shards} shards");
        }
        talk(&mut bed, &[(p[0], -127), (p[1], -127), (p[2], -127)], Duration::from_secs(1));
        assert_eq!(last_speakers(&bed, p[0]), Some(vec![]), "silence clears the list ({shards} shards)");
    }
}

#[test]
fn the_loudest_speaker_comes_first() {
    let (mut bed, p) = room(1, 100);
    talk(&mut bed, &[(p[0], -30), (p[1], -8), (p[2], -127)], Duration::from_secs(1));
    assert_eq!(last_speakers(&bed, p[2]), Some(vec!["bob".into(), "ann".into()]));
    talk(&mut bed, &[(p[0], -5), (p[1], -127), (p[2], -127)], Duration::from_secs(1));
    assert_eq!(last_speakers(&bed, p[2]), Some(vec!["ann".into()]));
}

#[test]
fn a_steady_speaker_is_announced_once_not_every_window() {
    let (mut bed, p) = room(1, 100);
    talk(&mut bed, &[(p[0], -20), (p[1], -127), (p[2], -127)], Duration::from_secs(3));
    assert_eq!(last_speakers(&bed, p[1]), Some(vec!["ann".into()]));
    assert_eq!(speakers_events(&bed, p[1]), 1, "nothing changed after the first");
}

#[test]
fn a_speaker_who_leaves_is_dropped_from_the_list() {
    let (mut bed, p) = room(1, 100);
    talk(&mut bed, &[(p[0], -20), (p[1], -127), (p[2], -127)], Duration::from_secs(1));
    bed.leave(p[0]);
    talk(&mut bed, &[(p[1], -127), (p[2], -127)], Duration::from_secs(1));
    assert_eq!(last_speakers(&bed, p[1]), Some(vec![]));
}

#[test]
fn whoever_joins_while_someone_speaks_is_told_at_once() {
    let (mut bed, p) = room(1, 100);
    talk(&mut bed, &[(p[0], -20), (p[1], -127), (p[2], -127)], Duration::from_secs(1));
    let late = bed.join("r", "dee", &[MediaKind::Audio]);
    bed.run(Duration::from_millis(10));
    assert_eq!(last_speakers(&bed, late), Some(vec!["ann".into()]));
}
