//! One connection of the io_uring transport: the received bytes waiting for the peer's window
//! (provided buffers lent by the ring), and the reply bytes on their way to the socket (one
//! send in flight at a time, the next bytes gathered meanwhile).

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use streams::uring::RecvBuffer;
use streams::{RecvWindow, SendWindow};

/// Capacity a drained reply buffer keeps for the next burst; beyond it, memory goes back.
const KEEP: usize = 16 * 1024;

pub(super) struct Connection {
    /// A blocking socket: io_uring waits for it, never this thread.
    pub socket: TcpStream,
    /// Initial stream id (tcp -> peer); the reply is `id ^ 1`.
    pub id: u64,
    pub link: usize,
    /// Credit the peer granted us for the initial stream.
    pub send: SendWindow,
    /// Received buffers not yet (wholly) passed on as DATA, with how much of the first was.
    pub held: VecDeque<RecvBuffer>,
    pub held_offset: usize,
    /// Received bytes that waited for the window, copied out of their buffers so that the
    /// ring's buffers, shared by every connection, are never kept by a peer that stops
    /// reading. Bounded: the receive is cancelled when the window shuts, so only what the
    /// kernel delivered before the cancellation lands here.
    pub spill: Vec<u8>,
    pub spill_offset: usize,
    /// The client's FIN arrived: END follows the held bytes.
    pub eof: bool,
    /// A multishot receive is submitted and has not ended.
    pub recv_armed: bool,
    /// Its cancellation is submitted (the window is shut with bytes held).
    pub recv_cancelling: bool,
    /// We sent END/ABORT on the initial stream, or the peer RESET it.
    pub read_done: bool,
    pub reply: Reply,
    pub queued: bool,
    /// The client, for log lines.
    pub remote: SocketAddr,
}

impl Connection {
    pub fn new(socket: TcpStream, id: u64, link: usize, window: u32, remote: SocketAddr) -> Self {
        Connection {
            socket,
            id,
            link,
            send: SendWindow::default(),
            held: VecDeque::new(),
            held_offset: 0,
            spill: Vec::new(),
            spill_offset: 0,
            eof: false,
            recv_armed: false,
            recv_cancelling: false,
            read_done: false,
            reply: Reply::new(window),
            queued: false,
            remote,
        }
    }

    /// Whether a receive should be (re)submitted: reading goes on, nothing is held, and the
    /// peer has room for more.
    pub fn wants_recv(&self) -> bool {
        !self.read_done
            && !self.eof
            && !self.recv_armed
            && self.held.is_empty()
            && self.spill.is_empty()
            && self.send.available() > 0
    }

    /// Memory this connection holds for bytes in either direction.
    pub fn buffered(&self) -> usize {
        self.spill.capacity() + self.reply.buffered()
    }

    pub fn done(&self) -> bool {
        self.read_done && self.reply.done
    }
}

/// The reply direction: window bookkeeping as the epoll transport's writer, with sends
/// submitted to io_uring instead of written at once.
pub(super) struct Reply {
    /// Credit granted to the peer for the reply stream.
    pub recv: RecvWindow,
    /// Reply bytes accepted from the peer and not yet handed to a send.
    pending: Vec<u8>,
    /// The buffer of the last completed send, reused for the next one.
    spare: Vec<u8>,
    /// A send holds bytes the kernel has not taken yet.
    pub in_flight: usize,
    /// END arrived on the reply stream; shut down writing once everything is sent.
    pub ended: bool,
    /// Writing is over (shut down, aborted or reset).
    pub done: bool,
    /// Since when bytes have waited for the kernel without it taking any.
    stalled_since: Option<Instant>,
}

impl Reply {
    fn new(window: u32) -> Reply {
        Reply {
            recv: RecvWindow::new(window),
            pending: Vec::new(),
            spare: Vec::new(),
            in_flight: 0,
            ended: false,
            done: false,
            stalled_since: None,
        }
    }

    /// A reply DATA frame: checked against the window and gathered for the next send.
    pub fn on_data(
        &mut self,
        payload: &[u8],
        reserved: u32,
        now: Instant,
    ) -> Result<(), streams::FlowViolation> {
        if self.done {
            return Ok(());
        }
        self.recv.on_data(reserved)?;
        self.recv.release(reserved as u64 - payload.len() as u64);
        self.pending.extend_from_slice(payload);
        self.stalled_since.get_or_insert(now);
        Ok(())
    }

    /// The bytes for the next send, if one is due (none in flight, something gathered).
    pub fn next_send(&mut self) -> Option<Vec<u8>> {
        if self.done || self.in_flight > 0 || self.pending.is_empty() {
            return None;
        }
        let mut next = std::mem::take(&mut self.spare);
        std::mem::swap(&mut next, &mut self.pending);
        self.in_flight = next.len();
        Some(next)
    }

    /// A send completed with `sent` of its bytes taken: the rest is sent again first. Returns
    /// the buffer to send again, if any.
    pub fn on_sent(&mut self, mut buffer: Vec<u8>, sent: usize, now: Instant) -> Option<Vec<u8>> {
        self.in_flight = 0;
        self.recv.release(sent as u64);
        if sent > 0 {
            self.stalled_since = Some(now);
        }
        if self.done {
            return None;
        }
        if sent < buffer.len() {
            // Short send (the kernel took part of it): the rest goes before what gathered since.
            buffer.drain(..sent);
            buffer.extend_from_slice(&self.pending);
            self.pending.clear();
            self.in_flight = buffer.len();
            return Some(buffer);
        }
        buffer.clear();
        streams::memory::release_drained(&mut buffer, KEEP);
        self.spare = buffer;
        if self.pending.is_empty() {
            self.stalled_since = None;
            streams::memory::release_drained(&mut self.pending, KEEP);
        }
        None
    }

    /// Whether the reply ended and every byte went out: time to shut down writing.
    pub fn finished(&self) -> bool {
        !self.done && self.ended && self.in_flight == 0 && self.pending.is_empty()
    }

    /// Memory held for bytes the kernel has not taken.
    pub fn buffered(&self) -> usize {
        self.pending.capacity() + self.spare.capacity() + self.in_flight
    }

    pub fn window_due(&self) -> bool {
        !self.done && self.recv.window_due()
    }

    pub fn stalled(&self, now: Instant, timeout: Duration) -> bool {
        self.stalled_since
            .is_some_and(|t| now.saturating_duration_since(t) >= timeout)
    }

    /// Writing is over: drop what was not sent.
    pub fn stop(&mut self) {
        self.pending = Vec::new();
        self.spare = Vec::new();
        self.stalled_since = None;
        self.done = true;
    }
}
