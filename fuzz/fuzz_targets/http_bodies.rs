#![no_main]
//! See `switchboard_fuzz::targets::http_bodies`.
libfuzzer_sys::fuzz_target!(|input: switchboard_fuzz::targets::http_bodies::Input| {
    switchboard_fuzz::targets::http_bodies::run(input)
});
