#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| berth::fuzzing::auth_file(bytes));
