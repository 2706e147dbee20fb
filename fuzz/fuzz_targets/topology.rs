//! A topology file through loading and placement.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| reaktor::fuzzing::topology(data));
