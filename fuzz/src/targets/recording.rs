//! The recorder fed what a publisher controls: RTP of a camera (VP8), a
//! microphone (Opus) and a screen share with any sequence numbers, RTP
//! times, payloads (VP8 descriptors and keyframe headers included), sender
//! reports and arrival times, through reordering, frame assembly, clocks
//! and WebM writing into a temporary directory. Nothing may panic, and
//! every file started is finished.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arbitrary::Arbitrary;
use sfu::core::command::MediaPacket;
use sfu::record::{RecordMsg, RecorderCore, RecordingEvent, TapInfo};
use sfu::{ParticipantId, TrackId, TrackSource};
use str0m::format::Codec;
use str0m::media::{Frequency, MediaTime};
use str0m::rtp::rtcp::SenderInfo;
use str0m::rtp::Vp8Descriptor;

#[derive(Arbitrary, Debug)]
pub struct Packet {
    /// 0: microphone, 1: camera, 2: screen share.
    track: u8,
    seq_step: i8,
    ts_step: i32,
    /// Milliseconds after the previous packet it arrives.
    arrive_after: u8,
    marker: bool,
    payload: Payload,
    report: Option<(u64, u64)>,
}

#[derive(Arbitrary, Debug)]
pub enum Payload {
    Raw(Vec<u8>),
    /// A VP8 payload descriptor (RFC 7741) then a frame's start.
    Vp8 {
        start: bool,
        picture_id: Option<u16>,
        keyframe: bool,
        width: u16,
        height: u16,
        rest: Vec<u8>,
    },
}

impl Payload {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Payload::Raw(b) => b.clone(),
            Payload::Vp8 { start, picture_id, keyframe, width, height, rest } => {
                let mut v = vec![if *start { 0x10 } else { 0x00 }];
                if let Some(pid) = picture_id {
                    v[0] |= 0x80;
                    v.push(0x80);
                    v.extend_from_slice(&(0x8000 | (pid & 0x7FFF)).to_be_bytes());
                }
                if *keyframe {
                    // Frame tag (keyframe, shown), start code, size.
                    v.extend_from_slice(&[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a]);
                    v.extend_from_slice(&width.to_le_bytes());
                    v.extend_from_slice(&height.to_le_bytes());
                } else {
                    v.extend_from_slice(&[0x11, 0x02, 0x00]);
                }
                v.extend_from_slice(rest);
                v
            }
        }
    }
}

/// What one run does, in order.
pub type Input = Vec<Packet>;

pub fn run(packets: Input) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let epoch = Instant::now();
    let mut now = epoch;
    let mut rec = RecorderCore::new(dir.path().to_path_buf(), now);
    let tap = Arc::new(TapInfo {
        id: 1,
        recording: Arc::from("rec"),
        participant: ParticipantId(1),
        identity: Arc::from("alice"),
        shard: 0,
        dropped: AtomicU64::new(0),
    });
    let wallclock = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let (mut seq, mut ts) = ([1000u64; 3], [0u32; 3]);
    for p in packets.iter().take(512) {
        let i = usize::from(p.track % 3);
        seq[i] = seq[i].saturating_add_signed(i64::from(p.seq_step));
        ts[i] = ts[i].wrapping_add_signed(p.ts_step);
        now += Duration::from_millis(u64::from(p.arrive_after));
        let video = i > 0;
        let payload = p.payload.bytes();
        let vp8 = video.then(|| Vp8Descriptor::parse(&payload).ok()).flatten();
        let sender_info = p.report.map(|(ntp_ms, rtp)| SenderInfo {
            ssrc: (i as u32 + 1).into(),
            ntp_time: wallclock + Duration::from_millis(ntp_ms % (1 << 40)),
            rtp_time: MediaTime::new(rtp, if video { Frequency::NINETY_KHZ } else { Frequency::FORTY_EIGHT_KHZ }),
            sender_packet_count: 0,
            sender_octet_count: 0,
        });
        let pkt = MediaPacket {
            track: TrackId(i as u64 + 1),
            codec: if video { Codec::Vp8 } else { Codec::Opus },
            seq_no: seq[i],
            timestamp: ts[i],
            marker: p.marker,
            ext_vals: Default::default(),
            keyframe: vp8.is_some_and(|d| d.starts_keyframe(&payload)),
            vp8,
            payload: Arc::from(payload),
            arrival: now,
            layer: 0,
            sender_info,
        };
        let source = [TrackSource::Microphone, TrackSource::Camera, TrackSource::ScreenShare][i];
        rec.handle(RecordMsg::Packet { tap: tap.clone(), source, pkt: Arc::new(pkt) }, now);
        if rec.next_timeout(now) <= now {
            rec.handle_timeout(now);
        }
        while rec.poll_keyframe_request().is_some() {}
    }
    now += Duration::from_secs(3);
    rec.handle_timeout(now);
    rec.handle(RecordMsg::Closed { tap }, now);
    rec.close_all(now);
    let (mut started, mut finished) = (0, 0);
    while let Some(e) = rec.poll_event() {
        match e {
            RecordingEvent::FileStarted { .. } => started += 1,
            RecordingEvent::FileFinished { .. } => finished += 1,
            RecordingEvent::FileProgress { .. } => {}
        }
    }
    assert_eq!(started, finished, "every file started is finished");
}
