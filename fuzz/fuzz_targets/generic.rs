//! Fuzz target `generic`: see [`rollbot::fuzzing::generic`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rollbot::fuzzing::generic(data));
