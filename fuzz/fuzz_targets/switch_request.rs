//! A switch API request (WebSocket message and REST bodies) against the serde types.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nukleus_switch::fuzzing::request(data));
