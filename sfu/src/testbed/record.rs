//! The recorder in the test bed: the shards' taps feed a real
//! `RecorderCore` in virtual time, and its keyframe requests go back to
//! the shards as the recorder thread sends them. Files are read back with
//! ffprobe / ffmpeg (installed by `make test`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use super::Bed;
use crate::core::command::ShardCommand;
use crate::record::tap::{lanes, RecorderInbox};
use crate::record::{RecorderCore, RecordingEvent};

pub struct BedRecorder {
    core: RecorderCore,
    inbox: RecorderInbox,
    /// Everything the recorder reported, in order.
    pub events: Vec<RecordingEvent>,
}

impl BedRecorder {
    pub(super) fn next_timeout(&self, now: Instant) -> Instant {
        self.core.next_timeout(now)
    }

    pub fn dir(&self) -> &Path {
        self.core.dir()
    }

    /// The files started so far (relative to the dir), in order.
    pub fn files(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                RecordingEvent::FileStarted { file, .. } => Some(file.clone()),
                _ => None,
            })
            .collect()
    }
}

impl Bed {
    /// Gives every shard a recorder writing under `dir`.
    pub fn record_into(&mut self, dir: PathBuf) {
        let (senders, inbox) = lanes();
        for s in &mut self.shards {
            s.set_recorder(senders.clone());
        }
        self.recorder = Some(BedRecorder { core: RecorderCore::new(dir, self.now), inbox, events: Vec::new() });
    }

    /// Starts (`Some`) or stops recording `room`, as the control plane does.
    pub fn set_recording(&mut self, room: &str, recording: Option<&str>) {
        let mut out = Vec::new();
        self.rooms.set_recording(room, recording.map(Arc::from), None, &mut out);
        self.dispatch(out);
    }

    /// Hands the recorder what the taps sent; true if it asked for anything.
    pub(super) fn pump_recorder(&mut self) -> bool {
        let now = self.now;
        let Some(r) = self.recorder.as_mut() else { return false };
        // Media before closes, as the recorder thread does.
        while let Ok(m) = r.inbox.media.try_recv() {
            r.core.handle(m, now);
        }
        while let Ok(m) = r.inbox.control.try_recv() {
            r.core.handle(m, now);
        }
        r.core.handle_timeout(now);
        r.events.extend(std::iter::from_fn(|| r.core.poll_event()));
        let asked: Vec<_> = std::iter::from_fn(|| r.core.poll_keyframe_request()).collect();
        let moved = !asked.is_empty();
        for (shard, track, layer) in asked {
            self.command(shard, ShardCommand::RecorderKeyframe { track, layer });
        }
        moved
    }
}

/// One packet of a media file, as ffprobe lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct FilePacket {
    pub video: bool,
    pub pts_ms: i64,
    pub keyframe: bool,
    pub size: usize,
}

/// Every packet of a media file, in file order.
pub fn ffprobe_packets(path: &Path) -> Vec<FilePacket> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "packet=codec_type,pts_time,size,flags", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe (make test installs ffmpeg)");
    assert!(out.status.success(), "ffprobe {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            Some(FilePacket {
                video: *f.first()? == "video",
                pts_ms: (f.get(1)?.parse::<f64>().ok()? * 1000.0).round() as i64,
                size: f.get(2)?.parse().ok()?,
                keyframe: f.get(3)?.contains('K'),
            })
        })
        .collect()
}

/// The video frames of a WebM file as written (copied out to IVF by ffmpeg).
pub fn ivf_frames(path: &Path) -> Vec<Vec<u8>> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-map", "0:v", "-c", "copy", "-f", "ivf", "-"])
        .output()
        .expect("ffmpeg (make test installs it)");
    assert!(out.status.success(), "ffmpeg {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    // 32-byte file header; per frame 4 bytes size, 8 bytes pts, the frame.
    let mut rest = out.stdout.get(32..).unwrap_or(&[]);
    let mut frames = Vec::new();
    while rest.len() >= 12 {
        let size = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        let end = (12 + size).min(rest.len());
        frames.push(rest[12..end].to_vec());
        rest = &rest[end..];
    }
    frames
}
