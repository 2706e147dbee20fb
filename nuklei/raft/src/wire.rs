//! The bytes between members: length-prefixed, versioned frames.
//!
//! ```text
//! frame   = length:u32be  version:u8  kind:u8  body          (length counts version..body)
//! version = 1
//! kind    = 1 HELLO  body = member:u64be        (first frame on a connection: who is talking)
//!         | 2 RAFT   body = eraftpb.Message     (protobuf, as raft-rs defines it)
//! ```
//!
//! Decoding is defensive: a length above the configured maximum is refused before any byte of
//! the body is buffered, every other defect is a [`WireError`], and nothing here panics on any
//! input (a property test feeds it arbitrary bytes).

use protobuf::Message as _;
use raft::eraftpb::Message;
use thiserror::Error;

use crate::config::MemberId;

/// The version byte this code writes and the only one it reads.
pub const VERSION: u8 = 1;
/// Bytes of the length prefix.
pub const LENGTH_PREFIX: usize = 4;
/// `version` + `kind`.
const HEAD: usize = 2;

const KIND_HELLO: u8 = 1;
const KIND_RAFT: u8 = 2;

/// A decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// The sender names itself; a connection starts with one.
    Hello { member: MemberId },
    /// A raft-rs message.
    Raft(Message),
}

/// Why a peer's bytes were refused. The connection they came on is out of step from here on:
/// close it (and reset the peer's reader) and let the peer reconnect.
#[derive(Debug, Error, PartialEq, Eq, Clone)]
pub enum WireError {
    #[error("frame of {length} bytes exceeds the limit of {max}: the peer is not speaking this protocol or max_frame is too small")]
    TooLong { length: usize, max: usize },
    #[error("frame of {0} bytes is shorter than its version and kind bytes")]
    TooShort(usize),
    #[error("frame version {0} is not supported (this member speaks version {VERSION}): upgrade the older member")]
    Version(u8),
    #[error("frame kind {0} is unknown (1 = hello, 2 = raft)")]
    Kind(u8),
    #[error("hello frame body has {0} bytes, expected 8 (the member id)")]
    Hello(usize),
    #[error("raft frame does not hold a valid raft message: {0}")]
    Protobuf(String),
}

/// Encodes a raft message as one frame.
pub fn encode_raft(message: &Message) -> Vec<u8> {
    let size = message.compute_size() as usize;
    let mut out = Vec::with_capacity(LENGTH_PREFIX + HEAD + size);
    out.extend_from_slice(&((HEAD + size) as u32).to_be_bytes());
    out.push(VERSION);
    out.push(KIND_RAFT);
    // Writing into a Vec cannot fail; the size was computed just above.
    if let Err(err) = message.write_to_vec(&mut out) {
        unreachable!("protobuf write into a Vec failed: {err}");
    }
    out
}

/// Encodes the hello frame a member sends first on every connection it opens.
pub fn encode_hello(member: MemberId) -> Vec<u8> {
    let mut out = Vec::with_capacity(LENGTH_PREFIX + HEAD + 8);
    out.extend_from_slice(&((HEAD + 8) as u32).to_be_bytes());
    out.push(VERSION);
    out.push(KIND_HELLO);
    out.extend_from_slice(&member.to_be_bytes());
    out
}

/// Decodes one frame's bytes (what follows the length prefix).
pub fn decode(frame: &[u8]) -> Result<Frame, WireError> {
    let [version, kind, body @ ..] = frame else {
        return Err(WireError::TooShort(frame.len()));
    };
    if *version != VERSION {
        return Err(WireError::Version(*version));
    }
    match *kind {
        KIND_HELLO => {
            let bytes: [u8; 8] = body.try_into().map_err(|_| WireError::Hello(body.len()))?;
            Ok(Frame::Hello {
                member: u64::from_be_bytes(bytes),
            })
        }
        KIND_RAFT => Message::parse_from_bytes(body)
            .map(Frame::Raft)
            .map_err(|err| WireError::Protobuf(err.to_string())),
        other => Err(WireError::Kind(other)),
    }
}

/// Cuts a byte stream from one peer into frames. It buffers at most one frame (plus what the
/// caller pushed in one go): a length prefix above `max_frame` is an error at once.
#[derive(Debug)]
pub struct FrameReader {
    buffer: Vec<u8>,
    start: usize,
    max_frame: usize,
}

impl FrameReader {
    /// A reader that refuses frames longer than `max_frame` bytes (prefix excluded).
    pub fn new(max_frame: usize) -> Self {
        FrameReader {
            buffer: Vec::new(),
            start: 0,
            max_frame,
        }
    }

    /// Appends bytes received from the peer.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buffer.len() {
            self.buffer.clear();
            self.start = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete frame, `None` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, WireError> {
        let pending = &self.buffer[self.start..];
        let Some(prefix) = pending.get(..LENGTH_PREFIX) else {
            self.compact();
            return Ok(None);
        };
        let length = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        if length > self.max_frame {
            return Err(WireError::TooLong {
                length,
                max: self.max_frame,
            });
        }
        let Some(frame) = pending.get(LENGTH_PREFIX..LENGTH_PREFIX + length) else {
            self.compact();
            return Ok(None);
        };
        let decoded = decode(frame);
        self.start += LENGTH_PREFIX + length;
        decoded.map(Some)
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buffer.len() - self.start
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use raft::eraftpb::{Entry, MessageType};

    fn heartbeat(from: u64, to: u64, term: u64) -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgHeartbeat);
        m.from = from;
        m.to = to;
        m.term = term;
        m.commit = 7;
        m.context = b"lease-probe".to_vec().into();
        m
    }

    #[test]
    fn raft_and_hello_frames_round_trip_through_a_reader_fed_byte_by_byte() {
        let mut append = heartbeat(1, 2, 3);
        append.set_msg_type(MessageType::MsgAppend);
        let entry = Entry {
            index: 5,
            term: 3,
            ..Entry::default()
        };
        append.entries = vec![entry].into();
        let mut stream = encode_hello(1);
        stream.extend(encode_raft(&heartbeat(1, 2, 3)));
        stream.extend(encode_raft(&append));
        let mut reader = FrameReader::new(64 * 1024);
        let mut frames = Vec::new();
        for byte in &stream {
            reader.push(std::slice::from_ref(byte));
            while let Some(frame) = reader.next_frame().unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(
            frames,
            vec![
                Frame::Hello { member: 1 },
                Frame::Raft(heartbeat(1, 2, 3)),
                Frame::Raft(append)
            ]
        );
        assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn a_length_above_the_limit_is_refused_before_the_body_arrives() {
        let mut reader = FrameReader::new(1024);
        reader.push(&1025u32.to_be_bytes());
        assert_eq!(
            reader.next_frame(),
            Err(WireError::TooLong {
                length: 1025,
                max: 1024
            })
        );
        let mut reader = FrameReader::new(1024);
        reader.push(&u32::MAX.to_be_bytes());
        assert!(matches!(
            reader.next_frame(),
            Err(WireError::TooLong { .. })
        ));
    }

    #[test]
    fn defects_get_their_own_errors() {
        assert_eq!(decode(&[]), Err(WireError::TooShort(0)));
        assert_eq!(decode(&[VERSION]), Err(WireError::TooShort(1)));
        assert_eq!(decode(&[2, KIND_RAFT]), Err(WireError::Version(2)));
        assert_eq!(decode(&[VERSION, 9]), Err(WireError::Kind(9)));
        assert_eq!(
            decode(&[VERSION, KIND_HELLO, 1, 2, 3]),
            Err(WireError::Hello(3))
        );
        // A field tag with a length running past the end of the body.
        assert!(matches!(
            decode(&[VERSION, KIND_RAFT, 0x0a, 0x7f, 1]),
            Err(WireError::Protobuf(_))
        ));
        let err = decode(&[2, KIND_RAFT]).unwrap_err().to_string();
        assert!(err.contains("upgrade the older member"), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic_and_never_buffer_more_than_one_frame(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8)
        ) {
            let mut reader = FrameReader::new(1024);
            for chunk in &chunks {
                reader.push(chunk);
                loop {
                    match reader.next_frame() {
                        Ok(Some(_)) => continue,
                        Ok(None) => break,
                        Err(_) => return Ok(()),
                    }
                }
                prop_assert!(reader.buffered() <= LENGTH_PREFIX + 1024);
            }
        }

        #[test]
        fn arbitrary_raft_frame_bodies_decode_or_fail_cleanly(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut frame = vec![VERSION, KIND_RAFT];
            frame.extend(&body);
            let _ = decode(&frame);
        }
    }
}
