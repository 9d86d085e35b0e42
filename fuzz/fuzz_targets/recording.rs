#![no_main]
//! See `switchboard_fuzz::targets::recording`.
libfuzzer_sys::fuzz_target!(|input: switchboard_fuzz::targets::recording::Input| {
    switchboard_fuzz::targets::recording::run(input)
});
