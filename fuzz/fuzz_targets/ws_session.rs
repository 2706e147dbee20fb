//! WebSocket client bytes through the receive session, at once and in pieces.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nukleus_ws::fuzzing::session(data));
