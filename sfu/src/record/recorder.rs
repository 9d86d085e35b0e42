//! The recorder's state, driven without I/O threads (the thread in
//! `record::mod` and the test bed feed it): per recorded participant, its
//! streams (reorder → frames → clock) and its files (camera + microphone in
//! one, a screen share in another).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::format::Codec;
use tracing::{info, warn};

use super::clock::{SenderClock, TrackClock};
use super::file::{Kind, WebmFile};
use super::frames::{opus_frame, Frame, Vp8Frames};
use super::reorder::{Released, Reorder};
use super::tap::{RecordMsg, TapInfo};
use crate::core::command::MediaPacket;
use crate::core::ids::{ParticipantId, ShardId, TrackId, TrackSource};
use crate::core::layers::Layer;

/// How long a gap in a stream is waited for (a NACK's repair) before it is skipped.
const VIDEO_HOLD: Duration = Duration::from_millis(300);
const AUDIO_HOLD: Duration = Duration::from_millis(150);
/// A file starts once it has seen a keyframe and audio, or this long after
/// its first packet with what it has: its tracks are fixed from then on.
const START_WAIT: Duration = Duration::from_secs(2);
/// Keyframe requests for one stream at most this often.
const KEYFRAME_EVERY: Duration = Duration::from_secs(1);
/// Progress (duration, size) is reported this often per file.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

const VIDEO_RATE: u32 = 90_000;
const AUDIO_RATE: u32 = 48_000;

/// What the recorder tells the control plane.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordingEvent {
    /// A file of `recording` was created (relative to the recordings dir).
    FileStarted {
        recording: Arc<str>,
        participant: ParticipantId,
        identity: Arc<str>,
        file: String,
        screen: bool,
        /// When its first frame was, after the recording's first file
        /// started (the files share one timeline).
        offset_ms: u64,
    },
    /// Written so far (at least every couple of seconds).
    FileProgress { recording: Arc<str>, file: String, duration_ms: u64, bytes: u64 },
    /// Closed: finished and seekable, or stopped by `error` (the call goes on).
    FileFinished {
        recording: Arc<str>,
        file: String,
        duration_ms: u64,
        bytes: u64,
        /// Stretches where packets were lost and video waited for a keyframe.
        gaps: u64,
        error: Option<String>,
    },
}

/// One track's packets on their way to frames.
struct Stream {
    codec: Codec,
    /// A screen share's (its own file) or the camera's and microphone's.
    screen: bool,
    layer: Layer,
    reorder: Reorder,
    vp8: Vp8Frames,
    clock: TrackClock,
    asked_keyframe: Option<Instant>,
}

impl Stream {
    fn new(codec: Codec, layer: Layer, screen: bool) -> Self {
        let (hold, rate) = if codec == Codec::Vp8 { (VIDEO_HOLD, VIDEO_RATE) } else { (AUDIO_HOLD, AUDIO_RATE) };
        Stream {
            codec,
            screen,
            layer,
            reorder: Reorder::new(hold),
            vp8: Vp8Frames::default(),
            clock: TrackClock::new(rate),
            asked_keyframe: None,
        }
    }

    fn kind(&self) -> Kind {
        if self.codec == Codec::Vp8 {
            Kind::Video
        } else {
            Kind::Audio
        }
    }
}

/// A file being written, or waiting to start.
struct Output {
    name: String,
    screen: bool,
    first_packet: Instant,
    /// Frames (with their time on our clock) until the file starts.
    pending: Vec<(Kind, i128, Frame)>,
    file: Option<WebmFile>,
    /// Our clock's time of the file's zero.
    origin_ns: i128,
    gaps: u64,
    error: Option<String>,
    reported_at: Option<Instant>,
}

/// One recorded participant.
struct Recorded {
    info: Arc<TapInfo>,
    sender: SenderClock,
    streams: HashMap<TrackId, Stream>,
    /// Camera and microphone; screen share.
    outputs: [Option<Output>; 2],
}

pub struct RecorderCore {
    dir: PathBuf,
    /// Our clock's zero.
    epoch: Instant,
    taps: HashMap<u64, Recorded>,
    /// First file start per recording (the shared timeline's zero).
    recording_zero: HashMap<Arc<str>, i128>,
    events: Vec<RecordingEvent>,
    keyframes: Vec<(ShardId, TrackId, Layer)>,
    released: Vec<Released>,
}

impl RecorderCore {
    pub fn new(dir: PathBuf, now: Instant) -> Self {
        RecorderCore {
            dir,
            epoch: now,
            taps: HashMap::new(),
            recording_zero: HashMap::new(),
            events: Vec::new(),
            keyframes: Vec::new(),
            released: Vec::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn poll_event(&mut self) -> Option<RecordingEvent> {
        (!self.events.is_empty()).then(|| self.events.remove(0))
    }

    /// Keyframes to ask publishers for: (publisher's shard, track, layer).
    pub fn poll_keyframe_request(&mut self) -> Option<(ShardId, TrackId, Layer)> {
        self.keyframes.pop()
    }

    pub fn handle(&mut self, msg: RecordMsg, now: Instant) {
        match msg {
            RecordMsg::Packet { tap, source, pkt } => self.on_packet(tap, source, pkt, now),
            RecordMsg::Closed { tap } => self.close(tap.id, now),
        }
    }

    /// Skips gaps that waited long enough, starts files whose wait is
    /// over, reports progress.
    pub fn handle_timeout(&mut self, now: Instant) {
        let ids: Vec<u64> = self.taps.keys().copied().collect();
        for id in ids {
            let tracks: Vec<TrackId> = self.taps[&id].streams.keys().copied().collect();
            for track in tracks {
                self.drain_stream(id, track, now);
            }
            let Some(r) = self.taps.get_mut(&id) else { continue };
            for o in r.outputs.iter_mut().flatten() {
                if o.file.is_none() && now.saturating_duration_since(o.first_packet) >= START_WAIT {
                    start_file(o, &r.info, &self.dir, &mut self.recording_zero, &mut self.events, true);
                    write_pending(o, &r.info, &mut self.events);
                }
                report_progress(o, &r.info, now, &mut self.events);
            }
        }
    }

    /// When `handle_timeout` should run next.
    pub fn next_timeout(&self, now: Instant) -> Instant {
        let soonest = self.taps.values().flat_map(|r| r.streams.values()).filter_map(|s| s.reorder.deadline()).min();
        soonest.unwrap_or(now + Duration::from_millis(500)).min(now + Duration::from_millis(500))
    }

    /// Closes every file (shutdown).
    pub fn close_all(&mut self, now: Instant) {
        let ids: Vec<u64> = self.taps.keys().copied().collect();
        for id in ids {
            self.close(id, now);
        }
    }

    fn on_packet(&mut self, tap: Arc<TapInfo>, source: TrackSource, pkt: Arc<MediaPacket>, now: Instant) {
        let id = tap.id;
        let r = self.taps.entry(id).or_insert_with(|| Recorded {
            info: tap,
            sender: SenderClock::default(),
            streams: HashMap::new(),
            outputs: [None, None],
        });
        let screen = matches!(source, TrackSource::ScreenShare | TrackSource::ScreenShareAudio);
        let out = &mut r.outputs[usize::from(screen)];
        if out.as_ref().is_some_and(|o| o.error.is_some()) {
            return;
        }
        out.get_or_insert_with(|| Output {
            name: file_name(&r.info, screen),
            screen,
            first_packet: now,
            pending: Vec::new(),
            file: None,
            origin_ns: 0,
            gaps: 0,
            error: None,
            reported_at: None,
        });
        let track = pkt.track;
        let stream = r.streams.entry(track).or_insert_with(|| Stream::new(pkt.codec, pkt.layer, screen));
        if stream.layer != pkt.layer {
            // Another simulcast layer: its own sequence and timestamps.
            *stream = Stream::new(pkt.codec, pkt.layer, screen);
        }
        stream.reorder.push(pkt, &mut self.released);
        self.drain_stream(id, track, now);
    }

    /// Turns what a stream's reorder buffer releases into frames for its file.
    fn drain_stream(&mut self, id: u64, track: TrackId, now: Instant) {
        let Some(r) = self.taps.get_mut(&id) else { return };
        let Some(stream) = r.streams.get_mut(&track) else { return };
        stream.reorder.poll(now, &mut self.released);
        if self.released.is_empty() && !stream.vp8.needs_keyframe() {
            return;
        }
        let screen = stream.screen;
        let mut frames = Vec::new();
        for rel in self.released.drain(..) {
            match rel {
                Released::Lost => {
                    if stream.codec == Codec::Vp8 {
                        stream.vp8.on_lost();
                        if let Some(o) = r.outputs[usize::from(screen)].as_mut() {
                            o.gaps += 1;
                        }
                    }
                }
                Released::Packet(pkt) => {
                    let f = if stream.codec == Codec::Vp8 { stream.vp8.on_packet(&pkt) } else { opus_frame(&pkt) };
                    frames.extend(f);
                }
            }
        }
        if stream.codec == Codec::Vp8
            && stream.vp8.needs_keyframe()
            && stream.asked_keyframe.is_none_or(|t| now.saturating_duration_since(t) >= KEYFRAME_EVERY)
        {
            stream.asked_keyframe = Some(now);
            self.keyframes.push((r.info.shard, track, stream.layer));
        }
        let kind = stream.kind();
        let rate = if kind == Kind::Video { VIDEO_RATE } else { AUDIO_RATE };
        for f in frames {
            r.sender.observe(&f, rate, self.epoch);
            let ns = stream.clock.time_of(&f, &r.sender, self.epoch);
            let Some(o) = r.outputs[usize::from(screen)].as_mut() else { continue };
            o.pending.push((kind, ns, f));
            if o.file.is_none() {
                let ready = o.pending.iter().any(|(k, _, f)| *k == Kind::Video && f.keyframe)
                    && (o.screen || o.pending.iter().any(|(k, _, _)| *k == Kind::Audio));
                if !ready {
                    continue;
                }
                start_file(o, &r.info, &self.dir, &mut self.recording_zero, &mut self.events, false);
            }
            write_pending(o, &r.info, &mut self.events);
        }
    }

    fn close(&mut self, id: u64, now: Instant) {
        // What waits in the reorder buffers is written, gaps skipped.
        let far = now + Duration::from_secs(3600);
        if let Some(r) = self.taps.get(&id) {
            let tracks: Vec<TrackId> = r.streams.keys().copied().collect();
            for track in tracks {
                self.drain_stream(id, track, far);
            }
        }
        let Some(mut r) = self.taps.remove(&id) else { return };
        let dropped = r.info.dropped.load(Ordering::Relaxed);
        for o in r.outputs.iter_mut().flatten() {
            if o.file.is_none() {
                start_file(o, &r.info, &self.dir, &mut self.recording_zero, &mut self.events, true);
                write_pending(o, &r.info, &mut self.events);
            }
            finish(o, &r.info, &self.dir, dropped, &mut self.events);
        }
        if !self.taps.values().any(|t| t.info.recording == r.info.recording) {
            self.recording_zero.remove(&r.info.recording);
        }
    }
}

/// `<recording>/<participant>-camera.webm` or `-screen.webm`: the
/// recording's id is what makes names unguessable.
fn file_name(info: &TapInfo, screen: bool) -> String {
    format!("{}/{}-{}.webm", info.recording, info.participant.0, if screen { "screen" } else { "camera" })
}

/// Creates the file with the tracks its pending frames show (a keyframe
/// for video); `force`: even without a keyframe, if there is audio.
fn start_file(
    o: &mut Output,
    info: &TapInfo,
    dir: &Path,
    zeros: &mut HashMap<Arc<str>, i128>,
    events: &mut Vec<RecordingEvent>,
    force: bool,
) {
    if o.file.is_some() || o.error.is_some() {
        return;
    }
    let key = o.pending.iter().position(|(k, _, f)| *k == Kind::Video && f.keyframe);
    let audio = o.pending.iter().any(|(k, _, _)| *k == Kind::Audio);
    if key.is_none() && !(force && audio) {
        return;
    }
    let size = key.map(|i| o.pending[i].2.size.unwrap_or((640, 480)));
    // Video before its first keyframe cannot be decoded.
    if let Some(i) = key {
        let key_ns = o.pending[i].1;
        o.pending.retain(|(k, ns, _)| *k == Kind::Audio || *ns >= key_ns);
    } else {
        o.pending.retain(|(k, _, _)| *k == Kind::Audio);
    }
    o.pending.sort_by_key(|(_, ns, _)| *ns);
    let Some(first) = o.pending.first().map(|(_, ns, _)| *ns) else { return };
    // Audio before the first video frame is kept: the file starts at the earliest frame.
    o.origin_ns = first;
    let path = dir.join(&o.name);
    let created =
        path.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|_| WebmFile::create(&path, audio, size));
    let zero = *zeros.entry(info.recording.clone()).or_insert(first);
    match created {
        Ok(f) => {
            info!(recording = %info.recording, participant = %info.participant, file = %o.name, ?size, audio, "recording file started");
            o.file = Some(f);
            events.push(RecordingEvent::FileStarted {
                recording: info.recording.clone(),
                participant: info.participant,
                identity: info.identity.clone(),
                file: o.name.clone(),
                screen: o.screen,
                offset_ms: ((first - zero).max(0) / 1_000_000) as u64,
            });
        }
        Err(e) => fail(o, info, format!("creating {}: {e}", path.display()), events),
    }
}

fn write_pending(o: &mut Output, info: &TapInfo, events: &mut Vec<RecordingEvent>) {
    let Some(file) = o.file.as_mut() else { return };
    let mut result = Ok(());
    for (kind, ns, f) in o.pending.drain(..) {
        if ns < o.origin_ns || !file.has(kind) {
            continue;
        }
        result = file.push(kind, (ns - o.origin_ns) as u64, f.keyframe, f.data);
        if result.is_err() {
            break;
        }
    }
    if let Err(e) = result {
        o.pending.clear();
        fail(o, info, e.to_string(), events);
    }
}

fn report_progress(o: &mut Output, info: &TapInfo, now: Instant, events: &mut Vec<RecordingEvent>) {
    let Some(file) = o.file.as_ref() else { return };
    if o.reported_at.is_some_and(|t| now.saturating_duration_since(t) < PROGRESS_EVERY) {
        return;
    }
    o.reported_at = Some(now);
    events.push(RecordingEvent::FileProgress {
        recording: info.recording.clone(),
        file: o.name.clone(),
        duration_ms: file.duration().as_millis() as u64,
        bytes: file.bytes(),
    });
}

/// A write failed (disk full, unwritable): this file stops, the call goes on.
fn fail(o: &mut Output, info: &TapInfo, error: String, events: &mut Vec<RecordingEvent>) {
    warn!(recording = %info.recording, file = %o.name, %error, "recording file failed");
    let (duration_ms, bytes) = o.file.take().map_or((0, 0), |f| {
        let d = (f.duration().as_millis() as u64, f.bytes());
        let _ = f.finish();
        d
    });
    o.error = Some(error.clone());
    events.push(RecordingEvent::FileFinished {
        recording: info.recording.clone(),
        file: o.name.clone(),
        duration_ms,
        bytes,
        gaps: o.gaps,
        error: Some(error),
    });
}

fn finish(o: &mut Output, info: &TapInfo, dir: &Path, dropped: u64, events: &mut Vec<RecordingEvent>) {
    if o.error.is_some() {
        return;
    }
    let Some(file) = o.file.take() else { return };
    let duration_ms = file.duration().as_millis() as u64;
    let error = file.finish().err().map(|e| e.to_string());
    // With its cues and sizes written.
    let bytes = std::fs::metadata(dir.join(&o.name)).map_or(0, |m| m.len());
    info!(recording = %info.recording, file = %o.name, duration_ms, gaps = o.gaps, dropped, ?error, "recording file finished");
    events.push(RecordingEvent::FileFinished {
        recording: info.recording.clone(),
        file: o.name.clone(),
        duration_ms,
        bytes,
        gaps: o.gaps,
        error,
    });
}

#[cfg(test)]
mod tests {
    //! The recorder fed packets as a shard would, its file read back with
    //! ffprobe (installed by `make test`).
    use std::sync::atomic::AtomicU64;
    use std::time::SystemTime;

    use str0m::media::{Frequency, MediaTime};
    use str0m::rtp::rtcp::SenderInfo;

    use super::*;

    const AUDIO: TrackId = TrackId(1);
    const VIDEO: TrackId = TrackId(2);

    struct Publisher {
        tap: Arc<TapInfo>,
        epoch: Instant,
        wallclock: SystemTime,
        seq: [u64; 2],
    }

    impl Publisher {
        fn new(epoch: Instant) -> Self {
            let tap = Arc::new(TapInfo {
                id: 1,
                recording: Arc::from("rec1"),
                participant: ParticipantId(7),
                identity: Arc::from("alice"),
                shard: 0,
                dropped: AtomicU64::new(0),
            });
            Publisher { tap, epoch, wallclock: SystemTime::now(), seq: [100, 5000] }
        }

        /// A packet captured at `at` (since the epoch) that arrives `delay`
        /// later, with a sender report tying its RTP clock to the wallclock.
        /// Audio and video RTP clocks start at unrelated values, as in a browser.
        fn packet(
            &mut self,
            video: bool,
            at: Duration,
            delay: Duration,
            payload: Vec<u8>,
            keyframe: bool,
            marker: bool,
        ) -> RecordMsg {
            let (rate, base, track, k) =
                if video { (90_000, 1_000_000u64, VIDEO, 1) } else { (48_000, 77_000, AUDIO, 0) };
            let ts = (base + at.as_micros() as u64 * rate / 1_000_000) as u32;
            self.seq[k] += 1;
            let sr = SenderInfo {
                ssrc: 1.into(),
                ntp_time: self.wallclock,
                rtp_time: MediaTime::new(base, if video { Frequency::NINETY_KHZ } else { Frequency::FORTY_EIGHT_KHZ }),
                sender_packet_count: 0,
                sender_octet_count: 0,
            };
            let pkt = MediaPacket {
                track,
                codec: if video { Codec::Vp8 } else { Codec::Opus },
                seq_no: self.seq[k],
                timestamp: ts,
                marker,
                ext_vals: Default::default(),
                payload: Arc::from(payload),
                arrival: self.epoch + at + delay,
                layer: 0,
                keyframe,
                vp8: None,
                sender_info: Some(sr),
            };
            let source = if video { TrackSource::Camera } else { TrackSource::Microphone };
            RecordMsg::Packet { tap: self.tap.clone(), source, pkt: Arc::new(pkt) }
        }
    }

    /// VP8 payloads: descriptor (S, PID 0) and a keyframe header declaring 320x240.
    fn vp8(keyframe: bool, start: bool) -> Vec<u8> {
        let mut v = vec![if start { 0x10 } else { 0x00 }];
        if keyframe && start {
            v.extend_from_slice(&[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00]);
        } else {
            v.extend_from_slice(&[0x11; 10]);
        }
        v.resize(400, 0x5a);
        v
    }

    fn opus() -> Vec<u8> {
        vec![0xfc; 80]
    }

    /// (codec type, pts in ms, keyframe) of each packet in the file.
    fn packets(path: &Path) -> Vec<(String, i64, bool)> {
        let kind = |video| if video { "video" } else { "audio" }.to_string();
        crate::testbed::ffprobe_packets(path).into_iter().map(|p| (kind(p.video), p.pts_ms, p.keyframe)).collect()
    }

    fn drain(core: &mut RecorderCore) -> Vec<RecordingEvent> {
        std::iter::from_fn(|| core.poll_event()).collect()
    }

    #[test]
    fn audio_and_video_captured_together_line_up_in_the_file_though_video_arrives_later() {
        let dir = tempfile::tempdir().unwrap();
        let epoch = Instant::now();
        let mut core = RecorderCore::new(dir.path().to_path_buf(), epoch);
        let mut alice = Publisher::new(epoch);
        // 3 s: audio every 20 ms arriving after 10 ms, one-packet video
        // frames every 40 ms arriving after 90 ms (a slower path), a
        // keyframe at 0 and at the marker instant, 1.6 s.
        let mut msgs = Vec::new();
        for i in 0..150u64 {
            let at = Duration::from_millis(i * 20);
            msgs.push(alice.packet(false, at, Duration::from_millis(10), opus(), false, false));
            if i % 2 == 0 {
                let key = i == 0 || i == 80;
                msgs.push(alice.packet(true, at, Duration::from_millis(90), vp8(key, true), key, true));
            }
        }
        msgs.sort_by_key(|m| match m {
            RecordMsg::Packet { pkt, .. } => pkt.arrival,
            RecordMsg::Closed { .. } => epoch,
        });
        for m in msgs {
            let at = match &m {
                RecordMsg::Packet { pkt, .. } => pkt.arrival,
                RecordMsg::Closed { .. } => epoch,
            };
            core.handle(m, at);
            core.handle_timeout(at);
        }
        core.handle(RecordMsg::Closed { tap: alice.tap.clone() }, epoch + Duration::from_secs(4));
        let events = drain(&mut core);
        let RecordingEvent::FileStarted { file, .. } = &events[0] else { panic!("{events:?}") };
        let pkts = packets(&dir.path().join(file));
        let marker_video = pkts.iter().filter(|p| p.0 == "video" && p.2).map(|p| p.1).nth(1).expect("two keyframes");
        let audio: Vec<i64> = pkts.iter().filter(|p| p.0 == "audio").map(|p| p.1).collect();
        // The audio packet captured at 1.6 s is the 81st.
        let marker_audio = audio[80];
        assert!((marker_video - marker_audio).abs() < 20, "video {marker_video} ms, audio {marker_audio} ms");
        assert_eq!(audio.len(), 150, "every audio packet");
        assert!(matches!(events.last(), Some(RecordingEvent::FileFinished { error: None, .. })), "{events:?}");
    }

    #[test]
    fn a_lost_packet_skips_video_to_the_next_keyframe_and_asks_for_one() {
        let dir = tempfile::tempdir().unwrap();
        let epoch = Instant::now();
        let mut core = RecorderCore::new(dir.path().to_path_buf(), epoch);
        let mut alice = Publisher::new(epoch);
        let delay = Duration::from_millis(5);
        let mut now = epoch;
        let mut asked = Vec::new();
        // Two-packet video frames every 40 ms for 2 s; frame 10's second
        // packet is lost; frame 30 is the keyframe that answers.
        for i in 0..50u64 {
            let at = Duration::from_millis(i * 40);
            now = epoch + at + delay;
            core.handle(alice.packet(false, at, delay, opus(), false, false), now);
            let key = i == 0 || i == 30;
            core.handle(alice.packet(true, at, delay, vp8(key, true), key, false), now);
            let second = alice.packet(true, at, delay, vp8(false, false), false, true);
            if i != 10 {
                core.handle(second, now);
            }
            core.handle_timeout(now);
            asked.extend(std::iter::from_fn(|| core.poll_keyframe_request()));
        }
        core.handle(RecordMsg::Closed { tap: alice.tap.clone() }, now);
        assert!(asked.contains(&(0, VIDEO, 0)), "a keyframe was asked for: {asked:?}");
        let events = drain(&mut core);
        let RecordingEvent::FileStarted { file, .. } = &events[0] else { panic!("{events:?}") };
        let video: Vec<(i64, bool)> =
            packets(&dir.path().join(file)).into_iter().filter(|p| p.0 == "video").map(|p| (p.1, p.2)).collect();
        // Frames 0..=9 (10 misses its second packet), then from 30 on: no
        // frame that could not be decoded.
        assert_eq!(video.len(), 10 + 20, "{video:?}");
        assert!(video[10].1 && (video[10].0 - 1200).abs() <= 1, "resumes at the keyframe: {video:?}");
        assert!(matches!(events.last(), Some(RecordingEvent::FileFinished { gaps: 1, .. })), "{events:?}");
    }
}
