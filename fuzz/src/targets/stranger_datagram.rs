//! Datagrams from addresses the server has never verified, into
//! `ShardCore::handle_receive` through the production loop turn: STUN
//! naming a real participant's ufrag (without its password), DTLS- and
//! RTP-looking bytes, garbage. None may panic, connect anyone or admit the
//! stranger's address.

use std::net::SocketAddr;
use std::time::Duration;

use crate::{bed, wire::Datagram};
use arbitrary::Arbitrary;
use sfu::testbed::shard_addr;

#[derive(Arbitrary, Debug)]
pub struct Input {
    /// (which stranger, milliseconds since the last one, what it sends)
    datagrams: Vec<(u8, u16, Datagram)>,
}

pub fn run(input: Input) {
    bed::with_joined(|b, ufrags| {
        let before = b.shards[0].stats().datagrams_in;
        for (who, wait, d) in input.datagrams.iter().take(64) {
            let source = SocketAddr::from(([203, 0, 113, who % 8], 40_000 + u16::from(*who)));
            b.now += Duration::from_millis(u64::from(*wait % 100));
            b.forward_through(0, vec![(source, shard_addr(0), d.to_bytes(ufrags))]);
        }
        let stats = b.shards[0].stats();
        assert_eq!(b.shards[0].participant_count(), 1, "strangers neither add nor remove anyone");
        assert_eq!((stats.datagrams_in - before) as usize, input.datagrams.len().min(64));
    })
}
