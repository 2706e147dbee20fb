//! The tcp nukleus: accepts connections, turns socket reads into DATA frames on an initial
//! stream to the next nukleus of the listener's chain, and writes the DATA frames of the reply
//! stream to the socket.
//!
//! Flow control closes the loop with the kernel: it reads only as much as the next nukleus has
//! granted, and acknowledges reply bytes only once the kernel took them, so a client that stops
//! reading stops the server from producing for it instead of growing memory.

mod begin_ex;
pub mod steering;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use slab::Slab;
use streams::frame::{self, Frame};
use streams::{
    pick_peer, split_links, Header, Nukleus, Output, PeerLink, PollContext, RecvWindow, RingReader,
    SendWindow, SlotIds, TokenRange,
};

pub use begin_ex::{decode_begin_ex, encode_begin_ex, TcpBeginEx};
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
}

struct Connection {
    socket: TcpStream,
    /// Initial stream id (tcp -> peer); the reply is `id ^ 1`.
    id: u64,
    link: usize,
    /// Credit the peer granted us for the initial stream.
    send: SendWindow,
    /// Credit we granted the peer for the reply stream.
    recv: RecvWindow,
    /// Reply bytes accepted from the peer that the kernel has not taken yet (≤ window).
    pending_out: Vec<u8>,
    readable: bool,
    writable: bool,
    queued: bool,
    /// Epoll reported the peer's FIN or an error: read until EOF, never stop at a short read.
    peer_closed: bool,
    /// We sent END/ABORT on the initial stream, or the peer RESET it.
    read_done: bool,
    /// END arrived on the reply stream; shut down writing once `pending_out` drains.
    reply_ended: bool,
    /// Writing is over (shut down, aborted or reset).
    write_done: bool,
    /// Since when `pending_out` has been waiting without the kernel taking any of it.
    stalled_since: Option<Instant>,
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
    registry: Option<Registry>,
    tokens: TokenRange,
    accepted: u64,
    refused: u64,
    last_refusal_log: Option<Instant>,
    timestamp: u64,
    now: Instant,
    next_scan: Instant,
    write_timeouts: u64,
    /// Steering shared with the other tcp instances, and this instance's index in it.
    steering: Option<(std::sync::Arc<Steering>, usize)>,
    /// Whether this instance's own listeners are registered with its poller (they are not
    /// while it leaves its new connections to the others).
    own_registered: bool,
    /// Listening sockets of instances that stopped accepting, taken over by this one.
    foreign: Vec<Foreign>,
    /// The steering generation this instance last followed.
    steered: u64,
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

fn bind(listener: &ListenerConfig, reuse_port: bool) -> io::Result<TcpListener> {
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
            registry: None,
            tokens: TokenRange { first: 0, count: 0 },
            accepted: 0,
            refused: 0,
            last_refusal_log: None,
            timestamp: 0,
            now: Instant::now(),
            next_scan: Instant::now(),
            write_timeouts: 0,
            steering: None,
            own_registered: false,
            foreign: Vec::new(),
            steered: 0,
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

    /// Follows the steering flags: stops or resumes accepting on this instance's own sockets,
    /// and takes over (or gives back) the sockets of instances that stopped accepting.
    fn steer(&mut self) {
        // One atomic load per poll while nothing changes.
        let generation = match &self.steering {
            Some((steering, _)) => steering.generation(),
            None => return,
        };
        if generation == self.steered {
            return;
        }
        let Some((steering, me)) = self.steering.clone() else {
            return;
        };
        let Some(registry) = self.registry.as_ref() else {
            return;
        };
        self.steered = generation;
        let accepting = steering.accepting(me);
        if accepting != self.own_registered {
            for (index, (listener, _)) in self.listeners.iter_mut().enumerate() {
                let token = Token(self.tokens.first + index);
                let result = if accepting {
                    registry.register(listener, token, Interest::READABLE)
                } else {
                    registry.deregister(listener)
                };
                if let Err(e) = result {
                    tracing::warn!(core = self.core, error = %e, "cannot change listener registration");
                }
                // Edge-triggered: drain what queued up while it was not registered.
                self.listener_ready[index] = accepting;
            }
            self.own_registered = accepting;
        }
        // Take over the sockets of every other instance that stopped; give back the rest.
        let flags = steering.accepting_all();
        let wanted = |owner: usize| accepting && owner != me && !flags[owner];
        let mut k = 0;
        while k < self.foreign.len() {
            if wanted(self.foreign[k].owner) {
                k += 1;
            } else {
                let mut gone = self.foreign.swap_remove(k);
                let _ = registry.deregister(&mut gone.socket);
                // Tokens follow positions: re-register the one moved into place.
                if k < self.foreign.len() {
                    let token = Token(self.tokens.first + self.tokens.count - 1 - k);
                    let moved = &mut self.foreign[k];
                    let _ = registry.reregister(&mut moved.socket, token, Interest::READABLE);
                    moved.ready = true;
                }
            }
        }
        for owner in 0..flags.len() {
            if !wanted(owner) || self.foreign.iter().any(|f| f.owner == owner) {
                continue;
            }
            for (listener, socket) in steering.listeners_of(owner).into_iter().enumerate() {
                let mut socket = TcpListener::from_std(socket);
                let token = Token(self.tokens.first + self.tokens.count - 1 - self.foreign.len());
                if let Err(e) = registry.register(&mut socket, token, Interest::READABLE) {
                    tracing::warn!(core = self.core, error = %e, "cannot take over a listener");
                    continue;
                }
                self.foreign.push(Foreign {
                    owner,
                    listener,
                    socket,
                    ready: true,
                });
            }
        }
    }

    /// The addresses actually bound (useful with port 0).
    pub fn local_addresses(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|(l, _)| l.local_addr().ok())
            .collect()
    }

    fn accept(&mut self, source: Source) -> usize {
        let mut work = 0;
        let index = match source {
            Source::Own(index) => index,
            Source::Foreign(k) => self.foreign[k].listener,
        };
        for _ in 0..64 {
            let accepted = match source {
                Source::Own(i) => self.listeners[i].0.accept(),
                Source::Foreign(k) => self.foreign[k].socket.accept(),
            };
            let (socket, remote) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    if e.kind() != io::ErrorKind::WouldBlock {
                        // EMFILE and friends: leave the backlog for the next poll, not spin.
                        tracing::warn!(error = %e, "accept failed");
                    }
                    match source {
                        Source::Own(i) => self.listener_ready[i] = false,
                        Source::Foreign(k) => self.foreign[k].ready = false,
                    }
                    return work;
                }
            };
            work += 1;
            if let (Source::Foreign(_), Some((steering, me))) = (source, &self.steering) {
                steering.count_taken_over(*me);
            }
            if self.connections.len() >= self.config.max_connections.min(SlotIds::MAX_SLOTS) {
                self.refused += 1;
                let now = Instant::now();
                if self
                    .last_refusal_log
                    .is_none_or(|t| now.duration_since(t).as_secs() >= 1)
                {
                    self.last_refusal_log = Some(now);
                    tracing::warn!(
                        core = self.core,
                        max_connections = self.config.max_connections,
                        refused_total = self.refused,
                        "connection limit reached: closing new connection from {remote}; raise max_connections in the topology"
                    );
                }
                drop(socket);
                continue;
            }
            self.admit(index, socket, remote);
        }
        work
    }

    fn admit(&mut self, listener: usize, socket: TcpStream, remote: SocketAddr) {
        let _ = socket.set_nodelay(true);
        let local = socket.local_addr().ok();
        let slot = self.connections.vacant_key();
        if self.generations.len() <= slot {
            self.generations.resize(slot + 1, 0);
        }
        self.generations[slot] = self.generations[slot].wrapping_add(1);
        let id = self.ids.initial(slot, self.generations[slot]);
        let link = self.listeners[listener].1;
        let mut connection = Connection {
            socket,
            id,
            link,
            send: SendWindow::default(),
            recv: RecvWindow::new(self.config.window),
            pending_out: Vec::new(),
            readable: true,
            writable: true,
            queued: false,
            peer_closed: false,
            read_done: false,
            reply_ended: false,
            write_done: false,
            stalled_since: None,
        };
        let registry = self.registry.as_ref().expect("registered before polling");
        let token = Token(self.tokens.first + self.listeners.len() + slot);
        if let Err(e) = registry.register(
            &mut connection.socket,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            tracing::warn!(error = %e, "cannot register accepted socket");
            return;
        }
        let mut ex = [0u8; 128];
        let ex_len = encode_begin_ex(
            &TcpBeginEx {
                listener: listener as u16,
                remote,
                local,
            },
            &mut ex,
        );
        let header = Header::at(id, self.timestamp);
        if self.links[link]
            .tx
            .begin(&header, id, &ex[..ex_len])
            .is_err()
        {
            tracing::error!(
                core = self.core,
                "stream buffer to {} full: refusing connection",
                self.links[link].peer
            );
            let _ = registry.deregister(&mut connection.socket);
            return;
        }
        self.accepted += 1;
        self.connections.insert(connection);
        // The socket may already hold data; edge-triggered readiness would not tell us again.
        self.enqueue(slot);
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
        // Write first: draining the kernel-side backlog frees window for the peer.
        if c.writable && !c.pending_out.is_empty() && !c.write_done {
            match write_pending(c, self.now) {
                Ok(n) => work += (n > 0) as usize,
                Err(_) => return work + self.fail(slot),
            }
        }
        let c = &mut self.connections[slot];
        if c.reply_ended && c.pending_out.is_empty() && !c.write_done {
            let _ = c.socket.shutdown(Shutdown::Write);
            c.write_done = true;
        }
        if c.recv.window_due() && !c.write_done {
            let (acknowledge, maximum) = c.recv.announce();
            let header = Header {
                stream_id: c.id ^ 1,
                timestamp,
                acknowledge,
                maximum,
                ..Header::default()
            };
            let _ = self.links[c.link].tx.window(&header, 0);
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
                    tracing::error!(core = self.core, error = %e, "stream buffer to {} full: aborting connection", self.links[c.link].peer);
                    return work + self.fail(slot);
                }
            };
            match c.socket.read(buffer) {
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
        if !c.write_done {
            let _ = tx.reset(&Header::at(c.id ^ 1, timestamp), &[]);
            c.write_done = true;
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
            .filter(|(_, c)| {
                c.stalled_since
                    .is_some_and(|t| now.saturating_duration_since(t) >= timeout)
            })
            .map(|(slot, _)| slot)
            .collect();
        for &slot in &stalled {
            self.write_timeouts += 1;
            tracing::info!(
                core = self.core,
                ?timeout,
                "client took no reply bytes within the write timeout: closing connection"
            );
            self.fail(slot);
        }
        stalled.len()
    }

    fn release_if_done(&mut self, slot: usize) {
        if let Some(c) = self.connections.get(slot) {
            if c.read_done && c.write_done {
                let mut c = self.connections.remove(slot);
                if let Some(registry) = &self.registry {
                    let _ = registry.deregister(&mut c.socket);
                }
            }
        }
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
        match type_id {
            frame::BEGIN => {
                // The peer accepted the connection: grant it our reply window.
                let (acknowledge, maximum) = c.recv.announce();
                let header = Header {
                    stream_id: c.id ^ 1,
                    timestamp,
                    acknowledge,
                    maximum,
                    ..Header::default()
                };
                let _ = self.links[link].tx.window(&header, 0);
            }
            frame::WINDOW => {
                c.send.on_window(f.acknowledge(), f.maximum(), f.padding());
                if c.readable && !c.read_done {
                    self.enqueue(slot);
                }
            }
            frame::DATA => {
                if c.write_done {
                    return;
                }
                if let Err(e) = c.recv.on_data(f.reserved()) {
                    tracing::error!(core = self.core, error = %e, "peer broke the window: aborting connection");
                    self.fail(slot);
                    return;
                }
                let payload = f.payload();
                let padding = f.reserved() as u64 - payload.len() as u64;
                c.recv.release(padding);
                if c.pending_out.is_empty() && c.writable {
                    match c.socket.write(payload) {
                        Ok(n) => {
                            c.recv.release(n as u64);
                            c.pending_out.extend_from_slice(&payload[n..]);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            c.writable = false;
                            c.pending_out.extend_from_slice(payload);
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                            c.pending_out.extend_from_slice(payload)
                        }
                        Err(_) => {
                            self.fail(slot);
                            return;
                        }
                    }
                } else {
                    c.pending_out.extend_from_slice(payload);
                }
                if !c.pending_out.is_empty() && c.stalled_since.is_none() {
                    c.stalled_since = Some(self.now);
                }
                self.enqueue(slot);
            }
            frame::END => {
                c.reply_ended = true;
                self.enqueue(slot);
            }
            frame::ABORT => {
                // The peer gave up on the reply: drop unsent bytes and reset the connection.
                let _ =
                    socket2::SockRef::from(&c.socket).set_linger(Some(std::time::Duration::ZERO));
                c.pending_out.clear();
                c.write_done = true;
                let _ = c.socket.shutdown(Shutdown::Both);
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

fn write_pending(c: &mut Connection, now: Instant) -> io::Result<usize> {
    let mut written = 0;
    while written < c.pending_out.len() {
        match c.socket.write(&c.pending_out[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                c.writable = false;
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    c.pending_out.drain(..written);
    c.recv.release(written as u64);
    if c.pending_out.is_empty() {
        c.stalled_since = None;
    } else if written > 0 {
        c.stalled_since = Some(now);
    }
    Ok(written)
}

impl Nukleus for TcpNukleus {
    fn kind(&self) -> &'static str {
        "tcp"
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
            c.writable |= event.is_writable() || event.is_write_closed() || event.is_error();
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
        let batch = self.ready.len().min(self.config.io_batch);
        let slots: Vec<usize> = self.ready.drain(..batch).collect();
        for slot in slots {
            work += self.service(slot);
        }
        for output in &mut self.links {
            output.publish();
        }
        work
    }

    fn deadline(&self) -> Option<Instant> {
        // Under steering, look at the flags at least every 50 ms even when idle.
        let steer = self
            .steering
            .as_ref()
            .map(|_| self.now + Duration::from_millis(50));
        let scan = (!self.connections.is_empty()).then_some(self.next_scan);
        scan.into_iter().chain(steer).min()
    }

    fn gauges(&self, out: &mut Vec<(&'static str, u64)>) {
        out.push(("connections", self.connections.len() as u64));
        out.push(("connections_accepted_total", self.accepted));
        out.push(("connections_refused_total", self.refused));
        out.push(("write_timeouts_total", self.write_timeouts));
        if let Some((steering, me)) = &self.steering {
            out.push(("accepting", u64::from(self.own_registered)));
            out.push(("listeners_taken_over", self.foreign.len() as u64));
            out.push(("connections_taken_over_total", steering.taken_over(*me)));
        }
    }

    fn shutdown(&mut self) {
        if let Some(registry) = &self.registry {
            for (listener, _) in &mut self.listeners {
                let _ = registry.deregister(listener);
            }
        }
        self.listeners.clear();
        for (_, c) in self.connections.iter_mut() {
            let _ = c.socket.shutdown(Shutdown::Both);
        }
        self.connections.clear();
    }
}
