//! Fuzz target `alertmanager`: see [`rollbot::fuzzing::alertmanager`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rollbot::fuzzing::alertmanager(data));
