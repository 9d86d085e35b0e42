#![no_main]
//! See `switchboard_fuzz::targets::tcp_framing`.
libfuzzer_sys::fuzz_target!(|input: switchboard_fuzz::targets::tcp_framing::Input| {
    switchboard_fuzz::targets::tcp_framing::run(input)
});
