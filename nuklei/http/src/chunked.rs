//! Incremental decoder for `Transfer-Encoding: chunked` request bodies (RFC 9112 §7.1).
//! Sans-I/O: feed it whatever bytes arrived; it emits body bytes and says how much it consumed.

/// Longest chunk-size line (with extensions) accepted before the request is rejected.
const MAX_SIZE_LINE: usize = 1024;
/// Longest trailer section accepted.
const MAX_TRAILER: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataEnd,
    Trailer,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// Malformed chunk framing: 400.
    Malformed(&'static str),
}

#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// Body bytes decoded so far.
    pub total: u64,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder {
            state: State::Size,
            total: 0,
        }
    }
}

impl ChunkedDecoder {
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes framing and up to `budget` body bytes from `input`, passing body bytes to
    /// `on_data`. Returns the number of input bytes consumed; stops early when it needs more
    /// input, when the budget is spent, or at the end of the body.
    pub fn decode(
        &mut self,
        input: &[u8],
        mut budget: usize,
        mut on_data: impl FnMut(&[u8]),
    ) -> Result<usize, ChunkError> {
        let mut at = 0;
        loop {
            let rest = &input[at..];
            match self.state {
                State::Done => return Ok(at),
                // Each limit holds for the line or section as a whole, however its bytes
                // arrive: a line of 2,000 bytes is refused whether it comes in one read or in
                // many (it used to pass when whole; found by fuzzing).
                State::Size => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Complete((used, _))) if used > MAX_SIZE_LINE => {
                        return Err(ChunkError::Malformed("chunk size line too long"));
                    }
                    Ok(httparse::Status::Complete((used, size))) => {
                        at += used;
                        self.state = if size == 0 {
                            State::Trailer
                        } else {
                            State::Data(size)
                        };
                    }
                    Ok(httparse::Status::Partial) => {
                        if rest.len() > MAX_SIZE_LINE {
                            return Err(ChunkError::Malformed("chunk size line too long"));
                        }
                        return Ok(at);
                    }
                    Err(_) => return Err(ChunkError::Malformed("invalid chunk size")),
                },
                State::Data(remaining) => {
                    let take = (remaining as usize).min(rest.len()).min(budget);
                    if take == 0 {
                        return Ok(at);
                    }
                    on_data(&rest[..take]);
                    at += take;
                    budget -= take;
                    self.total += take as u64;
                    let left = remaining - take as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                }
                State::DataEnd => {
                    if rest.len() < 2 {
                        return Ok(at);
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(ChunkError::Malformed("chunk data not followed by CRLF"));
                    }
                    at += 2;
                    self.state = State::Size;
                }
                State::Trailer => {
                    if rest.len() >= 2 && &rest[..2] == b"\r\n" {
                        at += 2;
                        self.state = State::Done;
                    } else if let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
                        if end + 4 > MAX_TRAILER {
                            return Err(ChunkError::Malformed("trailer section too long"));
                        }
                        at += end + 4;
                        self.state = State::Done;
                    } else if rest.len() > MAX_TRAILER {
                        return Err(ChunkError::Malformed("trailer section too long"));
                    } else {
                        return Ok(at);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], split: usize) -> Result<(Vec<u8>, usize), ChunkError> {
        let mut decoder = ChunkedDecoder::default();
        let mut body = Vec::new();
        let mut buffer = Vec::new();
        let mut consumed_total = 0;
        for piece in input.chunks(split.max(1)) {
            buffer.extend_from_slice(piece);
            let used = decoder.decode(&buffer, usize::MAX, |d| body.extend_from_slice(d))?;
            buffer.drain(..used);
            consumed_total += used;
        }
        assert!(decoder.is_done(), "decoder did not finish");
        Ok((body, consumed_total))
    }

    #[test]
    fn chunks_with_extensions_and_trailers_decode_at_any_split() {
        let input = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n";
        for split in 1..input.len() {
            let (body, consumed) = decode_all(input, split).unwrap();
            assert_eq!(body, b"hello world");
            assert_eq!(consumed, input.len());
        }
    }

    #[test]
    fn missing_crlf_after_data_is_malformed() {
        assert!(decode_all(b"5\r\nhelloXX0\r\n\r\n", 100).is_err());
    }

    #[test]
    fn invalid_size_is_malformed() {
        assert!(decode_all(b"zz\r\n", 100).is_err());
    }

    /// Found by fuzzing (fuzz/corpus/http_request/regress-chunk-size-line-*): the limits on a
    /// chunk-size line and a trailer section held only when they arrived in pieces.
    #[test]
    fn size_line_and_trailer_limits_hold_however_the_bytes_arrive() {
        let long_line = format!("2;{}\r\nab\r\n0\r\n\r\n", "e".repeat(MAX_SIZE_LINE));
        let long_trailer = format!("0\r\nT: {}\r\n\r\n", "t".repeat(MAX_TRAILER));
        for input in [&long_line, &long_trailer] {
            for split in [1, 15, 1000, input.len()] {
                assert!(
                    decode_all(input.as_bytes(), split).is_err(),
                    "split {split}"
                );
            }
        }
        let fits_line = format!("2;{}\r\nab\r\n0\r\n\r\n", "e".repeat(MAX_SIZE_LINE - 5));
        let fits_trailer = format!("0\r\nT: {}\r\n\r\n", "t".repeat(MAX_TRAILER - 10));
        for input in [&fits_line, &fits_trailer] {
            for split in [1, 15, 1000, input.len()] {
                assert!(decode_all(input.as_bytes(), split).is_ok(), "split {split}");
            }
        }
    }

    #[test]
    fn budget_limits_emitted_bytes() {
        let mut decoder = ChunkedDecoder::default();
        let mut body = Vec::new();
        let used = decoder
            .decode(b"a\r\n0123456789\r\n0\r\n\r\n", 4, |d| {
                body.extend_from_slice(d)
            })
            .unwrap();
        assert_eq!((used, &body[..]), (7, &b"0123"[..]));
    }
}
