//! Byte layout of a stream file, in one place so writers, readers and spies in other
//! processes agree on it.
//!
//! ```text
//! 0                HEADER_LENGTH             HEADER_LENGTH + capacity        + TRAILER_LENGTH
//! | file header    | records ...              | trailer (tail | head | stats) |
//! ```
//!
//! Records are 8-byte aligned: `length: u32` (header + payload, unaligned), `type: u32`,
//! then the payload. A record of type [`PADDING_TYPE`] fills the end of the buffer when the
//! next record does not fit before the wrap. Positions (`tail`, `head`) are absolute byte
//! counts that never wrap; the index in the buffer is `position & (capacity - 1)`.
//!
//! Trailer fields sit 128 bytes apart (two cache lines, against adjacent-line prefetch), as in
//! Agrona's `RingBufferDescriptor`.

/// `RKSTREAM` in ASCII, little-endian.
pub const MAGIC: u64 = u64::from_le_bytes(*b"RKSTREAM");
/// Bumped on any incompatible change of this layout.
pub const LAYOUT_VERSION: u32 = 1;

pub const HEADER_LENGTH: usize = 256;
pub const HEADER_MAGIC_OFFSET: usize = 0;
pub const HEADER_VERSION_OFFSET: usize = 8;
pub const HEADER_CAPACITY_OFFSET: usize = 12;
pub const HEADER_WRITER_PID_OFFSET: usize = 16;
pub const HEADER_LABEL_LENGTH_OFFSET: usize = 20;
pub const HEADER_LABEL_OFFSET: usize = 24;
/// Maximum bytes of the human-readable label ("core0 tcp -> http").
pub const HEADER_LABEL_MAX: usize = HEADER_LENGTH - HEADER_LABEL_OFFSET;

pub const CACHE_LINE_PAIR: usize = 128;
/// Writer-owned: position after the last published record.
pub const TRAILER_TAIL_OFFSET: usize = 0;
/// Reader-owned: position after the last consumed record.
pub const TRAILER_HEAD_OFFSET: usize = CACHE_LINE_PAIR;
/// Writer-owned statistics, updated on publish (relaxed): records and bytes written.
pub const TRAILER_RECORDS_WRITTEN_OFFSET: usize = 2 * CACHE_LINE_PAIR;
pub const TRAILER_BYTES_WRITTEN_OFFSET: usize = 2 * CACHE_LINE_PAIR + 8;
/// Writer-owned: records refused because the buffer was full (a sizing bug, see DESIGN §3).
pub const TRAILER_FULL_COUNT_OFFSET: usize = 2 * CACHE_LINE_PAIR + 16;
pub const TRAILER_LENGTH: usize = 3 * CACHE_LINE_PAIR;

pub const RECORD_HEADER_LENGTH: usize = 8;
pub const RECORD_LENGTH_OFFSET: usize = 0;
pub const RECORD_TYPE_OFFSET: usize = 4;
pub const RECORD_ALIGNMENT: usize = 8;
/// Record type that fills the tail of the buffer at wrap-around; never delivered.
pub const PADDING_TYPE: u32 = 0;

pub const MIN_CAPACITY: usize = 1024;
pub const MAX_CAPACITY: usize = 1 << 30;

/// Total file length for a buffer of `capacity` bytes.
pub const fn file_length(capacity: usize) -> usize {
    HEADER_LENGTH + capacity + TRAILER_LENGTH
}

/// The largest record (header included) a buffer of `capacity` accepts: an eighth of it,
/// as in Agrona, so that a full-size record never waits for more than a small part of the ring.
pub const fn max_record_length(capacity: usize) -> usize {
    capacity / 8
}

pub const fn align_record(length: usize) -> usize {
    (length + RECORD_ALIGNMENT - 1) & !(RECORD_ALIGNMENT - 1)
}
