//! Datagrams as the fuzzer makes them: the first byte picks the protocol
//! (RFC 7983's demultiplexing ranges), so most inputs reach the parser they
//! are aimed at instead of dying at "what is this?".

use arbitrary::Arbitrary;

const STUN_MAGIC: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const USERNAME: u16 = 0x0006;
const MESSAGE_INTEGRITY: u16 = 0x0008;
const FINGERPRINT: u16 = 0x8028;

#[derive(Arbitrary, Debug, Clone)]
pub enum Datagram {
    /// Anything at all.
    Raw(Vec<u8>),
    /// A STUN message (RFC 8489) naming one of `ufrags` (or garbage) in its
    /// USERNAME, with made-up attributes, integrity and fingerprint.
    Stun {
        method: u16,
        ufrag: Ufrag,
        txid: [u8; 12],
        attrs: Vec<(u16, Vec<u8>)>,
        integrity: Option<[u8; 20]>,
        fingerprint: bool,
        /// Declared length differs from the real one by this much.
        length_skew: i8,
    },
    /// Bytes that look like a DTLS record (content type 20..=63).
    Dtls { content_type: u8, version: u16, epoch: u16, body: Vec<u8> },
    /// Bytes that look like RTP or RTCP (version 2).
    Rtp { first: u8, second: u8, seq: u16, ts: u32, ssrc: u32, body: Vec<u8> },
}

/// Which ufrag a STUN USERNAME names: one the server gave out, or not.
#[derive(Arbitrary, Debug, Clone)]
pub enum Ufrag {
    Known(u8),
    Other(String),
    Missing,
}

impl Datagram {
    /// The bytes on the wire; `known` are server ufrags that exist.
    pub fn to_bytes(&self, known: &[String]) -> Vec<u8> {
        match self {
            Datagram::Raw(b) => b.clone(),
            Datagram::Stun { method, ufrag, txid, attrs, integrity, fingerprint, length_skew } => {
                let mut body = Vec::new();
                let user = match ufrag {
                    Ufrag::Known(i) if !known.is_empty() => {
                        Some(format!("{}:client", known[*i as usize % known.len()]))
                    }
                    Ufrag::Known(_) | Ufrag::Missing => None,
                    Ufrag::Other(s) => Some(s.clone()),
                };
                if let Some(u) = user {
                    attr(&mut body, USERNAME, u.as_bytes());
                }
                for (t, v) in attrs.iter().take(16) {
                    attr(&mut body, *t, &v[..v.len().min(512)]);
                }
                if let Some(mac) = integrity {
                    attr(&mut body, MESSAGE_INTEGRITY, mac);
                }
                let mut msg = Vec::with_capacity(20 + body.len() + 8);
                msg.extend_from_slice(&(method & 0x3FFF).to_be_bytes());
                let len = body.len() + if *fingerprint { 8 } else { 0 };
                let declared = (len as i32 + *length_skew as i32).clamp(0, u16::MAX as i32) as u16;
                msg.extend_from_slice(&declared.to_be_bytes());
                msg.extend_from_slice(&STUN_MAGIC);
                msg.extend_from_slice(txid);
                msg.extend_from_slice(&body);
                if *fingerprint {
                    let crc = crc32fast::hash(&msg) ^ 0x5354_554E;
                    attr(&mut msg, FINGERPRINT, &crc.to_be_bytes());
                }
                msg
            }
            Datagram::Dtls { content_type, version, epoch, body } => {
                let mut b = vec![20 + content_type % 44];
                b.extend_from_slice(&version.to_be_bytes());
                b.extend_from_slice(&epoch.to_be_bytes());
                b.extend_from_slice(&[0; 6]); // sequence number
                b.extend_from_slice(&(body.len() as u16).to_be_bytes());
                b.extend_from_slice(body);
                b
            }
            Datagram::Rtp { first, second, seq, ts, ssrc, body } => {
                let mut b = vec![0x80 | (first & 0x3F), *second];
                b.extend_from_slice(&seq.to_be_bytes());
                b.extend_from_slice(&ts.to_be_bytes());
                b.extend_from_slice(&ssrc.to_be_bytes());
                b.extend_from_slice(body);
                b
            }
        }
    }
}

fn attr(out: &mut Vec<u8>, typ: u16, value: &[u8]) {
    out.extend_from_slice(&typ.to_be_bytes());
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
    out.resize(out.len().div_ceil(4) * 4, 0);
}
