//! TLS 1.3 record protection (RFC 8446 §5), sans I/O: sealing a record in place in the
//! caller's buffer (the claimed frame of tcp's ring) and opening one in place (tls's own
//! input buffer), with ring's AEADs.
//!
//! A protected record on the wire is
//! `[23][0x03 0x03][length:u16be] AEAD(inner plaintext) tag`, where the inner plaintext is
//! `content || content_type || zeros` and the additional data is the 5-byte header. The nonce
//! of record `seq` is the traffic IV XOR `seq` (big-endian, right-aligned), `seq` counting the
//! records protected under one key from 0.
//!
//! This module knows nothing of alerts, handshake messages or key updates beyond their wire
//! constants; [`crate::tls13`] does the connection's part.

use std::ops::Range;

use ring::aead;
use rustls::ConnectionTrafficSecrets;

pub const HEADER_LEN: usize = 5;
pub const TAG_LEN: usize = 16;
/// The largest plaintext fragment a record may carry (RFC 8446 §5.1).
pub const MAX_FRAGMENT: usize = 1 << 14;
/// The largest `TLSCiphertext.length` a peer may send (RFC 8446 §5.2).
pub const MAX_CIPHERTEXT: usize = MAX_FRAGMENT + 256;
/// What protection adds to a fragment: header, inner content type, tag.
pub const OVERHEAD: usize = HEADER_LEN + 1 + TAG_LEN;

pub const ALERT: u8 = 21;
pub const HANDSHAKE: u8 = 22;
pub const APPLICATION_DATA: u8 = 23;

/// Why a record could not be read. Each maps to the fatal alert RFC 8446 asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// Longer than 2^14 + 256 bytes of ciphertext, or 2^14 + 1 of inner plaintext.
    Overflow,
    /// The AEAD refused it (tampered, truncated, wrong key or sequence).
    BadRecordMac,
    /// A record that is not application_data on the outside (e.g. a plaintext record or a
    /// change_cipher_spec after the handshake).
    UnexpectedOuterType(u8),
    /// The legacy record version is not 0x0303.
    BadVersion,
    /// The inner plaintext is all zeros: no content type.
    NoContentType,
    /// This key has protected 2^64 - 1 records.
    SequenceExhausted,
}

impl RecordError {
    pub fn alert(self) -> rustls::AlertDescription {
        use rustls::AlertDescription as A;
        match self {
            RecordError::Overflow => A::RecordOverflow,
            RecordError::BadRecordMac => A::BadRecordMac,
            RecordError::UnexpectedOuterType(_) | RecordError::NoContentType => {
                A::UnexpectedMessage
            }
            RecordError::BadVersion => A::DecodeError,
            RecordError::SequenceExhausted => A::InternalError,
        }
    }

    /// The same failure in rustls' terms, for the session's [`crate::FailureCause`].
    pub fn rustls_error(self) -> rustls::Error {
        use rustls::{ContentType, Error, InvalidMessage, PeerMisbehaved};
        match self {
            RecordError::Overflow => Error::PeerSentOversizedRecord,
            RecordError::BadRecordMac => Error::DecryptError,
            RecordError::UnexpectedOuterType(t) => Error::InappropriateMessage {
                expect_types: vec![ContentType::ApplicationData],
                got_type: ContentType::from(t),
            },
            RecordError::BadVersion => {
                Error::InvalidMessage(InvalidMessage::UnknownProtocolVersion)
            }
            RecordError::NoContentType => {
                Error::PeerMisbehaved(PeerMisbehaved::IllegalTlsInnerPlaintext)
            }
            RecordError::SequenceExhausted => Error::EncryptError,
        }
    }
}

/// One direction's traffic key, IV and record sequence number.
pub struct Keys {
    key: aead::LessSafeKey,
    iv: [u8; aead::NONCE_LEN],
    seq: u64,
}

impl Keys {
    /// Keys from rustls' extracted (or updated) secrets, continuing at record `seq`.
    /// `None` for an AEAD this module does not implement.
    pub fn new(secrets: &ConnectionTrafficSecrets, seq: u64) -> Option<Keys> {
        let (algorithm, key, iv) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&aead::AES_128_GCM, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&aead::AES_256_GCM, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (&aead::CHACHA20_POLY1305, key, iv)
            }
            _ => return None,
        };
        Keys::with(algorithm, key.as_ref(), iv.as_ref(), seq)
    }

    fn with(algorithm: &'static aead::Algorithm, key: &[u8], iv: &[u8], seq: u64) -> Option<Keys> {
        let key = aead::UnboundKey::new(algorithm, key).ok()?;
        Some(Keys {
            key: aead::LessSafeKey::new(key),
            iv: iv.try_into().ok()?,
            seq,
        })
    }

    /// Records protected (or opened) under this key so far.
    pub fn sequence(&self) -> u64 {
        self.seq
    }

    /// The nonce of the next record, and the sequence number moved past it.
    fn next_nonce(&mut self) -> Result<aead::Nonce, RecordError> {
        if self.seq == u64::MAX {
            return Err(RecordError::SequenceExhausted);
        }
        let mut nonce = self.iv;
        for (n, s) in nonce[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *n ^= s;
        }
        self.seq += 1;
        Ok(aead::Nonce::assume_unique_for_key(nonce))
    }
}

/// Seals one record in place: `out[HEADER_LEN..HEADER_LEN + len]` holds the content; the
/// header, inner content type and tag are written around it. Returns the record's length
/// (`len + OVERHEAD`). `out` must hold that much and `len` be at most [`MAX_FRAGMENT`].
pub fn seal(
    keys: &mut Keys,
    content_type: u8,
    out: &mut [u8],
    len: usize,
) -> Result<usize, RecordError> {
    assert!(len <= MAX_FRAGMENT);
    seal_any(keys, content_type, out, len)
}

/// [`seal`] without the fragment limit: tests make oversized records with it.
pub(crate) fn seal_any(
    keys: &mut Keys,
    content_type: u8,
    out: &mut [u8],
    len: usize,
) -> Result<usize, RecordError> {
    assert!(out.len() >= len + OVERHEAD);
    let total = len + OVERHEAD;
    let body = (len + 1 + TAG_LEN) as u16;
    let header = [APPLICATION_DATA, 3, 3, (body >> 8) as u8, body as u8];
    out[..HEADER_LEN].copy_from_slice(&header);
    out[HEADER_LEN + len] = content_type;
    let nonce = keys.next_nonce()?;
    let (inner, tag) = out[HEADER_LEN..total].split_at_mut(len + 1);
    let sealed = keys
        .key
        .seal_in_place_separate_tag(nonce, aead::Aad::from(header), inner)
        .map_err(|_| RecordError::SequenceExhausted)?;
    tag.copy_from_slice(sealed.as_ref());
    Ok(total)
}

/// The length of the record at the start of `buf` (header included), once its header is
/// there; `Ok(None)` while fewer than 5 bytes are. Refuses headers no TLS 1.3 peer sends
/// after the handshake, before any of the body arrives.
pub fn record_length(buf: &[u8]) -> Result<Option<usize>, RecordError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    if header[0] != APPLICATION_DATA {
        return Err(RecordError::UnexpectedOuterType(header[0]));
    }
    if header[1..3] != [3, 3] {
        return Err(RecordError::BadVersion);
    }
    let body = u16::from_be_bytes([header[3], header[4]]) as usize;
    if body > MAX_CIPHERTEXT {
        return Err(RecordError::Overflow);
    }
    if body < TAG_LEN + 1 {
        // Not even a tag and a content type: it cannot authenticate.
        return Err(RecordError::BadRecordMac);
    }
    Ok(Some(HEADER_LEN + body))
}

/// Opens the whole record `record` (as measured by [`record_length`]) in place. Returns the
/// inner content type and where its content lies in `record` (padding removed).
pub fn open(keys: &mut Keys, record: &mut [u8]) -> Result<(u8, Range<usize>), RecordError> {
    let header: [u8; HEADER_LEN] = record[..HEADER_LEN].try_into().expect("a whole record");
    let nonce = keys.next_nonce()?;
    let plain = keys
        .key
        .open_in_place(nonce, aead::Aad::from(header), &mut record[HEADER_LEN..])
        .map_err(|_| RecordError::BadRecordMac)?;
    if plain.len() > MAX_FRAGMENT + 1 {
        return Err(RecordError::Overflow);
    }
    // Padding: zeros after the content type.
    let Some(type_at) = plain.iter().rposition(|&b| b != 0) else {
        return Err(RecordError::NoContentType);
    };
    Ok((plain[type_at], HEADER_LEN..HEADER_LEN + type_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_at(kind: u8, fill: u8, seq: u64) -> Keys {
        let (algorithm, len) = match kind {
            0 => (&aead::AES_128_GCM, 16),
            1 => (&aead::AES_256_GCM, 32),
            _ => (&aead::CHACHA20_POLY1305, 32),
        };
        Keys::with(algorithm, &[fill; 32][..len], &[fill ^ 0x5a; 12], seq).unwrap()
    }

    fn pair(kind: u8) -> (Keys, Keys) {
        (keys_at(kind, 7, 0), keys_at(kind, 7, 0))
    }

    fn sealed(keys: &mut Keys, content_type: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![0; content.len() + OVERHEAD];
        out[HEADER_LEN..][..content.len()].copy_from_slice(content);
        let n = seal(keys, content_type, &mut out, content.len()).unwrap();
        assert_eq!(n, out.len());
        out
    }

    #[test]
    fn sealed_records_open_in_order_for_every_aead() {
        for kind in 0..3 {
            let (mut tx, mut rx) = pair(kind);
            for i in 0..50usize {
                let content = vec![i as u8; i * 331 % (MAX_FRAGMENT + 1)];
                let mut record = sealed(&mut tx, APPLICATION_DATA, &content);
                assert_eq!(record_length(&record).unwrap(), Some(record.len()));
                let (t, range) = open(&mut rx, &mut record).unwrap();
                assert_eq!(t, APPLICATION_DATA);
                assert_eq!(&record[range], &content[..]);
            }
            assert_eq!(tx.sequence(), 50);
            assert_eq!(rx.sequence(), 50);
        }
    }

    #[test]
    fn a_record_out_of_order_or_tampered_or_under_another_key_is_refused() {
        let (mut tx, mut rx) = pair(0);
        let first = sealed(&mut tx, APPLICATION_DATA, b"one");
        let mut second = sealed(&mut tx, APPLICATION_DATA, b"two");
        assert_eq!(open(&mut rx, &mut second), Err(RecordError::BadRecordMac));

        for at in [0, 3, 4, 5, first.len() - 1] {
            let (mut tx, mut rx) = pair(1);
            let mut record = sealed(&mut tx, APPLICATION_DATA, b"hello");
            record[at] ^= 1;
            // A flipped header byte either fails the header check or the AEAD (it is the
            // additional data).
            let result = record_length(&record).and_then(|_| open(&mut rx, &mut record));
            assert!(result.is_err(), "flip at {at} accepted");
        }

        let mut other = keys_at(2, 8, 0);
        let mut rx = keys_at(2, 7, 0);
        let mut record = sealed(&mut other, APPLICATION_DATA, b"x");
        assert_eq!(open(&mut rx, &mut record), Err(RecordError::BadRecordMac));
    }

    #[test]
    fn the_nonce_is_the_iv_xor_the_sequence_number() {
        // Two receivers: one at sequence 0x1_0001 and one that opened that many records.
        let mut tx = keys_at(0, 3, 0x1_0001);
        let mut rx = keys_at(0, 3, 0x1_0001);
        let mut record = sealed(&mut tx, HANDSHAKE, b"k");
        let (t, range) = open(&mut rx, &mut record).unwrap();
        assert_eq!((t, &record[range]), (HANDSHAKE, &b"k"[..]));
        let mut late = keys_at(0, 3, 0x1_0001);
        let mut early = keys_at(0, 3, 1);
        let mut record = sealed(&mut late, HANDSHAKE, b"k");
        assert_eq!(
            open(&mut early, &mut record),
            Err(RecordError::BadRecordMac)
        );

        let mut last = keys_at(0, 3, u64::MAX);
        let mut out = [0; OVERHEAD + 1];
        assert_eq!(
            seal(&mut last, APPLICATION_DATA, &mut out, 1),
            Err(RecordError::SequenceExhausted)
        );
    }

    #[test]
    fn padding_is_removed_and_a_record_without_a_content_type_is_refused() {
        // Content "ab", type 23, then zeros: seal "ab\x17\0\0" with an inner type byte of 0.
        let (mut tx, mut rx) = pair(2);
        let mut padded = sealed(&mut tx, 0, b"ab\x17\0\0");
        let (t, range) = open(&mut rx, &mut padded).unwrap();
        assert_eq!((t, &padded[range]), (APPLICATION_DATA, &b"ab"[..]));

        let (mut tx, mut rx) = pair(2);
        let mut zeros = sealed(&mut tx, 0, &[0, 0, 0]);
        assert_eq!(open(&mut rx, &mut zeros), Err(RecordError::NoContentType));
    }

    #[test]
    fn headers_are_checked_before_the_body_arrives() {
        assert_eq!(record_length(&[23, 3, 3]), Ok(None));
        assert_eq!(record_length(&[23, 3, 3, 0, 17]), Ok(Some(22)));
        assert_eq!(
            record_length(&[22, 3, 3, 0, 40]),
            Err(RecordError::UnexpectedOuterType(22))
        );
        assert_eq!(
            record_length(&[20, 3, 3, 0, 1]),
            Err(RecordError::UnexpectedOuterType(20))
        );
        assert_eq!(
            record_length(&[23, 3, 1, 0, 40]),
            Err(RecordError::BadVersion)
        );
        let over = (MAX_CIPHERTEXT + 1) as u16;
        assert_eq!(
            record_length(&[23, 3, 3, (over >> 8) as u8, over as u8]),
            Err(RecordError::Overflow)
        );
        let max = MAX_CIPHERTEXT as u16;
        assert_eq!(
            record_length(&[23, 3, 3, (max >> 8) as u8, max as u8]),
            Ok(Some(HEADER_LEN + MAX_CIPHERTEXT))
        );
        assert_eq!(
            record_length(&[23, 3, 3, 0, 16]),
            Err(RecordError::BadRecordMac)
        );
    }

    #[test]
    fn an_inner_plaintext_over_the_limit_is_record_overflow() {
        // 2^14 + 1 bytes of content (+ the type byte) fit under the ciphertext limit but not
        // under the plaintext one.
        let (mut tx, mut rx) = pair(0);
        let len = MAX_FRAGMENT + 1;
        let mut out = vec![1u8; len + OVERHEAD];
        seal_any(&mut tx, APPLICATION_DATA, &mut out, len).unwrap();
        assert_eq!(record_length(&out), Ok(Some(out.len())));
        assert_eq!(open(&mut rx, &mut out), Err(RecordError::Overflow));

        let (mut tx, mut rx) = pair(0);
        let mut out = vec![1u8; MAX_FRAGMENT + OVERHEAD];
        seal(&mut tx, APPLICATION_DATA, &mut out, MAX_FRAGMENT).unwrap();
        let (_, range) = open(&mut rx, &mut out).unwrap();
        assert_eq!(range.len(), MAX_FRAGMENT);
    }
}
