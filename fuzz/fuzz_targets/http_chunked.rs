//! A chunked request body, arriving at once, in pieces and byte by byte.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nukleus_http::fuzzing::chunked(data));
