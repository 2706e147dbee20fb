//! A safe face on the few io_uring operations the tcp nukleus's io_uring transport uses:
//! multishot accept, multishot receive into a ring of provided buffers, and sends of owned
//! buffers, queued and submitted in one `io_uring_enter` per poll.
//!
//! Why it is here: a submission entry hands the kernel a pointer (a send's bytes, the provided
//! buffers), so pushing one is `unsafe` in the `io-uring` crate, and `unsafe` lives only in
//! this crate. The soundness argument is ownership: a send's buffer moves into [`Uring`] and
//! comes back only with the send's completion; the provided buffers belong to [`Uring`], and
//! one is lent to the caller ([`RecvBuffer`]) from the completion that filled it until the
//! caller gives it back ([`Uring::recycle`]), during which the kernel cannot pick it. On drop,
//! every request still in flight is cancelled synchronously before any memory is freed; if
//! that fails, the memory is leaked rather than freed under the kernel.

use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::{BufRingEntry, CancelBuilder, Fd, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring};
use memmap2::MmapMut;

/// What a request was, in the top two bits of its `user_data`.
const KIND_SHIFT: u32 = 62;
const TAG_MASK: u64 = (1 << KIND_SHIFT) - 1;
const ACCEPT: u64 = 0;
const RECV: u64 = 1;
const SEND: u64 = 2;
const OTHER: u64 = 3;

/// The buffer group id of the provided-buffer ring (there is one per [`Uring`]).
const GROUP: u16 = 0;

/// Sizes of a [`Uring`].
#[derive(Debug, Clone, Copy)]
pub struct UringConfig {
    /// Submission queue entries (a power of two; the completion queue gets four times as many).
    pub entries: u32,
    /// Provided receive buffers (a power of two, at most 32768).
    pub buffers: u16,
    /// Bytes per provided buffer: the most one receive completion carries.
    pub buffer_size: u32,
    /// Run the kernel's completion work only inside this thread's `io_uring_enter`
    /// (`IORING_SETUP_DEFER_TASKRUN`, with `SINGLE_ISSUER`: only the thread that creates the
    /// ring may submit). Completions then wait, unposted, until [`Uring::submit`] or
    /// [`Uring::submit_and_wait`] enters; the submission ring's flags say when they wait.
    pub defer_taskrun: bool,
}

/// A provided buffer the kernel filled, lent to the caller until [`Uring::recycle`].
#[must_use = "a received buffer must go back to the ring with Uring::recycle"]
#[derive(Debug)]
pub struct RecvBuffer {
    id: u16,
    len: u32,
}

impl RecvBuffer {
    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One completion, by the kind of request it completes. `tag` is the caller's (62 bits).
#[derive(Debug)]
pub enum Completion {
    /// A multishot accept produced a connection (a blocking socket: io_uring waits for it).
    /// `more`: the accept goes on; without it, it must be submitted again. `backlog_empty`:
    /// no other client was waiting in the listen backlog.
    Accepted {
        tag: u64,
        socket: io::Result<OwnedFd>,
        more: bool,
        backlog_empty: bool,
    },
    /// A multishot receive: bytes in a provided buffer, `Ok(None)` at the peer's FIN, or an
    /// error (`ENOBUFS`: the buffers ran out; `ECANCELED`: cancelled). Without `more` it must
    /// be submitted again to receive further.
    Received {
        tag: u64,
        result: io::Result<Option<RecvBuffer>>,
        more: bool,
    },
    /// A send completed: how many bytes the kernel took, and the buffer back.
    Sent {
        tag: u64,
        result: io::Result<usize>,
        buffer: Vec<u8>,
    },
    /// A cancellation request completed (nothing to do).
    Other,
}

/// An io_uring instance with one provided-buffer ring, driven by one thread.
pub struct Uring {
    ring: IoUring,
    /// The provided-buffer ring's entries (page aligned, shared with the kernel).
    entries: ManuallyDrop<MmapMut>,
    /// The provided buffers themselves, `buffer_count × buffer_size` bytes.
    buffers: ManuallyDrop<MmapMut>,
    buffer_size: u32,
    buffer_count: u16,
    /// Tail of the buffer ring as written so far; published to the kernel in `submit`.
    tail: u16,
    tail_published: u16,
    /// Send buffers the kernel may read, by slot (the slot is the send's `user_data`), with
    /// the caller's tag.
    sends: Vec<Option<(u64, Vec<u8>)>>,
    free_sends: Vec<usize>,
    in_flight_sends: usize,
    /// Completion entries copied out of the queue in one poll (kept, not allocated per poll).
    raw: Vec<cqueue::Entry>,
}

impl Uring {
    /// Sets up the ring and registers the provided buffers. Fails where io_uring is not
    /// available (an old kernel, `kernel.io_uring_disabled`, a seccomp filter): the caller
    /// falls back to epoll.
    pub fn new(config: UringConfig) -> io::Result<Uring> {
        let count = config.buffers;
        if !count.is_power_of_two() || count > 32768 || config.buffer_size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "io_uring buffers must be a power of two up to 32768, of at least one byte",
            ));
        }
        let mut builder = IoUring::builder();
        if config.defer_taskrun {
            builder.setup_single_issuer().setup_defer_taskrun();
        }
        let ring = builder
            // Completions are posted when this thread next enters the kernel (its next
            // epoll_wait or io_uring_enter), not by interrupting it: it polls anyway.
            .setup_coop_taskrun()
            // ... and says so in the submission ring's flags (IORING_SQ_TASKRUN), so a thread
            // that reads completions from memory without a system call knows when it must
            // enter to have them posted (`submit`, `has_completions`).
            .setup_taskrun_flag()
            .setup_cqsize(config.entries * 4)
            .build(config.entries)?;
        let entries = MmapMut::map_anon(usize::from(count) * std::mem::size_of::<BufRingEntry>())?;
        let buffers = MmapMut::map_anon(usize::from(count) * config.buffer_size as usize)?;
        // SAFETY: `entries` is a page-aligned anonymous mapping of `count` entries that lives
        // as long as the registration: `Drop` unregisters (or leaks the mapping) before
        // unmapping it.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                entries.as_ptr() as u64,
                count,
                GROUP,
                0,
            )?;
        }
        let mut uring = Uring {
            ring,
            entries: ManuallyDrop::new(entries),
            buffers: ManuallyDrop::new(buffers),
            buffer_size: config.buffer_size,
            buffer_count: count,
            tail: 0,
            tail_published: 0,
            sends: Vec::new(),
            free_sends: Vec::new(),
            in_flight_sends: 0,
            raw: Vec::new(),
        };
        for id in 0..count {
            uring.provide(id);
        }
        uring.publish_buffers();
        Ok(uring)
    }

    /// The ring's descriptor: readable (for epoll) while completions wait.
    pub fn as_raw_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }

    /// Starts a multishot accept on a listening socket.
    pub fn accept_multishot(&mut self, listener: BorrowedFd<'_>, tag: u64) -> io::Result<()> {
        let entry = opcode::AcceptMulti::new(Fd(listener.as_raw_fd())).build();
        self.push(entry.user_data(encode(ACCEPT, tag)))
    }

    /// Starts a multishot receive on a connected socket, into the provided buffers.
    pub fn recv_multishot(&mut self, socket: BorrowedFd<'_>, tag: u64) -> io::Result<()> {
        let entry = opcode::RecvMulti::new(Fd(socket.as_raw_fd()), GROUP).build();
        self.push(entry.user_data(encode(RECV, tag)))
    }

    /// Sends `buffer` on a connected socket; the buffer comes back with the completion.
    pub fn send(&mut self, socket: BorrowedFd<'_>, buffer: Vec<u8>, tag: u64) -> io::Result<()> {
        let slot = match self.free_sends.pop() {
            Some(slot) => slot,
            None => {
                self.sends.push(None);
                self.sends.len() - 1
            }
        };
        let len = u32::try_from(buffer.len()).unwrap_or(u32::MAX);
        let entry = opcode::Send::new(Fd(socket.as_raw_fd()), buffer.as_ptr(), len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(encode(SEND, slot as u64));
        // The buffer's heap block does not move when the Vec moves into the table.
        self.sends[slot] = Some((tag, buffer));
        self.in_flight_sends += 1;
        if let Err(e) = self.push(entry) {
            self.sends[slot] = None;
            self.free_sends.push(slot);
            self.in_flight_sends -= 1;
            return Err(e);
        }
        Ok(())
    }

    /// Cancels the receive (`recv = true`) or accept with this tag; its last completion
    /// follows (`ECANCELED`), unless it already ended.
    pub fn cancel(&mut self, recv: bool, tag: u64) -> io::Result<()> {
        let target = encode(if recv { RECV } else { ACCEPT }, tag);
        let entry = opcode::AsyncCancel::new(target).build();
        self.push(entry.user_data(encode(OTHER, 0)))
    }

    /// Cancels the sends in flight with this tag (a connection given up on while the kernel
    /// still waits to write for it: the request holds the socket open).
    pub fn cancel_sends(&mut self, tag: u64) -> io::Result<()> {
        let slots: Vec<u64> = (self.sends.iter().enumerate())
            .filter(|(_, s)| s.as_ref().is_some_and(|(t, _)| *t == tag))
            .map(|(slot, _)| slot as u64)
            .collect();
        for slot in slots {
            let entry = opcode::AsyncCancel::new(encode(SEND, slot)).build();
            self.push(entry.user_data(encode(OTHER, 0)))?;
        }
        Ok(())
    }

    /// Sends received buffers back to the kernel and every queued request with one
    /// `io_uring_enter` (none when nothing is queued).
    pub fn submit(&mut self) -> io::Result<usize> {
        self.publish_buffers();
        let (queued, overflowed, held) = {
            let sq = self.ring.submission();
            (!sq.is_empty(), sq.cq_overflow(), sq.taskrun())
        };
        if overflowed || held {
            // Completions the full queue could not take, or that the kernel holds back until
            // this thread enters (coop taskrun), wait in the kernel; only an enter (the crate
            // adds GETEVENTS when it sees either flag) moves them over.
            return self.ring.submit();
        }
        if !queued {
            return Ok(0);
        }
        self.ring.submit()
    }

    /// Does what [`Uring::submit`] does, then waits in the same `io_uring_enter` until at
    /// least `want` completions are posted: one system call to submit and to park, for a
    /// thread whose only source of work is this ring.
    pub fn submit_and_wait(&mut self, want: usize) -> io::Result<usize> {
        self.publish_buffers();
        self.ring.submit_and_wait(want)
    }

    /// Whether completions wait: posted ones to take, or ones the kernel holds back until the
    /// next `submit` enters (a look at the shared rings, no system call).
    pub fn has_completions(&self) -> bool {
        // SAFETY: `status` borrows nothing; the returned value is dropped here, well within
        // the life of `self.ring`. No `CompletionQueue` is alive while `&self` is borrowed
        // (every one is created and dropped inside a `&mut self` method), so the shared
        // borrow of the queue is the only one.
        let posted = unsafe { !self.ring.completion_shared().status().is_empty() };
        // SAFETY: the same argument for the submission queue: every `SubmissionQueue` is
        // created and dropped inside a `&mut self` method, and this one only reads its flags.
        posted || unsafe { self.ring.submission_shared().taskrun() }
    }

    /// Moves every posted completion into `out`.
    pub fn completions(&mut self, out: &mut Vec<Completion>) {
        let mut raw = std::mem::take(&mut self.raw);
        raw.extend(self.ring.completion());
        out.reserve(raw.len());
        for entry in raw.drain(..) {
            out.push(self.complete(&entry));
        }
        self.raw = raw;
    }

    /// The bytes of a received buffer.
    pub fn data(&self, buffer: &RecvBuffer) -> &[u8] {
        let start = usize::from(buffer.id) * self.buffer_size as usize;
        // SAFETY: the buffer lies within the mapping (id < buffer_count, len <= buffer_size),
        // and it is lent to the caller: the kernel picks only buffers in the ring, and this
        // one goes back only with `recycle`, which takes the `RecvBuffer` this slice borrows
        // from. Only this sub-range is borrowed, not the buffers the kernel may be filling.
        unsafe { std::slice::from_raw_parts(self.buffers.as_ptr().add(start), buffer.len()) }
    }

    /// Gives a received buffer back to the kernel (published with the next `submit`).
    pub fn recycle(&mut self, buffer: RecvBuffer) {
        self.provide(buffer.id);
    }

    /// Bytes of provided buffers, for the memory accounting.
    pub fn buffer_bytes(&self) -> usize {
        usize::from(self.buffer_count) * self.buffer_size as usize
    }

    /// Sends whose buffers the kernel still holds.
    pub fn sends_in_flight(&self) -> usize {
        self.in_flight_sends
    }

    fn complete(&mut self, entry: &cqueue::Entry) -> Completion {
        let (kind, tag) = (
            entry.user_data() >> KIND_SHIFT,
            entry.user_data() & TAG_MASK,
        );
        let (result, flags) = (entry.result(), entry.flags());
        let more = cqueue::more(flags);
        match kind {
            ACCEPT => Completion::Accepted {
                tag,
                // SAFETY: a successful accept's result is a descriptor the kernel has just
                // installed in this process for this completion; nothing else owns it.
                socket: check(result).map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                more,
                backlog_empty: !cqueue::sock_nonempty(flags),
            },
            RECV => {
                let result = check(result).map(|len| {
                    cqueue::buffer_select(flags).map(|id| RecvBuffer {
                        id,
                        len: len as u32,
                    })
                });
                Completion::Received { tag, result, more }
            }
            SEND => {
                let slot = tag as usize;
                let (tag, buffer) = self.sends[slot]
                    .take()
                    .expect("a send completes once, for a buffer it holds");
                self.free_sends.push(slot);
                self.in_flight_sends -= 1;
                Completion::Sent {
                    tag,
                    result: check(result).map(|n| n as usize),
                    buffer,
                }
            }
            _ => Completion::Other,
        }
    }

    fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        if self.ring.submission().is_full() {
            self.ring.submit()?;
        }
        // SAFETY: the entries built here point at memory `self` owns for as long as the
        // request can use it: a send's buffer sits in `self.sends` until its completion is
        // taken (`complete`), receives use the provided buffers registered for the life of
        // the ring, and accepts and cancellations point at nothing.
        unsafe { self.ring.submission().push(&entry) }
            .map_err(|_| io::Error::other("io_uring submission queue full after a submit"))
    }

    /// Puts buffer `id` in the ring at the local tail (the kernel sees it once published).
    fn provide(&mut self, id: u16) {
        let mask = self.buffer_count - 1;
        let index = usize::from(self.tail & mask);
        let base = self.entries.as_mut_ptr().cast::<BufRingEntry>();
        let address = self.buffers.as_ptr() as u64 + u64::from(id) * u64::from(self.buffer_size);
        // SAFETY: `index < buffer_count` entries of the mapping; the kernel reads an entry only
        // between the published tail and its own head, and this one is beyond the published
        // tail. Writing through the raw pointer leaves the shared tail field (in entry 0's
        // reserved word) alone: only addr, len and bid are set.
        unsafe {
            let entry = &mut *base.add(index);
            entry.set_addr(address);
            entry.set_len(self.buffer_size);
            entry.set_bid(id);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish_buffers(&mut self) {
        if self.tail == self.tail_published {
            return;
        }
        let base = self.entries.as_ptr().cast::<BufRingEntry>();
        // SAFETY: the tail is the reserved u16 of entry 0 of the live mapping (aligned, as the
        // entries are); the kernel reads it concurrently, so it is written atomically, with
        // Release so the entries written before it are visible first.
        unsafe {
            let tail = BufRingEntry::tail(base).cast_mut();
            AtomicU16::from_ptr(tail).store(self.tail, Ordering::Release);
        }
        self.tail_published = self.tail;
    }
}

impl Drop for Uring {
    fn drop(&mut self) {
        let submitter = self.ring.submitter();
        // Synchronous: when it returns, no request of this ring is in flight.
        let cancelled = match submitter
            .register_sync_cancel(Some(Timespec::new().sec(1)), CancelBuilder::any())
        {
            Ok(()) => true,
            Err(e) => e.raw_os_error() == Some(libc::ENOENT), // nothing was in flight
        };
        let unregistered = submitter.unregister_buf_ring(GROUP).is_ok();
        if cancelled && unregistered {
            // SAFETY: no request is in flight and the buffer ring is unregistered, so the
            // kernel holds no pointer into either mapping any more.
            unsafe {
                ManuallyDrop::drop(&mut self.entries);
                ManuallyDrop::drop(&mut self.buffers);
            }
        } else {
            // The kernel may still use them: leak rather than free under it.
            tracing::warn!(
                cancelled,
                unregistered,
                "io_uring requests could not be cancelled: leaking their buffers"
            );
            std::mem::forget(std::mem::take(&mut self.sends));
        }
    }
}

fn encode(kind: u64, tag: u64) -> u64 {
    debug_assert!(tag <= TAG_MASK);
    (kind << KIND_SHIFT) | (tag & TAG_MASK)
}

fn check(result: i32) -> io::Result<i32> {
    if result < 0 {
        Err(io::Error::from_raw_os_error(-result))
    } else {
        Ok(result)
    }
}
