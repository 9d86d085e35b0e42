//! Batched UDP I/O: `recvmmsg`/`sendmmsg` move up to [`BATCH`] datagrams per
//! system call (Linux). The buffers and headers live here and are reused, so
//! a batch allocates nothing. Elsewhere the same API loops over
//! `recv_from`/`send_to`.

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
            libc::recvmmsg(socket.as_raw_fd(), self.hdrs.as_mut_ptr(), BATCH as libc::c_uint, libc::MSG_DONTWAIT, std::ptr::null_mut())
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

/// Send side: one `sendmmsg` per `BATCH` datagrams.
#[derive(Default)]
pub struct SendBatch {
    #[cfg(target_os = "linux")]
    addrs: Vec<socket2::SockAddr>,
    #[cfg(target_os = "linux")]
    iovecs: Vec<libc::iovec>,
    #[cfg(target_os = "linux")]
    hdrs: Vec<libc::mmsghdr>,
}

/// What became of a batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub datagrams: u64,
    pub bytes: u64,
    /// Refused by the kernel (full send buffer, unreachable destination).
    pub failed: u64,
}

impl SendBatch {
    /// Sends every `(destination, payload)`; never blocks.
    #[cfg(target_os = "linux")]
    pub fn send<'a>(&mut self, socket: &UdpSocket, datagrams: impl IntoIterator<Item = (SocketAddr, &'a [u8])>) -> Sent {
        use std::os::fd::AsRawFd;
        let mut lens: [u64; BATCH] = [0; BATCH];
        let mut out = Sent::default();
        let mut it = datagrams.into_iter().peekable();
        while it.peek().is_some() {
            self.addrs.clear();
            self.iovecs.clear();
            for (i, (to, payload)) in it.by_ref().take(BATCH).enumerate() {
                self.addrs.push(socket2::SockAddr::from(to));
                self.iovecs.push(libc::iovec { iov_base: payload.as_ptr() as *mut _, iov_len: payload.len() });
                lens[i] = payload.len() as u64;
            }
            self.hdrs.clear();
            for (addr, iov) in self.addrs.iter().zip(self.iovecs.iter_mut()) {
                // SAFETY: mmsghdr is plain data; zeroed is an empty header.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_name = addr.as_ptr() as *mut _;
                h.msg_hdr.msg_namelen = addr.len();
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
                self.hdrs.push(h);
            }
            let mut from = 0;
            while from < self.hdrs.len() {
                let rest = &mut self.hdrs[from..];
                // SAFETY: each header points at an address in `self.addrs` and an
                // iovec over a caller's payload, all alive for the call.
                let r = unsafe { libc::sendmmsg(socket.as_raw_fd(), rest.as_mut_ptr(), rest.len() as libc::c_uint, libc::MSG_DONTWAIT) };
                if r <= 0 {
                    // The first remaining datagram was refused; skip it, go on.
                    out.failed += 1;
                    from += 1;
                    continue;
                }
                let r = r as usize;
                out.datagrams += r as u64;
                out.bytes += lens[from..from + r].iter().sum::<u64>();
                from += r;
            }
        }
        out
    }

    #[cfg(not(target_os = "linux"))]
    pub fn send<'a>(&mut self, socket: &UdpSocket, datagrams: impl IntoIterator<Item = (SocketAddr, &'a [u8])>) -> Sent {
        let mut out = Sent::default();
        for (to, payload) in datagrams {
            match socket.send_to(payload, to) {
                Ok(n) => {
                    out.datagrams += 1;
                    out.bytes += n as u64;
                }
                Err(_) => out.failed += 1,
            }
        }
        out
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
        let sent = SendBatch::default().send(&tx, payloads.iter().map(|p| (to, p.as_slice())));
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
}
