//! A single-writer, single-reader ring buffer of variable-length records over a shared
//! mapping, after Agrona's `OneToOneRingBuffer`, with two differences:
//!
//! - the writer publishes with one `Release` store of `tail` after any number of records
//!   (a nukleus publishes once per poll), and the reader learns what is readable from one
//!   `Acquire` load of `tail`: no per-record commit flag, no CAS;
//! - the reader never zeroes consumed records, so a spy in another process can read frames
//!   behind the consumer and detect being lapped by re-checking `tail` (see [`RingSpy`]).
//!
//! Both sides are wait-free: every operation finishes in a bounded number of steps whatever
//! the other side does.

use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::layout::*;
use crate::mapping::{SharedMapping, SpyMapping};

/// Why a record could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// The reader has not consumed enough yet. With correct sizing (see DESIGN §3) this
    /// cannot happen; the caller resets the one stream concerned and counts it.
    #[error("stream buffer full")]
    Full,
    #[error("record of {length} bytes exceeds the maximum of {max} bytes for this stream buffer")]
    TooLarge { length: usize, max: usize },
}

/// Pointers into a mapping shared by one writer and one reader.
struct RingMemory {
    _mapping: Arc<SharedMapping>,
    data: *mut u8,
    capacity: usize,
    trailer: *mut u8,
}

impl RingMemory {
    fn new(mapping: Arc<SharedMapping>) -> RingMemory {
        let capacity = mapping.capacity();
        let base = mapping.base();
        // SAFETY: the mapping is `file_length(capacity)` bytes long, so both offsets are in
        // bounds; the mapping lives as long as this struct through the Arc.
        let (data, trailer) =
            unsafe { (base.add(HEADER_LENGTH), base.add(HEADER_LENGTH + capacity)) };
        RingMemory {
            _mapping: mapping,
            data,
            capacity,
            trailer,
        }
    }

    fn counter(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: trailer offsets are multiples of 8 inside the trailer and the mapping is
        // page-aligned, so the pointer is aligned and valid for the mapping's lifetime; the
        // location is only ever accessed atomically.
        unsafe { &*(self.trailer.add(offset) as *const AtomicU64) }
    }
}

/// Creates the writer and reader ends of a ring over `mapping`.
pub fn ring(mapping: SharedMapping) -> (RingWriter, RingReader) {
    let mapping = Arc::new(mapping);
    let writer_memory = RingMemory::new(mapping.clone());
    let reader_memory = RingMemory::new(mapping);
    let tail = writer_memory
        .counter(TRAILER_TAIL_OFFSET)
        .load(Ordering::Acquire);
    let head = reader_memory
        .counter(TRAILER_HEAD_OFFSET)
        .load(Ordering::Acquire);
    let capacity = writer_memory.capacity;
    (
        RingWriter {
            memory: writer_memory,
            mask: capacity - 1,
            max_record: max_record_length(capacity),
            tail,
            published_tail: tail,
            head_cache: head,
            last_record: None,
            records_pending: 0,
            refused: Vec::new(),
            deferred: std::collections::VecDeque::new(),
            lent: None,
        },
        RingReader {
            memory: reader_memory,
            mask: capacity - 1,
            head,
        },
    )
}

/// The single writer of a ring. Not `Clone`, not `Sync`: there is exactly one.
pub struct RingWriter {
    memory: RingMemory,
    mask: usize,
    max_record: usize,
    /// Position after the last claimed record (published or not).
    tail: u64,
    published_tail: u64,
    /// Last known reader position; refreshed only when space looks short.
    head_cache: u64,
    /// Position of the last claimed, unpublished record, so it can be trimmed.
    last_record: Option<u64>,
    records_pending: u64,
    /// Streams a frame of which was refused (the ring was full), for the writing nukleus to
    /// reset (see [`RingWriter::take_refused`]).
    refused: Vec<u64>,
    /// Records refused as full that must still reach the reader (a stream's END, ABORT or
    /// RESET: the peer must learn that it ended), written before anything else once there is
    /// room.
    deferred: std::collections::VecDeque<(u32, Vec<u8>)>,
    /// Position of the record lent out as a [`LentFrame`], if one is: nothing at or after it
    /// is published until it is given back.
    lent: Option<u64>,
}

/// The payload of a record claimed by [`RingWriter::lend`], held apart from the writer so
/// that code which does not hold the writer can fill it across several calls (the switch's
/// mesh records, written where the ring's DATA frame is). The record stays unpublished,
/// so the reader does not see it, until [`RingWriter::give_back`] trims it to what was
/// written: the writer publishes nothing at or after a lent record. A frame dropped without
/// being given back keeps its space, and everything the writer claims after it,
/// unpublished for good: give every lent frame back.
pub struct LentFrame {
    /// The lent bytes in the mapping: the record's payload after `skip` bytes.
    bytes: std::ptr::NonNull<u8>,
    /// How many bytes are lent.
    len: usize,
    /// Bytes at the payload's start that the lender wrote (a frame header), not lent.
    skip: usize,
    /// The record's position in the ring, and the ring's data area: whose record it is.
    position: u64,
    ring: *const u8,
    _mapping: Arc<SharedMapping>,
}

// SAFETY: a lent frame is the only handle to its bytes (the writer neither writes nor
// publishes them while it is out), so moving it to another thread moves that access with it;
// it is not `Sync` (its bytes are only reached through `&mut self`).
unsafe impl Send for LentFrame {}

impl std::fmt::Debug for LentFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LentFrame")
            .field("len", &self.len)
            .field("position", &self.position)
            .finish()
    }
}

impl LentFrame {
    /// Bytes lent.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no byte is lent.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The lent bytes, to fill from their start (their content is whatever the ring held).
    #[inline]
    pub fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `lend` reserved a payload of `skip + len` bytes inside the mapping, which
        // the Arc keeps mapped, and `bytes` points `skip` bytes into it; the writer does not
        // write or publish that record while it is lent (so the reader does not read it), and
        // the slice borrows `self` mutably, so it is the only reference to those bytes.
        unsafe { std::slice::from_raw_parts_mut(self.bytes.as_ptr(), self.len) }
    }

    /// The whole payload, the lender's prefix included.
    pub(crate) fn payload(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`; the payload starts `skip` bytes before the lent bytes.
        unsafe {
            std::slice::from_raw_parts_mut(self.bytes.as_ptr().sub(self.skip), self.skip + self.len)
        }
    }

    /// Keeps the first `skip` bytes of the lent bytes (written by the lender) out of them.
    pub(crate) fn skip(&mut self, skip: usize) {
        assert!(skip <= self.len, "a lent frame skips within its payload");
        // SAFETY: `skip <= len`: the pointer stays within (or one past) the payload.
        self.bytes = unsafe { self.bytes.add(skip) };
        self.len -= skip;
        self.skip += skip;
    }
}

/// How many refused streams a writer remembers between two `take_refused` calls.
const MAX_REFUSED: usize = 4096;

// SAFETY: the writer is the only party that writes records and `tail`; moving it to another
// thread moves that role with it. It is deliberately not `Sync`.
unsafe impl Send for RingWriter {}

impl RingWriter {
    pub fn capacity(&self) -> usize {
        self.memory.capacity
    }

    /// Largest payload a single record can carry.
    pub fn max_payload(&self) -> usize {
        self.max_record - RECORD_HEADER_LENGTH
    }

    /// Bytes the writer could claim right now without refreshing its view of the reader.
    pub fn free_bytes(&mut self) -> usize {
        self.head_cache = self
            .memory
            .counter(TRAILER_HEAD_OFFSET)
            .load(Ordering::Acquire);
        self.memory.capacity - (self.tail - self.head_cache) as usize
    }

    /// Reserves a record of `payload_length` bytes of type `type_id` and returns its payload
    /// area to fill. The record becomes visible to the reader at the next [`publish`].
    ///
    /// [`publish`]: RingWriter::publish
    // Always inlined: as a call (thin LTO left it one in echo's answer) its prologue,
    // epilogue and the re-derived payload slice cost as much as the reservation itself.
    #[inline(always)]
    pub fn claim(&mut self, type_id: u32, payload_length: usize) -> Result<&mut [u8], ClaimError> {
        let index = self.reserve_after_deferred(type_id, payload_length)?;
        Ok(self.payload_at(index, payload_length))
    }

    /// Like [`RingWriter::claim`], for a frame of `stream_id`: a refusal is remembered, so the
    /// nukleus resets that stream (its frame is lost) instead of carrying on as if it went out.
    #[inline]
    pub fn claim_for(
        &mut self,
        stream_id: u64,
        type_id: u32,
        payload_length: usize,
    ) -> Result<&mut [u8], ClaimError> {
        match self.reserve_after_deferred(type_id, payload_length) {
            Ok(index) => Ok(self.payload_at(index, payload_length)),
            Err(e) => {
                self.refuse(stream_id);
                Err(e)
            }
        }
    }

    /// Writes the deferred records first (a new record never overtakes them), then reserves.
    #[inline]
    fn reserve_after_deferred(
        &mut self,
        type_id: u32,
        payload_length: usize,
    ) -> Result<usize, ClaimError> {
        if !self.deferred.is_empty() && !self.write_deferred() {
            return Err(self.count_full());
        }
        self.reserve(type_id, payload_length)
    }

    /// Counts a refusal for a full ring (the trailer's `full` counter).
    #[cold]
    fn count_full(&self) -> ClaimError {
        let full = self.memory.counter(TRAILER_FULL_COUNT_OFFSET);
        full.store(full.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        ClaimError::Full
    }

    /// Remembers that a frame of `stream_id` was refused.
    pub fn refuse(&mut self, stream_id: u64) {
        if self.refused.last() != Some(&stream_id) && self.refused.len() < MAX_REFUSED {
            self.refused.push(stream_id);
        }
    }

    /// The streams whose frames were refused since the last call (each once, in order).
    pub fn take_refused(&mut self) -> Vec<u64> {
        let mut refused = std::mem::take(&mut self.refused);
        let mut seen = std::collections::HashSet::new();
        refused.retain(|id| seen.insert(*id));
        refused
    }

    /// Whether frames were refused since the last [`RingWriter::take_refused`].
    pub fn has_refused(&self) -> bool {
        !self.refused.is_empty()
    }

    /// Writes `bytes` as a record of `type_id` now, or as soon as there is room (before any
    /// other record): for frames the reader must see even when the ring is full right now.
    pub fn write_or_defer(&mut self, type_id: u32, bytes: &[u8]) {
        match self.claim(type_id, bytes.len()) {
            Ok(out) => out.copy_from_slice(bytes),
            Err(ClaimError::Full) => self.deferred.push_back((type_id, bytes.to_vec())),
            // Larger than any record: nothing can carry it; the reader never learns.
            Err(ClaimError::TooLarge { .. }) => {}
        }
    }

    /// Records waiting for room (see [`RingWriter::write_or_defer`]).
    pub fn deferred(&self) -> usize {
        self.deferred.len()
    }

    /// Writes the deferred records that fit, in order; true if none is left.
    #[cold]
    fn write_deferred(&mut self) -> bool {
        while let Some((type_id, bytes)) = self.deferred.pop_front() {
            match self.reserve(type_id, bytes.len()) {
                Ok(index) => self.payload_at(index, bytes.len()).copy_from_slice(&bytes),
                Err(_) => {
                    self.deferred.push_front((type_id, bytes));
                    return false;
                }
            }
        }
        true
    }

    /// Reserves a record and writes its header; returns the index of its payload.
    #[inline]
    fn reserve(&mut self, type_id: u32, payload_length: usize) -> Result<usize, ClaimError> {
        debug_assert_ne!(type_id, PADDING_TYPE, "type 0 is reserved for padding");
        let length = RECORD_HEADER_LENGTH + payload_length;
        if length > self.max_record {
            return Err(ClaimError::TooLarge {
                length,
                max: self.max_record,
            });
        }
        let aligned = align_record(length);
        let capacity = self.memory.capacity;
        let index = (self.tail as usize) & self.mask;
        let to_end = capacity - index;
        let required = if aligned > to_end {
            to_end + aligned
        } else {
            aligned
        };
        if (self.tail - self.head_cache) as usize + required > capacity && !self.room_for(required)
        {
            return Err(self.count_full());
        }
        let mut index = index;
        if aligned > to_end {
            // SAFETY: `index + 8 <= capacity` because records are 8-aligned; the region from
            // `index` to the end is free (checked above) and only this writer writes it.
            unsafe { self.write_record_header(index, to_end as u32, PADDING_TYPE) };
            self.tail += to_end as u64;
            index = 0;
        }
        // SAFETY: `index + aligned <= capacity` (it either fit before the end or starts at 0
        // and `aligned <= max_record < capacity`), the space is free as checked above, and the
        // reader does not read past the published tail, so nobody else accesses these bytes.
        unsafe { self.write_record_header(index, length as u32, type_id) };
        self.last_record = Some(self.tail);
        self.tail += aligned as u64;
        self.records_pending += 1;
        Ok(index + RECORD_HEADER_LENGTH)
    }

    /// Whether `required` more bytes fit once the reader's position is read again (the
    /// cached one said no).
    #[cold]
    fn room_for(&mut self, required: usize) -> bool {
        self.head_cache = self
            .memory
            .counter(TRAILER_HEAD_OFFSET)
            .load(Ordering::Acquire);
        (self.tail - self.head_cache) as usize + required <= self.memory.capacity
    }

    /// The payload area of the record just reserved at `index` by [`RingWriter::reserve`].
    fn payload_at(&mut self, index: usize, payload_length: usize) -> &mut [u8] {
        // SAFETY: `reserve` returned `index` for a record of `payload_length` bytes that it
        // reserved within the mapping (checked free, not yet published, so the reader does not
        // touch it); the slice borrows `self` mutably, so no second claim can alias it.
        unsafe { std::slice::from_raw_parts_mut(self.memory.data.add(index), payload_length) }
    }

    /// Shrinks the payload of the last claimed (unpublished) record, e.g. after a socket read
    /// into a claimed area returned fewer bytes than claimed.
    pub fn trim_last(&mut self, payload_length: usize) {
        let position = self
            .last_record
            .expect("trim_last without an unpublished claim");
        let index = (position as usize) & self.mask;
        let old_aligned = (self.tail - position) as usize;
        let length = RECORD_HEADER_LENGTH + payload_length;
        let aligned = align_record(length);
        assert!(aligned <= old_aligned, "trim_last can only shrink a record");
        // SAFETY: the record at `index` was claimed by this writer and is not yet published.
        unsafe {
            ptr::write(
                self.memory.data.add(index + RECORD_LENGTH_OFFSET) as *mut u32,
                (length as u32).to_le(),
            )
        };
        self.tail = position + aligned as u64;
    }

    /// The payload area of the last claimed, unpublished record.
    pub fn last_claimed_payload(&mut self) -> &mut [u8] {
        let position = self.last_record.expect("no unpublished claim");
        let index = (position as usize) & self.mask;
        // SAFETY: the record at `index` was claimed by this writer, is unpublished, and its
        // length field was written by `claim`/`trim_last`; `&mut self` prevents aliasing.
        unsafe {
            let record = self.memory.data.add(index);
            let length =
                u32::from_le(ptr::read(record.add(RECORD_LENGTH_OFFSET) as *const u32)) as usize;
            std::slice::from_raw_parts_mut(
                record.add(RECORD_HEADER_LENGTH),
                length - RECORD_HEADER_LENGTH,
            )
        }
    }

    /// Drops the last claimed (unpublished) record entirely.
    pub fn abandon_last(&mut self) {
        if let Some(position) = self.last_record.take() {
            self.tail = position;
            self.records_pending -= 1;
        }
    }

    /// Makes every claimed record visible to the reader. Returns whether anything was published.
    pub fn publish(&mut self) -> bool {
        if !self.deferred.is_empty() {
            self.write_deferred();
        }
        if let Some(position) = self.lent {
            return self.publish_before_lent(position);
        }
        if self.tail == self.published_tail {
            return false;
        }
        let records = self.memory.counter(TRAILER_RECORDS_WRITTEN_OFFSET);
        records.store(
            records.load(Ordering::Relaxed) + self.records_pending,
            Ordering::Relaxed,
        );
        self.publish_to(self.tail);
        self.last_record = None;
        self.records_pending = 0;
        true
    }

    /// [`RingWriter::publish`] while a frame is lent: the records before it, not it nor
    /// anything after it (their count in the trailer waits for the publish after it is back).
    #[cold]
    fn publish_before_lent(&mut self, position: u64) -> bool {
        if position == self.published_tail {
            return false;
        }
        self.publish_to(position);
        true
    }

    /// Moves the published tail to `to`: the trailer's byte count, then the tail itself.
    #[inline]
    fn publish_to(&mut self, to: u64) {
        let written = self.memory.counter(TRAILER_BYTES_WRITTEN_OFFSET);
        written.store(
            written.load(Ordering::Relaxed) + (to - self.published_tail),
            Ordering::Relaxed,
        );
        // Release: the record bytes written before `to` happen-before the reader's Acquire of
        // tail; anything from `to` on stays unpublished.
        self.memory
            .counter(TRAILER_TAIL_OFFSET)
            .store(to, Ordering::Release);
        self.published_tail = to;
    }

    /// Claims a record of type `type_id` with the largest payload that fits now, at most
    /// `max_payload` bytes (and at most [`RingWriter::max_payload`]), and lends it out as a
    /// [`LentFrame`] to fill; refused (`Full`, not counted as a refusal) if fewer than
    /// `min_payload` bytes fit. Until it is given back ([`RingWriter::give_back`]) the writer
    /// publishes nothing at or after it, and [`RingWriter::trim_last`] does not see it. One
    /// frame at a time.
    ///
    /// # Panics
    /// If a frame of this writer is already lent.
    pub fn lend(
        &mut self,
        type_id: u32,
        min_payload: usize,
        max_payload: usize,
    ) -> Result<LentFrame, ClaimError> {
        assert!(self.lent.is_none(), "one frame lent at a time");
        if !self.deferred.is_empty() && !self.write_deferred() {
            return Err(ClaimError::Full);
        }
        let free = self.free_bytes();
        let to_end = self.memory.capacity - ((self.tail as usize) & self.mask);
        // Before the end of the data area, or after padding to it.
        let contiguous = if free <= to_end {
            free
        } else {
            to_end.max(free - to_end)
        };
        let fits = (contiguous & !(RECORD_ALIGNMENT - 1)).saturating_sub(RECORD_HEADER_LENGTH);
        let payload_length = max_payload.min(self.max_payload()).min(fits);
        if payload_length < min_payload {
            return Err(ClaimError::Full);
        }
        let index = self.reserve(type_id, payload_length)?;
        let position = self.last_record.take().expect("reserve claimed a record");
        self.lent = Some(position);
        Ok(LentFrame {
            // SAFETY: `reserve` returned the payload index of a record of `payload_length`
            // bytes within the data area, so the pointer is in the mapping (not null).
            bytes: unsafe { std::ptr::NonNull::new_unchecked(self.memory.data.add(index)) },
            len: payload_length,
            skip: 0,
            position,
            ring: self.memory.data,
            _mapping: self.memory._mapping.clone(),
        })
    }

    /// Takes back the frame [`RingWriter::lend`] lent, its first `used` lent bytes written:
    /// the record shrinks to them (the rest of its space becomes padding if records were
    /// claimed after it), or, if `used` is 0, is dropped (becomes padding). It is published
    /// with the next [`RingWriter::publish`]; if it is the last record claimed, it is the one
    /// [`RingWriter::trim_last`] trims.
    ///
    /// # Panics
    /// If `frame` was not lent by this writer, or `used` exceeds what it lent.
    pub fn give_back(&mut self, frame: LentFrame, used: usize) {
        assert!(
            std::ptr::eq(frame.ring, self.memory.data) && self.lent == Some(frame.position),
            "a lent frame goes back to the writer that lent it"
        );
        assert!(used <= frame.len(), "used more than was lent");
        self.lent = None;
        let position = frame.position;
        let index = (position as usize) & self.mask;
        // The lent record was reserved by this writer and is not published.
        let old_length = record_field(&self.memory, index, RECORD_LENGTH_OFFSET) as usize;
        let old_aligned = align_record(old_length);
        let last = self.tail == position + old_aligned as u64;
        let (length, type_id) = if used == 0 {
            self.records_pending -= 1;
            (old_aligned, PADDING_TYPE)
        } else {
            (
                RECORD_HEADER_LENGTH + frame.skip + used,
                record_field(&self.memory, index, RECORD_TYPE_OFFSET),
            )
        };
        let aligned = align_record(length);
        if used == 0 && last {
            self.tail = position;
            return;
        }
        // SAFETY: `index` is the 8-aligned start of the record this writer reserved, and
        // `index + old_aligned <= capacity`; nobody else accesses unpublished bytes.
        unsafe { self.write_record_header(index, length as u32, type_id) };
        if last {
            self.tail = position + aligned as u64;
            self.last_record = Some(position);
        } else if aligned < old_aligned {
            // SAFETY: `index + aligned` is 8-aligned and below `index + old_aligned`, inside
            // the same reserved record; padding covers the space given up.
            unsafe {
                self.write_record_header(
                    index + aligned,
                    (old_aligned - aligned) as u32,
                    PADDING_TYPE,
                )
            };
        }
    }

    pub fn has_unpublished(&self) -> bool {
        self.tail != self.published_tail
    }

    /// # Safety
    /// `index` must be 8-aligned with `index + 8 <= capacity`, inside space this writer owns.
    unsafe fn write_record_header(&mut self, index: usize, length: u32, type_id: u32) {
        let record = self.memory.data.add(index);
        ptr::write(record.add(RECORD_LENGTH_OFFSET) as *mut u32, length.to_le());
        ptr::write(record.add(RECORD_TYPE_OFFSET) as *mut u32, type_id.to_le());
    }
}

/// A header field (`RECORD_LENGTH_OFFSET`, `RECORD_TYPE_OFFSET`) of the record at `index`
/// (reserved by the writer, not published).
fn record_field(memory: &RingMemory, index: usize, offset: usize) -> u32 {
    // SAFETY: `index` is the 8-aligned start of a record within the data area whose header
    // the writer wrote, and `offset` names a 4-byte field of that header; only the writer
    // accesses it until it is published.
    unsafe { u32::from_le(ptr::read(memory.data.add(index + offset) as *const u32)) }
}

/// The single reader of a ring.
pub struct RingReader {
    memory: RingMemory,
    mask: usize,
    head: u64,
}

// SAFETY: the reader is the only party that advances `head`; moving it moves that role.
unsafe impl Send for RingReader {}

impl RingReader {
    pub fn capacity(&self) -> usize {
        self.memory.capacity
    }

    /// Bytes published but not yet consumed.
    pub fn pending_bytes(&self) -> usize {
        (self
            .memory
            .counter(TRAILER_TAIL_OFFSET)
            .load(Ordering::Acquire)
            - self.head) as usize
    }

    /// Hands up to `limit` records to `handler` as `(type, payload)`, then releases their
    /// space to the writer. Returns the number of records handled.
    pub fn read<F: FnMut(u32, &[u8])>(&mut self, limit: usize, mut handler: F) -> usize {
        // Acquire pairs with the writer's Release: records before `tail` are fully written.
        let tail = self
            .memory
            .counter(TRAILER_TAIL_OFFSET)
            .load(Ordering::Acquire);
        let mut head = self.head;
        let mut count = 0;
        while head < tail && count < limit {
            let index = (head as usize) & self.mask;
            // SAFETY: `index` is 8-aligned and below capacity; bytes in [head, tail) were
            // published by the writer, which will not overwrite them before `head` advances.
            let (length, type_id) = unsafe {
                let record = self.memory.data.add(index);
                (
                    u32::from_le(ptr::read(record.add(RECORD_LENGTH_OFFSET) as *const u32))
                        as usize,
                    u32::from_le(ptr::read(record.add(RECORD_TYPE_OFFSET) as *const u32)),
                )
            };
            debug_assert!(length >= RECORD_HEADER_LENGTH && index + length <= self.memory.capacity);
            head += align_record(length) as u64;
            if type_id == PADDING_TYPE {
                continue;
            }
            // SAFETY: as above; the payload lies within the published record.
            let payload = unsafe {
                std::slice::from_raw_parts(
                    self.memory.data.add(index + RECORD_HEADER_LENGTH),
                    length - RECORD_HEADER_LENGTH,
                )
            };
            handler(type_id, payload);
            count += 1;
        }
        if head != self.head {
            self.head = head;
            // Release: our reads of the records happen-before the writer reuses their space.
            self.memory
                .counter(TRAILER_HEAD_OFFSET)
                .store(head, Ordering::Release);
        }
        count
    }
}

impl RingReader {
    /// A read-only view of this ring's counters that can live elsewhere on the same core
    /// (the park check) or be sampled from another thread (metrics).
    pub fn watch(&self) -> RingWatch {
        RingWatch {
            memory: RingMemory::new(self.memory._mapping.clone()),
        }
    }
}

/// Reads a ring's trailer counters; never touches records.
pub struct RingWatch {
    memory: RingMemory,
}

// SAFETY: a watch only performs atomic loads on the trailer, which is valid for as long as the
// Arc'd mapping lives; it can be used from any thread.
unsafe impl Send for RingWatch {}
// SAFETY: as above: shared access is atomic loads only.
unsafe impl Sync for RingWatch {}

impl RingWatch {
    /// True when published records wait to be consumed.
    pub fn has_pending(&self) -> bool {
        self.memory
            .counter(TRAILER_TAIL_OFFSET)
            .load(Ordering::Acquire)
            != self
                .memory
                .counter(TRAILER_HEAD_OFFSET)
                .load(Ordering::Acquire)
    }

    pub fn label(&self) -> &str {
        self.memory._mapping.label()
    }

    pub fn stats(&self) -> RingStats {
        let load = |offset| self.memory.counter(offset).load(Ordering::Acquire);
        RingStats {
            capacity: self.memory.capacity,
            tail: load(TRAILER_TAIL_OFFSET),
            head: load(TRAILER_HEAD_OFFSET),
            records_written: load(TRAILER_RECORDS_WRITTEN_OFFSET),
            bytes_written: load(TRAILER_BYTES_WRITTEN_OFFSET),
            full_count: load(TRAILER_FULL_COUNT_OFFSET),
        }
    }
}

/// Statistics a ring keeps in its trailer, readable from any process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingStats {
    pub capacity: usize,
    pub tail: u64,
    pub head: u64,
    pub records_written: u64,
    pub bytes_written: u64,
    pub full_count: u64,
}

impl RingStats {
    /// Bytes published and not yet consumed.
    pub fn occupancy(&self) -> u64 {
        self.tail.saturating_sub(self.head)
    }
}

/// What a spy saw at its position.
#[derive(Debug, PartialEq, Eq)]
pub enum SpyRecord {
    Record {
        position: u64,
        type_id: u32,
    },
    /// The writer overwrote records the spy had not read yet; it skipped `missed` bytes and
    /// continues at the consumer's position.
    Lapped {
        missed: u64,
    },
}

/// A passive observer of a ring, usually in another process: reads every published record
/// without affecting the writer or the reader.
pub struct RingSpy {
    map: SpyMapping,
    mask: usize,
    position: u64,
}

impl RingSpy {
    /// Starts observing at the consumer's current position: every record the reader has not
    /// consumed yet, and everything published from now on.
    pub fn new(map: SpyMapping) -> RingSpy {
        let mut spy = RingSpy {
            mask: map.capacity() - 1,
            map,
            position: 0,
        };
        spy.position = spy.stats().head;
        spy
    }

    /// Starts observing at the writer's current tail: only records published from now on.
    pub fn from_tail(map: SpyMapping) -> RingSpy {
        let mut spy = RingSpy::new(map);
        spy.position = spy.stats().tail;
        spy
    }

    pub fn label(&self) -> &str {
        self.map.label()
    }

    pub fn writer_pid(&self) -> u32 {
        self.map.writer_pid()
    }

    fn counter(&self, offset: usize) -> u64 {
        // SAFETY: the offset lies in the trailer, which `SpyMapping::open` checked is mapped;
        // it is 8-aligned (page-aligned mapping) and only ever accessed atomically.
        unsafe {
            let pointer = self
                .map
                .base()
                .add(HEADER_LENGTH + self.map.capacity() + offset)
                as *const AtomicU64;
            (*pointer).load(Ordering::Acquire)
        }
    }

    pub fn stats(&self) -> RingStats {
        RingStats {
            capacity: self.map.capacity(),
            tail: self.counter(TRAILER_TAIL_OFFSET),
            head: self.counter(TRAILER_HEAD_OFFSET),
            records_written: self.counter(TRAILER_RECORDS_WRITTEN_OFFSET),
            bytes_written: self.counter(TRAILER_BYTES_WRITTEN_OFFSET),
            full_count: self.counter(TRAILER_FULL_COUNT_OFFSET),
        }
    }

    /// Copies the next published record's payload into `out` (cleared first). Returns `None`
    /// when the spy has caught up with the writer.
    pub fn next(&mut self, out: &mut Vec<u8>) -> Option<SpyRecord> {
        let capacity = self.map.capacity() as u64;
        loop {
            let tail = self.counter(TRAILER_TAIL_OFFSET);
            if self.position >= tail {
                return None;
            }
            if tail - self.position > capacity {
                return Some(self.skip_to_head(tail));
            }
            let index = (self.position as usize) & self.mask;
            let mut header = [0u8; RECORD_HEADER_LENGTH];
            self.copy_volatile(index, &mut header);
            let length = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
            let type_id = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
            if length < RECORD_HEADER_LENGTH || index + length > capacity as usize {
                // Torn or overwritten under us: the tail check below tells which.
                let tail = self.counter(TRAILER_TAIL_OFFSET);
                return Some(self.skip_to_head(tail));
            }
            out.clear();
            out.resize(length - RECORD_HEADER_LENGTH, 0);
            self.copy_volatile(index + RECORD_HEADER_LENGTH, out);
            // If the writer moved more than a lap past our record while we copied, the copy
            // may mix old and new bytes: discard it.
            let tail_after = self.counter(TRAILER_TAIL_OFFSET);
            if tail_after - self.position > capacity {
                return Some(self.skip_to_head(tail_after));
            }
            let position = self.position;
            self.position += align_record(length) as u64;
            if type_id == PADDING_TYPE {
                continue;
            }
            return Some(SpyRecord::Record { position, type_id });
        }
    }

    fn skip_to_head(&mut self, tail: u64) -> SpyRecord {
        // The consumer's head is a record boundary the writer never passes, so it is the
        // oldest position that is certainly intact. If it is not ahead of us, what we read was
        // not a lap but a corrupt record: skip to the tail.
        let head = self.counter(TRAILER_HEAD_OFFSET);
        let restart = if head > self.position { head } else { tail };
        let missed = restart.saturating_sub(self.position);
        self.position = restart;
        SpyRecord::Lapped { missed }
    }

    fn copy_volatile(&self, index: usize, out: &mut [u8]) {
        for (offset, byte) in out.iter_mut().enumerate() {
            // SAFETY: `index + out.len() <= capacity` (checked by the callers), so every byte
            // is inside the mapped record area. Volatile reads because another process may be
            // writing these bytes concurrently; a torn copy is detected by the tail re-check.
            *byte =
                unsafe { ptr::read_volatile(self.map.base().add(HEADER_LENGTH + index + offset)) };
        }
    }
}
