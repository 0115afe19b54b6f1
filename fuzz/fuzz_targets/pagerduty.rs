//! Fuzz target `pagerduty`: see [`rollbot::fuzzing::pagerduty`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rollbot::fuzzing::pagerduty(data));
