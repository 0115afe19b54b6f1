//! Fuzz target `grafana`: see [`rollbot::fuzzing::grafana`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rollbot::fuzzing::grafana(data));
