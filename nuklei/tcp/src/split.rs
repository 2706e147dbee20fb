//! The tcp nukleus split by direction: the input half (accept, socket reads, the initial
//! streams) stays a [`crate::TcpNukleus`]; the output half, [`TcpOutput`], runs on another
//! core and writes the reply streams to the sockets.
//!
//! A tcp instance's two directions share nothing but the socket, which the kernel lets one
//! thread read while another writes. So the link to the next nukleus is cut in two: the input
//! half keeps the ring it writes (initial-stream frames), the output half takes the ring it
//! reads (reply-stream frames). The few frames that belong to the other direction are passed
//! between the halves in process: the peer's WINDOW and RESET of an initial stream arrive at
//! the output half and go to the input half; the reply stream's WINDOW, written on the input
//! half's ring, comes from the output half. Flow control bounds these messages: a WINDOW is
//! sent only after data the other half produced has moved.
//!
//! The socket is shared (`Arc`): it closes when both halves are done with it.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_queue::SegQueue;
use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use std::os::fd::AsRawFd;
use streams::frame::{self, Frame};
use streams::{Doorbell, Nukleus, PollContext, RingReader, SlotIds, TokenRange};

use crate::reply::{DataError, ReplyWriter};

/// From the input half to the output half.
pub(crate) enum ToOutput {
    /// A new connection: its initial stream id, the link its streams use, and the socket.
    Open {
        id: u64,
        link: usize,
        socket: Arc<TcpStream>,
        /// The client, for log lines.
        remote: SocketAddr,
    },
    /// The input half failed the connection (and told the peer on both streams): stop writing.
    Failed { id: u64 },
}

/// From the output half to the input half. `id` is always the initial stream's id.
pub(crate) enum ToInput {
    /// The peer's WINDOW for the initial stream.
    Window {
        id: u64,
        acknowledge: u64,
        maximum: u32,
        padding: u32,
    },
    /// The peer's RESET of the initial stream.
    Reset { id: u64 },
    /// Write this WINDOW for the reply stream (the output half has no ring to the peer).
    ReplyWindow {
        id: u64,
        acknowledge: u64,
        maximum: u32,
    },
    /// Writing is over: the reply ended and was shut down, or the peer aborted it (then the
    /// initial stream is aborted too, as the whole nukleus does).
    Done { id: u64, aborted: bool },
    /// Writing failed (socket error, window violation, write timeout): fail the connection.
    Failed { id: u64 },
}

/// What the two halves of one tcp instance share.
pub(crate) struct Channel {
    pub to_output: SegQueue<ToOutput>,
    pub to_input: SegQueue<ToInput>,
    /// Each half's core doorbell, to wake it after a message (None: same thread, or a test
    /// that polls both halves in turn).
    pub input_doorbell: Option<Arc<Doorbell>>,
    pub output_doorbell: Option<Arc<Doorbell>>,
}

impl Channel {
    pub fn send_to_output(&self, message: ToOutput) {
        self.to_output.push(message);
        if let Some(doorbell) = &self.output_doorbell {
            doorbell.ring();
        }
    }
}

/// Settings of the output half (taken from the whole nukleus's `TcpConfig`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutputConfig {
    pub window: u32,
    pub io_batch: usize,
    pub write_timeout: Duration,
}

/// What a reply frame leads to, once the connection's state is no longer borrowed.
enum Next {
    Nothing,
    Tell(ToInput),
    Service,
    /// This half is done with the connection: forget it and tell the input half.
    Finish(ToInput),
}

struct Reply {
    id: u64,
    link: usize,
    socket: Arc<TcpStream>,
    remote: SocketAddr,
    writer: ReplyWriter,
    queued: bool,
}

/// The output direction of a tcp instance, on its own core: reply frames in, socket writes out.
pub struct TcpOutput {
    config: OutputConfig,
    core: usize,
    channel: Arc<Channel>,
    inputs: Vec<RingReader>,
    /// By connection slot (the input half's slot, from the stream id).
    replies: Vec<Option<Reply>>,
    live: usize,
    ready: Vec<usize>,
    registry: Option<Registry>,
    tokens: TokenRange,
    /// Messages pushed to the input half since its doorbell was last rung.
    told_input: bool,
    now: Instant,
    next_scan: Instant,
    write_timeouts: u64,
}

impl TcpOutput {
    pub(crate) fn new(
        config: OutputConfig,
        channel: Arc<Channel>,
        inputs: Vec<RingReader>,
    ) -> TcpOutput {
        TcpOutput {
            config,
            core: 0,
            channel,
            inputs,
            replies: Vec::new(),
            live: 0,
            ready: Vec::new(),
            registry: None,
            tokens: TokenRange { first: 0, count: 0 },
            told_input: false,
            now: Instant::now(),
            next_scan: Instant::now(),
            write_timeouts: 0,
        }
    }

    fn tell_input(&mut self, message: ToInput) {
        self.channel.to_input.push(message);
        self.told_input = true;
    }

    /// Takes the input half's messages: new connections, failed ones.
    fn drain_channel(&mut self) -> usize {
        let mut work = 0;
        while let Some(message) = self.channel.to_output.pop() {
            work += 1;
            match message {
                ToOutput::Open {
                    id,
                    link,
                    socket,
                    remote,
                } => self.open(id, link, socket, remote),
                ToOutput::Failed { id } => {
                    if let Some(reply) = self.get_mut(id) {
                        reply.writer.stop();
                        self.remove(SlotIds::slot(id));
                    }
                }
            }
        }
        work
    }

    fn open(&mut self, id: u64, link: usize, socket: Arc<TcpStream>, remote: SocketAddr) {
        let slot = SlotIds::slot(id);
        if self.replies.len() <= slot {
            self.replies.resize_with(slot + 1, || None);
        }
        if self.replies[slot].is_some() {
            // The input half only reuses a slot it released, which needs our Done first.
            self.remove(slot);
        }
        if let Some(registry) = &self.registry {
            let token = Token(self.tokens.first + slot);
            let fd = socket.as_raw_fd();
            if let Err(e) = registry.register(&mut SourceFd(&fd), token, Interest::WRITABLE) {
                tracing::warn!(core = self.core, %remote, error = %e, "cannot register a socket for writing");
                self.tell_input(ToInput::Failed { id });
                return;
            }
        }
        self.replies[slot] = Some(Reply {
            id,
            link,
            socket,
            remote,
            writer: ReplyWriter::new(self.config.window),
            queued: false,
        });
        self.live += 1;
    }

    fn get_mut(&mut self, id: u64) -> Option<&mut Reply> {
        self.replies
            .get_mut(SlotIds::slot(id))
            .and_then(Option::as_mut)
            .filter(|r| r.id == id | 1)
    }

    fn remove(&mut self, slot: usize) {
        if let Some(reply) = self.replies.get_mut(slot).and_then(Option::take) {
            self.live -= 1;
            if let Some(registry) = &self.registry {
                let fd = reply.socket.as_raw_fd();
                let _ = registry.deregister(&mut SourceFd(&fd));
            }
        }
    }

    fn enqueue(&mut self, slot: usize) {
        if let Some(Some(reply)) = self.replies.get_mut(slot) {
            if !reply.queued {
                reply.queued = true;
                self.ready.push(slot);
            }
        }
    }

    fn on_frame(&mut self, link: usize, type_id: u32, bytes: &[u8]) {
        let Ok(f) = Frame::new(type_id, bytes) else {
            tracing::error!(core = self.core, "malformed frame on a tcp link");
            return;
        };
        let id = f.stream_id() | 1;
        match type_id {
            // Frames against the initial stream belong to the input half.
            frame::WINDOW => self.tell_input(ToInput::Window {
                id,
                acknowledge: f.acknowledge(),
                maximum: f.maximum(),
                padding: f.padding(),
            }),
            frame::RESET => self.tell_input(ToInput::Reset { id }),
            _ => self.on_reply_frame(link, id, type_id, &f),
        }
    }

    fn on_reply_frame(&mut self, link: usize, id: u64, type_id: u32, f: &Frame) {
        if self.get_mut(id).is_none() {
            // The reply can only follow the initial BEGIN, which the input half wrote after
            // queueing the connection's Open: take it now.
            self.drain_channel();
        }
        let (now, core) = (self.now, self.core);
        let slot = SlotIds::slot(id);
        let Some(reply) = self.get_mut(id) else {
            return; // a connection that is gone
        };
        if reply.link != link {
            return;
        }
        let next = match type_id {
            frame::BEGIN => {
                // The peer accepted the connection: grant it our reply window.
                let (acknowledge, maximum) = reply.writer.recv.announce();
                Next::Tell(ToInput::ReplyWindow {
                    id,
                    acknowledge,
                    maximum,
                })
            }
            frame::DATA => match reply
                .writer
                .on_data(&reply.socket, f.payload(), f.reserved(), now)
            {
                Ok(()) => Next::Service,
                Err(DataError::Window(e)) => {
                    tracing::error!(core, remote = %reply.remote, error = %e, "peer broke the window: aborting connection");
                    Next::Finish(ToInput::Failed { id })
                }
                Err(DataError::Socket(e)) => {
                    tracing::debug!(core, remote = %reply.remote, error = %e, "socket write failed: closing connection");
                    Next::Finish(ToInput::Failed { id })
                }
            },
            frame::END => {
                reply.writer.ended = true;
                Next::Service
            }
            frame::ABORT => {
                reply.writer.abort(&reply.socket);
                Next::Finish(ToInput::Done { id, aborted: true })
            }
            _ => Next::Nothing,
        };
        self.follow(slot, next);
    }

    fn follow(&mut self, slot: usize, next: Next) {
        match next {
            Next::Nothing => {}
            Next::Tell(message) => self.tell_input(message),
            Next::Service => self.enqueue(slot),
            Next::Finish(message) => {
                self.remove(slot);
                self.tell_input(message);
            }
        }
    }

    /// Writes what the socket takes, announces window, shuts down an ended reply.
    fn service(&mut self, slot: usize) -> usize {
        let now = self.now;
        let Some(Some(reply)) = self.replies.get_mut(slot) else {
            return 0;
        };
        reply.queued = false;
        let id = reply.id;
        let written = match reply.writer.flush(&reply.socket, now) {
            Ok(n) => n,
            Err(_) => {
                self.follow(slot, Next::Finish(ToInput::Failed { id }));
                return 1;
            }
        };
        if reply.writer.window_due() {
            let (acknowledge, maximum) = reply.writer.recv.announce();
            self.tell_input(ToInput::ReplyWindow {
                id,
                acknowledge,
                maximum,
            });
        }
        if self.get_mut(id).is_some_and(|r| r.writer.done) {
            let done = ToInput::Done { id, aborted: false };
            self.follow(slot, Next::Finish(done));
        }
        (written > 0) as usize
    }

    fn expire_stalled_writes(&mut self) -> usize {
        let (now, timeout) = (self.now, self.config.write_timeout);
        let stalled: Vec<(usize, u64, SocketAddr)> = self
            .replies
            .iter()
            .enumerate()
            .filter_map(|(slot, r)| r.as_ref().map(|r| (slot, r)))
            .filter(|(_, r)| r.writer.stalled(now, timeout))
            .map(|(slot, r)| (slot, r.id, r.remote))
            .collect();
        for &(slot, id, remote) in &stalled {
            self.write_timeouts += 1;
            tracing::info!(
                core = self.core,
                %remote,
                ?timeout,
                "client took no reply bytes within the write timeout: closing connection"
            );
            self.follow(slot, Next::Finish(ToInput::Failed { id }));
        }
        stalled.len()
    }
}

impl Nukleus for TcpOutput {
    fn kind(&self) -> &'static str {
        "tcp.out"
    }

    fn uses_readiness(&self) -> bool {
        true
    }

    fn register(&mut self, registry: &Registry, tokens: TokenRange) -> io::Result<()> {
        self.tokens = tokens;
        self.registry = Some(registry.try_clone()?);
        Ok(())
    }

    fn on_event(&mut self, event: &mio::event::Event) {
        let slot = event.token().0 - self.tokens.first;
        if let Some(Some(reply)) = self.replies.get_mut(slot) {
            reply.writer.writable |=
                event.is_writable() || event.is_write_closed() || event.is_error();
            self.enqueue(slot);
        }
    }

    fn poll(&mut self, context: &PollContext) -> usize {
        self.core = context.core;
        self.now = context.now;
        let mut work = self.drain_channel();
        if self.now >= self.next_scan {
            self.next_scan = self.now
                + (self.config.write_timeout / 4)
                    .clamp(Duration::from_millis(10), Duration::from_secs(1));
            work += self.expire_stalled_writes();
        }
        let mut inputs = std::mem::take(&mut self.inputs);
        for (link, rx) in inputs.iter_mut().enumerate() {
            work += rx.read(1024, |type_id, bytes| self.on_frame(link, type_id, bytes));
        }
        self.inputs = inputs;
        let batch = self.ready.len().min(self.config.io_batch);
        let slots: Vec<usize> = self.ready.drain(..batch).collect();
        for slot in slots {
            work += self.service(slot);
        }
        if std::mem::take(&mut self.told_input) {
            if let Some(doorbell) = &self.channel.input_doorbell {
                doorbell.ring();
            }
        }
        work
    }

    fn has_pending(&self) -> bool {
        !self.channel.to_output.is_empty()
    }

    fn deadline(&self) -> Option<Instant> {
        (self.live > 0).then_some(self.next_scan)
    }

    fn gauges(&self, out: &mut Vec<(&'static str, u64)>) {
        out.push(("connections", self.live as u64));
        out.push(("write_timeouts_total", self.write_timeouts));
    }

    fn buffered_bytes(&self) -> usize {
        self.replies
            .iter()
            .flatten()
            .map(|r| r.writer.buffered())
            .sum()
    }

    fn shed(&mut self, bytes: usize) -> usize {
        let held = self
            .replies
            .iter()
            .enumerate()
            .filter_map(|(slot, r)| {
                r.as_ref()
                    .map(|r| (r.writer.buffered(), (slot, r.id, r.remote)))
            })
            .collect();
        let mut freed = 0;
        for (size, (slot, id, remote)) in streams::memory::largest_first(held, bytes) {
            tracing::info!(
                core = self.core,
                %remote,
                buffered = size,
                "memory above the limit: dropping the connection with the most unsent reply bytes"
            );
            if let Some(Some(reply)) = self.replies.get_mut(slot) {
                reply.writer.abort(&reply.socket);
            }
            self.follow(slot, Next::Finish(ToInput::Failed { id }));
            freed += size;
        }
        freed
    }

    fn drained(&self) -> bool {
        self.live == 0
    }

    fn shutdown(&mut self) {
        for slot in 0..self.replies.len() {
            self.remove(slot);
        }
    }
}
