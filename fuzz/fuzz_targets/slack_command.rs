//! Fuzz target `slack_command`: see [`rollbot::fuzzing::slack_command`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rollbot::fuzzing::slack_command(data));
