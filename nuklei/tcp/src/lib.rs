//! The tcp nukleus: accepts connections, turns socket reads into DATA frames on an initial
//! stream to the next nukleus of the listener's chain, and writes the DATA frames of the reply
//! stream to the socket.
//!
//! Flow control closes the loop with the kernel: it reads only as much as the next nukleus has
//! granted, and acknowledges reply bytes only once the kernel took them, so a client that stops
//! reading stops the server from producing for it instead of growing memory.

mod begin_ex;
mod reply;
mod split;
pub mod steering;

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
    registry: Option<Registry>,
    tokens: TokenRange,
    accepted: u64,
    refused: u64,
    last_refusal_log: Option<Instant>,
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
                // One client gave up while queued: the next one may be fine.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(e) => {
                    match source {
                        Source::Own(i) => self.listener_ready[i] = false,
                        Source::Foreign(k) => self.foreign[k].ready = false,
                    }
                    if e.kind() != io::ErrorKind::WouldBlock {
                        // EMFILE and friends: the clients stay queued, and no new readiness
                        // edge comes for them. Try again on a timer, as nginx does.
                        self.pause_accepting(&e);
                    } else if let Some(since) = self.accept_paused_since.take() {
                        // The backlog is drained: the run of failures is over.
                        tracing::info!(
                            core = self.core,
                            paused_ms =
                                self.now.saturating_duration_since(since).as_millis() as u64,
                            "accepting connections again: every queued client was accepted"
                        );
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

    /// `accept` failed for another reason than an empty backlog: retry after `accept_retry`,
    /// logging once per run of failures (which ends when the backlog is drained).
    fn pause_accepting(&mut self, error: &io::Error) {
        self.accept_retry_at = Some(self.now + self.config.accept_retry);
        if self.accept_paused_since.is_none() {
            self.accept_paused_since = Some(self.now);
            self.accept_pauses += 1;
            tracing::warn!(
                core = self.core,
                error = %error,
                connections = self.connections.len(),
                retry_ms = self.config.accept_retry.as_millis() as u64,
                "cannot accept connections: new clients wait in the listen backlog, retrying until \
                 accepting works again; if out of file descriptors, raise the process's limit \
                 (ulimit -n) or lower [tcp] max_connections"
            );
        }
    }

    /// The retry timer of a paused accept ran out: every listener is tried again.
    fn retry_accepting(&mut self) {
        if self.accept_retry_at.is_some_and(|at| self.now >= at) {
            self.accept_retry_at = None;
            self.listener_ready
                .iter_mut()
                .for_each(|ready| *ready = true);
            self.foreign.iter_mut().for_each(|f| f.ready = true);
        }
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
        let connection = Connection {
            socket: Arc::new(socket),
            id,
            link,
            send: SendWindow::default(),
            output: match self.output_half {
                None => Writing::Here(ReplyWriter::new(self.config.window)),
                Some(_) => Writing::There { done: false },
            },
            readable: true,
            queued: false,
            peer_closed: false,
            read_done: false,
            remote,
        };
        let registry = self.registry.as_ref().expect("registered before polling");
        let token = Token(self.tokens.first + self.listeners.len() + slot);
        // The output half watches writability on its own core.
        let interest = match self.output_half {
            None => Interest::READABLE | Interest::WRITABLE,
            Some(_) => Interest::READABLE,
        };
        let fd = connection.socket.as_raw_fd();
        if let Err(e) = registry.register(&mut SourceFd(&fd), token, interest) {
            tracing::warn!(core = self.core, %remote, error = %e, "cannot register accepted socket");
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
                %remote,
                "stream buffer to {} full: refusing connection",
                self.links[link].peer
            );
            let _ = registry.deregister(&mut SourceFd(&fd));
            return;
        }
        self.accepted += 1;
        if let Some(channel) = &self.output_half {
            // Queued before the BEGIN is published, so the reply can never outrun it.
            channel.send_to_output(ToOutput::Open {
                id,
                link,
                socket: connection.socket.clone(),
                remote,
            });
        }
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
        let slots: Vec<usize> = self.ready.drain(..batch).collect();
        for slot in slots {
            work += self.service(slot);
        }
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
