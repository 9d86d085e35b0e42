//! Every fuzz target, without libFuzzer: its seed corpus and regressions
//! (`corpus/<target>/`, `regressions/<target>/`: inputs that once found a
//! bug stay here as tests), then random inputs for a bounded time
//! (`FUZZ_SECONDS`, default 3 per target; `FUZZ_SEED` repeats a run). The
//! coverage-guided runs are `make fuzz` and `make fuzz-long` (README.md).

use std::path::Path;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use rand::{Rng, RngCore, SeedableRng};
use switchboard_fuzz::targets;

/// Feeds `run` every stored input of `name`, then random ones; returns
/// how many random inputs it ran.
fn replay<T: for<'a> Arbitrary<'a>>(name: &str, run: fn(T)) -> u64 {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut stored = 0;
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else { continue };
        for e in entries {
            let path = e.expect("a directory entry").path();
            let bytes = std::fs::read(&path).expect("a stored input");
            if let Ok(input) = T::arbitrary_take_rest(Unstructured::new(&bytes)) {
                run(input);
                stored += 1;
            }
        }
    }
    let seed = std::env::var("FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| rand::thread_rng().gen());
    let budget =
        Duration::from_secs_f64(std::env::var("FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0));
    println!("{name}: {stored} stored inputs; random inputs with FUZZ_SEED={seed} for {budget:?}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let start = Instant::now();
    let mut runs = 0;
    let mut bytes = Vec::new();
    while start.elapsed() < budget && runs < 1_000_000 {
        bytes.resize(rng.gen_range(0..4096), 0);
        rng.fill_bytes(&mut bytes);
        if let Ok(input) = T::arbitrary_take_rest(Unstructured::new(&bytes)) {
            run(input);
        }
        runs += 1;
    }
    println!("{name}: {runs} random inputs in {:?}", start.elapsed());
    runs
}

#[test]
fn stranger_datagrams_never_hurt_the_shard() {
    assert!(replay("stranger_datagram", targets::stranger_datagram::run) > 0);
}

#[test]
fn a_connected_peer_cannot_break_its_shard() {
    assert!(replay("peer_session", targets::peer_session::run) > 0);
}

#[test]
fn ice_tcp_framing_keeps_frames_whole() {
    assert!(replay("tcp_framing", targets::tcp_framing::run) > 0);
}

#[test]
fn the_recorder_survives_any_packets() {
    assert!(replay("recording", targets::recording::run) > 0);
}

#[test]
fn signalling_sessions_end_cleanly_whatever_is_sent() {
    assert!(replay("signalling_session", targets::signalling_session::run) > 0);
}

#[test]
fn http_apis_answer_bad_bodies_with_4xx() {
    assert!(replay("http_bodies", targets::http_bodies::run) > 0);
}
