#![no_main]
//! See `switchboard_fuzz::targets::peer_session`.
libfuzzer_sys::fuzz_target!(|input: switchboard_fuzz::targets::peer_session::Input| {
    switchboard_fuzz::targets::peer_session::run(input)
});
