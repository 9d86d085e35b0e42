//! Recording through real shards and str0m peers, in memory and in
//! virtual time: the shards' taps feed the real recorder, whose files are
//! read back with ffprobe / ffmpeg (installed by `make test`).

use std::time::{Duration, Instant};

use sfu::record::RecordingEvent;
use sfu::testbed::{ffprobe_packets, ivf_frames, vp8_layer_payload, Bed, FilePacket};
use sfu::ParticipantId;
use str0m::media::MediaKind;

const TICK: Duration = Duration::from_millis(20);
/// Bytes of a video packet's payload after its VP8 descriptor.
const VP8_DATA: usize = 300 - 6;

/// A camera and microphone with real media clocks: audio every 20 ms
/// (48 kHz), a video frame every 40 ms (90 kHz) of `packets` packets whose
/// payloads carry the frame's number; RTP clocks start at unrelated values,
/// as in a browser. Keyframes when asked for (and the first frame).
struct Camera {
    pid: ParticipantId,
    start: Instant,
    ticks: u64,
    seq: [u64; 2],
    frame: u64,
    requests_seen: usize,
    packets: usize,
    /// Video is captured this long before it is sent (encoding).
    video_delay: Duration,
    /// Keyframes sent, by frame number.
    keyframes: Vec<u64>,
}

impl Camera {
    fn new(bed: &Bed, pid: ParticipantId) -> Self {
        Camera {
            pid,
            start: bed.now,
            ticks: 0,
            seq: [300, 9000],
            frame: 0,
            requests_seen: 0,
            packets: 2,
            video_delay: Duration::ZERO,
            keyframes: Vec::new(),
        }
    }

    /// Runs `d` of virtual time, sending as it goes. `mark`: the tick
    /// (since the camera started) whose audio packet and video frame are
    /// made recognisable by their size.
    fn run(&mut self, bed: &mut Bed, d: Duration, mark: Option<u64>) {
        for _ in 0..d.as_millis() / TICK.as_millis() {
            let at = self.start + TICK * self.ticks as u32;
            let audio_ts = 77_000 + (self.ticks * 960) as u32;
            self.seq[0] += 1;
            let audio = vec![0xfc; if mark == Some(self.ticks) { 77 } else { 60 }];
            bed.send_rtp_at(self.pid, MediaKind::Audio, (self.seq[0], audio_ts, at), true, audio);
            if self.ticks.is_multiple_of(2) {
                // The frame sent now was captured `video_delay` ago.
                let lag = (self.video_delay.as_millis() / TICK.as_millis()) as u64;
                let marked = mark.is_some_and(|m| m + lag == self.ticks);
                self.send_frame(bed, at - self.video_delay, marked);
            }
            self.ticks += 1;
            bed.run(TICK);
        }
    }

    fn send_frame(&mut self, bed: &mut Bed, captured: Instant, marked: bool) {
        let requests = bed.client(self.pid).keyframe_requests;
        let keyframe = self.frame == 0 || requests > self.requests_seen || marked;
        self.requests_seen = requests;
        if keyframe {
            self.keyframes.push(self.frame);
        }
        // A marked frame has one packet more.
        let packets = self.packets + usize::from(marked);
        let ts = 1_000_000 + (self.frame * 3600) as u32;
        for i in 0..packets {
            self.seq[1] += 1;
            let payload = vp8_layer_payload("v", self.frame, (self.frame % 32768) as u16, i == 0, keyframe, 240);
            let last = i + 1 == packets;
            bed.send_rtp_at(self.pid, MediaKind::Video, (self.seq[1], ts, captured), last, payload);
        }
        self.frame += 1;
    }
}

/// The frame number a video frame of the file carries (see `Camera`).
fn frame_number(frame: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(&frame[10..]);
    text.split(':').nth(1).and_then(|n| n.parse().ok()).expect("a frame made by Camera")
}

fn recording_bed(dir: &tempfile::TempDir) -> Bed {
    let mut bed = Bed::new(1);
    bed.record_into(dir.path().to_path_buf());
    bed
}

fn finished(bed: &Bed, file: &str) -> (u64, Option<String>) {
    bed.recorder
        .as_ref()
        .unwrap()
        .events
        .iter()
        .find_map(|e| match e {
            RecordingEvent::FileFinished { file: f, gaps, error, .. } if f == file => Some((*gaps, error.clone())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{file} finished"))
}

fn file_of(bed: &Bed, pid: ParticipantId) -> String {
    let files = bed.recorder.as_ref().unwrap().files();
    files.into_iter().find(|f| f.contains(&format!("/{}-camera", pid.0))).expect("a camera file")
}

#[test]
fn audio_and_video_captured_at_one_instant_are_within_20_ms_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut bed = recording_bed(&dir);
    let alice = bed.join("r", "alice", &[MediaKind::Audio, MediaKind::Video]);
    bed.run(Duration::from_millis(500));
    assert!(bed.client(alice).connected);
    bed.set_recording("r", Some("rec1"));
    let mut cam = Camera::new(&bed, alice);
    // Video leaves 80 ms after capture (the encoder), so it arrives 80 ms
    // after the audio of the same instant: only the sender reports tie
    // them. The marked instant is 7 s in, after both tracks' first report
    // (str0m, like libwebrtc, reports on audio every 5 s); until its first
    // report a track can only be placed by arrival.
    cam.video_delay = Duration::from_millis(80);
    cam.run(&mut bed, Duration::from_secs(8), Some(350));
    bed.set_recording("r", None);
    bed.run(Duration::from_millis(100));

    let file = file_of(&bed, alice);
    assert_eq!(finished(&bed, &file), (0, None));
    let pkts = ffprobe_packets(&dir.path().join(&file));
    let mark = |video: bool, size: usize| {
        pkts.iter().find(|p| p.video == video && p.size == size).map(|p| p.pts_ms).expect("the marked packet")
    };
    let (audio, video) = (mark(false, 77), mark(true, 3 * VP8_DATA));
    assert!((audio - video).abs() < 20, "marked audio at {audio} ms, video at {video} ms");
    // And nothing of either was dropped on the way.
    let count = |video: bool| pkts.iter().filter(|p| p.video == video).count();
    assert!(count(false) >= 370 && count(true) >= 185, "{} audio, {} video packets", count(false), count(true));
}

#[test]
fn a_lossy_uplink_gives_a_file_without_undecodable_frames() {
    let dir = tempfile::tempdir().unwrap();
    let mut bed = recording_bed(&dir);
    let alice = bed.join("r", "alice", &[MediaKind::Audio, MediaKind::Video]);
    bed.run(Duration::from_millis(500));
    bed.set_recording("r", Some("rec1"));
    // Every 7th RTP datagram from alice is lost, retransmissions included
    // (NACKs repair those), and twice her uplink is down for half a second
    // (longer than the recorder waits for a repair).
    bed.clients.get_mut(&alice).unwrap().lose_uplink_every = Some(7);
    let mut cam = Camera::new(&bed, alice);
    cam.packets = 3;
    for _ in 0..2 {
        cam.run(&mut bed, Duration::from_secs(3), None);
        bed.clients.get_mut(&alice).unwrap().lose_uplink = 60;
    }
    cam.run(&mut bed, Duration::from_secs(4), None);
    bed.set_recording("r", None);
    bed.run(Duration::from_millis(100));

    let file = file_of(&bed, alice);
    let (gaps, error) = finished(&bed, &file);
    assert_eq!(error, None);
    let frames = ivf_frames(&dir.path().join(&file));
    let numbers: Vec<u64> = frames.iter().map(|f| frame_number(f)).collect();
    for (f, n) in frames.iter().zip(&numbers) {
        assert_eq!(f.len(), 3 * VP8_DATA, "frame {n} is whole");
    }
    // Decodable: each frame follows the one before it, or is a keyframe.
    for w in numbers.windows(2) {
        assert!(w[1] == w[0] + 1 || cam.keyframes.contains(&w[1]), "frame {} after {} in {numbers:?}", w[1], w[0]);
    }
    assert!(cam.keyframes.contains(&numbers[0]), "starts at a keyframe");
    // Loss the NACKs could not repair was skipped, and keyframes asked for.
    assert!(gaps >= 2 && cam.keyframes.len() > 2, "{gaps} gaps, keyframes {:?}", cam.keyframes);
    assert!(numbers.len() >= 150, "most of the 250 frames: {}", numbers.len());
}

#[test]
fn a_participant_who_joins_a_recorded_call_late_is_recorded_from_a_keyframe_on_one_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let mut bed = recording_bed(&dir);
    let alice = bed.join("r", "alice", &[MediaKind::Audio, MediaKind::Video]);
    bed.run(Duration::from_millis(500));
    bed.set_recording("r", Some("rec1"));
    let mut a = Camera::new(&bed, alice);
    a.run(&mut bed, Duration::from_secs(2), None);
    let bob = bed.join("r", "bob", &[MediaKind::Audio, MediaKind::Video]);
    let mut b = Camera::new(&bed, bob);
    // Bob's camera sends its first keyframe, then only when asked.
    for _ in 0..150 {
        a.run(&mut bed, TICK, None);
        b.run(&mut bed, TICK, None);
    }
    bed.leave(bob);
    a.run(&mut bed, Duration::from_secs(1), None);
    bed.set_recording("r", None);
    bed.run(Duration::from_millis(100));

    let file = file_of(&bed, bob);
    assert_eq!(finished(&bed, &file).1, None);
    let pkts = ffprobe_packets(&dir.path().join(&file));
    let first: &FilePacket = pkts.iter().find(|p| p.video).expect("bob's video");
    assert!(first.keyframe, "first video packet {first:?}");
    let numbers: Vec<u64> = ivf_frames(&dir.path().join(&file)).iter().map(|f| frame_number(f)).collect();
    assert!(b.keyframes.contains(&numbers[0]), "starts at keyframe {} of {:?}", numbers[0], b.keyframes);
    assert!(numbers.len() >= 60, "bob's 6 s: {} frames", numbers.len());
    // Bob's file starts where he joined on the recording's timeline.
    let offset = bed.recorder.as_ref().unwrap().events.iter().find_map(|e| match e {
        RecordingEvent::FileStarted { file: f, offset_ms, .. } if *f == file => Some(*offset_ms),
        _ => None,
    });
    let offset = offset.unwrap();
    assert!((1900..=2600).contains(&offset), "bob's file starts {offset} ms into the recording");
}
