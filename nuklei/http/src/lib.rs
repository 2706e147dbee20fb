//! The http nukleus: HTTP/1.1 between a network nukleus (tcp or tls) and application nuklei.
//!
//! Each connection is an exchange with the network nukleus; each request becomes an exchange
//! with the application nukleus its route names: a BEGIN carrying the request head, DATA for
//! the body, END. The application answers on the reply stream with a BEGIN carrying the
//! response head, DATA and END. Pipelined requests are all forwarded at once; responses are
//! written in request order, and all response bytes produced in one poll leave as one DATA
//! frame per connection (one socket write downstream).
//!
//! The reply window of every request exchange is granted up front (a WINDOW on the reply
//! stream right after BEGIN), so an application can answer a pipelined burst in a single poll.
//! Responses that finish before their turn wait in a per-exchange buffer bounded by that
//! window.

pub mod chunked;
pub mod ext;
pub mod fuzzing;
mod head_cache;
mod pressure;
pub mod request;
pub mod response;
pub mod tls_begin_ex;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use slab::Slab;
use streams::copy;
use streams::frame::{self, Frame};
use streams::{
    pick_keyed, pick_peer, plumbing, split_links, DirtySet, Header, Nukleus, Output, PeerLink,
    PeerStreams, PollContext, RecvWindow, Remote, RingReader, SendWindow, SlotIds,
};

use head_cache::{HeadCache, Variant};
use request::{Body, HttpLimits, Parsed, Rejection};
use response::DateCache;

/// A path prefix and the application kind it goes to. The longest matching prefix wins.
pub use streams::Route;

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub routes: Vec<Route>,
    pub limits: HttpLimits,
    /// Window granted to the network for request bytes and to applications for each response.
    pub window: u32,
    /// A keep-alive connection with nothing in flight is closed after this long.
    pub idle_timeout: Duration,
    /// A request head must be complete this long after its first byte arrived, else 408
    /// (slow-header clients cannot hold connections forever).
    pub request_timeout: Duration,
    /// Response bytes a connection may hold (a client that does not read): applications get
    /// more response window only while the head response's buffer stays below this minus
    /// one window, and each pipelined request is pre-granted this over `max_pipelined`
    /// (at least 1 KiB, at most a window). At least `window`.
    pub max_buffered_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            routes: Vec::new(),
            limits: HttpLimits::default(),
            window: 65536,
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
            max_buffered_bytes: 128 * 1024,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    None,
    Length(u64),
    Chunked,
    /// Body until the connection closes (HTTP/1.0 without Content-Length), or a tunnel.
    Raw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResponseState {
    Awaiting,
    Streaming(Framing),
    Done,
}

struct Exchange {
    conn: usize,
    /// Initial stream id (http -> app); the reply is `id ^ 1`. 0 for responses http makes itself.
    id: u64,
    app: usize,
    /// Credit the application granted for the request body.
    send: SendWindow,
    /// Credit granted to the application for the response.
    recv: RecvWindow,
    body: Body,
    body_received: u64,
    request_ended: bool,
    response: ResponseState,
    /// Response bytes produced before this exchange's turn.
    buffered: Vec<u8>,
    close_after: bool,
    is_head: bool,
    upgrade: bool,
    minor_version: u8,
    expect_continue: bool,
}

struct Connection {
    /// Initial stream id from the network nukleus; our reply is `net_id ^ 1`.
    net_id: u64,
    input: usize,
    recv: RecvWindow,
    send: SendWindow,
    /// Unparsed request bytes (a partial head, or body bytes waiting for credit).
    buffer: Vec<u8>,
    exchanges: VecDeque<usize>,
    /// The exchange whose request body is being received.
    receiving: Option<usize>,
    /// Response bytes waiting for network credit.
    out: Vec<u8>,
    input_ended: bool,
    /// No further requests are parsed; the reply ends once the queued responses are out.
    closing: bool,
    reply_ended: bool,
    /// A bodiless upgrade request waits for its answer: later bytes stay unparsed in
    /// `buffer` (they are the new protocol's after a 101, the next request otherwise).
    upgrading: Option<usize>,
    upgraded: bool,
    /// Pseudo-headers appended to every request head: the verified TLS client identity.
    identity: Vec<(&'static str, String)>,
    /// Last time request bytes arrived or the last response completed.
    last_activity: Instant,
    /// When the first byte of a still incomplete request head arrived.
    head_started: Option<Instant>,
    /// The client, for log lines.
    remote: Remote,
}

/// Capacity a drained connection buffer keeps for the next burst; beyond it, memory goes back.
const KEEP: usize = 16 * 1024;

pub struct HttpNukleus {
    config: HttpConfig,
    core: usize,
    ids: SlotIds,
    inputs: Vec<RingReader>,
    outputs: Vec<Output>,
    is_network: Vec<bool>,
    /// Per network input: the network nukleus's connection slot -> our connection slot + 1.
    by_network: PeerStreams,
    /// Per route: the instance of its target kind on this core, if any (what `pick_peer`
    /// prefers), resolved once instead of per request.
    local_targets: Vec<Option<usize>>,
    connections: Slab<Connection>,
    exchanges: Slab<Exchange>,
    generations: Vec<u32>,
    dirty: DirtySet,
    /// Connections closed because a full ring refused one of their frames (DESIGN §3).
    refused_resets: u64,
    scratch: Vec<u8>,
    date: DateCache,
    /// The last response head rendered, with its framing and whether it closes the connection.
    heads: HeadCache<(Framing, bool)>,
    /// The core loop's clock at the start of this poll.
    now: std::time::Instant,
    /// When idle connections are looked for next.
    next_scan: Instant,
    timestamp: u64,
    requests: u64,
    rejected: u64,
    /// Connections dropped under memory pressure.
    shed_total: u64,
    /// The reaktor is draining: idle connections close, every response closes its connection.
    draining: bool,
}

impl HttpNukleus {
    pub fn new(
        config: HttpConfig,
        core: usize,
        instance: u16,
        links: Vec<PeerLink>,
    ) -> HttpNukleus {
        let (inputs, outputs) = split_links(links);
        let is_network = outputs.iter().map(|o| o.role.is_network()).collect();
        let by_network = PeerStreams::new(outputs.len());
        let local_targets = config
            .routes
            .iter()
            .map(|r| {
                outputs
                    .iter()
                    .position(|o| o.kind == r.to && o.core == core)
            })
            .collect();
        HttpNukleus {
            local_targets,
            config,
            core,
            ids: SlotIds::new(instance),
            inputs,
            outputs,
            is_network,
            by_network,
            connections: Slab::new(),
            exchanges: Slab::new(),
            generations: Vec::new(),
            dirty: DirtySet::default(),
            refused_resets: 0,
            shed_total: 0,
            draining: false,
            scratch: Vec::with_capacity(1024),
            date: DateCache::default(),
            heads: HeadCache::default(),
            now: std::time::Instant::now(),
            next_scan: std::time::Instant::now(),
            timestamp: 0,
            requests: 0,
            rejected: 0,
        }
    }

    fn header(&self, stream_id: u64) -> Header {
        Header::at(stream_id, self.timestamp)
    }

    fn mark_dirty(&mut self, slot: usize) {
        self.dirty.mark(slot);
    }

    /// A full ring refused a frame of stream `id` to output `output`: the connection it
    /// belongs to is closed, its exchanges reset on the application side, and it is counted.
    fn on_refused(&mut self, output: usize, id: u64) {
        let slot = if self.is_network[output] {
            self.by_network.get(output, id).filter(|&slot| {
                self.connections
                    .get(slot)
                    .is_some_and(|c| c.net_id == id | 1)
            })
        } else {
            self.exchanges
                .get(SlotIds::slot(id))
                .filter(|e| e.id == id | 1 && e.app == output)
                .map(|e| e.conn)
        };
        if let Some(slot) = slot.filter(|&slot| self.connections.contains(slot)) {
            tracing::warn!(
                core = self.core,
                remote = %self.connections[slot].remote,
                peer = %self.outputs[output].peer,
                "stream buffer full: closing the connection whose frame it refused"
            );
            self.refused_resets += 1;
            self.abort_connection(slot, true);
        }
    }

    // ----- network side -------------------------------------------------------------------

    fn on_network_frame(&mut self, input: usize, f: Frame<'_>) {
        let slot = match self.by_network.get(input, f.stream_id()) {
            Some(slot)
                if self
                    .connections
                    .get(slot)
                    .is_some_and(|c| c.net_id == f.stream_id() | 1) =>
            {
                Some(slot)
            }
            _ => None,
        };
        match (f.type_id(), slot) {
            (frame::BEGIN, None) if f.stream_id() & 1 == 1 => {
                self.on_network_begin(input, f.stream_id(), f.extension())
            }
            (frame::DATA, Some(slot)) => self.on_network_data(slot, f),
            (frame::END, Some(slot)) => self.on_network_end(slot),
            (frame::ABORT, Some(slot)) | (frame::RESET, Some(slot)) => {
                self.abort_connection(slot, f.type_id() == frame::ABORT)
            }
            (frame::WINDOW, Some(slot)) => {
                self.connections[slot]
                    .send
                    .on_window(f.acknowledge(), f.maximum(), f.padding());
                self.mark_dirty(slot);
            }
            _ => {}
        }
    }

    fn on_network_begin(&mut self, input: usize, net_id: u64, extension: &[u8]) {
        // A client cannot send these names: httparse rejects a header name with ':'.
        let mut identity = Vec::new();
        let remote = if self.outputs[input].role.carries == streams::Carries::SecureConnection {
            let tls = tls_begin_ex::decode_begin_ex(extension);
            let remote = tls.as_ref().and_then(|ex| ex.remote);
            if let Some(client) = tls.and_then(|ex| ex.client) {
                identity.push((":tls-client-cn", client.common_name));
                identity.extend(client.sans.into_iter().map(|san| (":tls-client-san", san)));
            }
            remote
        } else {
            nukleus_tcp::decode_begin_ex(extension).map(|ex| ex.remote)
        };
        let slot = self.connections.insert(Connection {
            net_id,
            input,
            recv: RecvWindow::new(self.config.window),
            send: SendWindow::default(),
            buffer: Vec::new(),
            exchanges: VecDeque::new(),
            receiving: None,
            out: Vec::new(),
            input_ended: false,
            closing: false,
            reply_ended: false,
            upgrading: None,
            upgraded: false,
            identity,
            last_activity: self.now,
            head_started: None,
            remote: Remote(remote),
        });
        self.by_network.insert(input, net_id, slot);
        let reply = self.header(net_id ^ 1);
        let _ = self.outputs[input].tx.begin(&reply, net_id, &[]);
        self.mark_dirty(slot); // sends the initial WINDOW
    }

    fn on_network_data(&mut self, slot: usize, f: Frame<'_>) {
        let c = &mut self.connections[slot];
        if let Err(e) = c.recv.on_data(f.reserved()) {
            tracing::error!(core = self.core, remote = %c.remote, error = %e, "network peer broke the window: aborting connection");
            self.abort_connection(slot, true);
            return;
        }
        let payload = f.payload();
        c.recv.release(f.reserved() as u64 - payload.len() as u64);
        c.last_activity = self.now;
        if c.buffer.is_empty() {
            // Common case: parse straight from the ring, copy only an incomplete tail.
            let used = self.process(slot, payload);
            let c = &mut self.connections[slot];
            c.recv.release(used as u64);
            if used < payload.len() && !c.closing_input_discarded() {
                copy::extend(&mut c.buffer, &payload[used..]);
            } else if used < payload.len() {
                c.recv.release((payload.len() - used) as u64);
            }
        } else {
            copy::extend(&mut c.buffer, payload);
            self.resume(slot);
        }
        if let Some(c) = self.connections.get_mut(slot) {
            let partial_head = !c.buffer.is_empty()
                && c.receiving.is_none()
                && c.exchanges.is_empty()
                && !c.upgraded
                && !c.closing;
            c.head_started = if partial_head {
                c.head_started.or(Some(self.now))
            } else {
                None
            };
            self.mark_dirty(slot);
        }
    }

    /// Processes buffered input again (after new bytes or new credit).
    fn resume(&mut self, slot: usize) {
        let buffer = std::mem::take(&mut self.connections[slot].buffer);
        let used = self.process(slot, &buffer);
        let mut buffer = buffer;
        buffer.drain(..used);
        if let Some(c) = self.connections.get_mut(slot) {
            c.recv.release(used as u64);
            if c.closing_input_discarded() {
                c.recv.release(buffer.len() as u64);
                buffer.clear();
            }
            streams::memory::release_drained(&mut buffer, KEEP);
            c.buffer = buffer;
        }
    }

    /// Parses heads and forwards bodies from `bytes`; returns how many bytes were used.
    fn process(&mut self, slot: usize, bytes: &[u8]) -> usize {
        let mut at = 0;
        loop {
            let Some(c) = self.connections.get(slot) else {
                return bytes.len();
            };
            if let Some(x) = c.receiving {
                let used = self.forward_body(x, &bytes[at..]);
                at += used;
                let Some(c) = self.connections.get(slot) else {
                    return bytes.len();
                };
                if c.receiving == Some(x) {
                    if used > 0 && at < bytes.len() {
                        // One DATA frame carries at most a record: forward the rest in more.
                        continue;
                    }
                    return at; // needs more input or more credit
                }
                continue;
            }
            if c.closing {
                return bytes.len(); // nothing after a final request is read
            }
            if c.upgrading.is_some() {
                return at; // the upgrade's answer decides what these bytes are
            }
            if at == bytes.len() || c.exchanges.len() >= self.config.limits.max_pipelined {
                return at;
            }
            let routes = &self.config.routes;
            let key = std::cell::Cell::new(None);
            match request::parse_head(
                &bytes[at..],
                &self.config.limits,
                |path| {
                    let route = streams::plumbing::longest_prefix(routes, path);
                    key.set(
                        route
                            .and_then(|r| routes[r].key_segment)
                            .and_then(|segment| streams::path_key(path, segment)),
                    );
                    route
                },
                &mut self.scratch,
            ) {
                Ok(None) => return at,
                Ok(Some(parsed)) => {
                    at += parsed.consumed;
                    self.start_exchange(slot, parsed, key.get());
                }
                Err(rejection) => {
                    self.reject(slot, rejection);
                    return bytes.len();
                }
            }
        }
    }

    fn new_exchange(&mut self, exchange: Exchange) -> usize {
        let x = self.exchanges.insert(exchange);
        if self.generations.len() <= x {
            self.generations.resize(x + 1, 0);
        }
        self.generations[x] = self.generations[x].wrapping_add(1);
        x
    }

    fn start_exchange(&mut self, slot: usize, parsed: Parsed, key: Option<u64>) {
        self.requests += 1;
        let Some(route) = parsed.route else {
            self.reject(
                slot,
                Rejection {
                    status: 404,
                    reason: "no route for this path",
                },
            );
            return;
        };
        let net_id = self.connections[slot].net_id;
        let kind = self.config.routes[route].to.as_str();
        let app = match key {
            Some(key) => pick_keyed(&self.outputs, kind, key),
            None => self.local_targets[route]
                .or_else(|| pick_peer(&self.outputs, kind, self.core, net_id >> 1)),
        };
        let Some(app) = app else {
            self.reject(
                slot,
                Rejection {
                    status: 503,
                    reason: "route target is not running",
                },
            );
            return;
        };
        let has_body = !matches!(parsed.body, Body::None);
        // Only a bodiless request to a kind that can switch protocols (a peer that relays a
        // protocol of its own, as ws does: its role says so) may become a tunnel;
        // any other request with `Upgrade` is an ordinary one (the header is passed on).
        let upgrade = parsed.upgrade && !has_body && self.outputs[app].role.relays;
        let body = parsed.body;
        // While draining, every response closes its connection.
        let close = parsed.close || self.draining;
        // The first response in line gets a whole window; pipelined ones behind it a share of
        // max_buffered_bytes, so responses a client does not read stay bounded.
        let window = if self.connections[slot].exchanges.is_empty() {
            self.config.window
        } else {
            self.pipelined_window()
        };
        let x = self.new_exchange(Exchange {
            conn: slot,
            id: 0,
            app,
            send: SendWindow::default(),
            recv: RecvWindow::new(window),
            body,
            body_received: 0,
            request_ended: false,
            response: ResponseState::Awaiting,
            buffered: Vec::new(),
            close_after: close,
            is_head: parsed.is_head,
            upgrade,
            minor_version: parsed.minor_version,
            expect_continue: parsed.expect_continue && has_body,
        });
        let id = self.ids.initial(x, self.generations[x]);
        self.exchanges[x].id = id;
        let timestamp = self.timestamp;
        let tx = &mut self.outputs[app].tx;
        let begin = Header::at(id, timestamp);
        let identity = &self.connections[slot].identity;
        if !identity.is_empty() {
            ext::append_request_headers(
                &mut self.scratch,
                identity.iter().map(|(n, v)| (*n, v.as_bytes())),
            );
        }
        // The BEGIN pre-grants the reply window (its `maximum`), so the application can answer
        // at once, and a request without a body says so with FIN instead of a separate END.
        let (acknowledge, maximum) = self.exchanges[x].recv.announce();
        // An upgrade's request stream stays open: after a 101 it carries the tunnel.
        let no_body = matches!(self.exchanges[x].body, Body::None) && !upgrade;
        let begin = Header {
            acknowledge,
            maximum,
            ..begin
        };
        let flags = if no_body { frame::FLAG_FIN } else { 0 };
        if tx
            .begin_flags(&begin, flags, net_id, &self.scratch)
            .is_err()
        {
            // The request never reached the application: answer it here (counted like a
            // reset; see `on_refused`).
            self.refused_resets += 1;
            self.exchanges.remove(x);
            self.reject(
                slot,
                Rejection {
                    status: 503,
                    reason: "server busy: stream buffer full",
                },
            );
            return;
        }
        let c = &mut self.connections[slot];
        c.exchanges.push_back(x);
        if upgrade {
            // `Connection: close` applies if the upgrade is refused (`close_after`).
            c.upgrading = Some(x);
        } else if close {
            c.closing = true;
        }
        if no_body {
            self.exchanges[x].request_ended = true;
        } else if !upgrade {
            self.connections[slot].receiving = Some(x);
        }
        if c_is_head(&self.connections[slot], x) && self.exchanges[x].expect_continue {
            self.connections[slot]
                .out
                .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            self.exchanges[x].expect_continue = false;
        }
    }

    /// Forwards request body bytes to the application within its window; returns bytes used.
    fn forward_body(&mut self, x: usize, bytes: &[u8]) -> usize {
        let timestamp = self.timestamp;
        let max_body = self.config.limits.max_body_bytes;
        let e = &mut self.exchanges[x];
        let tx = &mut self.outputs[e.app].tx;
        let room = tx.max_payload() - 64;
        let header = |id: u64, send: &SendWindow| Header {
            stream_id: id,
            timestamp,
            sequence: send.sequence,
            ..Header::default()
        };
        let id = e.id;
        let (used, finished) = match &mut e.body {
            Body::None => (0, true),
            Body::Length(remaining) => {
                let n = (*remaining as usize)
                    .min(bytes.len())
                    .min(e.send.writable(room));
                if n > 0 {
                    let h = header(id, &e.send);
                    let reserved = e.send.consume(n);
                    let _ = tx.data(&h, 0, reserved, &[], &bytes[..n]);
                    *remaining -= n as u64;
                }
                (n, *remaining == 0)
            }
            Body::Tunnel => {
                let n = bytes.len().min(e.send.writable(room));
                if n > 0 {
                    let h = header(id, &e.send);
                    let reserved = e.send.consume(n);
                    let _ = tx.data(&h, 0, reserved, &[], &bytes[..n]);
                }
                (n, false)
            }
            Body::Chunked(decoder) => {
                let budget = e.send.writable(room);
                self.scratch.clear();
                let scratch = &mut self.scratch;
                match decoder.decode(bytes, budget, |piece| scratch.extend_from_slice(piece)) {
                    Ok(used) => {
                        let done = decoder.is_done();
                        if decoder.total > max_body {
                            let conn = e.conn;
                            self.body_failed(
                                x,
                                conn,
                                Rejection {
                                    status: 413,
                                    reason:
                                        "request body larger than the configured max_body_bytes",
                                },
                            );
                            return bytes.len();
                        }
                        if !self.scratch.is_empty() {
                            let h = header(id, &e.send);
                            let reserved = e.send.consume(self.scratch.len());
                            let _ = tx.data(&h, 0, reserved, &[], &self.scratch);
                        }
                        (used, done)
                    }
                    Err(chunked::ChunkError::Malformed(reason)) => {
                        let conn = e.conn;
                        self.body_failed(
                            x,
                            conn,
                            Rejection {
                                status: 400,
                                reason,
                            },
                        );
                        return bytes.len();
                    }
                }
            }
        };
        let e = &mut self.exchanges[x];
        e.body_received += used as u64;
        if finished {
            let _ = self.outputs[e.app].tx.end(&header(id, &e.send), &[]);
            e.request_ended = true;
            let conn = e.conn;
            if self.connections[conn].receiving == Some(x) {
                self.connections[conn].receiving = None;
            }
        }
        used
    }

    /// A request body turned out bad halfway: abort the request towards the application and
    /// answer the error if the response has not started, else drop the connection.
    fn body_failed(&mut self, x: usize, conn: usize, rejection: Rejection) {
        let e = &mut self.exchanges[x];
        let id = e.id;
        e.request_ended = true;
        let awaiting = e.response == ResponseState::Awaiting && e.buffered.is_empty();
        let app = e.app;
        let (abort, reset) = (self.header(id), self.header(id ^ 1));
        let _ = self.outputs[app].tx.abort(&abort, &[]);
        let _ = self.outputs[app].tx.reset(&reset, &[]);
        self.connections[conn].receiving = None;
        let position = self.connections[conn]
            .exchanges
            .iter()
            .position(|&y| y == x);
        if let Some(position) = position {
            self.connections[conn].exchanges.remove(position);
        }
        self.exchanges.remove(x);
        if awaiting {
            self.reject(conn, rejection);
        } else {
            self.abort_connection(conn, true);
        }
    }

    /// Answers an error from http itself after the responses already queued, then closes.
    fn reject(&mut self, slot: usize, rejection: Rejection) {
        self.rejected += 1;
        tracing::debug!(
            core = self.core,
            remote = %self.connections[slot].remote,
            status = rejection.status,
            reason = rejection.reason,
            "request rejected"
        );
        let date = *self.date.value();
        let x = self.new_exchange(Exchange {
            conn: slot,
            id: 0,
            app: usize::MAX,
            send: SendWindow::default(),
            recv: RecvWindow::default(),
            body: Body::None,
            body_received: 0,
            request_ended: true,
            response: ResponseState::Done,
            buffered: Vec::new(),
            close_after: true,
            is_head: false,
            upgrade: false,
            minor_version: 1,
            expect_continue: false,
        });
        let c = &mut self.connections[slot];
        c.closing = true;
        c.receiving = None;
        c.exchanges.push_back(x);
        let head = c_is_head(c, x);
        let target = if head {
            &mut self.connections[slot].out
        } else {
            &mut self.exchanges[x].buffered
        };
        response::error_response(target, rejection.status, rejection.reason, &date);
        if head {
            self.complete_head(slot);
        }
        self.mark_dirty(slot);
    }

    fn on_network_end(&mut self, slot: usize) {
        let c = &mut self.connections[slot];
        c.input_ended = true;
        c.closing = true;
        // A client that closes while a response without a known end streams to it (Server-
        // Sent Events, a chunked stream) is gone, not half-closed waiting for the end that
        // never comes: the application is told (its reply reset) and the connection closed,
        // as nginx takes such a FIN for a client abort. Tunnels end through their own END.
        let open_ended = !c.upgraded
            && c.exchanges.iter().any(|&x| {
                matches!(
                    self.exchanges[x].response,
                    ResponseState::Streaming(Framing::Chunked | Framing::Raw)
                )
            });
        if open_ended {
            self.abort_connection(slot, true);
            return;
        }
        if let Some(x) = c.receiving.take().or(c.upgrading.take()) {
            // The client went away mid-request, ended a tunnel, or half-closed while its
            // upgrade waited for an answer (a request without body: it is complete).
            let complete = matches!(self.exchanges[x].body, Body::Tunnel | Body::None);
            self.end_request(x, !complete);
        }
        // An exchange whose response was already complete waited only for its request.
        self.complete_head(slot);
        self.mark_dirty(slot);
    }

    /// Ends the request stream of exchange `x` towards its application: END, or ABORT when
    /// the request is incomplete.
    fn end_request(&mut self, x: usize, abort: bool) {
        let e = &mut self.exchanges[x];
        e.request_ended = true;
        let h = Header {
            stream_id: e.id,
            timestamp: self.timestamp,
            sequence: e.send.sequence,
            ..Header::default()
        };
        let tx = &mut self.outputs[e.app].tx;
        let _ = if abort {
            tx.abort(&h, &[])
        } else {
            tx.end(&h, &[])
        };
    }

    /// Tears down a connection and every exchange on it. `notify_network`: also ABORT our
    /// reply towards the network (not needed when the network reset it).
    fn abort_connection(&mut self, slot: usize, notify_network: bool) {
        let Some(c) = self.connections.get(slot) else {
            return;
        };
        let timestamp = self.timestamp;
        for &x in c.exchanges.iter() {
            let e = &self.exchanges[x];
            if e.app != usize::MAX {
                let tx = &mut self.outputs[e.app].tx;
                if !e.request_ended {
                    let _ = tx.abort(&Header::at(e.id, timestamp), &[]);
                }
                if e.response != ResponseState::Done {
                    let _ = tx.reset(&Header::at(e.id ^ 1, timestamp), &[]);
                }
            }
            self.exchanges.remove(x);
        }
        let c = self.connections.remove(slot);
        let tx = &mut self.outputs[c.input].tx;
        if notify_network && !c.reply_ended {
            let _ = tx.abort(&Header::at(c.net_id ^ 1, timestamp), &[]);
        }
        if !c.input_ended {
            let _ = tx.reset(&Header::at(c.net_id, timestamp), &[]);
        }
        self.by_network.remove(c.input, c.net_id, slot);
    }

    // ----- application side ---------------------------------------------------------------

    fn on_app_frame(&mut self, input: usize, f: Frame<'_>) {
        let x = SlotIds::slot(f.stream_id());
        match self.exchanges.get(x) {
            Some(e) if e.id == f.stream_id() | 1 && e.app == input => {}
            _ => return,
        }
        let reply = frame::is_reply(f.stream_id());
        match (f.type_id(), reply) {
            (frame::WINDOW, false) => {
                let e = &mut self.exchanges[x];
                e.send.on_window(f.acknowledge(), f.maximum(), f.padding());
                let conn = e.conn;
                if self.connections[conn].receiving == Some(x) {
                    self.resume(conn);
                    if self.connections.contains(conn) {
                        self.mark_dirty(conn);
                    }
                }
            }
            (frame::RESET, false) => {
                // The application wants no (more) request body. Unread body bytes stand
                // between us and the next request: read nothing more on this connection.
                let e = &mut self.exchanges[x];
                e.request_ended = true;
                let conn = e.conn;
                let c = &mut self.connections[conn];
                if c.receiving == Some(x) {
                    c.receiving = None;
                    c.closing = true;
                }
                if c.upgrading == Some(x) {
                    c.upgrading = None; // bodiless: what follows is the next request
                }
                self.complete_head(conn);
                self.mark_dirty(conn);
            }
            (frame::BEGIN, true) => {
                self.on_response_begin(x, f);
                if f.flags() & frame::FLAG_FIN != 0
                    && self
                        .exchanges
                        .get(x)
                        .is_some_and(|e| e.id == f.stream_id() | 1)
                {
                    self.on_response_end(x);
                }
            }
            // FIN on the response's BEGIN or DATA ends it without a separate END.
            (frame::DATA, true) => {
                self.on_response_data(x, f);
                if f.flags() & frame::FLAG_FIN != 0
                    && self
                        .exchanges
                        .get(x)
                        .is_some_and(|e| e.id == f.stream_id() | 1)
                {
                    self.on_response_end(x);
                }
            }
            (frame::END, true) => self.on_response_end(x),
            (frame::ABORT, true) => {
                let e = &self.exchanges[x];
                let conn = e.conn;
                if e.response == ResponseState::Awaiting && e.buffered.is_empty() {
                    self.fail_response(conn, x, "the application aborted the response");
                } else {
                    self.abort_connection(conn, true);
                }
            }
            _ => {}
        }
    }

    /// The application failed exchange `x` before its response started: the client gets a
    /// 500 with `reason` in its place.
    fn fail_response(&mut self, conn: usize, x: usize, reason: &'static str) {
        self.exchanges[x].response = ResponseState::Done;
        self.forget_exchange(conn, x);
        self.reject(
            conn,
            Rejection {
                status: 500,
                reason,
            },
        );
    }

    fn forget_exchange(&mut self, conn: usize, x: usize) {
        let c = &mut self.connections[conn];
        if let Some(position) = c.exchanges.iter().position(|&y| y == x) {
            c.exchanges.remove(position);
        }
        if c.receiving == Some(x) {
            c.receiving = None;
        }
        if c.upgrading == Some(x) {
            c.upgrading = None;
        }
        let e = self.exchanges.remove(x);
        if !e.request_ended {
            let _ = self.outputs[e.app]
                .tx
                .abort(&Header::at(e.id, self.timestamp), &[]);
        }
    }

    fn on_response_begin(&mut self, x: usize, f: Frame<'_>) {
        let e = &mut self.exchanges[x];
        let conn = e.conn;
        let variant = Variant {
            is_head: e.is_head,
            minor_version: e.minor_version,
            close_after: e.close_after,
        };
        // An upgrade may change the connection's state beyond the head: never cached.
        if !e.upgrade {
            if let Some((rendered, (framing, close_after))) = self.heads.get(f.extension(), variant)
            {
                let target = if c_is_head(&self.connections[conn], x) {
                    &mut self.connections[conn].out
                } else {
                    &mut e.buffered
                };
                target.extend_from_slice(rendered);
                e.close_after = close_after;
                e.response = ResponseState::Streaming(framing);
                self.mark_dirty(conn);
                return;
            }
        }
        let head = match ext::ResponseHead::parse(f.extension()) {
            None => Err("the application sent a malformed response"),
            Some(head) if head.status == 101 && !e.upgrade => {
                Err("the application switched protocols on a request that cannot upgrade")
            }
            Some(head) => Ok(head),
        };
        let head = match head {
            Ok(head) => head,
            Err(reason) => {
                tracing::error!(
                    core = self.core,
                    remote = %self.connections[conn].remote,
                    reason,
                    "bad response head from application"
                );
                self.fail_response(conn, x, reason);
                return;
            }
        };
        let upgrade = e.upgrade && head.status == 101;
        if e.upgrade {
            self.connections[conn].upgrading = None;
            if !upgrade && !e.request_ended {
                // Upgrade not taken: an ordinary bodiless request (RFC 9110 §7.8). It ends
                // here, and the bytes held behind it are parsed as the next request.
                self.end_request(x, false);
            }
        }
        let date = self.date.value();
        let e = &mut self.exchanges[x];
        let is_head = c_is_head(&self.connections[conn], x);
        let mut buffered = std::mem::take(&mut e.buffered);
        let target = if is_head {
            &mut self.connections[conn].out
        } else {
            &mut buffered
        };
        let start = target.len();
        let framing = write_response_head(target, &head, e, date, upgrade);
        if !e.upgrade {
            self.heads.put(
                f.extension(),
                variant,
                &target[start..],
                (framing, e.close_after),
            );
        }
        e.buffered = buffered;
        e.response = ResponseState::Streaming(framing);
        if upgrade {
            // Switched: the bytes held since the request are the tunnel's first.
            e.body = Body::Tunnel;
            let open = !e.request_ended;
            let c = &mut self.connections[conn];
            c.upgraded = true;
            if open {
                c.receiving = Some(x);
                if !c.buffer.is_empty() {
                    self.resume(conn);
                }
            }
        }
        if self.connections.contains(conn) {
            self.mark_dirty(conn);
        }
    }

    fn on_response_data(&mut self, x: usize, f: Frame<'_>) {
        let e = &mut self.exchanges[x];
        let conn = e.conn;
        if let Err(err) = e.recv.on_data(f.reserved()) {
            let remote = self.connections[conn].remote;
            tracing::error!(core = self.core, %remote, error = %err, "application broke the response window");
            self.abort_connection(conn, true);
            return;
        }
        let ResponseState::Streaming(framing) = e.response else {
            let remote = self.connections[conn].remote;
            tracing::error!(core = self.core, %remote, "response DATA before BEGIN");
            self.abort_connection(conn, true);
            return;
        };
        e.recv.release(f.reserved() as u64);
        let payload = f.payload();
        let is_head = c_is_head(&self.connections[conn], x);
        if is_head && matches!(framing, Framing::Length(_) | Framing::Raw) {
            // The head response's bytes go to the network as they are: straight into the
            // stream as far as the window takes them when nothing is queued before them.
            let n = match framing {
                Framing::Length(remaining) => {
                    let n = (remaining as usize).min(payload.len());
                    e.response = ResponseState::Streaming(Framing::Length(remaining - n as u64));
                    n
                }
                _ => payload.len(),
            };
            let c = &mut self.connections[conn];
            let sent = if c.out.is_empty() {
                let tx = &mut self.outputs[c.input].tx;
                tx.data_within(&mut c.send, c.net_id ^ 1, self.timestamp, &payload[..n])
            } else {
                0
            };
            copy::extend(&mut c.out, &payload[sent..n]);
            self.mark_dirty(conn);
            return;
        }
        let target = if is_head {
            &mut self.connections[conn].out
        } else {
            &mut e.buffered
        };
        match framing {
            Framing::None => {}
            Framing::Length(remaining) => {
                let n = (remaining as usize).min(payload.len());
                copy::extend(target, &payload[..n]);
                e.response = ResponseState::Streaming(Framing::Length(remaining - n as u64));
            }
            Framing::Chunked => {
                if !payload.is_empty() {
                    let mut hex = [0u8; 16];
                    let digits = hex_len(payload.len(), &mut hex);
                    target.extend_from_slice(digits);
                    target.extend_from_slice(b"\r\n");
                    copy::extend(target, payload);
                    target.extend_from_slice(b"\r\n");
                }
            }
            Framing::Raw => copy::extend(target, payload),
        }
        self.mark_dirty(conn);
    }

    fn on_response_end(&mut self, x: usize) {
        let e = &mut self.exchanges[x];
        let conn = e.conn;
        let is_head = c_is_head(&self.connections[conn], x);
        if let ResponseState::Streaming(Framing::Chunked) = e.response {
            let target = if is_head {
                &mut self.connections[conn].out
            } else {
                &mut e.buffered
            };
            target.extend_from_slice(b"0\r\n\r\n");
        }
        if let ResponseState::Streaming(Framing::Raw) = e.response {
            e.close_after = true;
        }
        e.response = ResponseState::Done;
        if is_head {
            self.complete_head(conn);
        }
        self.mark_dirty(conn);
    }

    /// Retires finished exchanges at the head of the queue and promotes the next one.
    fn complete_head(&mut self, conn: usize) {
        loop {
            let c = &mut self.connections[conn];
            let Some(&x) = c.exchanges.front() else { break };
            let e = &mut self.exchanges[x];
            if !e.buffered.is_empty() {
                c.out.append(&mut e.buffered);
            }
            if e.expect_continue {
                // Rare: a pipelined request with Expect: 100-continue reached the head.
                c.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                e.expect_continue = false;
            }
            if e.response != ResponseState::Done || !e.request_ended {
                break;
            }
            if e.close_after {
                c.closing = true;
            }
            c.exchanges.pop_front();
            c.last_activity = self.now;
            self.exchanges.remove(x);
        }
    }

    /// End of poll for one connection: send response bytes within credit, grant windows,
    /// end the reply once a closing connection has nothing left to say.
    fn flush(&mut self, slot: usize) {
        let Some(c) = self.connections.get(slot) else {
            return;
        };
        // Requests held back by the pipelining limit proceed once earlier ones completed.
        if !c.buffer.is_empty()
            && c.receiving.is_none()
            && !c.closing
            && c.exchanges.len() < self.config.limits.max_pipelined
        {
            self.resume(slot);
        }
        let timestamp = self.timestamp;
        let window = self.config.window;
        let Some(c) = self.connections.get_mut(slot) else {
            return;
        };
        let tx = &mut self.outputs[c.input].tx;
        let sent = tx.data_within(&mut c.send, c.net_id ^ 1, timestamp, &c.out);
        c.out.drain(..sent);
        streams::memory::release_drained(&mut c.out, KEEP);
        if c.recv.window_due() && !c.input_ended {
            let (acknowledge, maximum) = c.recv.announce();
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
        // Keep the head exchange's response flowing while the connection keeps up.
        if let Some(&x) = c.exchanges.front() {
            let e = &mut self.exchanges[x];
            if e.app != usize::MAX
                && e.recv.window_due()
                && c.out.len() + window as usize <= self.config.max_buffered_bytes
                && e.response != ResponseState::Done
            {
                e.recv.maximum = window;
                let (acknowledge, maximum) = e.recv.announce();
                let _ = self.outputs[e.app].tx.window(
                    &Header {
                        stream_id: e.id ^ 1,
                        timestamp,
                        acknowledge,
                        maximum,
                        ..Header::default()
                    },
                    0,
                );
            }
        }
        let c = &mut self.connections[slot];
        let finished =
            c.closing && c.exchanges.is_empty() && c.out.is_empty() && c.receiving.is_none();
        if finished && !c.reply_ended {
            let tx = &mut self.outputs[c.input].tx;
            let _ = tx.end(
                &Header {
                    stream_id: c.net_id ^ 1,
                    timestamp,
                    sequence: c.send.sequence,
                    ..Header::default()
                },
                &[],
            );
            c.reply_ended = true;
            if !c.input_ended {
                // Nothing more will be read: tell the network side to stop sending.
                let _ = tx.reset(&Header::at(c.net_id, timestamp), &[]);
                c.input_ended = true;
            }
        }
        let c = &self.connections[slot];
        if c.reply_ended && c.input_ended && c.exchanges.is_empty() {
            let c = self.connections.remove(slot);
            self.by_network.remove(c.input, c.net_id, slot);
        }
    }
}

impl HttpNukleus {
    /// Closes connections idle beyond `idle_timeout` and answers 408 to request heads not
    /// completed within `request_timeout`. Runs about once a second: O(connections).
    fn expire_idle(&mut self) {
        let now = self.now;
        let mut late = Vec::new();
        for (slot, c) in self.connections.iter() {
            if c.upgraded || c.closing || c.receiving.is_some() || !c.exchanges.is_empty() {
                continue; // in flight: the application or the tunnel decides
            }
            // Bytes held back (behind a refused upgrade or the pipelining limit) are a
            // request head that started by the last activity at the latest.
            let head_started = match c.head_started {
                None if !c.buffer.is_empty() => Some(c.last_activity),
                started => started,
            };
            match head_started {
                Some(started)
                    if now.saturating_duration_since(started) >= self.config.request_timeout =>
                {
                    late.push((slot, true))
                }
                None if now.saturating_duration_since(c.last_activity)
                    >= self.config.idle_timeout =>
                {
                    late.push((slot, false))
                }
                _ => {}
            }
        }
        for (slot, head) in late {
            if head {
                self.reject(
                    slot,
                    Rejection {
                        status: 408,
                        reason: "request head not completed in time",
                    },
                );
            } else {
                self.connections[slot].closing = true;
                self.mark_dirty(slot);
            }
        }
    }

    fn scan_interval(&self) -> Duration {
        (self.config.idle_timeout.min(self.config.request_timeout) / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(1))
    }
}

impl Connection {
    /// After the last request (error, `Connection: close`), further input is dropped unread.
    fn closing_input_discarded(&self) -> bool {
        self.closing && self.receiving.is_none() && !self.upgraded
    }
}

fn c_is_head(c: &Connection, x: usize) -> bool {
    c.exchanges.front() == Some(&x)
}

fn hex_len(mut n: usize, buffer: &mut [u8; 16]) -> &[u8] {
    let mut at = buffer.len();
    loop {
        at -= 1;
        buffer[at] = b"0123456789abcdef"[n & 15];
        n >>= 4;
        if n == 0 {
            return &buffer[at..];
        }
    }
}

/// Parses a Content-Length value (digits with optional surrounding whitespace).
fn parse_decimal(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + (d - b'0') as u64)
    })
}

/// Writes the status line and headers; returns how the body is framed.
fn write_response_head(
    out: &mut Vec<u8>,
    head: &ext::ResponseHead<'_>,
    e: &mut Exchange,
    date: &[u8],
    upgrade: bool,
) -> Framing {
    let status = head.status;
    response::status_line(out, status);
    let mut content_length = None;
    for (name, value) in head.raw_headers() {
        if name.eq_ignore_ascii_case(b"content-length") {
            content_length = parse_decimal(value);
        }
        if !upgrade
            && (name.eq_ignore_ascii_case(b"connection")
                || name.eq_ignore_ascii_case(b"transfer-encoding"))
        {
            continue;
        }
        if name.eq_ignore_ascii_case(b"date") {
            continue;
        }
        response::header(out, name, value);
    }
    response::header(out, b"Date", date);
    let framing = if upgrade {
        Framing::Raw
    } else if (100..200).contains(&status) || status == 204 || status == 304 || e.is_head {
        Framing::None
    } else if let Some(length) = content_length {
        Framing::Length(length)
    } else if e.minor_version == 1 {
        response::header(out, b"Transfer-Encoding", b"chunked");
        Framing::Chunked
    } else {
        e.close_after = true;
        Framing::Raw
    };
    if !upgrade {
        if e.close_after {
            response::header(out, b"Connection", b"close");
        } else if e.minor_version == 0 {
            response::header(out, b"Connection", b"keep-alive");
        }
    }
    out.extend_from_slice(b"\r\n");
    framing
}

impl Nukleus for HttpNukleus {
    fn kind(&self) -> &'static str {
        "http"
    }

    fn poll(&mut self, context: &PollContext) -> usize {
        self.timestamp = context.timestamp;
        self.now = context.now;
        if self.date.refresh(self.now) {
            self.heads.clear(); // cached heads carry the old Date
        }
        let mut work = 0;
        if self.now >= self.next_scan {
            self.next_scan = self.now + self.scan_interval();
            if !self.connections.is_empty() {
                self.expire_idle();
                work += 1;
            }
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
            self.flush(slot);
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
        out.push(("exchanges", self.exchanges.len() as u64));
        out.push(("requests_total", self.requests));
        out.push(("requests_rejected_total", self.rejected));
        out.push(("streams_reset_ring_full_total", self.refused_resets));
        out.push(("buffered_bytes", self.buffered_bytes() as u64));
        out.push(("connections_shed_total", self.shed_total));
    }

    fn buffered_bytes(&self) -> usize {
        self.connections
            .iter()
            .map(|(slot, _)| self.held_by(slot))
            .sum()
    }

    fn shed(&mut self, bytes: usize) -> usize {
        self.shed_largest(bytes)
    }

    fn drain(&mut self) {
        self.begin_drain();
    }

    fn drained(&self) -> bool {
        self.connections.is_empty()
    }
}
