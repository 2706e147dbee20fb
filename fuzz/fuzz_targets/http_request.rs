//! An HTTP/1.1 request head (limits from the first byte) and the chunked body after it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nukleus_http::fuzzing::request(data));
