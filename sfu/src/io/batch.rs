//! Batched UDP I/O: `recvmmsg` takes up to [`BATCH`] datagrams per system
//! call, `sendmmsg` sends what a turn made, with UDP GSO where runs of
//! datagrams share a destination (Linux). The buffers and headers live here
//! and are reused, so a batch allocates nothing once warm. Elsewhere the same
//! API loops over `recv_from`/`send_to`.

use std::io;
use std::net::{SocketAddr, UdpSocket};

/// Datagrams per system call. The kernel's own limit (UIO_MAXIOV) is 1024;
/// 32 already amortises the syscall and keeps a batch in L1/L2.
pub const BATCH: usize = 32;
/// Largest datagram we accept; WebRTC keeps packets under ~1200 bytes.
pub const MAX_DATAGRAM: usize = 2048;

/// Receive side: `BATCH` buffers filled by one `recvmmsg`.
pub struct RecvBatch {
    bufs: Vec<[u8; MAX_DATAGRAM]>,
    lens: Vec<usize>,
    from: Vec<Option<SocketAddr>>,
    #[cfg(target_os = "linux")]
    addrs: Vec<libc::sockaddr_storage>,
    #[cfg(target_os = "linux")]
    iovecs: Vec<libc::iovec>,
    #[cfg(target_os = "linux")]
    hdrs: Vec<libc::mmsghdr>,
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch {
            bufs: vec![[0u8; MAX_DATAGRAM]; BATCH],
            lens: vec![0; BATCH],
            from: vec![None; BATCH],
            #[cfg(target_os = "linux")]
            // SAFETY: sockaddr_storage is plain data; zeroed is a valid value.
            addrs: vec![unsafe { std::mem::zeroed() }; BATCH],
            #[cfg(target_os = "linux")]
            iovecs: Vec::with_capacity(BATCH),
            #[cfg(target_os = "linux")]
            hdrs: Vec::with_capacity(BATCH),
        }
    }
}

impl RecvBatch {
    /// Receives up to `BATCH` datagrams; `Ok(0)` never happens (WouldBlock instead).
    #[cfg(target_os = "linux")]
    pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        self.iovecs.clear();
        self.hdrs.clear();
        for buf in self.bufs.iter_mut() {
            self.iovecs.push(libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: MAX_DATAGRAM });
        }
        for (iov, addr) in self.iovecs.iter_mut().zip(self.addrs.iter_mut()) {
            // SAFETY: mmsghdr is plain data; zeroed is an empty header.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_name = (addr as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            self.hdrs.push(h);
        }
        // SAFETY: every header points at a buffer, iovec and address owned by
        // `self` that outlive the call; the count matches the array.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for i in 0..n {
            self.lens[i] = self.hdrs[i].msg_len as usize;
            self.from[i] = to_socket_addr(&self.addrs[i], self.hdrs[i].msg_hdr.msg_namelen);
        }
        Ok(n)
    }

    #[cfg(not(target_os = "linux"))]
    pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let mut n = 0;
        while n < BATCH {
            match socket.recv_from(&mut self.bufs[n]) {
                Ok((len, from)) => {
                    self.lens[n] = len;
                    self.from[n] = Some(from);
                    n += 1;
                }
                Err(e) if n > 0 && e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    /// The `i`th datagram of the last `recv`, if its source address is IP.
    pub fn get(&self, i: usize) -> Option<(SocketAddr, &[u8])> {
        Some((self.from[i]?, &self.bufs[i][..self.lens[i]]))
    }
}

#[cfg(target_os = "linux")]
fn to_socket_addr(s: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
    let len = len as usize;
    match s.ss_family as libc::c_int {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddrV4::new(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)), u16::from_be(a.sin_port)).into())
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddrV6::new(ip, u16::from_be(a.sin6_port), a.sin6_flowinfo, a.sin6_scope_id).into())
        }
        _ => None,
    }
}

/// Send side: one `sendmmsg` for everything handed over. Consecutive
/// datagrams to one destination with one size (the packets of a video frame
/// on one subscriber's leg) go as a single UDP GSO message: the kernel walks
/// its output path once for the group and cuts it into datagrams at the
/// receiver, which sees ordinary packets.
pub struct SendBatch {
    /// Whether the kernel segments for us (`UDP_SEGMENT`, Linux 4.18+);
    /// turned off for good if a send says the path can't.
    gso: bool,
    #[cfg(target_os = "linux")]
    groups: Vec<Group>,
    #[cfg(target_os = "linux")]
    addrs: Vec<socket2::SockAddr>,
    #[cfg(target_os = "linux")]
    iovecs: Vec<libc::iovec>,
    #[cfg(target_os = "linux")]
    controls: Vec<SegmentCmsg>,
    #[cfg(target_os = "linux")]
    hdrs: Vec<libc::mmsghdr>,
}

/// Segments in one GSO message (the kernel's UDP_MAX_SEGMENTS).
const MAX_SEGMENTS: usize = 64;
/// A GSO message is one buffer in the kernel and must stay under 64 KiB.
const MAX_GSO_BYTES: usize = 60_000;

/// Datagrams `first..first + count` of a send, all to one destination.
#[cfg(target_os = "linux")]
#[derive(Clone, Copy)]
struct Group {
    first: usize,
    count: usize,
    segment: usize,
    bytes: u64,
}

/// Room for one `UDP_SEGMENT` control message, aligned for `cmsghdr`.
#[cfg(target_os = "linux")]
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct SegmentCmsg([u8; 32]);

/// What became of a send.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub datagrams: u64,
    pub bytes: u64,
    /// Refused by the kernel (full send buffer, unreachable destination).
    pub failed: u64,
    /// Messages handed to the kernel: fewer than `datagrams` when GSO grouped some.
    pub messages: u64,
}

impl Default for SendBatch {
    fn default() -> Self {
        SendBatch {
            gso: gso_supported(),
            #[cfg(target_os = "linux")]
            groups: Vec::new(),
            #[cfg(target_os = "linux")]
            addrs: Vec::new(),
            #[cfg(target_os = "linux")]
            iovecs: Vec::new(),
            #[cfg(target_os = "linux")]
            controls: Vec::new(),
            #[cfg(target_os = "linux")]
            hdrs: Vec::new(),
        }
    }
}

/// Probes `UDP_SEGMENT` on a scratch socket, as quinn-udp does.
#[cfg(target_os = "linux")]
pub fn gso_supported() -> bool {
    use std::os::fd::AsRawFd;
    let Ok(s) = UdpSocket::bind("127.0.0.1:0") else { return false };
    let size: libc::c_int = 1500;
    // SAFETY: a valid socket, option and int-sized value.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    r == 0
}

#[cfg(not(target_os = "linux"))]
pub fn gso_supported() -> bool {
    false
}

impl SendBatch {
    /// Sends `items` (each seen through `datagram` as destination and
    /// payload), in order; never blocks.
    #[cfg(target_os = "linux")]
    pub fn send<T>(&mut self, socket: &UdpSocket, items: &[T], datagram: impl Fn(&T) -> (SocketAddr, &[u8])) -> Sent {
        use std::os::fd::AsRawFd;
        self.group(items, &datagram);
        self.addrs.clear();
        self.iovecs.clear();
        for item in items {
            let (_, payload) = datagram(item);
            self.iovecs.push(libc::iovec { iov_base: payload.as_ptr() as *mut _, iov_len: payload.len() });
        }
        for g in &self.groups {
            self.addrs.push(socket2::SockAddr::from(datagram(&items[g.first]).0));
        }
        self.controls.resize(self.groups.len(), SegmentCmsg([0; 32]));
        self.hdrs.clear();
        for ((g, addr), control) in self.groups.iter().zip(&self.addrs).zip(self.controls.iter_mut()) {
            // SAFETY: mmsghdr is plain data; zeroed is an empty header.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_name = addr.as_ptr() as *mut _;
            h.msg_hdr.msg_namelen = addr.len();
            h.msg_hdr.msg_iov = &mut self.iovecs[g.first];
            h.msg_hdr.msg_iovlen = g.count;
            if g.count > 1 {
                write_segment_cmsg(&mut h.msg_hdr, control, g.segment as u16);
            }
            self.hdrs.push(h);
        }
        let mut out = Sent::default();
        let mut from = 0;
        while from < self.hdrs.len() {
            let rest = &mut self.hdrs[from..];
            // SAFETY: each header points at an address in `self.addrs`, iovecs
            // over the caller's payloads and a control buffer in
            // `self.controls`, all alive and unmoved for the call.
            let r = unsafe {
                libc::sendmmsg(socket.as_raw_fd(), rest.as_mut_ptr(), rest.len() as libc::c_uint, libc::MSG_DONTWAIT)
            };
            if r <= 0 {
                let g = self.groups[from];
                if g.count > 1 && io::Error::last_os_error().raw_os_error() == Some(libc::EIO) {
                    // The route can't segment (no checksum offload): send
                    // the rest one datagram per message from now on.
                    self.gso = false;
                    let rest = self.send(socket, &items[g.first..], datagram);
                    return out.add(rest);
                }
                // The first remaining message was refused; skip it, go on.
                out.failed += g.count as u64;
                from += 1;
                continue;
            }
            for g in &self.groups[from..from + r as usize] {
                out.datagrams += g.count as u64;
                out.bytes += g.bytes;
                out.messages += 1;
            }
            from += r as usize;
        }
        out
    }

    /// Splits `items` into runs for one message each.
    #[cfg(target_os = "linux")]
    fn group<T>(&mut self, items: &[T], datagram: &impl Fn(&T) -> (SocketAddr, &[u8])) {
        self.groups.clear();
        let mut last: Option<SocketAddr> = None;
        for (i, item) in items.iter().enumerate() {
            let (to, payload) = datagram(item);
            let len = payload.len();
            if let (true, Some(g), Some(prev)) = (self.gso, self.groups.last_mut(), last) {
                // Only the last segment of a message may be shorter.
                let whole = g.bytes == (g.segment * g.count) as u64;
                if prev == to
                    && whole
                    && len <= g.segment
                    && g.count < MAX_SEGMENTS
                    && g.bytes as usize + len <= MAX_GSO_BYTES
                {
                    g.count += 1;
                    g.bytes += len as u64;
                    continue;
                }
            }
            self.groups.push(Group { first: i, count: 1, segment: len, bytes: len as u64 });
            last = Some(to);
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub fn send<T>(&mut self, socket: &UdpSocket, items: &[T], datagram: impl Fn(&T) -> (SocketAddr, &[u8])) -> Sent {
        let mut out = Sent::default();
        for item in items {
            let (to, payload) = datagram(item);
            match socket.send_to(payload, to) {
                Ok(n) => {
                    out.datagrams += 1;
                    out.messages += 1;
                    out.bytes += n as u64;
                }
                Err(_) => out.failed += 1,
            }
        }
        out
    }
}

impl Sent {
    fn add(self, o: Sent) -> Sent {
        Sent {
            datagrams: self.datagrams + o.datagrams,
            bytes: self.bytes + o.bytes,
            failed: self.failed + o.failed,
            messages: self.messages + o.messages,
        }
    }
}

/// Points `hdr` at `buf` holding one `UDP_SEGMENT` control message.
#[cfg(target_os = "linux")]
fn write_segment_cmsg(hdr: &mut libc::msghdr, buf: &mut SegmentCmsg, segment: u16) {
    // SAFETY: CMSG_SPACE(2) is 24 bytes on Linux, within the 32 of `buf`,
    // which is aligned for cmsghdr; the macros stay inside `msg_controllen`.
    unsafe {
        hdr.msg_control = buf.0.as_mut_ptr().cast();
        hdr.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) as _;
        let c = libc::CMSG_FIRSTHDR(hdr);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = libc::UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), segment);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_goes_out_and_comes_back_in_order() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        let payloads: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; 100 + i as usize]).collect();
        let sent = SendBatch::default().send(&tx, &payloads, |p| (to, p.as_slice()));
        assert_eq!(sent.datagrams, 50);
        assert_eq!(sent.bytes, payloads.iter().map(|p| p.len() as u64).sum::<u64>());

        rx.set_nonblocking(true).unwrap();
        let mut batch = RecvBatch::default();
        let mut got = Vec::new();
        while got.len() < 50 {
            match batch.recv(&rx) {
                Ok(n) => {
                    for i in 0..n {
                        let (from, data) = batch.get(i).unwrap();
                        assert_eq!(from, tx.local_addr().unwrap());
                        got.push(data.to_vec());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, payloads);
    }

    /// Receives until `n` datagrams came in, in order.
    fn recv_n(rx: &UdpSocket, n: usize) -> Vec<Vec<u8>> {
        rx.set_nonblocking(true).unwrap();
        let mut batch = RecvBatch::default();
        let mut got = Vec::new();
        for _ in 0..100_000 {
            match batch.recv(rx) {
                Ok(k) => got.extend((0..k).map(|i| batch.get(i).unwrap().1.to_vec())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
            if got.len() >= n {
                break;
            }
        }
        got
    }

    #[test]
    fn runs_to_one_destination_keep_their_datagram_boundaries() {
        let (a, b) = (UdpSocket::bind("127.0.0.1:0").unwrap(), UdpSocket::bind("127.0.0.1:0").unwrap());
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (to_a, to_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        // A frame of equal packets with a shorter tail, an audio packet, a
        // frame longer than one GSO message, then sizes that can't be grouped.
        let mut items: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
        let mut k = 0u8;
        let mut push = |to, len: usize| {
            k = k.wrapping_add(1);
            items.push((to, vec![k; len]));
        };
        for _ in 0..5 {
            push(to_a, 1000);
        }
        push(to_a, 400);
        push(to_b, 80);
        for _ in 0..70 {
            push(to_b, 900);
        }
        for len in [300, 500, 500] {
            push(to_a, len);
        }
        let mut batch = SendBatch::default();
        let sent = batch.send(&tx, &items, |(to, p)| (*to, p.as_slice()));
        assert_eq!(sent.datagrams, items.len() as u64);
        assert_eq!(sent.failed, 0);
        if gso_supported() {
            // (5 + tail) to a; 80, then 64 + 6 to b (a message holds at most
            // 64); 300, then (500, 500) to a.
            assert_eq!(sent.messages, 6, "{sent:?}");
        }
        let want = |to| items.iter().filter(|(t, _)| *t == to).map(|(_, p)| p.clone()).collect::<Vec<_>>();
        assert_eq!(recv_n(&a, 9), want(to_a));
        assert_eq!(recv_n(&b, 71), want(to_b));
    }
}
