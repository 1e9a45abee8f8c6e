#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| floodchat::fuzzing::secure::run(data));
