#![no_main]
//! See `switchboard_fuzz::targets::stranger_datagram`.
libfuzzer_sys::fuzz_target!(|input: switchboard_fuzz::targets::stranger_datagram::Input| {
    switchboard_fuzz::targets::stranger_datagram::run(input)
});
