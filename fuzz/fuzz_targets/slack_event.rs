//! Fuzz target `slack_event`: see [`rollbot::fuzzing::slack_event`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rollbot::fuzzing::slack_event(data));
