//! An ICE-TCP stream (RFC 4571) as a stranger writes it: any bytes, cut
//! into reads of any size. Frames come out exactly as the stream declares
//! them, the reader never holds more than a frame and a read's worth, and
//! each frame goes to a shard as a TCP datagram (what a shard's connection
//! does after the listener hands it over). Frames queued for sending come
//! out of partial writes byte for byte.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use crate::bed;
use arbitrary::Arbitrary;
use sfu::core::demux::stun_server_ufrag;
use sfu::io::tcp::framing::{FrameReader, FrameWriter, ReadOutcome};
use sfu::testbed::shard_addr;
use str0m::net::Protocol;

#[derive(Arbitrary, Debug)]
pub struct Input {
    stream: Vec<u8>,
    /// Sizes of the reads the stream arrives in (cycled).
    reads: Vec<u8>,
    /// Packets to send, and how much each write call takes (cycled).
    sends: Vec<Vec<u8>>,
    writes: Vec<u8>,
}

/// A socket that hands out its bytes in the given steps, then blocks.
struct Chunks<'a> {
    data: &'a [u8],
    steps: &'a [u8],
    n: usize,
}

impl Read for Chunks<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.data.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let step = self.steps.get(self.n % self.steps.len().max(1)).map_or(usize::MAX, |s| usize::from(*s) * 7 + 1);
        self.n += 1;
        let k = step.min(buf.len()).min(self.data.len());
        buf[..k].copy_from_slice(&self.data[..k]);
        self.data = &self.data[k..];
        Ok(k)
    }
}

/// A socket that takes the given amounts per write (0: would block).
struct Takes<'a> {
    out: Vec<u8>,
    steps: &'a [u8],
    n: usize,
}

impl Write for Takes<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let step = self.steps.get(self.n % self.steps.len().max(1)).map_or(usize::MAX, |s| usize::from(*s) * 13);
        self.n += 1;
        if step == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let k = step.min(buf.len());
        self.out.extend_from_slice(&buf[..k]);
        Ok(k)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What the stream's frames are, read the simple way.
fn reference(mut s: &[u8]) -> Vec<&[u8]> {
    let mut frames = Vec::new();
    while s.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([s[0], s[1]]));
        let Some(f) = s.get(2..2 + len) else { break };
        frames.push(f);
        s = &s[2 + len..];
    }
    frames
}

pub fn run(input: Input) {
    let peer = SocketAddr::from(([198, 51, 100, 7], 51_000));
    let mut reader = FrameReader::default();
    let mut sock = Chunks { data: &input.stream, steps: &input.reads, n: 0 };
    let mut got: Vec<Vec<u8>> = Vec::new();
    bed::with_joined(|b, _| loop {
        match reader.read_from(&mut sock).expect("in-memory reads do not fail") {
            ReadOutcome::WouldBlock | ReadOutcome::Closed => break,
            ReadOutcome::Data(_) => {}
        }
        assert!(reader.buffered() <= 2 + 65_535 + 4096, "the reader holds at most a frame and a read");
        while let Some(f) = reader.next_frame() {
            let _ = stun_server_ufrag(f);
            b.shards[0].handle_receive(b.now, Protocol::Tcp, peer, shard_addr(0), f);
            got.push(f.to_vec());
        }
    });
    let want: Vec<Vec<u8>> = reference(&input.stream).into_iter().map(<[u8]>::to_vec).collect();
    assert_eq!(got, want);

    let mut writer = FrameWriter::default();
    let mut queued = Vec::new();
    for p in input.sends.iter().take(64) {
        if writer.queue(p, 512 * 1024) {
            queued.push(p.as_slice());
        }
    }
    let mut out = Takes { out: Vec::new(), steps: &input.writes, n: 0 };
    // Every write that does not block takes at least 13 bytes: this is
    // plenty for a full queue.
    for _ in 0..1_000_000 {
        if writer.flush_to(&mut out).expect("in-memory writes do not fail") {
            break;
        }
        // A socket that blocked becomes writable again (the next step).
        if out.steps.iter().all(|s| *s == 0) {
            out.steps = &[1];
        }
    }
    assert_eq!(writer.queued(), 0);
    assert_eq!(reference(&out.out), queued);
}
