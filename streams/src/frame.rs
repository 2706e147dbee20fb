//! Stream frames, after Reaktivity/Zilla: `BEGIN`, `DATA`, `END`, `ABORT`, `FLUSH` flow with a
//! stream; `WINDOW`, `RESET` flow against it; `SIGNAL` is a nukleus-local wake-up.
//!
//! Every frame starts with the same 48-byte header:
//!
//! ```text
//!  0 stream_id   u64   odd: initial stream, even (= initial ^ 1): its reply stream
//!  8 trace_id    u64
//! 16 timestamp   u64   nanoseconds, from the core's clock at the start of the poll
//! 24 sequence    u64   flow control: absolute bytes reserved by the sender so far
//! 32 acknowledge u64   flow control: absolute bytes the receiver has released
//! 40 maximum     u32   flow control: the receiver's window size
//! 44 word        u32   DATA: flags; WINDOW: padding; otherwise 0
//! ```
//!
//! then a type-specific body:
//!
//! ```text
//! BEGIN   48 affinity u64, 56 extension (protocol metadata, e.g. HTTP headers)
//! DATA    48 reserved u32 (length + padding), 52 extension length u32, 56 extension, payload
//! END, ABORT, RESET, FLUSH   48 extension
//! WINDOW  (header only: acknowledge, maximum, padding)
//! SIGNAL  48 signal id u64, 56 payload
//! ```
//!
//! DATA flags (the header word): `FLAG_FIN` 0x01, `FLAG_INIT` 0x02, `FLAG_OPEN` 0x04. A DATA
//! flagged `FLAG_OPEN` is the first frame of its stream and stands for its BEGIN (affinity 0,
//! the BEGIN's extension in the DATA's extension) followed by a DATA of the payload with the
//! other flags and no extension; with `FLAG_FIN` too it is a whole stream (BEGIN, DATA, END)
//! in one record: what an application answering an HTTP request in full sends (the response
//! head and its body). Its `sequence` and `reserved` are those of that DATA. Only a receiver
//! that says it takes it gets one (http takes it on a response stream, see
//! `nukleus_http::application`).
//!
//! Readers are flyweights ([`Frame`]) over the bytes in the ring: nothing is copied or
//! allocated per frame.

use crate::flow::SendWindow;
use crate::ring::{ClaimError, RingWriter};

pub const BEGIN: u32 = 0x0000_0001;
pub const DATA: u32 = 0x0000_0002;
pub const END: u32 = 0x0000_0003;
pub const ABORT: u32 = 0x0000_0004;
pub const FLUSH: u32 = 0x0000_0005;
pub const RESET: u32 = 0x4000_0001;
pub const WINDOW: u32 = 0x4000_0002;
pub const SIGNAL: u32 = 0x4000_0003;

pub const STREAM_ID_OFFSET: usize = 0;
pub const TRACE_ID_OFFSET: usize = 8;
pub const TIMESTAMP_OFFSET: usize = 16;
pub const SEQUENCE_OFFSET: usize = 24;
pub const ACKNOWLEDGE_OFFSET: usize = 32;
pub const MAXIMUM_OFFSET: usize = 40;
pub const WORD_OFFSET: usize = 44;
pub const HEADER_LENGTH: usize = 48;

pub const BEGIN_AFFINITY_OFFSET: usize = 48;
pub const BEGIN_EXTENSION_OFFSET: usize = 56;
pub const DATA_RESERVED_OFFSET: usize = 48;
pub const DATA_EXTENSION_LENGTH_OFFSET: usize = 52;
pub const DATA_EXTENSION_OFFSET: usize = 56;
pub const TAIL_EXTENSION_OFFSET: usize = 48;
pub const SIGNAL_ID_OFFSET: usize = 48;
pub const SIGNAL_PAYLOAD_OFFSET: usize = 56;

/// DATA flag: last fragment of a message (protocols with message boundaries, e.g. WebSocket).
/// On a BEGIN or on the DATA of a stream that has no message framing (an HTTP response), it
/// means the stream ends with this frame: no END follows.
pub const FLAG_FIN: u32 = 0x01;
/// DATA flag: first fragment of a message.
pub const FLAG_INIT: u32 = 0x02;
/// DATA flag: this DATA opens its stream, standing for the BEGIN (affinity 0) whose extension
/// it carries in its own; its payload is the stream's first data (see the module docs). With
/// [`FLAG_FIN`] the stream is whole in one record. Written with [`RingWriter::begin_data`].
pub const FLAG_OPEN: u32 = 0x04;

/// Name of a frame type, for logs and `reaktor dump`.
pub fn type_name(type_id: u32) -> &'static str {
    match type_id {
        BEGIN => "BEGIN",
        DATA => "DATA",
        END => "END",
        ABORT => "ABORT",
        FLUSH => "FLUSH",
        RESET => "RESET",
        WINDOW => "WINDOW",
        SIGNAL => "SIGNAL",
        _ => "UNKNOWN",
    }
}

/// True for the reply stream of an exchange (even ids); initial streams have odd ids.
pub const fn is_reply(stream_id: u64) -> bool {
    stream_id & 1 == 0
}

/// The other stream of an exchange: initial ↔ reply.
pub const fn peer_stream(stream_id: u64) -> u64 {
    stream_id ^ 1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame type {type_id:#x} is {length} bytes, shorter than its {minimum}-byte layout")]
    TooShort {
        type_id: u32,
        length: usize,
        minimum: usize,
    },
    #[error("DATA extension length {extension} exceeds the frame's {available} remaining bytes")]
    BadExtension { extension: usize, available: usize },
    #[error("unknown frame type {0:#x}")]
    UnknownType(u32),
}

/// The common header of every frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    pub stream_id: u64,
    pub trace_id: u64,
    pub timestamp: u64,
    pub sequence: u64,
    pub acknowledge: u64,
    pub maximum: u32,
}

impl Header {
    pub fn new(stream_id: u64) -> Header {
        Header {
            stream_id,
            ..Header::default()
        }
    }

    /// A header for `stream_id` stamped with `timestamp`, flow-control fields zero.
    pub fn at(stream_id: u64, timestamp: u64) -> Header {
        Header {
            stream_id,
            timestamp,
            ..Header::default()
        }
    }

    #[inline]
    fn write(&self, out: &mut [u8], word: u32) {
        // One length check for the whole header; the fixed offsets into the array need none.
        let out: &mut [u8; HEADER_LENGTH] = (&mut out[..HEADER_LENGTH])
            .try_into()
            .expect("a claimed frame holds its header");
        out[STREAM_ID_OFFSET..STREAM_ID_OFFSET + 8].copy_from_slice(&self.stream_id.to_le_bytes());
        out[TRACE_ID_OFFSET..TRACE_ID_OFFSET + 8].copy_from_slice(&self.trace_id.to_le_bytes());
        out[TIMESTAMP_OFFSET..TIMESTAMP_OFFSET + 8].copy_from_slice(&self.timestamp.to_le_bytes());
        out[SEQUENCE_OFFSET..SEQUENCE_OFFSET + 8].copy_from_slice(&self.sequence.to_le_bytes());
        out[ACKNOWLEDGE_OFFSET..ACKNOWLEDGE_OFFSET + 8]
            .copy_from_slice(&self.acknowledge.to_le_bytes());
        out[MAXIMUM_OFFSET..MAXIMUM_OFFSET + 4].copy_from_slice(&self.maximum.to_le_bytes());
        out[WORD_OFFSET..WORD_OFFSET + 4].copy_from_slice(&word.to_le_bytes());
    }
}

#[inline]
fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(bytes[offset..offset + 8].try_into().expect("8 bytes"))
}

#[inline]
fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes"))
}

/// A flyweight over one frame's bytes. Accessors for a body field of another frame type
/// return meaningless values but never panic: lengths are validated in [`Frame::new`].
#[derive(Clone, Copy)]
pub struct Frame<'a> {
    type_id: u32,
    bytes: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Wraps `bytes` (a record payload) as a frame of `type_id`, checking its length.
    #[inline]
    pub fn new(type_id: u32, bytes: &'a [u8]) -> Result<Frame<'a>, FrameError> {
        // The common frames checked in one comparison each; anything else (and every
        // failure) is sorted out off the hot path.
        let whole = match type_id {
            DATA => {
                bytes.len() >= DATA_EXTENSION_OFFSET
                    && u32_at(bytes, DATA_EXTENSION_LENGTH_OFFSET) as usize
                        <= bytes.len() - DATA_EXTENSION_OFFSET
            }
            BEGIN => bytes.len() >= BEGIN_EXTENSION_OFFSET,
            WINDOW => bytes.len() >= HEADER_LENGTH,
            _ => false,
        };
        if whole {
            return Ok(Frame { type_id, bytes });
        }
        Frame::checked(type_id, bytes)
    }

    #[cold]
    fn checked(type_id: u32, bytes: &'a [u8]) -> Result<Frame<'a>, FrameError> {
        let minimum = match type_id {
            BEGIN | SIGNAL | DATA => 56,
            END | ABORT | RESET | FLUSH | WINDOW => HEADER_LENGTH,
            other => return Err(FrameError::UnknownType(other)),
        };
        if bytes.len() < minimum {
            return Err(FrameError::TooShort {
                type_id,
                length: bytes.len(),
                minimum,
            });
        }
        if type_id == DATA {
            let extension = u32_at(bytes, DATA_EXTENSION_LENGTH_OFFSET) as usize;
            let available = bytes.len() - DATA_EXTENSION_OFFSET;
            if extension > available {
                return Err(FrameError::BadExtension {
                    extension,
                    available,
                });
            }
        }
        Ok(Frame { type_id, bytes })
    }

    pub fn type_id(&self) -> u32 {
        self.type_id
    }

    pub fn stream_id(&self) -> u64 {
        u64_at(self.bytes, STREAM_ID_OFFSET)
    }

    pub fn trace_id(&self) -> u64 {
        u64_at(self.bytes, TRACE_ID_OFFSET)
    }

    pub fn timestamp(&self) -> u64 {
        u64_at(self.bytes, TIMESTAMP_OFFSET)
    }

    pub fn sequence(&self) -> u64 {
        u64_at(self.bytes, SEQUENCE_OFFSET)
    }

    pub fn acknowledge(&self) -> u64 {
        u64_at(self.bytes, ACKNOWLEDGE_OFFSET)
    }

    pub fn maximum(&self) -> u32 {
        u32_at(self.bytes, MAXIMUM_OFFSET)
    }

    pub fn header(&self) -> Header {
        Header {
            stream_id: self.stream_id(),
            trace_id: self.trace_id(),
            timestamp: self.timestamp(),
            sequence: self.sequence(),
            acknowledge: self.acknowledge(),
            maximum: self.maximum(),
        }
    }

    /// DATA and BEGIN flags ([`FLAG_INIT`], [`FLAG_FIN`]).
    pub fn flags(&self) -> u32 {
        u32_at(self.bytes, WORD_OFFSET)
    }

    /// WINDOW padding: bytes the sender must reserve per DATA frame on top of its length.
    pub fn padding(&self) -> u32 {
        u32_at(self.bytes, WORD_OFFSET)
    }

    /// BEGIN affinity (e.g. the connection key used to pick a split instance).
    pub fn affinity(&self) -> u64 {
        u64_at(self.bytes, BEGIN_AFFINITY_OFFSET)
    }

    /// DATA reserved: the flow-control bytes this frame consumed (length + padding).
    pub fn reserved(&self) -> u32 {
        u32_at(self.bytes, DATA_RESERVED_OFFSET)
    }

    pub fn signal_id(&self) -> u64 {
        u64_at(self.bytes, SIGNAL_ID_OFFSET)
    }

    /// Protocol metadata: BEGIN, DATA, END, ABORT, RESET and FLUSH carry one.
    #[inline(always)]
    pub fn extension(&self) -> &'a [u8] {
        match self.type_id {
            BEGIN => &self.bytes[BEGIN_EXTENSION_OFFSET..],
            DATA => {
                let length = u32_at(self.bytes, DATA_EXTENSION_LENGTH_OFFSET) as usize;
                &self.bytes[DATA_EXTENSION_OFFSET..DATA_EXTENSION_OFFSET + length]
            }
            END | ABORT | RESET | FLUSH => &self.bytes[TAIL_EXTENSION_OFFSET..],
            _ => &[],
        }
    }

    /// DATA and SIGNAL payload.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        match self.type_id {
            DATA => {
                let length = u32_at(self.bytes, DATA_EXTENSION_LENGTH_OFFSET) as usize;
                &self.bytes[DATA_EXTENSION_OFFSET + length..]
            }
            SIGNAL => &self.bytes[SIGNAL_PAYLOAD_OFFSET..],
            _ => &[],
        }
    }
}

impl std::fmt::Debug for Frame<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(type_name(self.type_id))
            .field("stream_id", &self.stream_id())
            .field("sequence", &self.sequence())
            .field("acknowledge", &self.acknowledge())
            .field("maximum", &self.maximum())
            .field("extension_len", &self.extension().len())
            .field("payload_len", &self.payload().len())
            .finish()
    }
}

/// Frame writers: each claims one record of the exact size and fills it in place.
/// A frame copied out of a ring with the fields tests look at (flags and reserved are 0 where
/// the frame type has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedFrame {
    pub type_id: u32,
    pub stream_id: u64,
    pub flags: u32,
    pub reserved: u32,
    pub acknowledge: u64,
    pub maximum: u32,
    pub extension: Vec<u8>,
    pub payload: Vec<u8>,
}

impl From<&Frame<'_>> for OwnedFrame {
    fn from(f: &Frame<'_>) -> OwnedFrame {
        let data = f.type_id() == DATA;
        let flagged = data || f.type_id() == BEGIN;
        OwnedFrame {
            type_id: f.type_id(),
            stream_id: f.stream_id(),
            flags: if flagged { f.flags() } else { 0 },
            reserved: if data { f.reserved() } else { 0 },
            acknowledge: f.acknowledge(),
            maximum: f.maximum(),
            extension: f.extension().to_vec(),
            payload: f.payload().to_vec(),
        }
    }
}

/// The fixed fields of a DATA record (its header, `reserved` and the extension's length) at
/// the start of a claimed record's payload area `out`; the extension and payload follow.
#[inline]
fn write_data_header(
    out: &mut [u8],
    header: &Header,
    flags: u32,
    reserved: u32,
    extension_len: usize,
) {
    header.write(out, flags);
    out[DATA_RESERVED_OFFSET..][..4].copy_from_slice(&reserved.to_le_bytes());
    out[DATA_EXTENSION_LENGTH_OFFSET..][..4].copy_from_slice(&(extension_len as u32).to_le_bytes());
}

impl RingWriter {
    pub fn begin(
        &mut self,
        header: &Header,
        affinity: u64,
        extension: &[u8],
    ) -> Result<(), ClaimError> {
        self.begin_flags(header, 0, affinity, extension)
    }

    /// BEGIN with flags in the header word: [`FLAG_FIN`] says the stream ends with this frame
    /// (no DATA, no END follow), sparing a frame for exchanges without a body.
    #[inline]
    pub fn begin_flags(
        &mut self,
        header: &Header,
        flags: u32,
        affinity: u64,
        extension: &[u8],
    ) -> Result<(), ClaimError> {
        let out = self.claim_for(
            header.stream_id,
            BEGIN,
            BEGIN_EXTENSION_OFFSET + extension.len(),
        )?;
        header.write(out, flags);
        out[BEGIN_AFFINITY_OFFSET..][..8].copy_from_slice(&affinity.to_le_bytes());
        out[BEGIN_EXTENSION_OFFSET..].copy_from_slice(extension);
        Ok(())
    }

    /// A DATA frame. Refused (the ring is full): the stream is remembered for a reset (see
    /// [`RingWriter::take_refused`]).
    #[inline]
    pub fn data(
        &mut self,
        header: &Header,
        flags: u32,
        reserved: u32,
        extension: &[u8],
        payload: &[u8],
    ) -> Result<(), ClaimError> {
        match self.claim_data(header, flags, reserved, extension, payload.len()) {
            Ok(out) => {
                crate::copy::copy(out, payload);
                Ok(())
            }
            Err(e) => {
                self.refuse(header.stream_id);
                Err(e)
            }
        }
    }

    /// A stream's BEGIN and first DATA in one record: a DATA frame flagged [`FLAG_OPEN`]
    /// (added to `flags`) whose extension is the BEGIN's `extension` and whose payload is the
    /// first data; `header.sequence` and `reserved` are the data's flow control. With
    /// [`FLAG_FIN`] in `flags` it is the whole stream. Refused (the ring is full): the stream
    /// is remembered for a reset, as for [`RingWriter::data`].
    #[inline]
    pub fn begin_data(
        &mut self,
        header: &Header,
        flags: u32,
        reserved: u32,
        extension: &[u8],
        payload: &[u8],
    ) -> Result<(), ClaimError> {
        self.data(header, flags | FLAG_OPEN, reserved, extension, payload)
    }

    /// [`RingWriter::begin_data`] with the extension and the payload given as one slice,
    /// `joined`: its first `extension_len` bytes are the extension, the rest the payload (the
    /// record's own layout, so they are copied in one piece): for an application that keeps
    /// whole answers encoded once (a fixed response's head and body).
    ///
    /// # Panics
    /// If `extension_len` exceeds `joined`'s length.
    #[inline]
    pub fn begin_data_joined(
        &mut self,
        header: &Header,
        flags: u32,
        reserved: u32,
        joined: &[u8],
        extension_len: usize,
    ) -> Result<(), ClaimError> {
        assert!(
            extension_len <= joined.len(),
            "the extension lies within the joined bytes"
        );
        let out = match self.claim(DATA, DATA_EXTENSION_OFFSET + joined.len()) {
            Ok(out) => out,
            Err(e) => {
                self.refuse(header.stream_id);
                return Err(e);
            }
        };
        write_data_header(out, header, flags | FLAG_OPEN, reserved, extension_len);
        crate::copy::copy(&mut out[DATA_EXTENSION_OFFSET..], joined);
        Ok(())
    }

    /// Claims a DATA frame and returns its payload area, for producers that write the payload
    /// in place (a socket read, an encoder). Use [`RingWriter::trim_last`] via
    /// [`RingWriter::trim_data`] if fewer bytes were produced. A refusal loses nothing (no
    /// payload was produced yet), so it is not remembered: the producer waits for room.
    #[inline]
    pub fn claim_data(
        &mut self,
        header: &Header,
        flags: u32,
        reserved: u32,
        extension: &[u8],
        payload_length: usize,
    ) -> Result<&mut [u8], ClaimError> {
        let out = self.claim(
            DATA,
            DATA_EXTENSION_OFFSET + extension.len() + payload_length,
        )?;
        write_data_header(out, header, flags, reserved, extension.len());
        out[DATA_EXTENSION_OFFSET..][..extension.len()].copy_from_slice(extension);
        Ok(&mut out[DATA_EXTENSION_OFFSET + extension.len()..])
    }

    /// Lends a DATA frame on `header`'s stream (no flags, no extension) with the largest
    /// payload that fits now, between `min_payload` and `max_payload` bytes: its header is
    /// written, its payload lent to fill ([`RingWriter::lend`]); [`RingWriter::give_back`]
    /// trims it to the bytes used, or drops it if none was.
    pub fn lend_data(
        &mut self,
        header: &Header,
        min_payload: usize,
        max_payload: usize,
    ) -> Result<crate::ring::LentFrame, ClaimError> {
        let mut frame = self.lend(
            DATA,
            DATA_EXTENSION_OFFSET + min_payload,
            DATA_EXTENSION_OFFSET.saturating_add(max_payload),
        )?;
        let out = frame.payload();
        write_data_header(out, header, 0, 0, 0);
        frame.skip(DATA_EXTENSION_OFFSET);
        Ok(frame)
    }

    /// Sends as much of `bytes` as `window` allows as plain DATA frames (no flags, no
    /// extension) on `stream_id`, each no larger than a record holds, updating `window`.
    /// Returns how many bytes were sent; the caller drops them from its buffer (once, not per
    /// frame). Stops early, without losing credit, if the ring is full.
    pub fn data_within(
        &mut self,
        window: &mut SendWindow,
        stream_id: u64,
        timestamp: u64,
        bytes: &[u8],
    ) -> usize {
        let room = self.max_payload() - DATA_EXTENSION_OFFSET;
        let mut sent = 0;
        while sent < bytes.len() {
            let n = window.writable((bytes.len() - sent).min(room));
            if n == 0 {
                break;
            }
            let header = Header {
                stream_id,
                timestamp,
                sequence: window.sequence,
                ..Header::default()
            };
            let reserved = window.consume(n);
            // Not `data`: a refusal here loses nothing (the bytes stay with the caller).
            match self.claim_data(&header, 0, reserved, &[], n) {
                Ok(out) => crate::copy::copy(out, &bytes[sent..sent + n]),
                Err(_) => {
                    window.sequence -= reserved as u64;
                    break;
                }
            }
            sent += n;
        }
        sent
    }

    /// Shrinks the last claimed DATA frame (without extension) to `payload_length` bytes and
    /// rewrites its `reserved` field.
    pub fn trim_data(&mut self, payload_length: usize, reserved: u32) {
        self.trim_last(DATA_EXTENSION_OFFSET + payload_length);
        let out = self.last_claimed_payload();
        out[DATA_RESERVED_OFFSET..][..4].copy_from_slice(&reserved.to_le_bytes());
    }

    /// END of a stream. On a full ring it is deferred, not lost: it goes out before anything
    /// else once there is room, so the peer always learns that the stream ended.
    pub fn end(&mut self, header: &Header, extension: &[u8]) -> Result<(), ClaimError> {
        self.final_frame(END, header, extension)
    }

    /// ABORT of a stream we send; deferred like [`RingWriter::end`] on a full ring.
    pub fn abort(&mut self, header: &Header, extension: &[u8]) -> Result<(), ClaimError> {
        self.final_frame(ABORT, header, extension)
    }

    /// RESET of a stream we receive; deferred like [`RingWriter::end`] on a full ring.
    pub fn reset(&mut self, header: &Header, extension: &[u8]) -> Result<(), ClaimError> {
        self.final_frame(RESET, header, extension)
    }

    pub fn flush(&mut self, header: &Header, extension: &[u8]) -> Result<(), ClaimError> {
        self.tail_frame(FLUSH, header, extension)
    }

    /// WINDOW; refused on a full ring, the stream is remembered for a reset (its sender would
    /// wait for credit forever).
    pub fn window(&mut self, header: &Header, padding: u32) -> Result<(), ClaimError> {
        let out = self.claim_for(header.stream_id, WINDOW, HEADER_LENGTH)?;
        header.write(out, padding);
        Ok(())
    }

    /// END, ABORT or RESET: written now, or deferred until there is room (never lost).
    fn final_frame(
        &mut self,
        type_id: u32,
        header: &Header,
        extension: &[u8],
    ) -> Result<(), ClaimError> {
        let length = TAIL_EXTENSION_OFFSET + extension.len();
        match self.claim(type_id, length) {
            Ok(out) => {
                header.write(out, 0);
                out[TAIL_EXTENSION_OFFSET..].copy_from_slice(extension);
                Ok(())
            }
            Err(ClaimError::Full) => {
                let mut record = vec![0u8; length];
                header.write(&mut record, 0);
                record[TAIL_EXTENSION_OFFSET..].copy_from_slice(extension);
                self.write_or_defer(type_id, &record);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    pub fn signal(
        &mut self,
        header: &Header,
        signal_id: u64,
        payload: &[u8],
    ) -> Result<(), ClaimError> {
        let out = self.claim(SIGNAL, SIGNAL_PAYLOAD_OFFSET + payload.len())?;
        header.write(out, 0);
        out[SIGNAL_ID_OFFSET..][..8].copy_from_slice(&signal_id.to_le_bytes());
        out[SIGNAL_PAYLOAD_OFFSET..].copy_from_slice(payload);
        Ok(())
    }

    fn tail_frame(
        &mut self,
        type_id: u32,
        header: &Header,
        extension: &[u8],
    ) -> Result<(), ClaimError> {
        let out = self.claim_for(
            header.stream_id,
            type_id,
            TAIL_EXTENSION_OFFSET + extension.len(),
        )?;
        header.write(out, 0);
        out[TAIL_EXTENSION_OFFSET..].copy_from_slice(extension);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast path of `Frame::new` accepts and refuses exactly what the full check does.
    #[test]
    fn the_fast_check_agrees_with_the_full_one() {
        let types = [
            BEGIN,
            DATA,
            END,
            ABORT,
            FLUSH,
            RESET,
            WINDOW,
            SIGNAL,
            0,
            6,
            0x4000_0004,
        ];
        let mut bytes = [0u8; 96];
        for type_id in types {
            for extension in [0u32, 1, 8, 39, 40, 41, u32::MAX] {
                bytes[DATA_EXTENSION_LENGTH_OFFSET..][..4]
                    .copy_from_slice(&extension.to_le_bytes());
                for length in 0..=96 {
                    let fast = Frame::new(type_id, &bytes[..length]).map(|f| f.bytes.len());
                    let full = Frame::checked(type_id, &bytes[..length]).map(|f| f.bytes.len());
                    assert_eq!(
                        fast, full,
                        "type {type_id:#x}, {length} bytes, extension {extension}"
                    );
                }
            }
        }
    }
}
