//! Incremental UTF-8 validation for text messages whose bytes arrive in arbitrary pieces.
//!
//! Built on `std::str::from_utf8` (fast, and its `error_len() == None` tells a truncated but
//! so-far-valid sequence from an invalid one) plus a carry of at most 3 bytes of a code point
//! split across pieces. Every byte is checked as soon as it arrives, so an invalid sequence
//! is reported in the piece that makes it invalid ("fail fast", Autobahn 6.4).

/// The bytes seen so far can never be completed into valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid UTF-8")]
pub struct InvalidUtf8;

#[derive(Debug, Clone, Copy, Default)]
pub struct Utf8Validator {
    /// Leading bytes of an incomplete code point (valid as a prefix).
    carry: [u8; 4],
    carried: u8,
}

impl Utf8Validator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates the next piece. After an error the validator's state is unspecified; call
    /// [`reset`](Self::reset) before reusing it.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), InvalidUtf8> {
        if self.carried != 0 {
            // Complete the carried code point with bytes from this piece.
            let carried = self.carried as usize;
            let take = (4 - carried).min(bytes.len());
            let mut joined = self.carry;
            joined[carried..carried + take].copy_from_slice(&bytes[..take]);
            match std::str::from_utf8(&joined[..carried + take]) {
                Ok(_) => {
                    // Only possible when the whole joined input is one complete code point.
                    self.carried = 0;
                    bytes = &bytes[take..];
                }
                Err(e) if e.valid_up_to() > 0 => {
                    // The first code point completed; continue after it.
                    self.carried = 0;
                    bytes = &bytes[e.valid_up_to() - carried..];
                }
                Err(e) if e.error_len().is_none() => {
                    // Still a valid prefix and this piece is exhausted.
                    self.carry = joined;
                    self.carried = (carried + take) as u8;
                    return Ok(());
                }
                Err(_) => return Err(InvalidUtf8),
            }
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                let tail = &bytes[e.valid_up_to()..];
                self.carry[..tail.len()].copy_from_slice(tail);
                self.carried = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// True if no code point is left incomplete: the message may end here.
    pub fn is_complete(&self) -> bool {
        self.carried == 0
    }

    /// Ends the text: an incomplete trailing code point is invalid.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let complete = self.is_complete();
        self.reset();
        if complete {
            Ok(())
        } else {
            Err(InvalidUtf8)
        }
    }

    pub fn reset(&mut self) {
        self.carried = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate_in_pieces(bytes: &[u8], piece: usize) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::new();
        for chunk in bytes.chunks(piece.max(1)) {
            v.feed(chunk)?;
        }
        v.finish()
    }

    #[test]
    fn code_points_split_across_pieces_are_accepted() {
        let text = "κόσμε 𝄞 €".as_bytes();
        for piece in 1..=text.len() {
            assert_eq!(validate_in_pieces(text, piece), Ok(()), "piece {piece}");
        }
    }

    #[test]
    fn truncated_code_point_at_the_end_is_invalid() {
        assert_eq!(
            validate_in_pieces(&[b'a', 0xF0, 0x9D, 0x84], 1),
            Err(InvalidUtf8)
        );
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xE2, 0x82]), Ok(()));
        assert!(!v.is_complete());
    }

    #[test]
    fn invalid_sequences_fail_in_the_piece_that_makes_them_invalid() {
        // Autobahn 6.4.1: the lead bytes of U+1D11E are fine, the fifth byte 0xF4 is not.
        let mut v = Utf8Validator::new();
        assert_eq!(
            v.feed(&[0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE, 0xB5]),
            Ok(())
        );
        assert_eq!(v.feed(&[0xF4, 0x90]), Err(InvalidUtf8));
        // Overlong (E0 80), surrogate (ED A0), above U+10FFFF (F4 90), stray continuation.
        for bad in [
            &[0xE0, 0x80][..],
            &[0xED, 0xA0],
            &[0xF4, 0x90],
            &[0x80],
            &[0xFF],
        ] {
            let mut v = Utf8Validator::new();
            let first = v.feed(&bad[..1]);
            let result = first.and_then(|_| v.feed(&bad[1..]));
            assert_eq!(result, Err(InvalidUtf8), "{bad:x?}");
        }
    }
}
