//! The tcp nukleus over io_uring (`[tcp] transport = "io_uring"`): the same streams and
//! frames as the epoll transport, with the socket work done by the kernel's ring.
//!
//! - **Accept**: one multishot accept per listener; each completion is a new connection,
//!   admitted (or refused when full or above the memory limit) as with epoll. An accept that
//!   failed for want of resources (EMFILE) is submitted again after `accept_retry`.
//! - **Receive**: one multishot receive per connection into a ring of provided buffers shared
//!   by all connections. A filled buffer is lent to the connection until its bytes went out as
//!   DATA within the peer's window; when the window shuts with bytes held, the receive is
//!   cancelled and submitted again once the held bytes are passed on, so a peer that stops
//!   reading holds at most a few buffers. When the buffers run out the receive ends (ENOBUFS)
//!   and is submitted again once buffers come back.
//! - **Send**: a connection's reply bytes are gathered while a send is in flight and go in
//!   the next one; the buffer moves into the ring and comes back with the completion.
//! - **Batching**: requests are only queued during a poll; one `io_uring_enter` at its end
//!   submits them all and gives back the consumed buffers. Completions are read from the
//!   shared ring without a system call; the ring's descriptor is registered with the core's
//!   epoll so a parked core wakes when one arrives.

mod connection;

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use slab::Slab;
use streams::frame::{self, Frame};
use streams::uring::{Completion, Uring, UringConfig};
use streams::{
    plumbing, split_links, Header, Nukleus, Output, PeerLink, PollContext, RingReader, SlotIds,
    TokenRange,
};

use crate::accept::{admission, log_accept_pause, log_accept_resumed, next_id, open_stream};
use crate::bind;
use crate::{reply_window, TcpBeginEx, TcpConfig, TcpError};
use connection::Connection;

/// The part of a stream id that tags its connection's requests (the instance bits dropped).
const TAG_MASK: u64 = (1 << 48) - 1;

pub struct UringTcpNukleus {
    config: TcpConfig,
    core: usize,
    ids: SlotIds,
    inputs: Vec<RingReader>,
    links: Vec<Output>,
    uring: Uring,
    /// Listening sockets (blocking: io_uring waits), their link, and whether their multishot
    /// accept is submitted.
    listeners: Vec<(TcpListener, usize, bool)>,
    connections: Slab<Connection>,
    generations: Vec<u32>,
    ready: Vec<usize>,
    /// The ready connections this poll serves (kept, not allocated per poll).
    servicing: Vec<usize>,
    /// Connections whose receive ended for want of buffers.
    starved: Vec<usize>,
    /// Buffers lent to connections (the rest are with the kernel).
    lent: usize,
    completions: Vec<Completion>,
    /// Sockets to close after this poll's submit, so no queued request names a reused number.
    closing: Vec<TcpStream>,
    accepted: u64,
    refused: u64,
    draining: bool,
    accept_retry_at: Option<Instant>,
    accept_paused_since: Option<Instant>,
    accept_pauses: u64,
    timestamp: u64,
    now: Instant,
    next_scan: Instant,
    write_timeouts: u64,
    refused_resets: u64,
    submit_errors: u64,
}

impl UringTcpNukleus {
    /// Sets up the ring and binds the listeners. An error from the ring's setup means
    /// io_uring is not available here: the caller falls back to the epoll transport.
    pub fn new(
        config: TcpConfig,
        core: usize,
        instance: u16,
        links: Vec<PeerLink>,
    ) -> Result<UringTcpNukleus, (TcpError, Vec<PeerLink>)> {
        let uring = match Uring::new(UringConfig {
            entries: 1024,
            buffers: config.io_uring_buffers,
            buffer_size: config.io_uring_buffer_size,
            defer_taskrun: false,
        }) {
            Ok(uring) => uring,
            Err(source) => return Err((TcpError::IoUring { source }, links)),
        };
        let (inputs, links_out) = split_links(links);
        let mut listeners = Vec::new();
        for listener in &config.listeners {
            let link =
                streams::pick_peer(&links_out, &listener.next, core, 0).ok_or_else(|| {
                    (
                        TcpError::NoPeer {
                            name: listener.name.clone(),
                            next: listener.next.clone(),
                        },
                        Vec::new(),
                    )
                })?;
            let socket = bind(listener, true)
                .and_then(|l| {
                    let std: TcpListener = l.into();
                    std.set_nonblocking(false)?;
                    Ok(std)
                })
                .map_err(|source| {
                    (
                        TcpError::Listen {
                            name: listener.name.clone(),
                            address: listener.address,
                            source,
                        },
                        Vec::new(),
                    )
                })?;
            listeners.push((socket, link, false));
        }
        let now = Instant::now();
        Ok(UringTcpNukleus {
            ids: SlotIds::new(instance),
            core,
            inputs,
            links: links_out,
            uring,
            listeners,
            connections: Slab::new(),
            generations: Vec::new(),
            ready: Vec::new(),
            servicing: Vec::new(),
            starved: Vec::new(),
            lent: 0,
            completions: Vec::new(),
            closing: Vec::new(),
            accepted: 0,
            refused: 0,
            draining: false,
            accept_retry_at: None,
            accept_paused_since: None,
            accept_pauses: 0,
            timestamp: 0,
            now,
            next_scan: now,
            write_timeouts: 0,
            refused_resets: 0,
            submit_errors: 0,
            config,
        })
    }

    /// The addresses actually bound (useful with port 0).
    pub fn local_addresses(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|(l, _, _)| l.local_addr().ok())
            .collect()
    }

    fn tag(id: u64) -> u64 {
        id & TAG_MASK
    }

    /// The connection a request's tag names, if it is still the same one.
    fn slot_of(&self, tag: u64) -> Option<usize> {
        let slot = SlotIds::slot(tag);
        self.connections
            .get(slot)
            .filter(|c| Self::tag(c.id) == tag)
            .map(|_| slot)
    }

    fn enqueue(&mut self, slot: usize) {
        if let Some(c) = self.connections.get_mut(slot) {
            if !c.queued {
                c.queued = true;
                self.ready.push(slot);
            }
        }
    }

    fn arm_accepts(&mut self) {
        if self.draining || self.accept_retry_at.is_some() {
            return;
        }
        for (index, (listener, _, armed)) in self.listeners.iter_mut().enumerate() {
            if !*armed {
                match self.uring.accept_multishot(listener.as_fd(), index as u64) {
                    Ok(()) => *armed = true,
                    Err(e) => {
                        tracing::warn!(core = self.core, error = %e, "cannot submit an io_uring accept")
                    }
                }
            }
        }
    }

    fn on_completion(&mut self, completion: Completion) -> usize {
        tracing::trace!(core = self.core, ?completion, "io_uring completion");
        match completion {
            Completion::Accepted {
                tag,
                socket,
                more,
                backlog_empty,
            } => {
                let index = tag as usize;
                if !more {
                    if let Some(l) = self.listeners.get_mut(index) {
                        l.2 = false;
                    }
                }
                match socket {
                    Ok(fd) => {
                        if backlog_empty {
                            // The run of failures (if any) is over: every queued client is in.
                            if let Some(since) = self.accept_paused_since.take() {
                                log_accept_resumed(self.core, self.now, since);
                            }
                        }
                        self.on_accepted(index, TcpStream::from(fd))
                    }
                    Err(e) if self.draining || e.raw_os_error() == Some(libc::ECANCELED) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
                        ) => {}
                    Err(e) => {
                        // EMFILE and friends: the clients stay queued; try again on a timer.
                        self.accept_retry_at = Some(self.now + self.config.accept_retry);
                        if self.accept_paused_since.is_none() {
                            self.accept_paused_since = Some(self.now);
                            self.accept_pauses += 1;
                            log_accept_pause(self.core, &e, self.connections.len(), &self.config);
                        }
                    }
                }
                1
            }
            Completion::Received { tag, result, more } => {
                let Some(slot) = self.slot_of(tag) else {
                    if let Ok(Some(buffer)) = result {
                        self.uring.recycle(buffer);
                    }
                    return 1;
                };
                let c = &mut self.connections[slot];
                if !more {
                    c.recv_armed = false;
                    c.recv_cancelling = false;
                }
                match result {
                    Ok(Some(buffer)) if c.read_done => self.uring.recycle(buffer),
                    Ok(Some(buffer)) => {
                        self.lent += 1;
                        c.held.push_back(buffer);
                    }
                    Ok(None) => c.eof = true,
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => self.starved.push(slot),
                    Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => {}
                    Err(e) => {
                        tracing::debug!(core = self.core, remote = %c.remote, error = %e, "socket receive failed: closing connection");
                        return self.fail(slot);
                    }
                }
                self.enqueue(slot);
                1
            }
            Completion::Sent {
                tag,
                result,
                buffer,
            } => {
                let Some(slot) = self.slot_of(tag) else {
                    return 1;
                };
                let now = self.now;
                let c = &mut self.connections[slot];
                match result {
                    Ok(sent) => {
                        if let Some(again) = c.reply.on_sent(buffer, sent, now) {
                            if let Err(e) = self.uring.send(c.socket.as_fd(), again, tag) {
                                tracing::warn!(core = self.core, error = %e, "cannot submit an io_uring send");
                                return self.fail(slot);
                            }
                        }
                        self.enqueue(slot);
                    }
                    Err(e) => {
                        tracing::debug!(core = self.core, remote = %c.remote, error = %e, "socket send failed: closing connection");
                        c.reply.in_flight = 0;
                        return self.fail(slot);
                    }
                }
                1
            }
            Completion::Other => 0,
        }
    }

    fn on_accepted(&mut self, listener: usize, socket: TcpStream) {
        self.accepted += 1;
        let Ok(remote) = socket.peer_addr() else {
            return; // the client is already gone
        };
        if let Some(refusal) = admission(self.connections.len(), self.config.max_connections) {
            self.refused += 1;
            refusal.log(self.core, remote, self.config.max_connections, self.refused);
            self.accepted -= 1;
            return;
        }
        let _ = socket.set_nodelay(true);
        let local = socket.local_addr().ok();
        let slot = self.connections.vacant_key();
        let id = next_id(&mut self.generations, self.ids, slot);
        let link = self.listeners[listener].1;
        let begin = TcpBeginEx {
            listener: listener as u16,
            remote,
            local,
        };
        if open_stream(&mut self.links[link].tx, id, self.timestamp, &begin).is_err() {
            tracing::error!(core = self.core, %remote, "stream buffer to {} full: refusing connection", self.links[link].peer);
            self.accepted -= 1;
            return;
        }
        let window = self.config.window;
        self.connections
            .insert(Connection::new(socket, id, link, window, remote));
        // The first receive goes out once the peer granted a window (its WINDOW frame).
    }

    /// Passes held bytes on within the window, ends the stream after the FIN, (re)submits or
    /// cancels the receive, and starts the next send.
    fn service(&mut self, slot: usize) -> usize {
        let mut work = 0;
        let timestamp = self.timestamp;
        let Some(c) = self.connections.get_mut(slot) else {
            return 0;
        };
        c.queued = false;
        let tag = Self::tag(c.id);
        let tx = &mut self.links[c.link].tx;
        while !c.read_done {
            if !c.spill.is_empty() {
                let bytes = &c.spill[c.spill_offset..];
                let sent = tx.data_within(&mut c.send, c.id, timestamp, bytes);
                if sent == 0 {
                    if c.send.available() > 0 {
                        tracing::error!(core = self.core, remote = %c.remote, "stream buffer to {} full: aborting connection", self.links[c.link].peer);
                        return work + self.fail(slot);
                    }
                    break;
                }
                work += 1;
                c.spill_offset += sent;
                if c.spill_offset == c.spill.len() {
                    c.spill.clear();
                    c.spill_offset = 0;
                    streams::memory::release_drained(&mut c.spill, 0);
                }
            } else if let Some(buffer) = c.held.front() {
                let bytes = &self.uring.data(buffer)[c.held_offset..];
                let sent = tx.data_within(&mut c.send, c.id, timestamp, bytes);
                if sent == 0 {
                    if c.send.available() > 0 {
                        tracing::error!(core = self.core, remote = %c.remote, "stream buffer to {} full: aborting connection", self.links[c.link].peer);
                        return work + self.fail(slot);
                    }
                    break; // resumed by the peer's WINDOW
                }
                work += 1;
                c.held_offset += sent;
                if c.held_offset == buffer.len() {
                    let buffer = c.held.pop_front().expect("front exists");
                    c.held_offset = 0;
                    self.uring.recycle(buffer);
                    self.lent -= 1;
                }
            } else if c.eof {
                let header = Header::at(c.id, timestamp);
                let _ = tx.end(&header, &[]);
                c.read_done = true;
                work += 1;
            } else {
                break;
            }
        }
        if !c.read_done && !c.held.is_empty() {
            // The window shut with bytes held: stop receiving until they are passed on, and
            // give the buffers back to the ring (another connection may need them).
            if c.recv_armed && !c.recv_cancelling && self.uring.cancel(true, tag).is_ok() {
                c.recv_cancelling = true;
            }
            for buffer in c.held.drain(..) {
                c.spill
                    .extend_from_slice(&self.uring.data(&buffer)[c.held_offset..]);
                c.held_offset = 0;
                self.uring.recycle(buffer);
                self.lent -= 1;
            }
        }
        if c.wants_recv() {
            if self.lent >= usize::from(self.config.io_uring_buffers) {
                // Every buffer is lent: submitted now, the receive would end at once with
                // ENOBUFS. It goes out when buffers come back.
                self.starved.push(slot);
            } else {
                match self.uring.recv_multishot(c.socket.as_fd(), tag) {
                    Ok(()) => c.recv_armed = true,
                    Err(e) => {
                        tracing::warn!(core = self.core, error = %e, "cannot submit an io_uring receive");
                        return work + self.fail(slot);
                    }
                }
            }
        }
        if let Some(bytes) = c.reply.next_send() {
            if let Err(e) = self.uring.send(c.socket.as_fd(), bytes, tag) {
                tracing::warn!(core = self.core, error = %e, "cannot submit an io_uring send");
                return work + self.fail(slot);
            }
            work += 1;
        }
        if c.reply.window_due() {
            let (acknowledge, maximum) = c.reply.recv.announce();
            reply_window(tx, c.id, timestamp, acknowledge, maximum);
        }
        if c.reply.finished() {
            let _ = c.socket.shutdown(Shutdown::Write);
            c.reply.done = true;
        }
        self.release_if_done(slot);
        work
    }

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
        if !c.reply.done {
            let _ = tx.reset(&Header::at(c.id ^ 1, timestamp), &[]);
            c.reply.stop();
        }
        self.release_if_done(slot);
        1
    }

    fn release_if_done(&mut self, slot: usize) {
        if !self.connections.get(slot).is_some_and(Connection::done) {
            return;
        }
        let mut c = self.connections.remove(slot);
        for buffer in c.held.drain(..) {
            self.uring.recycle(buffer);
            self.lent -= 1;
        }
        // The ring holds the socket open while a request for it is in flight.
        if c.recv_armed && !c.recv_cancelling {
            let _ = self.uring.cancel(true, Self::tag(c.id));
        }
        if c.reply.in_flight > 0 {
            let _ = self.uring.cancel_sends(Self::tag(c.id));
        }
        self.closing.push(c.socket);
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
                let (acknowledge, maximum) = c.reply.recv.announce();
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
                self.enqueue(slot);
            }
            frame::DATA => match c.reply.on_data(f.payload(), f.reserved(), self.now) {
                Ok(()) => self.enqueue(slot),
                Err(e) => {
                    tracing::error!(core = self.core, remote = %c.remote, error = %e, "peer broke the window: aborting connection");
                    self.fail(slot);
                }
            },
            frame::END => {
                c.reply.ended = true;
                self.enqueue(slot);
            }
            frame::ABORT => {
                // The peer gave up on the reply: a reset, so the client sees it cut short.
                let _ = socket2::SockRef::from(&c.socket).set_linger(Some(Duration::ZERO));
                c.reply.stop();
                if !c.read_done {
                    let _ = self.links[link].tx.abort(&Header::at(c.id, timestamp), &[]);
                    c.read_done = true;
                }
                self.release_if_done(slot);
            }
            frame::RESET => {
                c.read_done = true;
                let _ = c.socket.shutdown(Shutdown::Read);
                self.release_if_done(slot);
            }
            _ => {}
        }
    }

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

    fn expire_stalled_writes(&mut self) -> usize {
        let (now, timeout) = (self.now, self.config.write_timeout);
        let stalled: Vec<usize> = self
            .connections
            .iter()
            .filter(|(_, c)| c.reply.stalled(now, timeout))
            .map(|(slot, _)| slot)
            .collect();
        for &slot in &stalled {
            self.write_timeouts += 1;
            tracing::info!(core = self.core, remote = %self.connections[slot].remote, ?timeout, "client took no reply bytes within the write timeout: closing connection");
            let _ = socket2::SockRef::from(&self.connections[slot].socket)
                .set_linger(Some(Duration::ZERO));
            // The pending send ends when the socket is shut down.
            let _ = self.connections[slot].socket.shutdown(Shutdown::Both);
            self.fail(slot);
        }
        stalled.len()
    }
}

impl Nukleus for UringTcpNukleus {
    fn kind(&self) -> &'static str {
        "tcp"
    }

    /// Completions are read from the shared ring (`has_completions`), not from epoll, which
    /// only wakes the core from a park.
    fn uses_readiness(&self) -> bool {
        false
    }

    fn register(&mut self, registry: &Registry, tokens: TokenRange) -> io::Result<()> {
        // The ring's descriptor is readable while completions wait: it wakes a parked core.
        let fd = self.uring.as_raw_fd();
        registry.register(&mut SourceFd(&fd), Token(tokens.first), Interest::READABLE)?;
        self.arm_accepts();
        Ok(())
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
        if self.accept_retry_at.is_some_and(|at| self.now >= at) {
            self.accept_retry_at = None;
        }
        self.arm_accepts();
        let mut completions = std::mem::take(&mut self.completions);
        self.uring.completions(&mut completions);
        for completion in completions.drain(..) {
            work += self.on_completion(completion);
        }
        self.completions = completions;
        let mut inputs = std::mem::take(&mut self.inputs);
        for (link, rx) in inputs.iter_mut().enumerate() {
            work += rx.read(1024, |type_id, bytes| self.on_frame(link, type_id, bytes));
        }
        self.inputs = inputs;
        if !self.starved.is_empty() && self.lent < usize::from(self.config.io_uring_buffers) {
            let mut starved = std::mem::take(&mut self.starved);
            starved.sort_unstable();
            starved.dedup();
            for slot in starved {
                self.enqueue(slot);
            }
        }
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
        if let Err(e) = self.uring.submit() {
            self.submit_errors += 1;
            if e.kind() != io::ErrorKind::Interrupted {
                tracing::warn!(core = self.core, error = %e, "io_uring submit failed; retrying on the next poll");
            }
        }
        // Only now: every request naming these sockets has been submitted.
        self.closing.clear();
        work
    }

    fn has_pending(&self) -> bool {
        self.uring.has_completions() || !self.ready.is_empty()
    }

    fn deadline(&self) -> Option<Instant> {
        let scan = (!self.connections.is_empty()).then_some(self.next_scan);
        scan.into_iter().chain(self.accept_retry_at).min()
    }

    fn gauges(&self, out: &mut Vec<(&'static str, u64)>) {
        out.push(("connections", self.connections.len() as u64));
        out.push(("connections_accepted_total", self.accepted));
        out.push(("connections_refused_total", self.refused));
        out.push(("streams_reset_ring_full_total", self.refused_resets));
        out.push(("write_timeouts_total", self.write_timeouts));
        out.push(("accept_pauses_total", self.accept_pauses));
        out.push(("io_uring", 1));
        out.push(("io_uring_buffers_lent", self.lent as u64));
        out.push((
            "io_uring_sends_in_flight",
            self.uring.sends_in_flight() as u64,
        ));
    }

    fn buffered_bytes(&self) -> usize {
        self.connections.iter().map(|(_, c)| c.buffered()).sum()
    }

    fn shed(&mut self, bytes: usize) -> usize {
        let held = self
            .connections
            .iter()
            .map(|(slot, c)| (c.buffered(), slot))
            .collect();
        let mut freed = 0;
        for (size, slot) in streams::memory::largest_first(held, bytes) {
            tracing::info!(core = self.core, remote = %self.connections[slot].remote, buffered = size, "memory above the limit: dropping the connection with the most unsent reply bytes");
            let _ = self.connections[slot].socket.shutdown(Shutdown::Both);
            self.fail(slot);
            freed += size;
        }
        freed
    }

    fn drain(&mut self) {
        self.draining = true;
        self.accept_retry_at = None;
        for (index, (listener, _, armed)) in self.listeners.iter_mut().enumerate() {
            if *armed {
                let _ = self.uring.cancel(false, index as u64);
            }
            // Queued and new clients are refused by the kernel at once.
            let _ = socket2::SockRef::from(&*listener).shutdown(Shutdown::Read);
        }
        let _ = self.uring.submit();
    }

    fn drained(&self) -> bool {
        self.connections.is_empty()
    }

    fn shutdown(&mut self) {
        self.draining = true;
        for (_, c) in self.connections.iter() {
            let _ = c.socket.shutdown(Shutdown::Both);
        }
        for (listener, _, _) in &self.listeners {
            let _ = socket2::SockRef::from(listener).shutdown(Shutdown::Read);
        }
        // Dropping the ring (with this nukleus) cancels what is still in flight.
    }
}
