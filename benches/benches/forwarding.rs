//! Forwarding cost of the media plane, in memory, against a raw limit.
//!
//! `media_plane/N`: one publisher's SRTP packet into a real `ShardCore` →
//! N subscribers' SRTP packets out of it (real str0m legs: decrypt, forward,
//! rewrite, encrypt), no sockets. `raw_limit/N`: receive one UDP datagram on
//! loopback, seal N copies with AES-128-GCM, send them with one `sendmmsg`.
//! Both report elements = packets out, so their ratio is the media plane's
//! share of the raw limit (see README.md).

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sfu::testbed::{payload, Bed};
use str0m::media::MediaKind;

const FANOUT: [usize; 3] = [1, 10, 100];

fn media_plane(c: &mut Criterion) {
    let mut g = c.benchmark_group("media_plane");
    g.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    for n in FANOUT {
        let mut bed = Bed::new(1);
        let publisher = bed.join("bench", "pub", &[MediaKind::Video]);
        for i in 0..n {
            bed.join("bench", &format!("sub{i}"), &[]);
        }
        bed.run(Duration::from_secs(3));
        // Prime the legs (keyframe requests, first packets) and check the fan-out.
        for k in 0..10 {
            bed.send_rtp(publisher, MediaKind::Video, &payload("warm", k));
            bed.run(Duration::from_millis(20));
        }
        let mut k = 0usize;
        let mut next = |bed: &mut Bed| {
            k += 1;
            bed.client_datagrams(publisher, MediaKind::Video, &payload("bench", k))
        };
        let check = next(&mut bed);
        let out = forward(&mut bed, check);
        assert!(out >= n, "a packet fans out to every subscriber ({out} < {n})");

        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            // Only the shard's work is timed; the publisher's encryption is not.
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for i in 0..iters {
                    if i % 1000 == 999 {
                        // Untimed: let every peer's timers run (ICE, RTCP) so legs stay up.
                        bed.run(Duration::from_millis(5));
                    }
                    // Packets 20 µs apart in virtual time, so str0m's pacer releases them.
                    bed.now += Duration::from_micros(20);
                    let datagrams = next(&mut bed);
                    let t = Instant::now();
                    black_box(forward(&mut bed, datagrams));
                    spent += t.elapsed();
                }
                spent
            })
        });
    }
    g.finish();
}

/// One loop turn of shard 0 (the worker's own) on the datagrams; returns
/// how many it sent.
fn forward(bed: &mut Bed, datagrams: Vec<sfu::testbed::Datagram>) -> usize {
    bed.forward_through(0, datagrams)
}

fn raw_limit(c: &mut Criterion) {
    let mut g = c.benchmark_group("raw_limit");
    g.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let out = UdpSocket::bind("127.0.0.1:0").unwrap();
    // Copies go to a socket nobody reads: the kernel drops them once its buffer
    // is full, which still costs the send path.
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &[7u8; 16]).unwrap());
    let packet = vec![0x5au8; 1100];
    let mut buf = vec![0u8; 2048];
    for n in FANOUT {
        let mut copies: Vec<Vec<u8>> = (0..n).map(|_| Vec::with_capacity(1200)).collect();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            let mut counter = 0u64;
            b.iter(|| {
                tx.send_to(&packet, rx.local_addr().unwrap()).unwrap();
                let (len, _) = rx.recv_from(&mut buf).unwrap();
                for copy in copies.iter_mut() {
                    counter += 1;
                    copy.clear();
                    copy.extend_from_slice(&buf[..len]);
                    let mut nonce = [0u8; 12];
                    nonce[4..].copy_from_slice(&counter.to_be_bytes());
                    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(&buf[..12]), copy)
                        .unwrap();
                }
                black_box(sendmmsg(&out, sink, &copies));
            })
        });
    }
    g.finish();
}

/// Sends every buffer to `to` with one `sendmmsg(2)` call per 1024.
fn sendmmsg(socket: &UdpSocket, to: std::net::SocketAddr, bufs: &[Vec<u8>]) -> usize {
    let std::net::SocketAddr::V4(v4) = to else { panic!("IPv4 sink") };
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(*v4.ip()).to_be() },
        sin_zero: [0; 8],
    };
    let mut iovs: Vec<libc::iovec> =
        bufs.iter().map(|b| libc::iovec { iov_base: b.as_ptr() as *mut _, iov_len: b.len() }).collect();
    let mut msgs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| {
            // SAFETY: mmsghdr is plain data; all-zero is a valid empty header.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_name = &addr as *const _ as *mut _;
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    let mut sent = 0;
    for chunk in msgs.chunks_mut(1024) {
        // SAFETY: every header points at a live iovec, buffer and address for the call's duration.
        let r =
            unsafe { libc::sendmmsg(socket.as_raw_fd(), chunk.as_mut_ptr(), chunk.len() as u32, libc::MSG_DONTWAIT) };
        sent += r.max(0) as usize;
    }
    sent
}

criterion_group!(benches, media_plane, raw_limit);
criterion_main!(benches);
