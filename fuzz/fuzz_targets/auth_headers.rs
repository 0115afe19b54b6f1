//! Fuzz target `auth_headers`: see [`rollbot::fuzzing::auth_headers`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rollbot::fuzzing::auth_headers(data));
