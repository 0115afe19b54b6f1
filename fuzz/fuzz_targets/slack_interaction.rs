//! Fuzz target `slack_interaction`: see [`rollbot::fuzzing::slack_interaction`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rollbot::fuzzing::slack_interaction(data));
