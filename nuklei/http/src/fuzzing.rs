//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz) and for the replay of their saved
//! corpus in the workspace's tests (`tests/fuzz_corpus.rs`). Each takes arbitrary bytes, drives
//! a sans-I/O parser with them and asserts what must hold for any input; a panic is a finding.
//! The first byte of an input picks limits and how the bytes are cut into arrivals.

use crate::chunked::{ChunkError, ChunkedDecoder};
use crate::ext::RequestHead;
use crate::request::{parse_head, Body, HttpLimits, MAX_HEADERS_CAP};
use crate::request_cache::RequestCache;

/// A request head (and a chunked body after it): [`parse_head`] answers one of its statuses or
/// a head whose extension says exactly what httparse read, which a request cache holding it
/// or another head reads the same way; no prefix of a complete head is complete; a chunked
/// body decodes the same however it arrives.
pub fn request(data: &[u8]) {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let selector = selector as usize;
    let limits = HttpLimits {
        max_header_bytes: [64, 1024, 8192, 200_000][selector & 3],
        max_headers: [1, 8, 64, MAX_HEADERS_CAP][(selector >> 2) & 3],
        max_body_bytes: [0, 10, 1 << 20, u64::MAX][(selector >> 4) & 3],
        max_pipelined: 32,
    };
    let route = |path: &str| (!path.len().is_multiple_of(3)).then_some(path.len());
    let mut extension = Vec::new();
    let parsed = match parse_head(input, &limits, route, &mut extension) {
        Err(rejection) => {
            assert!(
                matches!(rejection.status, 400 | 413 | 414 | 417 | 431 | 501 | 505),
                "{rejection:?}"
            );
            assert!(!rejection.reason.is_empty());
            return;
        }
        Ok(None) => {
            assert!(
                input.len() <= limits.max_header_bytes,
                "partial beyond the limit"
            );
            return;
        }
        Ok(Some(parsed)) => parsed,
    };
    // A cache that holds this head reads the input as parsing did; so does one that holds
    // another head (a miss, or a hit on the same bytes).
    let mut cache = RequestCache::default();
    for known in [&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], input] {
        let mut known_extension = Vec::new();
        if let Ok(Some(known_parsed)) = parse_head(known, &limits, route, &mut known_extension) {
            cache.put(known, &known_parsed, &known_extension);
        }
        let mut cached_extension = Vec::new();
        if let Some(hit) = cache.get(input, &mut cached_extension) {
            assert_eq!(
                format!("{hit:?}"),
                format!("{parsed:?}"),
                "a cache hit differs"
            );
            assert_eq!(
                cached_extension, extension,
                "a cache hit's extension differs"
            );
        }
    }
    let consumed = parsed.consumed;
    assert!(consumed <= input.len() && consumed <= limits.max_header_bytes);
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS_CAP];
    let mut oracle = httparse::Request::new(&mut storage);
    assert_eq!(
        oracle.parse(&input[..consumed]),
        Ok(httparse::Status::Complete(consumed))
    );
    let head = RequestHead::parse(&extension).expect("the extension it wrote parses");
    assert_eq!(Some(head.method), oracle.method, "method");
    assert_eq!(Some(head.target), oracle.path, "target");
    assert_eq!(Some(head.minor_version), oracle.version, "version");
    let forwarded: Vec<(&str, &[u8])> = head.headers().collect();
    let read: Vec<(&str, &[u8])> = oracle.headers.iter().map(|h| (h.name, h.value)).collect();
    assert_eq!(forwarded, read, "headers");
    let path = head.path();
    assert_eq!(parsed.route, route(path));
    assert_eq!(parsed.is_head, head.method == "HEAD");
    let cut = consumed - 1 - selector % consumed.min(4);
    assert!(
        !matches!(
            parse_head(&input[..cut], &limits, route, &mut Vec::new()),
            Ok(Some(_))
        ),
        "a prefix of {cut} bytes of a {consumed}-byte head is complete"
    );
    if let Body::Chunked(_) = parsed.body {
        check_chunked(&input[consumed..], selector);
    }
}

/// A chunked body: the same body, the same bytes consumed and the same outcome whether the
/// bytes arrive at once, in pieces or one by one, and never more body than input.
pub fn chunked(data: &[u8]) {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    check_chunked(input, selector as usize);
}

/// What decoding an input gave: the body, and the input consumed and whether the body is
/// complete, or that it failed (the connection is then answered 400 and dropped: what was
/// consumed before, and which of two faults of a bad input was seen first, do not matter).
type Decoded = (Vec<u8>, Result<(usize, bool), ()>);

fn check_chunked(input: &[u8], selector: usize) {
    let budget = [usize::MAX, 1, 7, 4096][selector & 3];
    let whole = decode_in_pieces(input, input.len().max(1), budget);
    assert!(whole.0.len() <= input.len());
    if let Ok((consumed, _)) = whole.1 {
        assert!(consumed <= input.len());
    }
    for piece in [1 + (selector >> 2), 1] {
        assert_eq!(
            decode_in_pieces(input, piece, budget),
            whole,
            "arriving in pieces of {piece}"
        );
    }
}

/// Feeds `input` as if it arrived `piece` bytes at a time, calling the decoder (with
/// `budget` per call) until it makes no more progress on what has arrived.
fn decode_in_pieces(input: &[u8], piece: usize, budget: usize) -> Decoded {
    let mut decoder = ChunkedDecoder::default();
    let (mut body, mut consumed) = (Vec::new(), 0);
    let mut arrived = 0;
    while arrived < input.len() {
        arrived = (arrived + piece).min(input.len());
        loop {
            let before = body.len();
            match decoder.decode(&input[consumed..arrived], budget, |d| {
                body.extend_from_slice(d)
            }) {
                Ok(used) => {
                    consumed += used;
                    if decoder.is_done() {
                        return (body, Ok((consumed, true)));
                    }
                    if used == 0 && body.len() == before {
                        break;
                    }
                }
                Err(ChunkError::Malformed(_)) => return (body, Err(())),
            }
        }
    }
    (body, Ok((consumed, false)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_requests_and_bodies_pass_every_check() {
        request(b"\x03POST /a?b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
        request(b"\x00GET / HTTP/1.0\r\n\r\n");
        chunked(b"\x05a;x=1\r\n0123456789\r\n0\r\nT: 1\r\n\r\n");
        request(b"");
        chunked(b"");
    }
}
