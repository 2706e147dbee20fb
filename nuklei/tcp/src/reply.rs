//! The output direction of one connection: the reply stream's receive window and the reply
//! bytes the kernel has not taken yet. Used by the whole tcp nukleus and by its output half
//! when the directions are split (see `split`).

use std::io::{self, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use streams::RecvWindow;

/// Why a reply DATA frame could not be taken.
#[derive(Debug)]
pub(crate) enum DataError {
    /// The peer sent more than the window it was granted.
    Window(streams::FlowViolation),
    /// The socket refused the bytes for good (reset, broken pipe).
    Socket(io::Error),
}

/// Capacity a drained reply buffer keeps for the next burst; beyond it, memory goes back.
const KEEP: usize = 16 * 1024;

pub(crate) struct ReplyWriter {
    /// Credit granted to the peer for the reply stream.
    pub recv: RecvWindow,
    /// Reply bytes accepted from the peer that the kernel has not taken yet (≤ window).
    pending: Vec<u8>,
    /// The last write did not hit `EWOULDBLOCK` (or epoll said writable since).
    pub writable: bool,
    /// END arrived on the reply stream; shut down writing once `pending` drains.
    pub ended: bool,
    /// Writing is over (shut down, aborted or reset).
    pub done: bool,
    /// Since when `pending` has been waiting without the kernel taking any of it.
    stalled_since: Option<Instant>,
}

impl ReplyWriter {
    pub fn new(window: u32) -> ReplyWriter {
        ReplyWriter {
            recv: RecvWindow::new(window),
            pending: Vec::new(),
            writable: true,
            ended: false,
            done: false,
            stalled_since: None,
        }
    }

    /// A reply DATA frame: checks it against the window, writes what the kernel takes now and
    /// keeps the rest. Ignored once writing is over.
    pub fn on_data(
        &mut self,
        socket: &TcpStream,
        payload: &[u8],
        reserved: u32,
        now: Instant,
    ) -> Result<(), DataError> {
        if self.done {
            return Ok(());
        }
        self.recv.on_data(reserved).map_err(DataError::Window)?;
        let padding = reserved as u64 - payload.len() as u64;
        self.recv.release(padding);
        if self.pending.is_empty() && self.writable {
            match (&*socket).write(payload) {
                Ok(n) => {
                    self.recv.release(n as u64);
                    self.pending.extend_from_slice(&payload[n..]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.writable = false;
                    self.pending.extend_from_slice(payload);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    self.pending.extend_from_slice(payload)
                }
                Err(e) => return Err(DataError::Socket(e)),
            }
        } else {
            self.pending.extend_from_slice(payload);
        }
        if !self.pending.is_empty() && self.stalled_since.is_none() {
            self.stalled_since = Some(now);
        }
        Ok(())
    }

    /// Writes pending bytes while the socket takes them, then shuts down writing if the reply
    /// ended and everything is out. Returns the bytes written; an error means the connection
    /// is broken.
    pub fn flush(&mut self, socket: &TcpStream, now: Instant) -> io::Result<usize> {
        let mut written = 0;
        if self.writable && !self.pending.is_empty() && !self.done {
            while written < self.pending.len() {
                match (&*socket).write(&self.pending[written..]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.writable = false;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            self.pending.drain(..written);
            self.recv.release(written as u64);
            if self.pending.is_empty() {
                streams::memory::release_drained(&mut self.pending, KEEP);
                self.stalled_since = None;
            } else if written > 0 {
                self.stalled_since = Some(now);
            }
        }
        if self.ended && self.pending.is_empty() && !self.done {
            let _ = socket.shutdown(Shutdown::Write);
            self.done = true;
        }
        Ok(written)
    }

    /// Memory held for bytes the kernel has not taken.
    pub fn buffered(&self) -> usize {
        self.pending.capacity()
    }

    /// Whether a WINDOW frame for the reply stream is due (and writing goes on).
    pub fn window_due(&self) -> bool {
        !self.done && self.recv.window_due()
    }

    /// Whether pending bytes have waited for the kernel for `timeout` or more.
    pub fn stalled(&self, now: Instant, timeout: Duration) -> bool {
        self.stalled_since
            .is_some_and(|t| now.saturating_duration_since(t) >= timeout)
    }

    /// The peer gave up on the reply: drop unsent bytes, and make the close (once every
    /// holder of the socket let go) a reset, so the client sees the reply was cut short
    /// (linger 0; a shutdown here would send a FIN, which reads as a clean end).
    pub fn abort(&mut self, socket: &TcpStream) {
        let _ = socket2::SockRef::from(socket).set_linger(Some(Duration::ZERO));
        self.pending = Vec::new();
        self.stalled_since = None;
        self.done = true;
    }

    /// Writing is over without a shutdown of our own (the connection failed).
    pub fn stop(&mut self) {
        self.pending = Vec::new();
        self.stalled_since = None;
        self.done = true;
    }
}
