//! Offers and answers as the fuzzer makes them: a real browser-like offer
//! with lines dropped, repeated, replaced or added, so most inputs get past
//! the SDP parser into the negotiation code behind it.

use std::sync::OnceLock;
use std::time::Instant;

use arbitrary::Arbitrary;
use str0m::media::{Direction, MediaKind, Simulcast, SimulcastLayer};
use str0m::RtcConfig;

#[derive(Arbitrary, Debug, Clone)]
pub enum Edit {
    Drop(u8),
    Repeat(u8),
    Replace(u8, Line),
    Insert(u8, Line),
    /// Cut the text after this many bytes.
    Truncate(u16),
}

/// A line, mostly of the kinds negotiation reads.
#[derive(Arbitrary, Debug, Clone)]
pub enum Line {
    Mid(String),
    Rid(String, bool),
    Simulcast(String),
    Ssrc(u32, String),
    SsrcGroup(String),
    Extmap(u8, String),
    Rtpmap(u8, String),
    Fmtp(u8, String),
    RtcpFb(u8, String),
    Direction(u8),
    Candidate(String),
    Fingerprint(String),
    IceCredentials(String, String),
    Media(u8, u16, String),
    Group(String),
    Sctp(u16, u32),
    Raw(String),
}

impl Line {
    fn text(&self) -> String {
        match self {
            Line::Mid(m) => format!("a=mid:{m}"),
            Line::Rid(r, send) => format!("a=rid:{r} {}", if *send { "send" } else { "recv" }),
            Line::Simulcast(s) => format!("a=simulcast:send {s}"),
            Line::Ssrc(n, s) => format!("a=ssrc:{n} {s}"),
            Line::SsrcGroup(s) => format!("a=ssrc-group:FID {s}"),
            Line::Extmap(id, uri) => format!("a=extmap:{id} {uri}"),
            Line::Rtpmap(pt, c) => format!("a=rtpmap:{pt} {c}"),
            Line::Fmtp(pt, p) => format!("a=fmtp:{pt} {p}"),
            Line::RtcpFb(pt, f) => format!("a=rtcp-fb:{pt} {f}"),
            Line::Direction(d) => ["a=sendonly", "a=recvonly", "a=sendrecv", "a=inactive"][*d as usize % 4].into(),
            Line::Candidate(c) => format!("a=candidate:{c}"),
            Line::Fingerprint(f) => format!("a=fingerprint:sha-256 {f}"),
            Line::IceCredentials(u, p) => format!("a=ice-ufrag:{u}\r\na=ice-pwd:{p}"),
            Line::Media(kind, port, fmts) => {
                let kind = ["audio", "video", "application", "text"][*kind as usize % 4];
                format!("m={kind} {port} UDP/TLS/RTP/SAVPF {fmts}")
            }
            Line::Group(g) => format!("a=group:BUNDLE {g}"),
            Line::Sctp(port, size) => format!("a=sctp-port:{port}\r\na=max-message-size:{size}"),
            Line::Raw(s) => s.clone(),
        }
    }
}

/// What a publisher's browser offers: audio, simulcast video, a data channel.
pub fn template() -> &'static str {
    static OFFER: OnceLock<String> = OnceLock::new();
    OFFER.get_or_init(|| {
        let mut rtc = RtcConfig::new().set_rtp_mode(true).build(Instant::now());
        let mut api = rtc.sdp_api();
        api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let mut layers = Simulcast::new();
        for rid in ["q", "h", "f"] {
            layers.add_send_layer(SimulcastLayer::new(rid));
        }
        api.add_media(MediaKind::Video, Direction::SendRecv, None, None, Some(layers));
        api.add_channel("room".into());
        let (offer, _) = api.apply().expect("an offer");
        offer.to_sdp_string()
    })
}

/// `template` with `edits` applied.
pub fn edited(edits: &[Edit]) -> String {
    let mut lines: Vec<String> = template().lines().map(str::to_owned).collect();
    let mut truncate = None;
    for e in edits.iter().take(16) {
        let at = |i: &u8, n: usize| *i as usize % n.max(1);
        match e {
            Edit::Drop(i) if !lines.is_empty() => {
                lines.remove(at(i, lines.len()));
            }
            Edit::Repeat(i) if !lines.is_empty() => {
                let l = lines[at(i, lines.len())].clone();
                lines.insert(at(i, lines.len()), l);
            }
            Edit::Replace(i, line) if !lines.is_empty() => {
                let n = at(i, lines.len());
                lines[n] = line.text();
            }
            Edit::Insert(i, line) => lines.insert(at(i, lines.len() + 1), line.text()),
            Edit::Truncate(n) => truncate = Some(*n as usize),
            _ => {}
        }
    }
    let mut sdp = lines.join("\r\n") + "\r\n";
    if let Some(n) = truncate.filter(|n| *n < sdp.len()) {
        let mut n = n;
        while !sdp.is_char_boundary(n) {
            n -= 1;
        }
        sdp.truncate(n);
    }
    sdp
}
