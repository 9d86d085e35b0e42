//! RFC 4571 framing: on an ICE-TCP stream every packet (STUN, DTLS, SRTP)
//! goes after its length in two bytes, big endian.

use std::io::{self, Read, Write};

/// What a reader keeps at first; it grows to a frame's size when one needs
/// more (media frames are under 1,500 bytes, a frame at most 65,537).
const INITIAL_BUFFER: usize = 4096;

/// Bytes read from a stream, cut into frames.
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    /// Start of the first byte not yet handed out as (part of) a frame.
    pos: usize,
}

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader { buf: Vec::with_capacity(INITIAL_BUFFER), pos: 0 }
    }
}

/// What one [`FrameReader::read_from`] saw.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// This many bytes came; there may be more.
    Data(usize),
    /// Nothing waiting now.
    WouldBlock,
    /// The far end closed the stream.
    Closed,
}

impl FrameReader {
    /// A reader holding bytes already read from the stream.
    pub fn with_bytes(bytes: Vec<u8>) -> Self {
        FrameReader { buf: bytes, pos: 0 }
    }

    /// One `read` into the free end of the buffer (made room for first).
    pub fn read_from(&mut self, r: &mut impl Read) -> io::Result<ReadOutcome> {
        self.compact();
        let len = self.buf.len();
        // Room for at least the frame under way, and never less than a few KiB.
        let want = (len + self.needed()).max(len + INITIAL_BUFFER / 2);
        self.buf.resize(want, 0);
        let res = r.read(&mut self.buf[len..]);
        let n = *res.as_ref().unwrap_or(&0);
        self.buf.truncate(len + n);
        match res {
            Ok(0) => Ok(ReadOutcome::Closed),
            Ok(n) => Ok(ReadOutcome::Data(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(ReadOutcome::WouldBlock),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(ReadOutcome::Data(0)),
            Err(e) => Err(e),
        }
    }

    /// The next whole frame read, if any.
    pub fn next_frame(&mut self) -> Option<&[u8]> {
        let len = self.peek_frame()?.len();
        let start = self.pos + 2;
        self.pos = start + len;
        Some(&self.buf[start..start + len])
    }

    /// The next whole frame, left in place.
    pub fn peek_frame(&self) -> Option<&[u8]> {
        let rest = &self.buf[self.pos..];
        let len = frame_len(rest)?;
        rest.get(2..2 + len)
    }

    /// The length the first frame not yet handed out declares, if its
    /// header has come.
    pub fn pending_len(&self) -> Option<usize> {
        frame_len(&self.buf[self.pos..])
    }

    /// Bytes read and not yet handed out.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Everything read and not yet handed out (to pass the stream on).
    pub fn into_bytes(mut self) -> Vec<u8> {
        self.compact();
        self.buf
    }

    /// Bytes still missing for the frame under way.
    fn needed(&self) -> usize {
        match self.pending_len() {
            Some(len) => (2 + len).saturating_sub(self.buffered()),
            None => 2,
        }
    }

    fn compact(&mut self) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }
}

fn frame_len(b: &[u8]) -> Option<usize> {
    Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]) as usize)
}

/// Frames queued for a stream, written as far as it takes them.
#[derive(Debug, Default)]
pub struct FrameWriter {
    buf: Vec<u8>,
    /// Bytes of `buf` already written.
    sent: usize,
}

impl FrameWriter {
    /// Queues `packet` as one frame, unless that would put more than `cap`
    /// bytes in the queue (a reader that cannot keep up loses packets, not
    /// the server's memory). False if dropped.
    pub fn queue(&mut self, packet: &[u8], cap: usize) -> bool {
        let Ok(len) = u16::try_from(packet.len()) else { return false };
        if self.queued() + 2 + packet.len() > cap {
            return false;
        }
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(packet);
        true
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.buf.len() - self.sent
    }

    /// Writes what the stream takes; `Ok(true)` once the queue is empty.
    pub fn flush_to(&mut self, w: &mut impl Write) -> io::Result<bool> {
        while self.sent < self.buf.len() {
            match w.write(&self.buf[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.sent == self.buf.len() {
            self.buf.clear();
            self.sent = 0;
            return Ok(true);
        }
        // Keep the unwritten tail at the front so the queue does not creep.
        if self.sent > self.buf.len() / 2 {
            self.buf.drain(..self.sent);
            self.sent = 0;
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream that hands out its bytes a few at a time, then blocks.
    struct Trickle {
        data: Vec<u8>,
        pos: usize,
        step: usize,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.pos == self.data.len() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = self.step.min(buf.len()).min(self.data.len() - self.pos);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    fn framed(packets: &[&[u8]]) -> Vec<u8> {
        let mut w = FrameWriter::default();
        for p in packets {
            assert!(w.queue(p, usize::MAX));
        }
        let mut out = Vec::new();
        assert!(w.flush_to(&mut out).unwrap());
        out
    }

    #[test]
    fn frames_split_across_reads_come_out_whole() {
        let big = vec![7u8; 3000];
        let data = framed(&[b"stun", &big, b"", b"rtp!"]);
        let mut r = FrameReader::default();
        let mut stream = Trickle { data, pos: 0, step: 5 };
        let mut got: Vec<Vec<u8>> = Vec::new();
        while r.read_from(&mut stream).unwrap() != ReadOutcome::WouldBlock {
            while let Some(f) = r.next_frame() {
                got.push(f.to_vec());
            }
        }
        assert_eq!(got, vec![b"stun".to_vec(), big, vec![], b"rtp!".to_vec()]);
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn a_closed_stream_is_reported() {
        let mut r = FrameReader::default();
        assert_eq!(r.read_from(&mut &[][..]).unwrap(), ReadOutcome::Closed);
    }

    #[test]
    fn bytes_read_ahead_travel_with_the_stream() {
        let data = framed(&[b"first", b"second"]);
        let mut r = FrameReader::default();
        r.read_from(&mut &data[..]).unwrap();
        assert_eq!(r.next_frame(), Some(&b"first"[..]));
        let mut moved = FrameReader::with_bytes(r.into_bytes());
        assert_eq!(moved.next_frame(), Some(&b"second"[..]));
    }

    #[test]
    fn the_send_queue_drops_past_its_cap() {
        let mut w = FrameWriter::default();
        assert!(w.queue(&[0; 100], 250));
        assert!(w.queue(&[0; 100], 250));
        assert!(!w.queue(&[0; 100], 250), "a third frame would pass the cap");
        assert_eq!(w.queued(), 204);
        assert!(!w.queue(&vec![0; 70_000], usize::MAX), "too long for a frame");
    }

    /// A stream that takes `room` bytes, then blocks.
    struct Tight {
        out: Vec<u8>,
        room: usize,
    }

    impl Write for Tight {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.room);
            self.out.extend_from_slice(&buf[..n]);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_partial_write_resumes_where_it_stopped() {
        let mut w = FrameWriter::default();
        w.queue(b"hello", usize::MAX);
        w.queue(b"world", usize::MAX);
        let mut s = Tight { out: Vec::new(), room: 4 };
        assert!(!w.flush_to(&mut s).unwrap());
        s.room = 100;
        assert!(w.flush_to(&mut s).unwrap());
        assert_eq!(s.out, framed(&[b"hello", b"world"]));
    }
}
