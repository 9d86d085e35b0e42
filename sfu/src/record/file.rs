//! One WebM file (libwebm's muxer through the `webm` crate): Opus and/or
//! VP8, frames interleaved in time, written as they come.
//!
//! Crash safety comes from libwebm's layout: the segment and each cluster
//! start with an "unknown" size that only finalizing fills in, so a file
//! cut off by a crash is still a valid live stream up to its last write;
//! [`Sink`] flushes at least every [`FLUSH_EVERY`]. Finalizing writes the
//! sizes, the duration and the cues (seeking).

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use webm::mux::{
    AudioCodecId, AudioTrack, Segment, SegmentBuilder, SegmentMode, TrackNum, VideoCodecId, VideoTrack, Writer,
};

/// Buffered bytes reach the disk at least this often.
const FLUSH_EVERY: Duration = Duration::from_millis(500);
const BUFFER: usize = 64 * 1024;

/// What a file has written and the first error it hit; shared between the
/// muxer's writer and the file's owner.
#[derive(Debug, Default)]
struct SinkState {
    bytes: u64,
    error: Option<io::Error>,
}

/// A buffered, seekable file that remembers its size and first error
/// (libwebm only learns "false").
struct Sink {
    file: File,
    buf: Vec<u8>,
    /// Where `buf` starts in the file.
    pos: u64,
    flushed_at: Instant,
    state: Rc<RefCell<SinkState>>,
}

impl Sink {
    fn fail(&self, e: io::Error) -> io::Error {
        let mut s = self.state.borrow_mut();
        let kind = e.kind();
        s.error.get_or_insert(e);
        io::Error::from(kind)
    }

    fn drain(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            if let Err(e) = self.file.write_all(&self.buf) {
                return Err(self.fail(e));
            }
            self.pos += self.buf.len() as u64;
            self.buf.clear();
        }
        self.flushed_at = Instant::now();
        Ok(())
    }
}

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.state.borrow().error.is_some() {
            return Err(io::Error::other("an earlier write failed"));
        }
        self.buf.extend_from_slice(data);
        let end = self.pos + self.buf.len() as u64;
        {
            let mut s = self.state.borrow_mut();
            s.bytes = s.bytes.max(end);
        }
        if self.buf.len() >= BUFFER || self.flushed_at.elapsed() >= FLUSH_EVERY {
            self.drain()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.drain()
    }
}

impl Seek for Sink {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        if to == SeekFrom::Current(0) {
            return self.stream_position();
        }
        self.drain()?;
        match self.file.seek(to) {
            Ok(p) => {
                self.pos = p;
                Ok(p)
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    /// libwebm asks often; buffered bytes count as written.
    fn stream_position(&mut self) -> io::Result<u64> {
        Ok(self.pos + self.buf.len() as u64)
    }
}

/// Which of a file's tracks a frame is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Audio,
    Video,
}

/// A frame waiting for its turn in the file.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Queued {
    ns: u64,
    order: u64,
    kind: Kind,
    keyframe: bool,
    data: Vec<u8>,
}

/// The WebM file of one participant's camera and microphone, or of one
/// screen share.
pub struct WebmFile {
    segment: Option<Segment<Sink>>,
    audio: Option<AudioTrack>,
    video: Option<VideoTrack>,
    state: Rc<RefCell<SinkState>>,
    /// Frames not yet written, earliest first: tracks arrive with
    /// different delays and the muxer takes timestamps in order only.
    queue: BinaryHeap<Reverse<Queued>>,
    order: u64,
    /// The newest frame queued per track (ns).
    newest: [Option<u64>; 2],
    /// The last timestamp written (ns): the file's duration so far.
    written_ns: u64,
    /// The last timestamp written per track.
    last_ns: [Option<u64>; 2],
}

/// How far a track may run ahead of a silent one before its frames are
/// written anyway.
const INTERLEAVE_WAIT_NS: u64 = 1_000_000_000;

impl WebmFile {
    /// Creates `path` with an Opus track (48 kHz stereo, as WebRTC sends)
    /// and/or a VP8 track of `video` size.
    pub fn create(path: &Path, audio: bool, video: Option<(u16, u16)>) -> io::Result<Self> {
        let file = File::create(path)?;
        let state = Rc::new(RefCell::new(SinkState::default()));
        let sink =
            Sink { file, buf: Vec::with_capacity(BUFFER), pos: 0, flushed_at: Instant::now(), state: state.clone() };
        let mux_err = |e: webm::mux::Error| io::Error::other(format!("WebM muxer: {e:?}"));
        let mut b = SegmentBuilder::new(Writer::new(sink))
            .and_then(|b| b.set_mode(SegmentMode::File))
            .and_then(|b| b.set_writing_app("switchboard"))
            .map_err(mux_err)?;
        let mut video_track = None;
        if let Some((w, h)) = video {
            let (nb, t) = b
                .add_video_track(u32::from(w.max(1)), u32::from(h.max(1)), VideoCodecId::VP8, None)
                .map_err(mux_err)?;
            (b, video_track) = (nb, Some(t));
        }
        let mut audio_track = None;
        if audio {
            let (nb, t) = b.add_audio_track(48_000, 2, AudioCodecId::Opus, None).map_err(mux_err)?;
            b = nb.set_codec_private(t, &opus_head()).map_err(mux_err)?;
            audio_track = Some(t);
        }
        Ok(WebmFile {
            segment: Some(b.build()),
            audio: audio_track,
            video: video_track,
            state,
            queue: BinaryHeap::new(),
            order: 0,
            newest: [None; 2],
            written_ns: 0,
            last_ns: [None; 2],
        })
    }

    pub fn has(&self, kind: Kind) -> bool {
        match kind {
            Kind::Audio => self.audio.is_some(),
            Kind::Video => self.video.is_some(),
        }
    }

    /// Queues a frame at `ns` on the file's timeline; writes what is due.
    pub fn push(&mut self, kind: Kind, ns: u64, keyframe: bool, data: Vec<u8>) -> io::Result<()> {
        if !self.has(kind) {
            return Ok(());
        }
        self.order += 1;
        let newest = &mut self.newest[kind as usize];
        *newest = Some(newest.map_or(ns, |n| n.max(ns)));
        self.queue.push(Reverse(Queued { ns, order: self.order, kind, keyframe, data }));
        self.write_due(false)
    }

    /// Writes every queued frame that no track can still precede.
    fn write_due(&mut self, all: bool) -> io::Result<()> {
        let tracks = [self.audio.is_some(), self.video.is_some()];
        let newest_any = self.newest.iter().flatten().max().copied().unwrap_or(0);
        // Each track's frames come in order: below every track's newest
        // frame nothing can come any more.
        let low = (0..2).filter(|k| tracks[*k]).map(|k| self.newest[k].unwrap_or(0)).min().unwrap_or(0);
        let due = low.max(newest_any.saturating_sub(INTERLEAVE_WAIT_NS));
        while let Some(Reverse(q)) = self.queue.peek() {
            if !all && q.ns > due {
                break;
            }
            let Some(Reverse(q)) = self.queue.pop() else { break };
            self.write(q)?;
        }
        Ok(())
    }

    fn write(&mut self, q: Queued) -> io::Result<()> {
        let Some(segment) = self.segment.as_mut() else { return Ok(()) };
        let track = match q.kind {
            Kind::Audio => self.audio.map(TrackNum::from),
            Kind::Video => self.video.map(TrackNum::from),
        };
        let Some(track) = track else { return Ok(()) };
        // The muxer takes timestamps in order across tracks, and players
        // want each track's to grow (by at least the file's 1 ms tick): a
        // frame placed earlier (a new simulcast layer's clock) moves up.
        let after_last = self.last_ns[q.kind as usize].map_or(0, |l| l + 1_000_000);
        let ns = q.ns.max(self.written_ns).max(after_last);
        let keyframe = q.keyframe || q.kind == Kind::Audio;
        if segment.add_frame(track, &q.data, ns, keyframe).is_err() {
            return Err(self.error("writing a frame"));
        }
        self.written_ns = ns;
        self.last_ns[q.kind as usize] = Some(ns);
        Ok(())
    }

    fn error(&self, what: &str) -> io::Error {
        match self.state.borrow_mut().error.take() {
            Some(e) => e,
            None => io::Error::other(format!("WebM muxer failed {what}")),
        }
    }

    pub fn duration(&self) -> Duration {
        Duration::from_nanos(self.written_ns)
    }

    pub fn bytes(&self) -> u64 {
        self.state.borrow().bytes
    }

    /// Writes what is queued, the sizes, duration and cues, and closes.
    pub fn finish(mut self) -> io::Result<()> {
        self.write_due(true)?;
        let Some(segment) = self.segment.take() else { return Ok(()) };
        if self.written_ns == 0 && self.order == 0 {
            // libwebm cannot finalize an empty segment; the file has its header.
            return Ok(());
        }
        match segment.finalize(None) {
            Ok(w) => w.into_inner().flush(),
            Err(w) => {
                let _ = w.into_inner().flush();
                Err(self.error("finalizing"))
            }
        }
    }
}

/// The Opus identification header a WebM Opus track carries (RFC 7845
/// 5.1): version 1, 2 channels, no pre-skip, 48 kHz, no gain, family 0.
fn opus_head() -> [u8; 19] {
    let mut h = [0u8; 19];
    h[..8].copy_from_slice(b"OpusHead");
    h[8] = 1;
    h[9] = 2;
    h[12..16].copy_from_slice(&48_000u32.to_le_bytes());
    h
}
