//! RFC 6455 §5.2 frame headers: an incremental decoder for client frames, an encoder for
//! server frames, and in-place (un)masking.

use crate::error::Failure;

/// Longest header a server writes: 2 bytes + 64-bit length, never masked. Also the framing
/// overhead to reserve as stream padding per DATA frame.
pub const MAX_SERVER_HEADER_LEN: usize = 10;

/// Longest header a client can send: 2 bytes + 64-bit length + mask key.
pub const MAX_CLIENT_HEADER_LEN: usize = 14;

/// Largest payload of a control frame (§5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Largest encoded server control frame: 2-byte header + 125-byte payload.
pub const MAX_CONTROL_FRAME_LEN: usize = 2 + MAX_CONTROL_PAYLOAD;

/// The defined opcodes; the reserved ones never make it past the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OpCode {
    Continuation = 0x0,
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xA,
}

impl OpCode {
    /// Maps the 4-bit opcode field; `None` for the reserved values 3–7 and 0xB–0xF.
    pub fn from_u8(value: u8) -> Option<OpCode> {
        match value {
            0x0 => Some(OpCode::Continuation),
            0x1 => Some(OpCode::Text),
            0x2 => Some(OpCode::Binary),
            0x8 => Some(OpCode::Close),
            0x9 => Some(OpCode::Ping),
            0xA => Some(OpCode::Pong),
            _ => None,
        }
    }

    /// Control frames have the high bit of the opcode set (§5.5).
    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// A decoded client frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    pub opcode: OpCode,
    /// Client frames are always masked (the decoder rejects unmasked ones).
    pub mask: [u8; 4],
    pub payload_len: u64,
}

/// Incremental decoder for client frame headers.
///
/// Header bytes may arrive split at any point; the decoder keeps the partial header (at most
/// 14 bytes) and validates each rule as soon as the bytes it depends on are available, so a
/// bad frame fails without waiting for the rest of its header.
#[derive(Debug, Clone, Default)]
pub struct HeaderDecoder {
    buf: [u8; MAX_CLIENT_HEADER_LEN],
    have: u8,
}

impl HeaderDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// True if part of a header has been buffered.
    pub fn is_partial(&self) -> bool {
        self.have != 0
    }

    /// Consumes header bytes from `input`. Returns the number of bytes consumed and, once the
    /// header is complete, the header (the decoder is then ready for the next one). Never
    /// consumes payload bytes.
    pub fn decode(&mut self, input: &[u8]) -> Result<(usize, Option<FrameHeader>), Failure> {
        let mut consumed = 0;
        // Fast path: a whole header in `input` and nothing buffered needs no copy.
        if self.have == 0 && input.len() >= 2 {
            Self::check_first_two(input[0], input[1])?;
            let total = header_len(input[1]);
            if input.len() >= total {
                return Ok((total, Some(Self::parse(&input[..total])?)));
            }
        }
        while consumed < input.len() {
            let need = if self.have < 2 {
                2
            } else {
                header_len(self.buf[1])
            };
            let take = (need - self.have as usize).min(input.len() - consumed);
            let have = self.have as usize;
            self.buf[have..have + take].copy_from_slice(&input[consumed..consumed + take]);
            self.have += take as u8;
            consumed += take;
            if self.have == 2 && need == 2 {
                Self::check_first_two(self.buf[0], self.buf[1])?;
                continue;
            }
            if self.have as usize == need {
                self.have = 0;
                return Ok((consumed, Some(Self::parse(&self.buf[..need])?)));
            }
        }
        Ok((consumed, None))
    }

    fn check_first_two(b0: u8, b1: u8) -> Result<(), Failure> {
        // No extension is ever negotiated, so any RSV bit is a violation (§5.2).
        if b0 & 0x70 != 0 {
            return Err(Failure::ReservedBits);
        }
        let opcode = OpCode::from_u8(b0 & 0x0F).ok_or(Failure::ReservedOpcode(b0 & 0x0F))?;
        if b1 & 0x80 == 0 {
            return Err(Failure::UnmaskedFrame);
        }
        if opcode.is_control() {
            if b0 & 0x80 == 0 {
                return Err(Failure::FragmentedControlFrame);
            }
            if (b1 & 0x7F) as usize > MAX_CONTROL_PAYLOAD {
                return Err(Failure::ControlFrameTooLong);
            }
        }
        Ok(())
    }

    /// Parses a complete header whose first two bytes have been checked.
    fn parse(h: &[u8]) -> Result<FrameHeader, Failure> {
        let opcode = OpCode::from_u8(h[0] & 0x0F).ok_or(Failure::ReservedOpcode(h[0] & 0x0F))?;
        let (payload_len, mask_at) = match h[1] & 0x7F {
            126 => (u16::from_be_bytes([h[2], h[3]]) as u64, 4),
            127 => {
                let len = u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]);
                if len >> 63 != 0 {
                    return Err(Failure::LengthOverflow);
                }
                (len, 10)
            }
            n => (n as u64, 2),
        };
        Ok(FrameHeader {
            fin: h[0] & 0x80 != 0,
            opcode,
            mask: [h[mask_at], h[mask_at + 1], h[mask_at + 2], h[mask_at + 3]],
            payload_len,
        })
    }
}

/// Full masked-header length implied by the second header byte.
fn header_len(b1: u8) -> usize {
    match b1 & 0x7F {
        126 => 2 + 2 + 4,
        127 => 2 + 8 + 4,
        _ => 2 + 4,
    }
}

/// XORs `data` with `mask` in place, where `data` starts `offset` bytes into the frame
/// payload, so a payload can be unmasked piece by piece as it arrives. Masking and unmasking
/// are the same operation.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4], offset: u64) {
    // Rotate the key so that key[0] applies to data[0].
    let shift = (offset % 4) as usize;
    let key = [
        mask[shift],
        mask[(shift + 1) % 4],
        mask[(shift + 2) % 4],
        mask[(shift + 3) % 4],
    ];
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        // chunks_exact guarantees 8 bytes, so the conversion cannot fail; it compiles to a
        // plain (unaligned) load.
        let word = u64::from_ne_bytes(chunk.try_into().expect("8-byte chunk")) ^ wide;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    // Whole words keep the key phase at 0, so the tail restarts at key[0].
    for (byte, k) in chunks.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *byte ^= k;
    }
}

/// Writes an unmasked server frame header into `out`, returning its length (2, 4 or 10).
/// Uses the shortest length encoding. Callers must keep control frames `fin` and ≤125 bytes.
pub fn encode_header(
    fin: bool,
    opcode: OpCode,
    len: u64,
    out: &mut [u8; MAX_SERVER_HEADER_LEN],
) -> usize {
    debug_assert!(!opcode.is_control() || (fin && len <= MAX_CONTROL_PAYLOAD as u64));
    out[0] = if fin { 0x80 } else { 0 } | opcode as u8;
    if len <= 125 {
        out[1] = len as u8;
        2
    } else if len <= u16::MAX as u64 {
        out[1] = 126;
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&len.to_be_bytes());
        10
    }
}

/// A control frame payload longer than 125 bytes was given to an encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("control frame payload of {0} bytes exceeds 125")]
pub struct ControlPayloadTooLong(pub usize);

fn encode_control(
    opcode: OpCode,
    payload: &[u8],
    out: &mut [u8; MAX_CONTROL_FRAME_LEN],
) -> Result<usize, ControlPayloadTooLong> {
    if payload.len() > MAX_CONTROL_PAYLOAD {
        return Err(ControlPayloadTooLong(payload.len()));
    }
    out[0] = 0x80 | opcode as u8;
    out[1] = payload.len() as u8;
    out[2..2 + payload.len()].copy_from_slice(payload);
    Ok(2 + payload.len())
}

/// Writes a complete pong frame (the answer to a ping carries the ping's payload, §5.5.3).
pub fn encode_pong(
    payload: &[u8],
    out: &mut [u8; MAX_CONTROL_FRAME_LEN],
) -> Result<usize, ControlPayloadTooLong> {
    encode_control(OpCode::Pong, payload, out)
}

/// Writes a complete ping frame (for keep-alive probes).
pub fn encode_ping(
    payload: &[u8],
    out: &mut [u8; MAX_CONTROL_FRAME_LEN],
) -> Result<usize, ControlPayloadTooLong> {
    encode_control(OpCode::Ping, payload, out)
}

/// Writes a complete close frame. `None` sends an empty close body (the reply to a close that
/// carried no code); otherwise the reason is cut to the 123 bytes that fit, on a char
/// boundary so the peer still sees valid UTF-8.
pub fn encode_close(
    code: Option<u16>,
    reason: &str,
    out: &mut [u8; MAX_CONTROL_FRAME_LEN],
) -> usize {
    out[0] = 0x80 | OpCode::Close as u8;
    let Some(code) = code else {
        out[1] = 0;
        return 2;
    };
    let mut cut = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let reason = &reason.as_bytes()[..cut];
    out[1] = (2 + reason.len()) as u8;
    out[2..4].copy_from_slice(&code.to_be_bytes());
    out[4..4 + reason.len()].copy_from_slice(reason);
    4 + reason.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a masked client frame header by hand, with a chosen length encoding.
    fn client_header(b0: u8, len: u64, width: usize, mask: [u8; 4]) -> Vec<u8> {
        let mut h = vec![b0];
        match width {
            7 => h.push(0x80 | len as u8),
            16 => {
                h.push(0x80 | 126);
                h.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                h.push(0x80 | 127);
                h.extend_from_slice(&len.to_be_bytes());
            }
        }
        h.extend_from_slice(&mask);
        h
    }

    fn decode_all(bytes: &[u8]) -> Result<(usize, Option<FrameHeader>), Failure> {
        HeaderDecoder::new().decode(bytes)
    }

    const MASK: [u8; 4] = [1, 2, 3, 4];

    #[test]
    fn decodes_fin_opcode_mask_and_7_16_64_bit_lengths() {
        for (len, width, size) in [(5u64, 7, 6), (300, 16, 8), (70_000, 64, 14)] {
            let h = client_header(0x82, len, width, MASK);
            let (n, header) = decode_all(&h).unwrap();
            assert_eq!(n, size);
            assert_eq!(
                header,
                Some(FrameHeader {
                    fin: true,
                    opcode: OpCode::Binary,
                    mask: MASK,
                    payload_len: len
                })
            );
        }
        let (_, header) = decode_all(&client_header(0x01, 0, 7, MASK)).unwrap();
        assert!(!header.unwrap().fin);
    }

    #[test]
    fn header_split_at_every_byte_decodes_the_same() {
        let h = client_header(0x81, 70_000, 64, MASK);
        let mut d = HeaderDecoder::new();
        for (i, b) in h.iter().enumerate() {
            let (n, header) = d.decode(std::slice::from_ref(b)).unwrap();
            assert_eq!(n, 1);
            assert_eq!(header.is_some(), i == h.len() - 1);
        }
        // Payload bytes after the header are left alone.
        let mut with_payload = h.clone();
        with_payload.extend_from_slice(b"xyz");
        let (n, header) = d.decode(&with_payload).unwrap();
        assert_eq!(n, h.len());
        assert_eq!(header.unwrap().payload_len, 70_000);
    }

    #[test]
    fn non_minimal_length_encodings_are_allowed() {
        for width in [16, 64] {
            let (_, header) = decode_all(&client_header(0x81, 3, width, MASK)).unwrap();
            assert_eq!(header.unwrap().payload_len, 3);
        }
    }

    #[test]
    fn unmasked_client_frame_is_protocol_error_1002() {
        let err = decode_all(&[0x81, 0x03]).unwrap_err();
        assert_eq!(err, Failure::UnmaskedFrame);
        assert_eq!(err.close_code(), 1002);
    }

    #[test]
    fn rsv_bits_without_extension_are_protocol_error_1002() {
        for rsv in [0x40, 0x20, 0x10] {
            let err = decode_all(&[0x81 | rsv, 0x80]).unwrap_err();
            assert_eq!(err, Failure::ReservedBits);
            assert_eq!(err.close_code(), 1002);
        }
    }

    #[test]
    fn reserved_opcodes_are_protocol_error_1002() {
        for op in (3..=7).chain(0xB..=0xF) {
            let err = decode_all(&[0x80 | op, 0x80]).unwrap_err();
            assert_eq!(err, Failure::ReservedOpcode(op));
            assert_eq!(err.close_code(), 1002);
        }
    }

    #[test]
    fn control_frame_with_payload_over_125_is_protocol_error_1002() {
        for b1 in [0x80 | 126, 0x80 | 127] {
            let err = decode_all(&[0x89, b1]).unwrap_err();
            assert_eq!(err, Failure::ControlFrameTooLong);
            assert_eq!(err.close_code(), 1002);
        }
        assert!(decode_all(&client_header(0x89, 125, 7, MASK)).is_ok());
    }

    #[test]
    fn fragmented_control_frame_is_protocol_error_1002() {
        for op in [0x8, 0x9, 0xA] {
            let err = decode_all(&[op, 0x80]).unwrap_err();
            assert_eq!(err, Failure::FragmentedControlFrame);
            assert_eq!(err.close_code(), 1002);
        }
    }

    #[test]
    fn sixty_four_bit_length_with_top_bit_set_is_protocol_error_1002() {
        let err = decode_all(&client_header(0x82, 1 << 63, 64, MASK)).unwrap_err();
        assert_eq!(err, Failure::LengthOverflow);
        assert_eq!(err.close_code(), 1002);
    }

    #[test]
    fn violations_fail_fast_on_the_first_two_bytes() {
        // The decoder does not wait for the length and mask bytes of a doomed header.
        let mut d = HeaderDecoder::new();
        assert_eq!(d.decode(&[0x83]).unwrap(), (1, None));
        assert_eq!(d.decode(&[0xFF]), Err(Failure::ReservedOpcode(3)));
    }

    #[test]
    fn unmasking_is_correct_from_any_offset_and_split() {
        let mask = [0x37, 0xFA, 0x21, 0x3D];
        let plain: Vec<u8> = (0..100u8).collect();
        let masked: Vec<u8> = plain
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        for split in 0..plain.len() {
            for split2 in split..plain.len() {
                let mut data = masked.clone();
                let (a, rest) = data.split_at_mut(split);
                let (b, c) = rest.split_at_mut(split2 - split);
                apply_mask(a, mask, 0);
                apply_mask(b, mask, split as u64);
                apply_mask(c, mask, split2 as u64);
                assert_eq!(data, plain, "splits {split} {split2}");
            }
        }
    }

    #[test]
    fn server_headers_use_the_shortest_length_encoding_and_no_mask() {
        let mut out = [0u8; MAX_SERVER_HEADER_LEN];
        assert_eq!(encode_header(true, OpCode::Text, 125, &mut out), 2);
        assert_eq!(&out[..2], &[0x81, 125]);
        assert_eq!(encode_header(false, OpCode::Binary, 126, &mut out), 4);
        assert_eq!(&out[..4], &[0x02, 126, 0, 126]);
        assert_eq!(
            encode_header(true, OpCode::Continuation, 65_535, &mut out),
            4
        );
        assert_eq!(&out[..4], &[0x80, 126, 0xFF, 0xFF]);
        assert_eq!(encode_header(true, OpCode::Binary, 65_536, &mut out), 10);
        assert_eq!(&out[..10], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn close_reason_is_truncated_to_123_bytes_on_a_char_boundary() {
        let mut out = [0u8; MAX_CONTROL_FRAME_LEN];
        // 'é' is two bytes; 62 of them are 124 bytes, so the cut falls inside the last one.
        let reason = "é".repeat(62);
        let n = encode_close(Some(1000), &reason, &mut out);
        assert_eq!(n, 4 + 122);
        assert_eq!(out[1] as usize, 2 + 122);
        assert_eq!(&out[2..4], &1000u16.to_be_bytes());
        assert!(std::str::from_utf8(&out[4..n]).is_ok());
        assert_eq!(encode_close(None, "ignored", &mut out), 2);
        assert_eq!(&out[..2], &[0x88, 0]);
    }

    #[test]
    fn pong_echoes_payload_and_rejects_over_125() {
        let mut out = [0u8; MAX_CONTROL_FRAME_LEN];
        assert_eq!(encode_pong(b"hi", &mut out), Ok(4));
        assert_eq!(&out[..4], &[0x8A, 2, b'h', b'i']);
        assert_eq!(
            encode_pong(&[0; 126], &mut out),
            Err(ControlPayloadTooLong(126))
        );
    }
}
