//! The tls nukleus: between tcp and the next nukleus of a listener's chain (http).
//!
//! Per connection there are two exchanges: the one tcp opened (ciphertext DATA in on its
//! initial stream, ciphertext DATA out on our reply), and one we open towards http once the
//! handshake has completed (plaintext out on our initial stream, plaintext in on http's
//! reply). Nothing reaches http before the handshake completed, so garbage, refused clients
//! and truncated handshakes never cost http anything.
//!
//! Flow control, both directions:
//! * ciphertext from tcp is acknowledged only as the [`TlsSession`] consumes it (it stops once
//!   its inbound plaintext buffer is full), so unconsumed bytes are bounded by our window;
//! * plaintext goes to http only within the window http granted;
//! * plaintext from http is acknowledged as the session accepts it for encryption, and a new
//!   WINDOW is announced to http only once all ciphertext went to tcp within tcp's window.
//!
//! Memory per connection is bounded by the two windows we grant plus the session's limit.
//! A failed handshake or connection (bad bytes, unknown SNI, refused client certificate,
//! truncated handshake) flushes its alert to tcp, ends that connection, logs one line, and
//! touches nothing else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ServerConfig;
use slab::Slab;
use streams::frame::{self, Frame};
use streams::{
    pick_peer, plumbing, split_links, DirtySet, Header, Nukleus, Output, PeerLink, PeerStreams,
    PollContext, RecvWindow, Remote, RingReader, SendWindow, SlotIds,
};

use crate::begin_ex::{encode_begin_ex, ClientIdentity, TlsBeginEx};
use crate::engine::{TlsSession, DEFAULT_BUFFER_LIMIT};

/// What a TLS listener serves with.
#[derive(Clone)]
pub struct TlsListener {
    /// The listener's name, for logs.
    pub name: String,
    pub server_config: Arc<ServerConfig>,
    /// Kind of the nukleus after tls in the listener's chain (`http`).
    pub next: String,
    /// A connection still handshaking this long after it was accepted is closed, so clients
    /// that connect and send nothing (or stall mid-handshake) cannot hold slots forever.
    pub handshake_timeout: Duration,
}

#[derive(Clone)]
pub struct TlsConfig {
    /// Indexed by the listener index tcp puts in its BEGIN extension; `None` for listeners
    /// without TLS.
    pub listeners: Vec<Option<TlsListener>>,
    /// Ciphertext window granted to tcp per connection.
    pub window: u32,
    /// Plaintext window granted to the next nukleus per connection.
    pub app_window: u32,
    /// The session's buffer limit in each direction (see [`TlsSession::new`]).
    pub buffer_limit: usize,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            listeners: Vec::new(),
            window: 65536,
            app_window: 65536,
            buffer_limit: DEFAULT_BUFFER_LIMIT,
        }
    }
}

struct Connection {
    /// tcp's link index and its initial stream id; our reply to tcp is `net_id ^ 1`.
    net: usize,
    net_id: u64,
    listener: usize,
    remote: Option<SocketAddr>,
    session: TlsSession,
    /// Ciphertext we granted tcp.
    net_recv: RecvWindow,
    /// Credit tcp granted for our ciphertext.
    net_send: SendWindow,
    /// Ciphertext received but not yet consumed by the session (within `net_recv`).
    cipher_in: Vec<u8>,
    /// The next nukleus's link index once its stream is open.
    app: Option<usize>,
    /// Our initial stream id towards the next nukleus; its reply is `app_id ^ 1`.
    app_id: u64,
    app_send: SendWindow,
    app_recv: RecvWindow,
    /// The next nukleus answered with its reply BEGIN: our window for it may be announced.
    app_reply_begun: bool,
    /// Plaintext received from the next nukleus that the session has not accepted yet.
    plain_out: Vec<u8>,
    /// tcp ended its stream (the client's FIN).
    net_ended: bool,
    /// Some ciphertext arrived (a bare connect-and-close is no TLS attempt worth a warning).
    received: bool,
    /// No more frames will be read from / sent on tcp's initial stream.
    net_in_done: bool,
    /// Our reply to tcp is over (END, ABORT, or tcp RESET it).
    net_out_done: bool,
    /// Our stream to the next nukleus is over (END, ABORT, or it RESET it).
    app_out_done: bool,
    /// The next nukleus's reply is over (END, ABORT, or we RESET it).
    app_in_done: bool,
    /// The next nukleus ended its reply: close_notify once its plaintext is in the session.
    closing: bool,
    close_notify_sent: bool,
    /// The session failed: flush the alert, then end the connection.
    failed: bool,
    accepted_at: Instant,
}

impl Connection {
    fn finished(&self) -> bool {
        self.net_in_done
            && self.net_out_done
            && (self.app.is_none() || (self.app_out_done && self.app_in_done))
    }
}

pub struct TlsNukleus {
    config: TlsConfig,
    core: usize,
    ids: SlotIds,
    inputs: Vec<RingReader>,
    outputs: Vec<Output>,
    is_network: Vec<bool>,
    /// Per network input: tcp's connection slot -> our connection slot + 1.
    by_network: PeerStreams,
    connections: Slab<Connection>,
    generations: Vec<u32>,
    dirty: DirtySet,
    /// Connections closed because a full ring refused one of their frames (DESIGN §3).
    refused_resets: u64,
    scratch: Vec<u8>,
    timestamp: u64,
    handshakes: u64,
    failures: u64,
    /// The core loop's clock at the start of this poll.
    now: Instant,
    /// When stalled handshakes are looked for next.
    next_scan: Instant,
    timeouts: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsNukleusError {
    #[error("listener `{name}`: no `{next}` nukleus is linked to this tls instance; add it to the topology")]
    NoPeer { name: String, next: String },
}

impl TlsNukleus {
    pub fn new(
        config: TlsConfig,
        core: usize,
        instance: u16,
        links: Vec<PeerLink>,
    ) -> Result<TlsNukleus, TlsNukleusError> {
        let (inputs, outputs) = split_links(links);
        for listener in config.listeners.iter().flatten() {
            if !outputs.iter().any(|o| o.kind == listener.next) {
                return Err(TlsNukleusError::NoPeer {
                    name: listener.name.clone(),
                    next: listener.next.clone(),
                });
            }
        }
        let is_network = outputs.iter().map(|o| o.role.is_network()).collect();
        let by_network = PeerStreams::new(outputs.len());
        Ok(TlsNukleus {
            config,
            core,
            ids: SlotIds::new(instance),
            inputs,
            outputs,
            is_network,
            by_network,
            connections: Slab::new(),
            generations: Vec::new(),
            dirty: DirtySet::default(),
            refused_resets: 0,
            scratch: Vec::new(),
            timestamp: 0,
            handshakes: 0,
            failures: 0,
            now: Instant::now(),
            next_scan: Instant::now(),
            timeouts: 0,
        })
    }

    fn header(&self, stream_id: u64) -> Header {
        Header::at(stream_id, self.timestamp)
    }

    fn mark_dirty(&mut self, slot: usize) {
        if self.connections.contains(slot) {
            self.dirty.mark(slot);
        }
    }

    /// A full ring refused a frame of stream `id` to output `output`: the connection it
    /// belongs to is torn down on both sides (the ring defers what does not fit) and counted.
    fn on_refused(&mut self, output: usize, id: u64) {
        let slot = if self.is_network[output] {
            self.by_network.get(output, id).filter(|&slot| {
                self.connections
                    .get(slot)
                    .is_some_and(|c| c.net_id == id | 1 && c.net == output)
            })
        } else {
            let slot = SlotIds::slot(id);
            self.connections
                .get(slot)
                .is_some_and(|c| c.app_id == id | 1 && c.app == Some(output))
                .then_some(slot)
        };
        if let Some(slot) = slot {
            let remote = Remote(self.connections[slot].remote);
            tracing::warn!(core = self.core, %remote, peer = %self.outputs[output].peer, "stream buffer full: closing the connection whose frame it refused");
            self.refused_resets += 1;
            self.teardown(slot);
        }
    }

    // ----- network (tcp) side -------------------------------------------------------------

    fn on_network_frame(&mut self, input: usize, f: Frame<'_>) {
        let slot = self.by_network.get(input, f.stream_id()).filter(|&s| {
            self.connections
                .get(s)
                .is_some_and(|c| c.net_id == f.stream_id() | 1)
        });
        let reply = frame::is_reply(f.stream_id());
        match (f.type_id(), slot, reply) {
            (frame::BEGIN, None, false) => self.on_network_begin(input, f),
            (frame::DATA, Some(slot), false) => self.on_network_data(slot, f),
            (frame::END, Some(slot), false) => {
                let c = &mut self.connections[slot];
                c.net_ended = true;
                self.mark_dirty(slot);
            }
            (frame::ABORT, Some(slot), false) => {
                self.connections[slot].net_in_done = true;
                self.teardown(slot);
            }
            (frame::WINDOW, Some(slot), true) => {
                self.connections[slot].net_send.on_window(
                    f.acknowledge(),
                    f.maximum(),
                    f.padding(),
                );
                self.mark_dirty(slot);
            }
            (frame::RESET, Some(slot), true) => {
                self.connections[slot].net_out_done = true;
                self.teardown(slot);
            }
            _ => {}
        }
    }

    fn on_network_begin(&mut self, input: usize, f: Frame<'_>) {
        let net_id = f.stream_id();
        let tcp = nukleus_tcp::decode_begin_ex(f.extension());
        let listener = tcp.map(|ex| ex.listener as usize);
        let config = listener
            .and_then(|l| self.config.listeners.get(l))
            .and_then(Option::as_ref);
        let Some(config) = config else {
            tracing::error!(
                core = self.core,
                remote = %Remote(tcp.map(|ex| ex.remote)),
                listener = ?listener,
                "tcp connection for a listener without TLS settings: refusing it"
            );
            let (reset, abort) = (self.header(net_id), self.header(net_id ^ 1));
            let _ = self.outputs[input].tx.reset(&reset, &[]);
            let _ = self.outputs[input].tx.abort(&abort, &[]);
            return;
        };
        let session = TlsSession::new(config.server_config.clone(), self.config.buffer_limit)
            .with_remote(tcp.map(|ex| ex.remote));
        let slot = self.connections.vacant_key();
        if self.generations.len() <= slot {
            self.generations.resize(slot + 1, 0);
        }
        self.generations[slot] = self.generations[slot].wrapping_add(1);
        let app_id = self.ids.initial(slot, self.generations[slot]);
        self.connections.insert(Connection {
            net: input,
            net_id,
            listener: listener.unwrap_or(0),
            remote: tcp.map(|ex| ex.remote),
            session,
            net_recv: RecvWindow::new(self.config.window),
            net_send: SendWindow::default(),
            cipher_in: Vec::new(),
            app: None,
            app_id,
            app_send: SendWindow::default(),
            app_recv: RecvWindow::new(self.config.app_window),
            app_reply_begun: false,
            plain_out: Vec::new(),
            net_ended: false,
            received: false,
            net_in_done: false,
            net_out_done: false,
            app_out_done: false,
            app_in_done: false,
            closing: false,
            close_notify_sent: false,
            failed: false,
            accepted_at: self.now,
        });
        self.by_network.insert(input, net_id, slot);
        // Our reply carries the handshake; tcp grants its window when it sees this BEGIN.
        let h = self.header(net_id ^ 1);
        let _ = self.outputs[input].tx.begin(&h, net_id, &[]);
        self.mark_dirty(slot); // sends the initial WINDOW for ciphertext
    }

    fn on_network_data(&mut self, slot: usize, f: Frame<'_>) {
        let core = self.core;
        let c = &mut self.connections[slot];
        if c.net_in_done {
            return;
        }
        if let Err(e) = c.net_recv.on_data(f.reserved()) {
            tracing::error!(core, remote = %Remote(c.remote), error = %e, "tcp broke the ciphertext window: aborting connection");
            self.teardown(slot);
            return;
        }
        let payload = f.payload();
        c.received |= !payload.is_empty();
        c.net_recv
            .release(f.reserved() as u64 - payload.len() as u64);
        if c.failed || (c.app_out_done && c.app.is_some()) {
            // Nobody will read what this decrypts: acknowledge and drop it.
            c.net_recv.release(payload.len() as u64);
        } else if c.cipher_in.is_empty() {
            // Common case: decrypt straight from the ring, copy only what is left over.
            match c.session.receive_ciphertext(payload) {
                Ok(used) => {
                    c.net_recv.release(used as u64);
                    c.cipher_in.extend_from_slice(&payload[used..]);
                }
                Err(_) => c.failed = true,
            }
        } else {
            c.cipher_in.extend_from_slice(payload);
        }
        self.mark_dirty(slot);
    }

    // ----- application (http) side --------------------------------------------------------

    fn on_app_frame(&mut self, input: usize, f: Frame<'_>) {
        let slot = SlotIds::slot(f.stream_id());
        match self.connections.get(slot) {
            Some(c) if c.app_id == f.stream_id() | 1 && c.app == Some(input) => {}
            _ => return,
        }
        let reply = frame::is_reply(f.stream_id());
        let core = self.core;
        let c = &mut self.connections[slot];
        match (f.type_id(), reply) {
            (frame::WINDOW, false) => {
                c.app_send
                    .on_window(f.acknowledge(), f.maximum(), f.padding());
            }
            (frame::RESET, false) => {
                // The next nukleus reads no more: neither will we.
                c.app_out_done = true;
                if !c.net_in_done {
                    c.net_in_done = true;
                    let h = Header::at(c.net_id, self.timestamp);
                    let _ = self.outputs[c.net].tx.reset(&h, &[]);
                }
            }
            (frame::BEGIN, true) => c.app_reply_begun = true,
            (frame::DATA, true) => {
                if c.app_in_done || c.closing {
                    return;
                }
                if let Err(e) = c.app_recv.on_data(f.reserved()) {
                    tracing::error!(core, remote = %Remote(c.remote), error = %e, "next nukleus broke the plaintext window: aborting connection");
                    self.teardown(slot);
                    return;
                }
                let payload = f.payload();
                c.app_recv
                    .release(f.reserved() as u64 - payload.len() as u64);
                let used = if c.plain_out.is_empty() {
                    c.session.send_plaintext(payload)
                } else {
                    0
                };
                c.app_recv.release(used as u64);
                c.plain_out.extend_from_slice(&payload[used..]);
            }
            (frame::END, true) => {
                c.closing = true;
                c.app_in_done = true;
            }
            (frame::ABORT, true) => {
                c.app_in_done = true;
                self.teardown(slot);
                return;
            }
            _ => return,
        }
        self.mark_dirty(slot);
    }

    /// Opens the stream to the next nukleus once the handshake completed.
    fn open_app(&mut self, slot: usize) -> bool {
        let c = &mut self.connections[slot];
        let Some(listener) = self.config.listeners[c.listener].as_ref() else {
            return false;
        };
        let Some(app) = pick_peer(&self.outputs, &listener.next, self.core, c.net_id >> 1) else {
            return false;
        };
        let session = &c.session;
        let ex = TlsBeginEx {
            listener: c.listener as u16,
            remote: c.remote,
            sni: session.sni().map(str::to_owned),
            alpn: session
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            client: session.peer_identity().map(|id| ClientIdentity {
                common_name: id.common_name.clone().unwrap_or_default(),
                sans: id.dns_names.iter().chain(&id.uris).cloned().collect(),
            }),
        };
        self.scratch.clear();
        encode_begin_ex(&ex, &mut self.scratch);
        let h = Header::at(c.app_id, self.timestamp);
        if self.outputs[app]
            .tx
            .begin(&h, c.net_id, &self.scratch)
            .is_err()
        {
            tracing::error!(
                core = self.core,
                remote = %Remote(c.remote),
                "stream buffer to {} full: dropping TLS connection",
                self.outputs[app].peer
            );
            return false;
        }
        c.app = Some(app);
        self.handshakes += 1;
        true
    }

    // ----- per-connection work at the end of a poll ---------------------------------------

    /// Moves bytes as far as sessions and windows allow, announces windows, closes.
    fn service(&mut self, slot: usize) {
        let timestamp = self.timestamp;
        if !self.connections.contains(slot) {
            return;
        }
        loop {
            let mut progress = false;
            let c = &mut self.connections[slot];
            // Ciphertext left over from earlier DATA, now that the session may take more.
            if !c.failed && !c.cipher_in.is_empty() {
                match c.session.receive_ciphertext(&c.cipher_in) {
                    Ok(used) => {
                        c.cipher_in.drain(..used);
                        c.net_recv.release(used as u64);
                        progress |= used > 0;
                    }
                    Err(_) => c.failed = true,
                }
            }
            if c.failed {
                break;
            }
            if c.app.is_none() && !c.session.is_handshaking() {
                if !self.open_app(slot) {
                    self.connections[slot].failed = true;
                    break;
                }
                progress = true;
            }
            let c = &mut self.connections[slot];
            // Plaintext to the next nukleus within its window.
            if let Some(app) = c.app {
                while c.session.plaintext_available() > 0 {
                    if c.app_out_done {
                        self.scratch.resize(16 * 1024, 0);
                        let n = c.session.read_plaintext(&mut self.scratch);
                        progress |= n > 0;
                        if n == 0 {
                            break;
                        }
                        continue;
                    }
                    let tx = &mut self.outputs[app].tx;
                    let want = c
                        .app_send
                        .writable(c.session.plaintext_available())
                        .min(tx.max_payload() - 64);
                    if want == 0 {
                        break; // resumed by the next nukleus's WINDOW
                    }
                    let h = Header {
                        stream_id: c.app_id,
                        timestamp,
                        sequence: c.app_send.sequence,
                        ..Header::default()
                    };
                    let Ok(buffer) = tx.claim_data(&h, 0, 0, &[], want) else {
                        tracing::error!(
                            core = self.core,
                            remote = %Remote(c.remote),
                            "stream buffer to {} full: aborting TLS connection",
                            self.outputs[app].peer
                        );
                        self.teardown(slot);
                        return;
                    };
                    let n = c.session.read_plaintext(buffer);
                    if n == 0 {
                        tx.abandon_last();
                        break;
                    }
                    let reserved = c.app_send.consume(n);
                    tx.trim_data(n, reserved);
                    progress = true;
                }
            }
            // Plaintext from the next nukleus into the session.
            if !c.plain_out.is_empty() {
                let used = c.session.send_plaintext(&c.plain_out);
                c.plain_out.drain(..used);
                c.app_recv.release(used as u64);
                progress |= used > 0;
            }
            if c.closing && c.plain_out.is_empty() && !c.close_notify_sent {
                c.session.close_notify();
                c.close_notify_sent = true;
            }
            // Ciphertext to tcp within its window.
            if self.write_ciphertext(slot) {
                progress = true;
            }
            if !progress {
                break;
            }
        }
        if self.connections[slot].failed {
            // The alert (if any) goes out before the connection closes.
            self.write_ciphertext(slot);
        }
        self.finish(slot);
    }

    /// Writes queued ciphertext to tcp within its window; true if anything was written.
    fn write_ciphertext(&mut self, slot: usize) -> bool {
        let timestamp = self.timestamp;
        let c = &mut self.connections[slot];
        let mut wrote = false;
        let tx = &mut self.outputs[c.net].tx;
        while !c.net_out_done && c.session.wants_write() {
            let want = c.net_send.writable(tx.max_payload() - 64);
            if want == 0 {
                break; // resumed by tcp's WINDOW
            }
            let h = Header {
                stream_id: c.net_id ^ 1,
                timestamp,
                sequence: c.net_send.sequence,
                ..Header::default()
            };
            let Ok(buffer) = tx.claim_data(&h, 0, 0, &[], want) else {
                // A full ring is a sizing bug; retry on the next frame for this connection.
                tracing::error!(
                    core = self.core,
                    remote = %Remote(c.remote),
                    "stream buffer to {} full",
                    self.outputs[c.net].peer
                );
                break;
            };
            let n = c.session.write_ciphertext(buffer);
            if n == 0 {
                tx.abandon_last();
                break;
            }
            let reserved = c.net_send.consume(n);
            tx.trim_data(n, reserved);
            wrote = true;
        }
        wrote
    }

    /// Windows, ends and teardown after the bytes have moved.
    fn finish(&mut self, slot: usize) {
        let timestamp = self.timestamp;
        let c = &mut self.connections[slot];
        let h = |stream_id: u64, sequence: u64| Header {
            stream_id,
            timestamp,
            sequence,
            ..Header::default()
        };
        if c.failed {
            // The session logged why. Flush its alert, then close this connection only.
            if c.session.wants_write() && !c.net_out_done && !c.net_in_done {
                return; // waiting for tcp's window to carry the alert
            }
            self.failures += 1;
            let c = &mut self.connections[slot];
            let tx = &mut self.outputs[c.net].tx;
            if !c.net_out_done {
                let _ = tx.end(&h(c.net_id ^ 1, c.net_send.sequence), &[]);
                c.net_out_done = true;
            }
            self.teardown(slot);
            return;
        }
        let tx = &mut self.outputs[c.net].tx;
        if c.net_ended && !c.net_in_done && c.cipher_in.is_empty() {
            c.net_in_done = true;
            if c.app.is_none() {
                if c.received {
                    tracing::warn!(
                        core = self.core,
                        remote = %Remote(c.remote),
                        "TLS handshake failed: the client closed the connection before the handshake completed"
                    );
                    self.failures += 1;
                } else {
                    tracing::debug!(core = self.core, remote = %Remote(c.remote), "connection closed before sending anything");
                }
                if !c.net_out_done {
                    let _ = tx.end(&h(c.net_id ^ 1, c.net_send.sequence), &[]);
                    c.net_out_done = true;
                }
            }
        }
        if c.net_recv.window_due() && !c.net_in_done {
            let (acknowledge, maximum) = c.net_recv.announce();
            let _ = tx.window(
                &Header {
                    stream_id: c.net_id,
                    timestamp,
                    acknowledge,
                    maximum,
                    ..Header::default()
                },
                0,
            );
        }
        // The reply to tcp ends once close_notify and everything before it went out.
        if c.close_notify_sent && !c.session.wants_write() && !c.net_out_done {
            let _ = tx.end(&h(c.net_id ^ 1, c.net_send.sequence), &[]);
            c.net_out_done = true;
        }
        if let Some(app) = c.app {
            let tx = &mut self.outputs[app].tx;
            // The client is done sending: end the plaintext stream once all of it is out.
            let input_over = c.session.peer_closed() || c.net_in_done;
            if input_over && c.session.plaintext_available() == 0 && !c.app_out_done {
                let _ = tx.end(&h(c.app_id, c.app_send.sequence), &[]);
                c.app_out_done = true;
            }
            if c.app_reply_begun
                && !c.app_in_done
                && !c.session.wants_write()
                && c.app_recv.window_due()
            {
                let (acknowledge, maximum) = c.app_recv.announce();
                let _ = tx.window(
                    &Header {
                        stream_id: c.app_id ^ 1,
                        timestamp,
                        acknowledge,
                        maximum,
                        ..Header::default()
                    },
                    0,
                );
            }
        }
        self.release_if_finished(slot);
    }

    /// Ends every direction of a connection that is still open (ABORT what we send, RESET
    /// what we receive) and frees it.
    fn teardown(&mut self, slot: usize) {
        let timestamp = self.timestamp;
        let Some(c) = self.connections.get_mut(slot) else {
            return;
        };
        let h = |stream_id: u64| Header::at(stream_id, timestamp);
        let net = &mut self.outputs[c.net].tx;
        if !c.net_out_done {
            let _ = net.abort(&h(c.net_id ^ 1), &[]);
            c.net_out_done = true;
        }
        if !c.net_in_done {
            let _ = net.reset(&h(c.net_id), &[]);
            c.net_in_done = true;
        }
        if let Some(app) = c.app {
            let tx = &mut self.outputs[app].tx;
            if !c.app_out_done {
                let _ = tx.abort(&h(c.app_id), &[]);
                c.app_out_done = true;
            }
            if !c.app_in_done {
                let _ = tx.reset(&h(c.app_id ^ 1), &[]);
                c.app_in_done = true;
            }
        }
        self.release_if_finished(slot);
    }

    /// Closes connections whose handshake did not complete within `handshake_timeout`.
    fn expire_handshakes(&mut self) -> usize {
        let now = self.now;
        let listeners = &self.config.listeners;
        let timeout_of = |c: &Connection| {
            listeners
                .get(c.listener)
                .and_then(|l| l.as_ref())
                .map(|l| l.handshake_timeout)
        };
        let late: Vec<usize> = self
            .connections
            .iter()
            .filter(|(_, c)| c.app.is_none() && c.session.is_handshaking() && !c.failed)
            .filter(|(_, c)| {
                timeout_of(c).is_some_and(|t| now.saturating_duration_since(c.accepted_at) >= t)
            })
            .map(|(slot, _)| slot)
            .collect();
        for &slot in &late {
            let remote = Remote(self.connections[slot].remote);
            let listener = self.connections[slot].listener;
            let timeout = self.config.listeners[listener]
                .as_ref()
                .map(|l| l.handshake_timeout);
            tracing::warn!(
                core = self.core,
                %remote,
                ?timeout,
                "TLS handshake not completed in time: closing connection"
            );
            self.timeouts += 1;
            self.teardown(slot);
        }
        late.len()
    }

    fn release_if_finished(&mut self, slot: usize) {
        if self.connections.get(slot).is_some_and(Connection::finished) {
            let c = self.connections.remove(slot);
            self.by_network.remove(c.net, c.net_id, slot);
        }
    }
}

impl Nukleus for TlsNukleus {
    fn kind(&self) -> &'static str {
        "tls"
    }

    fn poll(&mut self, context: &PollContext) -> usize {
        self.timestamp = context.timestamp;
        self.now = context.now;
        let mut work = 0;
        if self.now >= self.next_scan {
            let shortest = self
                .config
                .listeners
                .iter()
                .flatten()
                .map(|l| l.handshake_timeout)
                .min();
            let interval = shortest.unwrap_or(Duration::from_secs(1)) / 4;
            self.next_scan =
                self.now + interval.clamp(Duration::from_millis(10), Duration::from_secs(1));
            work += self.expire_handshakes();
        }
        let mut inputs = std::mem::take(&mut self.inputs);
        work += plumbing::read_frames(&mut inputs, self.core, |input, f| {
            if self.is_network[input] {
                self.on_network_frame(input, f)
            } else {
                self.on_app_frame(input, f)
            }
        });
        self.inputs = inputs;
        let dirty = self.dirty.take();
        for &slot in &dirty {
            self.service(slot);
        }
        self.dirty.recycle(dirty);
        for (output, id) in plumbing::refused(&mut self.outputs) {
            self.on_refused(output, id);
        }
        plumbing::publish(&mut self.outputs);
        work
    }

    fn deadline(&self) -> Option<Instant> {
        (!self.connections.is_empty()).then_some(self.next_scan)
    }

    fn gauges(&self, out: &mut Vec<(&'static str, u64)>) {
        out.push(("connections", self.connections.len() as u64));
        out.push(("handshakes_total", self.handshakes));
        out.push(("failures_total", self.failures));
        out.push(("handshake_timeouts_total", self.timeouts));
        out.push(("streams_reset_ring_full_total", self.refused_resets));
    }
}
