#![no_main]
//! See `switchboard_fuzz::targets::signalling_session`.
libfuzzer_sys::fuzz_target!(|input: switchboard_fuzz::targets::signalling_session::Input| {
    switchboard_fuzz::targets::signalling_session::run(input)
});
