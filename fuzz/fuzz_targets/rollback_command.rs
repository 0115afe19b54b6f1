//! Fuzz target `rollback_command`: see [`rollbot::fuzzing::rollback_command`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rollbot::fuzzing::rollback_command(data));
