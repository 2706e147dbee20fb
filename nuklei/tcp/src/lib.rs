//! The tcp nukleus: accepts connections, turns socket reads into DATA frames on an initial
//! stream to the next nukleus of the listener's chain, and writes the DATA frames of the reply
//! stream to the socket.
//!
//! Flow control closes the loop with the kernel: it reads only as much as the next nukleus has
//! granted, and acknowledges reply bytes only once the kernel took them, so a client that stops
//! reading stops the server from producing for it instead of growing memory.

mod accept;
mod begin_ex;
mod reply;
mod split;
pub mod steering;
mod uring;
pub use uring::UringTcpNukleus;

use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use slab::Slab;
use streams::frame::{self, Frame};
use streams::{
    pick_peer, plumbing, split_links, Doorbell, Header, Nukleus, Output, PeerLink, PollContext,
    RingReader, SendWindow, SlotIds, TokenRange,
};

use reply::{DataError, ReplyWriter};
use split::{Channel, OutputConfig, ToInput, ToOutput};

pub use begin_ex::{decode_begin_ex, encode_begin_ex, TcpBeginEx};
pub use split::TcpOutput;
pub use steering::Steering;

/// One listening address and the nukleus kind its connections go to.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub name: String,
    pub address: SocketAddr,
    /// Kind of the next nukleus in the chain (`http`, `tls`).
    pub next: String,
    pub backlog: i32,
}

/// A non-blocking listening socket for `listener` (with SO_REUSEPORT when every core's tcp
/// instance binds the same address).
pub(crate) fn bind(listener: &ListenerConfig, reuse_port: bool) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(listener.address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        // Every core's tcp instance binds the same address; the kernel spreads connections.
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&listener.address.into())?;
    socket.listen(listener.backlog)?;
    Ok(TcpListener::from_std(socket.into()))
}

#[derive(Debug, Clone)]
pub struct TcpConfig {
    pub listeners: Vec<ListenerConfig>,
    /// Connections this instance admits at once; beyond it, accept-then-close.
    pub max_connections: usize,
    /// Bytes of reply data this nukleus lets the peer have in flight per connection.
    pub window: u32,
    /// Largest DATA frame produced by one socket read.
    pub read_chunk: usize,
    /// Sockets with pending I/O handled per poll before yielding to other nuklei.
    pub io_batch: usize,
    /// A connection whose client takes none of the pending reply bytes for this long is
    /// closed, so a client that never reads cannot hold its slot forever.
    pub write_timeout: Duration,
    /// After `accept` failed for want of resources (out of file descriptors, memory), how
    /// long until it is tried again: the clients wait in the listen backlog meanwhile, and
    /// edge-triggered readiness would not report them again.
    pub accept_retry: Duration,
    /// io_uring transport: provided receive buffers shared by the connections (a power of
    /// two) and their size, the most one receive completion carries.
    pub io_uring_buffers: u16,
    pub io_uring_buffer_size: u32,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            listeners: Vec::new(),
            max_connections: 1024,
            window: 65536,
            read_chunk: 65536,
            io_batch: 64,
            write_timeout: Duration::from_secs(60),
            accept_retry: Duration::from_millis(100),
            io_uring_buffers: 256,
            io_uring_buffer_size: 4096,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TcpError {
    #[error("cannot listen on {address} ({name}): {source}; is another process using the port?")]
    Listen {
        name: String,
        address: SocketAddr,
        source: io::Error,
    },
    #[error("listener {name}: no `{next}` nukleus is linked to this tcp instance; add it to the topology")]
    NoPeer { name: String, next: String },
    #[error("io_uring is not available: {source}")]
    IoUring { source: io::Error },
}

struct Connection {
    /// Shared with the output half when the directions are split.
    socket: Arc<TcpStream>,
    /// Initial stream id (tcp -> peer); the reply is `id ^ 1`.
    id: u64,
    link: usize,
    /// Credit the peer granted us for the initial stream.
    send: SendWindow,
    /// The reply direction.
    output: Writing,
    readable: bool,
    queued: bool,
    /// Epoll reported the peer's FIN or an error: read until EOF, never stop at a short read.
    peer_closed: bool,
    /// We sent END/ABORT on the initial stream, or the peer RESET it.
    read_done: bool,
    /// The client, for log lines.
    remote: SocketAddr,
}

/// Who writes a connection's reply to the socket.
enum Writing {
    /// This nukleus (the whole tcp nukleus).
    Here(ReplyWriter),
    /// The output half on another core; `done` once it says writing is over.
    There { done: bool },
}

impl Connection {
    fn write_done(&self) -> bool {
        match &self.output {
            Writing::Here(writer) => writer.done,
            Writing::There { done } => *done,
        }
    }

    fn stop_writing(&mut self) {
        match &mut self.output {
            Writing::Here(writer) => writer.stop(),
            Writing::There { done } => *done = true,
        }
    }
}

pub struct TcpNukleus {
    config: TcpConfig,
    core: usize,
    ids: SlotIds,
    inputs: Vec<RingReader>,
    links: Vec<Output>,
    listeners: Vec<(
        TcpListener,
        usize, /* link for this listener's chain, preferred */
    )>,
    listener_ready: Vec<bool>,
    connections: Slab<Connection>,
    generations: Vec<u32>,
    ready: Vec<usize>,
    /// The ready connections this poll serves (kept, not allocated per poll).
    servicing: Vec<usize>,
    registry: Option<Registry>,
    tokens: TokenRange,
    accepted: u64,
    refused: u64,
    /// The reaktor is draining: listeners closed, no more connections.
    draining: bool,
    /// Accepting failed for want of resources: when it is tried again.
    accept_retry_at: Option<Instant>,
    /// When the current run of failed accepts began (logged once, at its start and end).
    accept_paused_since: Option<Instant>,
    accept_pauses: u64,
    timestamp: u64,
    now: Instant,
    next_scan: Instant,
    write_timeouts: u64,
    /// Connections closed because a full ring refused one of their frames (DESIGN §3).
    refused_resets: u64,
    /// Steering shared with the other tcp instances, and this instance's index in it.
    steering: Option<(std::sync::Arc<Steering>, usize)>,
    /// Whether this instance's own listeners are registered with its poller (they are not
    /// while it leaves its new connections to the others).
    own_registered: bool,
    /// Listening sockets of instances that stopped accepting, taken over by this one.
    foreign: Vec<Foreign>,
    /// The steering generation this instance last followed.
    steered: u64,
    /// Set when this is the input half of a tcp instance split by direction.
    output_half: Option<Arc<Channel>>,
}

/// Another tcp instance's listening socket (a duplicate), accepted from by this one.
struct Foreign {
    owner: usize,
    /// Index of the listener (the same in every instance).
    listener: usize,
    socket: TcpListener,
    ready: bool,
}

/// Where `accept` takes connections from.
#[derive(Clone, Copy)]
enum Source {
    Own(usize),
    Foreign(usize),
}

impl TcpNukleus {
    /// Binds the listeners (with `SO_REUSEPORT`, so several instances can share an address).
    pub fn new(
        config: TcpConfig,
        core: usize,
        instance: u16,
        links: Vec<PeerLink>,
    ) -> Result<TcpNukleus, TcpError> {
        let (inputs, links) = split_links(links);
        let mut listeners = Vec::new();
        for listener in &config.listeners {
            let link =
                pick_peer(&links, &listener.next, core, 0).ok_or_else(|| TcpError::NoPeer {
                    name: listener.name.clone(),
                    next: listener.next.clone(),
                })?;
            let socket = bind(listener, true).map_err(|source| TcpError::Listen {
                name: listener.name.clone(),
                address: listener.address,
                source,
            })?;
            listeners.push((socket, link));
        }
        Ok(TcpNukleus {
            listener_ready: vec![false; listeners.len()],
            listeners,
            connections: Slab::new(),
            generations: Vec::new(),
            ready: Vec::new(),
            servicing: Vec::new(),
            registry: None,
            tokens: TokenRange { first: 0, count: 0 },
            accepted: 0,
            refused: 0,
            draining: false,
            accept_retry_at: None,
            accept_paused_since: None,
            accept_pauses: 0,
            timestamp: 0,
            now: Instant::now(),
            next_scan: Instant::now(),
            write_timeouts: 0,
            refused_resets: 0,
            steering: None,
            own_registered: false,
            foreign: Vec::new(),
            steered: 0,
            output_half: None,
            ids: SlotIds::new(instance),
            core,
            inputs,
            links,
            config,
        })
    }

    /// Joins the steering of new connections between tcp instances as instance `index`.
    pub fn with_steering(mut self, steering: std::sync::Arc<Steering>, index: usize) -> Self {
        let duplicates = self
            .listeners
            .iter()
            .filter_map(|(l, _)| socket2::SockRef::from(l).try_clone().ok())
            .map(std::net::TcpListener::from)
            .collect();
        steering.share_listeners(index, duplicates);
        self.steering = Some((steering, index));
        self
    }

    /// Splits this instance by direction: it keeps accepting and reading sockets (the initial
    /// streams), and the returned [`TcpOutput`], meant for another core, writes the reply
    /// streams to the sockets. `input_doorbell` and `output_doorbell` wake the cores the halves
    /// run on (None when both are polled by one thread, as in tests). Call before `register`.
    pub fn split_directions(
        mut self,
        input_doorbell: Option<Arc<Doorbell>>,
        output_doorbell: Option<Arc<Doorbell>>,
    ) -> (TcpNukleus, TcpOutput) {
        let channel = Arc::new(Channel {
            to_output: Default::default(),
            to_input: Default::default(),
            input_doorbell,
            output_doorbell,
        });
        let inputs = std::mem::take(&mut self.inputs);
        let output = TcpOutput::new(
            OutputConfig {
                window: self.config.window,
                io_batch: self.config.io_batch,
                write_timeout: self.config.write_timeout,
            },
            channel.clone(),
            inputs,
        );
        self.output_half = Some(channel);
        (self, output)
    }

    /// The addresses actually bound (useful with port 0).
    pub fn local_addresses(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|(l, _)| l.local_addr().ok())
            .collect()
    }

    fn enqueue(&mut self, slot: usize) {
        if let Some(c) = self.connections.get_mut(slot) {
            if !c.queued {
                c.queued = true;
                self.ready.push(slot);
            }
        }
    }

    /// Reads and writes what the socket and the windows allow. Returns work done.
    fn service(&mut self, slot: usize) -> usize {
        let mut work = 0;
        let timestamp = self.timestamp;
        let read_chunk = self.config.read_chunk;
        let Some(c) = self.connections.get_mut(slot) else {
            return 0;
        };
        c.queued = false;
        if let Writing::Here(writer) = &mut c.output {
            // Write first: draining the kernel-side backlog frees window for the peer.
            match writer.flush(&c.socket, self.now) {
                Ok(n) => work += (n > 0) as usize,
                Err(_) => return work + self.fail(slot),
            }
            if writer.window_due() {
                let (acknowledge, maximum) = writer.recv.announce();
                let tx = &mut self.links[c.link].tx;
                reply_window(tx, c.id, timestamp, acknowledge, maximum);
            }
        }
        let c = &mut self.connections[slot];
        while c.readable && !c.read_done {
            let want = c.send.writable(read_chunk);
            if want == 0 {
                break; // resumed by the peer's WINDOW
            }
            let tx = &mut self.links[c.link].tx;
            let header = Header {
                stream_id: c.id,
                timestamp,
                sequence: c.send.sequence,
                ..Header::default()
            };
            let buffer = match tx.claim_data(&header, 0, 0, &[], want.min(tx.max_payload() - 64)) {
                Ok(buffer) => buffer,
                Err(e) => {
                    tracing::error!(core = self.core, remote = %c.remote, error = %e, "stream buffer to {} full: aborting connection", self.links[c.link].peer);
                    return work + self.fail(slot);
                }
            };
            match (&*c.socket).read(buffer) {
                Ok(0) => {
                    tx.abandon_last();
                    let _ = tx.end(&header, &[]);
                    c.read_done = true;
                    work += 1;
                }
                Ok(n) => {
                    let claimed =
                        tx.last_claimed_payload().len() - streams::frame::DATA_EXTENSION_OFFSET;
                    let reserved = c.send.consume(n);
                    tx.trim_data(n, reserved);
                    work += 1;
                    if n < claimed && !c.peer_closed {
                        // A short read drained the socket: skip the read that would only say
                        // EAGAIN. Epoll (edge-triggered) reports the next arrival as a new event.
                        c.readable = false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    tx.abandon_last();
                    c.readable = false;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => tx.abandon_last(),
                Err(_) => {
                    tx.abandon_last();
                    return work + self.fail(slot);
                }
            }
        }
        self.release_if_done(slot);
        work
    }

    /// A full ring refused a frame of stream `id` to link `link`: the connection is closed
    /// (its socket too) and the peer told on both streams (the ring defers what does not fit).
    fn on_refused(&mut self, link: usize, id: u64) {
        let slot = SlotIds::slot(id);
        let ours = self
            .connections
            .get(slot)
            .filter(|c| c.id == id | 1 && c.link == link)
            .map(|c| c.remote);
        if let Some(remote) = ours {
            tracing::warn!(core = self.core, %remote, peer = %self.links[link].peer, "stream buffer full: closing the connection whose frame it refused");
            self.refused_resets += 1;
            self.fail(slot);
        }
    }

    /// The connection broke (reset, write error, protocol violation): tell the peer on both
    /// streams and free it.
    fn fail(&mut self, slot: usize) -> usize {
        let timestamp = self.timestamp;
        let Some(c) = self.connections.get_mut(slot) else {
            return 0;
        };
        let tx = &mut self.links[c.link].tx;
        if !c.read_done {
            let _ = tx.abort(&Header::at(c.id, timestamp), &[]);
            c.read_done = true;
        }
        if !c.write_done() {
            let _ = tx.reset(&Header::at(c.id ^ 1, timestamp), &[]);
            c.stop_writing();
            if let Some(channel) = &self.output_half {
                channel.send_to_output(ToOutput::Failed { id: c.id });
            }
        }
        self.release_if_done(slot);
        1
    }

    /// Fails connections whose pending reply bytes the client has not taken for
    /// `write_timeout`.
    fn expire_stalled_writes(&mut self) -> usize {
        let now = self.now;
        let timeout = self.config.write_timeout;
        let stalled: Vec<usize> = self
            .connections
            .iter()
            .filter(|(_, c)| match &c.output {
                Writing::Here(writer) => writer.stalled(now, timeout),
                Writing::There { .. } => false, // the output half watches its own writes
            })
            .map(|(slot, _)| slot)
            .collect();
        for &slot in &stalled {
            self.write_timeouts += 1;
            tracing::info!(
                core = self.core,
                remote = %self.connections[slot].remote,
                ?timeout,
                "client took no reply bytes within the write timeout: closing connection"
            );
            self.fail(slot);
        }
        stalled.len()
    }

    fn release_if_done(&mut self, slot: usize) {
        if let Some(c) = self.connections.get(slot) {
            if c.read_done && c.write_done() {
                let c = self.connections.remove(slot);
                if let Some(registry) = &self.registry {
                    let _ = registry.deregister(&mut SourceFd(&c.socket.as_raw_fd()));
                }
            }
        }
    }

    /// Split by direction: what the output half passed on (the peer's frames against the
    /// initial streams, reply windows to write, the end of writing).
    fn drain_output_half(&mut self) -> usize {
        // Most polls find nothing: look before taking a reference (the count shares its cache
        // line with the queues the other core writes).
        if !self.has_pending() {
            return 0;
        }
        let Some(channel) = self.output_half.clone() else {
            return 0;
        };
        let mut work = 0;
        while let Some(message) = channel.to_input.pop() {
            work += 1;
            let id = match message {
                ToInput::Window { id, .. }
                | ToInput::Reset { id }
                | ToInput::ReplyWindow { id, .. }
                | ToInput::Done { id, .. }
                | ToInput::Failed { id } => id,
            };
            let slot = SlotIds::slot(id);
            let Some(c) = self.connections.get_mut(slot).filter(|c| c.id == id) else {
                continue; // a connection that is gone
            };
            let timestamp = self.timestamp;
            match message {
                ToInput::Window {
                    acknowledge,
                    maximum,
                    padding,
                    ..
                } => {
                    c.send.on_window(acknowledge, maximum, padding);
                    if c.readable && !c.read_done {
                        self.enqueue(slot);
                    }
                }
                ToInput::Reset { .. } => {
                    c.read_done = true;
                    let _ = c.socket.shutdown(Shutdown::Read);
                    self.release_if_done(slot);
                }
                ToInput::ReplyWindow {
                    acknowledge,
                    maximum,
                    ..
                } => {
                    if !c.write_done() {
                        let tx = &mut self.links[c.link].tx;
                        reply_window(tx, id, timestamp, acknowledge, maximum);
                    }
                }
                ToInput::Done { aborted, .. } => {
                    c.stop_writing();
                    if aborted && !c.read_done {
                        let _ = self.links[c.link].tx.abort(&Header::at(id, timestamp), &[]);
                        c.read_done = true;
                    }
                    self.release_if_done(slot);
                }
                ToInput::Failed { .. } => {
                    self.fail(slot);
                }
            }
        }
        work
    }

    fn on_frame(&mut self, link: usize, type_id: u32, bytes: &[u8]) {
        let Ok(f) = Frame::new(type_id, bytes) else {
            tracing::error!(
                core = self.core,
                "malformed frame from {}",
                self.links[link].peer
            );
            return;
        };
        let slot = SlotIds::slot(f.stream_id());
        let Some(c) = self.connections.get_mut(slot) else {
            return;
        };
        if c.id != f.stream_id() | 1 || c.link != link {
            return; // a frame for a connection that is gone
        }
        let timestamp = self.timestamp;
        let Writing::Here(writer) = &mut c.output else {
            return; // split by direction: the output half reads the peer's frames
        };
        match type_id {
            frame::BEGIN => {
                // The peer accepted the connection: grant it our reply window.
                let (acknowledge, maximum) = writer.recv.announce();
                reply_window(
                    &mut self.links[link].tx,
                    c.id,
                    timestamp,
                    acknowledge,
                    maximum,
                );
            }
            frame::WINDOW => {
                c.send.on_window(f.acknowledge(), f.maximum(), f.padding());
                if c.readable && !c.read_done {
                    self.enqueue(slot);
                }
            }
            frame::DATA => match writer.on_data(&c.socket, f.payload(), f.reserved(), self.now) {
                Ok(()) => self.enqueue(slot),
                Err(DataError::Window(e)) => {
                    tracing::error!(core = self.core, remote = %c.remote, error = %e, "peer broke the window: aborting connection");
                    self.fail(slot);
                }
                Err(DataError::Socket(e)) => {
                    tracing::debug!(core = self.core, remote = %c.remote, error = %e, "socket write failed: closing connection");
                    self.fail(slot);
                }
            },
            frame::END => {
                writer.ended = true;
                self.enqueue(slot);
            }
            frame::ABORT => {
                // The peer gave up on the reply: drop unsent bytes and reset the connection.
                writer.abort(&c.socket);
                if !c.read_done {
                    let _ = self.links[link].tx.abort(&Header::at(c.id, timestamp), &[]);
                    c.read_done = true;
                }
                self.release_if_done(slot);
            }
            frame::RESET => {
                // The peer wants no more input on this connection.
                c.read_done = true;
                let _ = c.socket.shutdown(Shutdown::Read);
                self.release_if_done(slot);
            }
            _ => {}
        }
    }
}

/// Grants the peer credit for the reply of the connection whose initial stream is `id`.
fn reply_window(
    tx: &mut streams::RingWriter,
    id: u64,
    timestamp: u64,
    acknowledge: u64,
    maximum: u32,
) {
    let header = Header {
        stream_id: id ^ 1,
        timestamp,
        acknowledge,
        maximum,
        ..Header::default()
    };
    // A full ring is a sizing bug the peer's reads will report; the window is re-announced.
    let _ = tx.window(&header, 0);
}

impl Nukleus for TcpNukleus {
    fn kind(&self) -> &'static str {
        "tcp"
    }

    fn uses_readiness(&self) -> bool {
        true
    }

    fn register(&mut self, registry: &Registry, tokens: TokenRange) -> io::Result<()> {
        self.tokens = tokens;
        for (index, (listener, _)) in self.listeners.iter_mut().enumerate() {
            registry.register(listener, Token(tokens.first + index), Interest::READABLE)?;
            self.listener_ready[index] = true;
        }
        self.own_registered = true;
        self.registry = Some(registry.try_clone()?);
        Ok(())
    }

    fn on_event(&mut self, event: &mio::event::Event) {
        let index = event.token().0 - self.tokens.first;
        if index < self.listeners.len() {
            self.listener_ready[index] = true;
            return;
        }
        let from_top = self.tokens.count - 1 - index;
        if let Some(f) = self.foreign.get_mut(from_top) {
            f.ready = true;
            return;
        }
        let slot = index - self.listeners.len();
        if let Some(c) = self.connections.get_mut(slot) {
            c.readable |= event.is_readable() || event.is_read_closed() || event.is_error();
            c.peer_closed |= event.is_read_closed() || event.is_error();
            if let Writing::Here(writer) = &mut c.output {
                writer.writable |=
                    event.is_writable() || event.is_write_closed() || event.is_error();
            }
            self.enqueue(slot);
        }
    }

    fn poll(&mut self, context: &PollContext) -> usize {
        self.timestamp = context.timestamp;
        self.now = context.now;
        let mut work = 0;
        if self.now >= self.next_scan {
            self.next_scan = self.now
                + (self.config.write_timeout / 4)
                    .clamp(Duration::from_millis(10), Duration::from_secs(1));
            work += self.expire_stalled_writes();
        }
        self.steer();
        self.retry_accepting();
        for index in 0..self.listeners.len() {
            if self.own_registered && self.listener_ready[index] {
                work += self.accept(Source::Own(index));
            }
        }
        for k in 0..self.foreign.len() {
            if self.foreign[k].ready {
                work += self.accept(Source::Foreign(k));
            }
        }
        // Taking the Vec out is free and lets frame handlers borrow `self` mutably.
        let mut inputs = std::mem::take(&mut self.inputs);
        for (link, rx) in inputs.iter_mut().enumerate() {
            work += rx.read(1024, |type_id, bytes| self.on_frame(link, type_id, bytes));
        }
        self.inputs = inputs;
        work += self.drain_output_half();
        let batch = self.ready.len().min(self.config.io_batch);
        let mut slots = std::mem::take(&mut self.servicing);
        slots.extend(self.ready.drain(..batch));
        for slot in slots.drain(..) {
            work += self.service(slot);
        }
        self.servicing = slots;
        for (link, id) in plumbing::refused(&mut self.links) {
            self.on_refused(link, id);
        }
        plumbing::publish(&mut self.links);
        work
    }

    fn has_pending(&self) -> bool {
        self.output_half
            .as_ref()
            .is_some_and(|channel| !channel.to_input.is_empty())
    }

    fn deadline(&self) -> Option<Instant> {
        // Under steering, look at the flags at least every 50 ms even when idle.
        let steer = self
            .steering
            .as_ref()
            .map(|_| self.now + Duration::from_millis(50));
        let scan = (!self.connections.is_empty()).then_some(self.next_scan);
        scan.into_iter()
            .chain(steer)
            .chain(self.accept_retry_at)
            .min()
    }

    fn gauges(&self, out: &mut Vec<(&'static str, u64)>) {
        out.push(("connections", self.connections.len() as u64));
        out.push(("connections_accepted_total", self.accepted));
        out.push(("connections_refused_total", self.refused));
        out.push(("streams_reset_ring_full_total", self.refused_resets));
        out.push(("write_timeouts_total", self.write_timeouts));
        out.push(("accept_pauses_total", self.accept_pauses));
        if let Some((steering, me)) = &self.steering {
            out.push(("accepting", u64::from(self.own_registered)));
            out.push(("listeners_taken_over", self.foreign.len() as u64));
            out.push(("connections_taken_over_total", steering.taken_over(*me)));
        }
    }

    fn buffered_bytes(&self) -> usize {
        self.connections
            .iter()
            .map(|(_, c)| match &c.output {
                Writing::Here(writer) => writer.buffered(),
                Writing::There { .. } => 0,
            })
            .sum()
    }

    fn shed(&mut self, bytes: usize) -> usize {
        let held = self
            .connections
            .iter()
            .filter_map(|(slot, c)| match &c.output {
                Writing::Here(writer) => Some((writer.buffered(), slot)),
                Writing::There { .. } => None,
            })
            .collect();
        let mut freed = 0;
        for (size, slot) in streams::memory::largest_first(held, bytes) {
            tracing::info!(
                core = self.core,
                remote = %self.connections[slot].remote,
                buffered = size,
                "memory above the limit: dropping the connection with the most unsent reply bytes"
            );
            self.fail(slot);
            freed += size;
        }
        freed
    }

    fn drain(&mut self) {
        self.stop_accepting();
    }

    fn drained(&self) -> bool {
        self.connections.is_empty()
    }

    fn shutdown(&mut self) {
        if let Some(registry) = &self.registry {
            for (listener, _) in &mut self.listeners {
                let _ = registry.deregister(listener);
            }
        }
        self.listeners.clear();
        for (_, c) in self.connections.iter() {
            let _ = c.socket.shutdown(Shutdown::Both);
        }
        self.connections.clear();
    }
}
