//! Fuzz target `sim_seed`: see [`rollbot::fuzzing::sim_seed`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rollbot::fuzzing::sim_seed(data));
