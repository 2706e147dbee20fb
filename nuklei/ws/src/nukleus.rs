//! The ws nukleus: WebSocket connections between `http` (which tunnels an upgraded
//! connection's bytes) and application nuklei (one message stream per connection, see
//! [`crate::app`]).
//!
//! Per connection:
//!
//! 1. http sends a BEGIN whose extension is the upgrade request head. ws routes it by path
//!    (longest prefix of its routes), runs [`negotiate`], and answers either a complete HTTP
//!    refusal (BEGIN 400/404/426/503 + body DATA + END) or BEGIN 101 with the handshake
//!    headers, after which every DATA from http is client bytes and every DATA ws sends is
//!    server bytes.
//! 2. ws opens one stream to the application, decodes client frames with a [`Session`],
//!    forwards message fragments within the application's window, answers pings itself and
//!    writes the application's messages as frames within http's window.
//! 3. The close handshake ends it: the client's close is answered (once the application has
//!    ended its reply, bounded by `close_timeout`), a close the application asks for waits
//!    for the client's answer (bounded likewise), a protocol failure sends its close code and
//!    drops the connection. Then ws resets the tunnel's input and ends its output, which makes
//!    http close the TCP connection.
//!
//! Memory per connection is bounded: unconsumed client bytes stay within the window granted
//! to http (and are not acknowledged until forwarded), and the output buffer only grows by
//! the application's window while it is below a low-water mark.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use nukleus_http::ext::{self, RequestHead};
use slab::Slab;
use streams::copy;
use streams::frame::{self, Frame, FLAG_FIN, FLAG_INIT};
use streams::{
    path_key, pick_keyed, pick_peer, plumbing, split_links, DirtySet, Header, Nukleus, Output,
    PeerLink, PeerStreams, PollContext, RecvWindow, RingReader, SendWindow, SlotIds,
};

use crate::app;
use crate::error::close_code;
use crate::frame::{encode_close, encode_header, encode_pong, OpCode};
use crate::frame::{MAX_CONTROL_FRAME_LEN, MAX_CONTROL_PAYLOAD, MAX_SERVER_HEADER_LEN};
use crate::handshake::negotiate;
use crate::session::{self, Event, MessageKind, Session};
use crate::Failure;

/// A path prefix and the application kind its WebSocket connections go to.
pub use streams::Route;

#[derive(Debug, Clone)]
pub struct WsConfig {
    /// The longest matching prefix wins; no match: 404.
    pub routes: Vec<Route>,
    /// Subprotocols the server speaks, in order of preference.
    pub protocols: Vec<String>,
    /// Largest frame and message payloads accepted from clients (larger: close 1009).
    pub limits: session::Config,
    /// Window granted to http for client bytes and to applications for messages.
    pub window: u32,
    /// How long a close handshake may wait for the other side.
    pub close_timeout: Duration,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            routes: Vec::new(),
            protocols: Vec::new(),
            limits: session::Config::default(),
            window: 65536,
            close_timeout: Duration::from_secs(5),
        }
    }
}

/// Output bytes above which client input is no longer processed (its pongs and the
/// application's echoes would pile up).
const OUT_HIGH_WATER: usize = 128 * 1024;
/// Output bytes below which the application's messages are acknowledged (window re-granted).
const OUT_LOW_WATER: usize = 32 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    Awaiting,
    Open,
    Ended,
}

struct App {
    output: usize,
    /// Our initial stream id; the application replies on `id ^ 1`.
    id: u64,
    /// Credit the application granted for messages.
    send: SendWindow,
    /// Credit we granted the application for its messages.
    recv: RecvWindow,
    /// We sent END/ABORT on the initial stream, or the application reset it.
    initial_ended: bool,
    reply: Reply,
    /// A message from the application is open (its next DATA is a continuation).
    message_open: bool,
}

struct Conn {
    input: usize,
    /// http's initial stream id (client bytes); our reply is `http_id ^ 1`.
    http_id: u64,
    recv: RecvWindow,
    send: SendWindow,
    session: Session,
    /// Client bytes received but not yet consumed (the application's window was full).
    inbuf: Vec<u8>,
    /// Bytes for the client waiting for http's window.
    out: Vec<u8>,
    app: Option<App>,
    /// The next fragment forwarded to the application starts a message.
    message_init: bool,
    message_kind: MessageKind,
    /// The open message's FIN fragment was already forwarded (`MessageEnd` adds nothing).
    message_fin_sent: bool,
    in_ended: bool,
    reply_ended: bool,
    close_sent: bool,
    /// The client closed normally (its close frame arrived).
    close_received: bool,
    /// The client's close code, to echo once the application has ended its reply.
    pending_close: Option<Option<u16>>,
    /// Close the tunnel once `out` is written.
    closing: bool,
    deadline: Option<Instant>,
    /// The 101 response head, held until the application accepts the connection (its reply
    /// BEGIN); `None` once sent. Nothing else goes to the client before it.
    accept: Option<Vec<u8>>,
}

pub struct WsNukleus {
    config: WsConfig,
    core: usize,
    ids: SlotIds,
    inputs: Vec<RingReader>,
    outputs: Vec<Output>,
    is_http: Vec<bool>,
    /// Per http input: http's exchange slot -> our connection slot + 1.
    by_http: PeerStreams,
    conns: Slab<Conn>,
    generations: Vec<u32>,
    dirty: DirtySet,
    /// Connections closed because a full ring refused one of their frames (DESIGN §3).
    refused_resets: u64,
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    scratch: Vec<u8>,
    now: Instant,
    timestamp: u64,
    upgrades: u64,
    rejected: u64,
    failures: u64,
}

/// A session event, copied out of the input buffer's borrow.
enum Ev {
    Start(MessageKind),
    /// A message piece: the last `len` consumed bytes of the slice, unmasked.
    Data(usize),
    End,
    Ping([u8; MAX_CONTROL_PAYLOAD], usize),
    Pong,
    Close(Option<u16>),
    Failed(Failure),
}

impl WsNukleus {
    pub fn new(config: WsConfig, core: usize, instance: u16, links: Vec<PeerLink>) -> WsNukleus {
        let (inputs, outputs) = split_links(links);
        let is_http = outputs.iter().map(|o| o.role.is_network()).collect();
        let by_http = PeerStreams::new(outputs.len());
        WsNukleus {
            config,
            core,
            ids: SlotIds::new(instance),
            inputs,
            outputs,
            is_http,
            by_http,
            conns: Slab::new(),
            generations: Vec::new(),
            dirty: DirtySet::default(),
            refused_resets: 0,
            timers: BinaryHeap::new(),
            scratch: Vec::with_capacity(512),
            now: Instant::now(),
            timestamp: 0,
            upgrades: 0,
            rejected: 0,
            failures: 0,
        }
    }

    fn header(&self, stream_id: u64) -> Header {
        Header::at(stream_id, self.timestamp)
    }

    fn mark_dirty(&mut self, slot: usize) {
        if self.conns.contains(slot) {
            self.dirty.mark(slot);
        }
    }

    /// A full ring refused a frame of stream `id` to output `output`: the connection it
    /// belongs to is dropped on both sides (the ring defers what does not fit) and counted.
    fn on_refused(&mut self, output: usize, id: u64) {
        let slot = if self.is_http[output] {
            self.by_http.get(output, id).filter(|&slot| {
                self.conns
                    .get(slot)
                    .is_some_and(|c| c.http_id == id | 1 && c.input == output)
            })
        } else {
            let slot = SlotIds::slot(id);
            self.conns
                .get(slot)
                .and_then(|c| c.app.as_ref())
                .is_some_and(|a| a.id == id | 1 && a.output == output)
                .then_some(slot)
        };
        if let Some(slot) = slot {
            tracing::warn!(core = self.core, peer = %self.outputs[output].peer, "stream buffer full: closing the connection whose frame it refused");
            self.refused_resets += 1;
            self.drop_conn(slot, true);
        }
    }

    fn arm(&mut self, slot: usize) {
        let at = self.now + self.config.close_timeout;
        let c = &mut self.conns[slot];
        c.deadline = Some(at);
        self.timers.push(Reverse((at, slot, c.http_id)));
    }

    fn route(&self, path: &str) -> Option<&Route> {
        streams::plumbing::longest_prefix(&self.config.routes, path).map(|i| &self.config.routes[i])
    }

    // ----- http side ----------------------------------------------------------------------

    fn on_http_frame(&mut self, input: usize, f: Frame<'_>) {
        let id = f.stream_id();
        let slot = self
            .by_http
            .get(input, id)
            .filter(|&s| self.conns.get(s).is_some_and(|c| c.http_id == id | 1));
        match (f.type_id(), slot, frame::is_reply(id)) {
            (frame::BEGIN, None, false) => {
                self.on_http_begin(input, f);
                // A request without a body (never an accepted upgrade) carries FIN on its
                // BEGIN instead of a separate END.
                if f.flags() & frame::FLAG_FIN != 0 {
                    let slot = self.by_http.get(input, id);
                    if let Some(slot) =
                        slot.filter(|&s| self.conns.get(s).is_some_and(|c| c.http_id == id))
                    {
                        self.on_http_end(slot);
                    }
                }
            }
            (frame::DATA, Some(slot), false) => self.on_http_data(slot, f),
            (frame::END, Some(slot), false) => self.on_http_end(slot),
            (frame::ABORT, Some(slot), false) => {
                self.conns[slot].in_ended = true;
                self.drop_conn(slot, true);
            }
            (frame::RESET, Some(slot), true) => {
                self.conns[slot].reply_ended = true;
                self.drop_conn(slot, false);
            }
            (frame::WINDOW, Some(slot), true) => {
                self.conns[slot]
                    .send
                    .on_window(f.acknowledge(), f.maximum(), f.padding());
                self.mark_dirty(slot);
            }
            _ => {}
        }
    }

    /// The request stream from http ended: the client closed its side (or sent no body).
    fn on_http_end(&mut self, slot: usize) {
        let c = &mut self.conns[slot];
        c.in_ended = true;
        if !c.close_received && !c.closing {
            // The client went away without a close handshake.
            self.abort_app(slot);
        }
        let c = &mut self.conns[slot];
        if !c.closing {
            c.closing = true;
            self.arm(slot);
        }
        self.mark_dirty(slot);
    }

    /// State for an exchange http opened with `begin`, whose header pre-grants our reply window.
    fn new_conn(&mut self, input: usize, begin: &Frame<'_>) -> usize {
        let http_id = begin.stream_id();
        let mut send = SendWindow::default();
        send.on_window(begin.acknowledge(), begin.maximum(), 0);
        let slot = self.conns.insert(Conn {
            input,
            http_id,
            recv: RecvWindow::new(self.config.window),
            send,
            session: Session::new(self.config.limits),
            inbuf: Vec::new(),
            out: Vec::new(),
            app: None,
            message_init: false,
            message_kind: MessageKind::Binary,
            message_fin_sent: false,
            in_ended: false,
            reply_ended: false,
            close_sent: false,
            close_received: false,
            pending_close: None,
            closing: false,
            deadline: None,
            accept: None,
        });
        self.by_http.insert(input, http_id, slot);
        if self.generations.len() <= slot {
            self.generations.resize(slot + 1, 0);
        }
        self.generations[slot] = self.generations[slot].wrapping_add(1);
        slot
    }

    fn on_http_begin(&mut self, input: usize, f: Frame<'_>) {
        let http_id = f.stream_id();
        let Some(request) = RequestHead::parse(f.extension()) else {
            tracing::error!(core = self.core, "malformed request head from http");
            let (reset, abort) = (self.header(http_id), self.header(http_id ^ 1));
            let tx = &mut self.outputs[input].tx;
            let _ = tx.reset(&reset, &[]);
            let _ = tx.abort(&abort, &[]);
            return;
        };
        let slot = self.new_conn(input, &f);
        let route = self
            .route(request.path())
            .map(|r| (r.to.clone(), r.key_segment));
        let Some((kind, key_segment)) = route else {
            return self.reject(slot, 404, "no WebSocket route for this path", false);
        };
        let accepted = match negotiate(
            request.method,
            request.minor_version,
            request.headers(),
            &self.config.protocols,
        ) {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::debug!(core = self.core, error = %e, "WebSocket handshake refused");
                return self.reject(slot, e.status(), e.reason(), e.status() == 426);
            }
        };
        let output = match key_segment.and_then(|segment| path_key(request.path(), segment)) {
            Some(key) => pick_keyed(&self.outputs, &kind, key),
            None => pick_peer(&self.outputs, &kind, self.core, http_id >> 1),
        };
        let Some(output) = output else {
            return self.reject(slot, 503, "WebSocket route target is not running", false);
        };
        self.upgrades += 1;
        // The 101 towards http waits for the application to accept (or refuse with an HTTP
        // status, e.g. 401 for a bad token).
        let protocol = accepted.protocol.map(str::to_owned);
        {
            let mut headers: Vec<(&str, &[u8])> = vec![
                ("Upgrade", b"websocket"),
                ("Connection", b"Upgrade"),
                ("Sec-WebSocket-Accept", &accepted.accept),
            ];
            if let Some(p) = &protocol {
                headers.push(("Sec-WebSocket-Protocol", p.as_bytes()));
            }
            let mut head = Vec::new();
            ext::encode_response(&mut head, 101, headers.into_iter());
            self.conns[slot].accept = Some(head);
        }
        // The application stream.
        self.scratch.clear();
        app::encode_begin(&mut self.scratch, protocol.as_deref(), f.extension());
        let id = self.ids.initial(slot, self.generations[slot]);
        let begin = self.header(id);
        let tx = &mut self.outputs[output].tx;
        if tx.begin(&begin, http_id, &self.scratch).is_err() {
            tracing::error!(core = self.core, "stream buffer to the application is full");
            self.conns[slot].close_sent = true;
            self.queue_close(slot, Some(close_code::INTERNAL_ERROR), "server busy");
            self.conns[slot].closing = true;
            self.arm(slot);
            self.mark_dirty(slot);
            return;
        }
        let mut recv = RecvWindow::new(self.config.window);
        let (acknowledge, maximum) = recv.announce();
        let grant = Header {
            acknowledge,
            maximum,
            ..begin
        };
        let _ = tx.window(
            &Header {
                stream_id: id ^ 1,
                ..grant
            },
            0,
        );
        self.conns[slot].app = Some(App {
            output,
            id,
            send: SendWindow::default(),
            recv,
            initial_ended: false,
            reply: Reply::Awaiting,
            message_open: false,
        });
        self.arm(slot); // the application must accept or refuse within the close timeout
        self.mark_dirty(slot); // grants http its window
    }

    /// The application accepted: the 101 goes out, client bytes flow.
    fn accept(&mut self, slot: usize) {
        let c = &mut self.conns[slot];
        let Some(head) = c.accept.take() else {
            return;
        };
        c.deadline = None;
        let reply = Header::at(c.http_id ^ 1, self.timestamp);
        let _ = self.outputs[c.input].tx.begin(&reply, c.http_id, &head);
        self.mark_dirty(slot);
    }

    /// The application refused before accepting: the client gets an HTTP error response.
    fn refuse(&mut self, slot: usize, status: u16, reason: &str) {
        self.abort_app(slot);
        self.conns[slot].accept = None;
        self.reject(slot, status, reason, false);
    }

    /// Answers a refused upgrade with a complete HTTP response and closes the tunnel.
    fn reject(&mut self, slot: usize, status: u16, reason: &str, version_hint: bool) {
        self.rejected += 1;
        let c = &mut self.conns[slot];
        c.out.extend_from_slice(reason.as_bytes());
        c.out.extend_from_slice(b"\n");
        let mut length = itoa::Buffer::new();
        let length = length.format(c.out.len());
        self.scratch.clear();
        let mut headers: Vec<(&str, &[u8])> = vec![
            ("Content-Type", b"text/plain"),
            ("Content-Length", length.as_bytes()),
        ];
        if version_hint {
            headers.push(("Sec-WebSocket-Version", b"13"));
        }
        if status == 401 {
            // RFC 9110 §11.6.1: a 401 names the scheme (the application refused a credential).
            headers.push(("WWW-Authenticate", b"Bearer"));
        }
        ext::encode_response(&mut self.scratch, status, headers.into_iter());
        let http_id = c.http_id;
        let input = c.input;
        c.in_ended = true;
        c.close_sent = true;
        c.closing = true;
        let (reply, reset) = (self.header(http_id ^ 1), self.header(http_id));
        let tx = &mut self.outputs[input].tx;
        let _ = tx.begin(&reply, http_id, &self.scratch);
        let _ = tx.reset(&reset, &[]);
        self.arm(slot);
        self.mark_dirty(slot);
    }

    fn on_http_data(&mut self, slot: usize, f: Frame<'_>) {
        let c = &mut self.conns[slot];
        if let Err(e) = c.recv.on_data(f.reserved()) {
            tracing::error!(core = self.core, error = %e, "http broke the window: dropping connection");
            self.drop_conn(slot, true);
            return;
        }
        let payload = f.payload();
        c.recv.release(f.reserved() as u64 - payload.len() as u64);
        if c.session.is_done() || c.in_ended {
            c.recv.release(payload.len() as u64);
        } else {
            copy::extend(&mut c.inbuf, payload);
        }
        self.mark_dirty(slot);
    }

    /// Appends a close frame for the client.
    fn queue_close(&mut self, slot: usize, code: Option<u16>, reason: &str) {
        let mut frame = [0u8; MAX_CONTROL_FRAME_LEN];
        let n = encode_close(code, reason, &mut frame);
        self.conns[slot].out.extend_from_slice(&frame[..n]);
    }

    /// The server starts the close handshake (application END/ABORT, refused stream).
    fn server_close(&mut self, slot: usize, code: u16, reason: &str) {
        let c = &mut self.conns[slot];
        if let Some(echo) = c.pending_close.take() {
            // The client already closed: answer with its code.
            c.close_sent = true;
            c.closing = true;
            self.queue_close(slot, echo, "");
            self.arm(slot);
        } else if !c.close_sent && !c.closing {
            c.close_sent = true;
            self.queue_close(slot, Some(code), reason);
            self.arm(slot); // wait for the client's close
        }
        self.mark_dirty(slot);
    }

    /// Tells the application the connection is gone (ABORT / RESET as needed).
    fn abort_app(&mut self, slot: usize) {
        let timestamp = self.timestamp;
        let Some(a) = self.conns[slot].app.as_mut() else {
            return;
        };
        let tx = &mut self.outputs[a.output].tx;
        if !a.initial_ended {
            a.initial_ended = true;
            let _ = tx.abort(
                &Header {
                    stream_id: a.id,
                    timestamp,
                    sequence: a.send.sequence,
                    ..Header::default()
                },
                &[],
            );
        }
        if a.reply != Reply::Ended {
            a.reply = Reply::Ended;
            let _ = tx.reset(&Header::at(a.id ^ 1, timestamp), &[]);
        }
    }

    /// Tears a connection down at once (http aborted or reset it, or broke the protocol).
    fn drop_conn(&mut self, slot: usize, abort_reply: bool) {
        self.abort_app(slot);
        let c = &self.conns[slot];
        let (input, http_id) = (c.input, c.http_id);
        let (in_ended, reply_ended) = (c.in_ended, c.reply_ended);
        let (reset, abort) = (self.header(http_id), self.header(http_id ^ 1));
        let tx = &mut self.outputs[input].tx;
        if abort_reply && !reply_ended {
            let _ = tx.abort(&abort, &[]);
        }
        if !in_ended {
            let _ = tx.reset(&reset, &[]);
        }
        self.remove(slot);
    }

    fn remove(&mut self, slot: usize) {
        let c = self.conns.remove(slot);
        self.by_http.remove(c.input, c.http_id, slot);
    }

    // ----- application side ---------------------------------------------------------------

    fn on_app_frame(&mut self, input: usize, f: Frame<'_>) {
        let id = f.stream_id();
        let slot = SlotIds::slot(id);
        match self.conns.get(slot).and_then(|c| c.app.as_ref()) {
            Some(a) if a.id == id | 1 && a.output == input => {}
            _ => return,
        }
        let reply = frame::is_reply(id);
        let c = &mut self.conns[slot];
        let a = c.app.as_mut().expect("checked above");
        match (f.type_id(), reply) {
            (frame::WINDOW, false) => {
                a.send.on_window(f.acknowledge(), f.maximum(), f.padding());
                self.mark_dirty(slot);
            }
            (frame::RESET, false) if c.accept.is_some() => {
                a.initial_ended = true;
                self.refuse(slot, 503, "the application refused the connection");
            }
            (frame::RESET, false) => {
                a.initial_ended = true;
                self.server_close(slot, close_code::INTERNAL_ERROR, "application refused");
                self.abort_app(slot);
            }
            (frame::BEGIN, true) if a.reply == Reply::Awaiting => {
                a.reply = Reply::Open;
                self.accept(slot);
            }
            (frame::END, true) if c.accept.is_some() => {
                a.reply = Reply::Ended;
                let (status, reason) = app::parse_refusal(f.extension());
                let reason = reason.to_owned();
                self.refuse(slot, status, &reason);
            }
            (frame::ABORT, true) if c.accept.is_some() => {
                a.reply = Reply::Ended;
                self.refuse(slot, 503, "the application aborted the connection");
            }
            (frame::DATA, true) if a.reply != Reply::Ended => self.on_app_data(slot, f),
            (frame::END, true) if a.reply != Reply::Ended => {
                a.reply = Reply::Ended;
                let (code, reason) = app::parse_close_ext(f.extension());
                let reason = reason.to_owned();
                self.server_close(slot, code, &reason);
            }
            (frame::ABORT, true) if a.reply != Reply::Ended => {
                a.reply = Reply::Ended;
                self.server_close(slot, close_code::INTERNAL_ERROR, "application aborted");
                self.abort_app(slot);
            }
            _ => {}
        }
    }

    fn on_app_data(&mut self, slot: usize, f: Frame<'_>) {
        let c = &mut self.conns[slot];
        let a = c.app.as_mut().expect("caller checked");
        if let Err(e) = a.recv.on_data(f.reserved()) {
            tracing::error!(core = self.core, error = %e, "application broke the window");
            self.server_close(slot, close_code::INTERNAL_ERROR, "application error");
            self.abort_app(slot);
            return;
        }
        self.mark_dirty(slot);
        let c = &mut self.conns[slot];
        let a = c.app.as_mut().expect("caller checked");
        if c.close_sent || c.closing {
            a.recv.release(f.reserved() as u64);
            return;
        }
        let flags = f.flags();
        let payload = f.payload();
        let opcode = if flags & FLAG_INIT != 0 || !a.message_open {
            if a.message_open {
                tracing::error!(
                    core = self.core,
                    "application started a message inside another"
                );
                self.server_close(slot, close_code::INTERNAL_ERROR, "application error");
                self.abort_app(slot);
                return;
            }
            match app::parse_kind(f.extension()) {
                MessageKind::Text => OpCode::Text,
                MessageKind::Binary => OpCode::Binary,
            }
        } else {
            OpCode::Continuation
        };
        let fin = flags & FLAG_FIN != 0;
        a.message_open = !fin;
        let mut head = [0u8; MAX_SERVER_HEADER_LEN];
        let n = encode_header(fin, opcode, payload.len() as u64, &mut head);
        // Nothing queued before it, and http's window and one frame take it whole: the frame
        // goes straight into http's stream instead of through `out`.
        let total = n + payload.len();
        let tx = &mut self.outputs[c.input].tx;
        if c.out.is_empty()
            && total <= tx.max_payload() - frame::DATA_EXTENSION_OFFSET
            && c.send.writable(total) == total
        {
            let h = Header {
                stream_id: c.http_id ^ 1,
                timestamp: self.timestamp,
                sequence: c.send.sequence,
                ..Header::default()
            };
            let reserved = c.send.consume(total);
            if let Ok(dst) = tx.claim_data(&h, 0, reserved, &[], total) {
                dst[..n].copy_from_slice(&head[..n]);
                copy::copy(&mut dst[n..], payload);
                return;
            }
            c.send.sequence -= reserved as u64;
        }
        c.out.extend_from_slice(&head[..n]);
        copy::extend(&mut c.out, payload);
    }

    // ----- per-connection progress --------------------------------------------------------

    /// Decodes buffered client bytes as far as the application's window and the output
    /// buffer allow.
    fn process(&mut self, slot: usize) {
        let timestamp = self.timestamp;
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        if c.accept.is_some() {
            return; // not accepted yet: client bytes wait
        }
        let mut pos = 0;
        let mut failure = None;
        let mut close = None;
        loop {
            let len = c.inbuf.len();
            if c.session.is_done() || c.closing || c.in_ended {
                pos = len;
                break;
            }
            if c.out.len() >= OUT_HIGH_WATER {
                break;
            }
            let forwarding = c.app.as_ref().is_some_and(|a| !a.initial_ended) && !c.close_sent;
            let avail = len - pos;
            // The application's stream: how much one DATA frame of it carries.
            let app = c
                .app
                .as_ref()
                .filter(|_| forwarding)
                .map(|a| (a, self.outputs[a.output].tx.max_payload() - 64));
            let limit = app.map_or(avail, |(a, room)| a.send.writable(room));
            if avail > 0 && limit == 0 {
                break; // resumed by the application's WINDOW
            }
            // A message in one frame that the application's window and one DATA frame can
            // take whole waits until all of it is here, so that it goes on in one piece (the
            // application then reads it where it lies instead of reassembling it). Bounded
            // by half of each window, so waiting can never stall a window.
            if let (Some(want), Some((a, room))) = (c.session.whole_message_ahead(), app) {
                let want = want as usize;
                if want <= room
                    && want <= a.send.maximum as usize / 2
                    && want <= c.recv.maximum as usize / 2
                    && (avail < want || limit < want)
                {
                    break;
                }
            }
            let end = pos + avail.min(limit);
            let (n, event) = c.session.receive(&mut c.inbuf[pos..end]);
            let ev = match event {
                None => None,
                Some(Event::MessageStart(kind)) => Some(Ev::Start(kind)),
                Some(Event::MessageData(piece)) => Some(Ev::Data(piece.len())),
                Some(Event::MessageEnd) => Some(Ev::End),
                Some(Event::Ping(payload)) => {
                    let mut copy = [0u8; MAX_CONTROL_PAYLOAD];
                    copy[..payload.len()].copy_from_slice(payload);
                    Some(Ev::Ping(copy, payload.len()))
                }
                Some(Event::Pong(_)) => Some(Ev::Pong),
                Some(Event::Close { code, .. }) => Some(Ev::Close(code)),
                Some(Event::Failed(f)) => Some(Ev::Failed(f)),
            };
            pos += n;
            let Some(ev) = ev else {
                if pos >= len {
                    break;
                }
                continue;
            };
            match ev {
                Ev::Start(kind) => {
                    c.message_kind = kind;
                    c.message_init = true;
                    c.message_fin_sent = false;
                }
                Ev::Data(piece) => {
                    let fin = c.session.message_ends_here();
                    if let (Some(a), true) = (c.app.as_mut(), forwarding) {
                        let flags = if c.message_init { FLAG_INIT } else { 0 }
                            | if fin { FLAG_FIN } else { 0 };
                        let h = Header {
                            stream_id: a.id,
                            timestamp,
                            sequence: a.send.sequence,
                            ..Header::default()
                        };
                        let reserved = a.send.consume(piece);
                        let tx = &mut self.outputs[a.output].tx;
                        let ext = app::kind_ext(c.message_kind);
                        if tx
                            .data(&h, flags, reserved, ext, &c.inbuf[pos - piece..pos])
                            .is_err()
                        {
                            a.send.sequence -= reserved as u64;
                            failure = Some(close_code::INTERNAL_ERROR);
                            break;
                        }
                    }
                    c.message_init = false;
                    c.message_fin_sent = fin;
                }
                Ev::End => {
                    if !c.message_fin_sent {
                        if let (Some(a), true) = (c.app.as_mut(), forwarding) {
                            let flags = if c.message_init { FLAG_INIT } else { 0 } | FLAG_FIN;
                            let h = Header {
                                stream_id: a.id,
                                timestamp,
                                sequence: a.send.sequence,
                                ..Header::default()
                            };
                            let reserved = a.send.consume(0);
                            let ext = app::kind_ext(c.message_kind);
                            let _ = self.outputs[a.output]
                                .tx
                                .data(&h, flags, reserved, ext, &[]);
                        }
                    }
                    c.message_init = false;
                    c.message_fin_sent = false;
                }
                Ev::Ping(payload, len) => {
                    if !c.close_sent {
                        let mut frame = [0u8; MAX_CONTROL_FRAME_LEN];
                        let n = encode_pong(&payload[..len], &mut frame)
                            .expect("pings carry at most 125 bytes");
                        c.out.extend_from_slice(&frame[..n]);
                    }
                    if let (Some(a), true) = (c.app.as_ref(), forwarding) {
                        let h = Header {
                            stream_id: a.id,
                            timestamp,
                            sequence: a.send.sequence,
                            ..Header::default()
                        };
                        let _ = self.outputs[a.output].tx.flush(&h, app::PING);
                    }
                }
                Ev::Pong => {}
                Ev::Close(code) => {
                    close = Some(code);
                    pos = len;
                    break;
                }
                Ev::Failed(f) => {
                    tracing::debug!(core = self.core, failure = %f, "client broke the protocol");
                    self.failures += 1;
                    if !c.close_sent {
                        let mut frame = [0u8; MAX_CONTROL_FRAME_LEN];
                        let n = encode_close(Some(f.close_code()), f.reason(), &mut frame);
                        c.out.extend_from_slice(&frame[..n]);
                        c.close_sent = true;
                    }
                    failure = Some(0);
                    pos = len;
                    break;
                }
            }
        }
        let c = &mut self.conns[slot];
        c.recv.release(pos as u64);
        c.inbuf.drain(..pos);
        if let Some(code) = failure {
            if code != 0 {
                self.server_close(slot, code, "server error");
            }
            // Fail the connection: drop it once the close frame is out.
            self.abort_app(slot);
            let c = &mut self.conns[slot];
            if !c.closing {
                c.closing = true;
                self.arm(slot);
            }
        } else if let Some(code) = close {
            self.on_client_close(slot, code);
        }
    }

    fn on_client_close(&mut self, slot: usize, code: Option<u16>) {
        let timestamp = self.timestamp;
        let c = &mut self.conns[slot];
        c.close_received = true;
        if let Some(a) = c.app.as_mut() {
            if !a.initial_ended {
                a.initial_ended = true;
                let _ = self.outputs[a.output].tx.end(
                    &Header {
                        stream_id: a.id,
                        timestamp,
                        sequence: a.send.sequence,
                        ..Header::default()
                    },
                    &[],
                );
            }
        }
        let app_open = c.app.as_ref().is_some_and(|a| a.reply != Reply::Ended);
        if c.close_sent {
            // The client answered our close: done.
            c.closing = true;
        } else if app_open {
            // Let the application finish what it is sending; its END answers the close.
            c.pending_close = Some(code);
        } else {
            c.close_sent = true;
            c.closing = true;
            self.queue_close(slot, code, "");
        }
        self.arm(slot);
    }

    fn on_timeout(&mut self, slot: usize) {
        let c = &mut self.conns[slot];
        c.deadline = None;
        if c.accept.is_some() {
            self.refuse(
                slot,
                503,
                "the application did not accept the connection in time",
            );
        } else if c.pending_close.is_some() {
            // The application did not end its reply in time: answer the close anyway.
            self.server_close(slot, close_code::NORMAL, "");
            self.abort_app(slot);
        } else if c.closing {
            // The client does not take our last bytes: give up on them.
            self.drop_conn(slot, true);
        } else if c.close_sent {
            // No close from the client in time.
            c.closing = true;
            self.arm(slot);
            self.mark_dirty(slot);
        }
    }

    /// End of poll for one connection: write output within http's window, grant windows,
    /// close the tunnel when done.
    fn flush(&mut self, slot: usize) {
        let timestamp = self.timestamp;
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        let tx = &mut self.outputs[c.input].tx;
        if c.accept.is_none() {
            let sent = tx.data_within(&mut c.send, c.http_id ^ 1, timestamp, &c.out);
            c.out.drain(..sent);
        }
        if !c.in_ended && c.recv.window_due() {
            let (acknowledge, maximum) = c.recv.announce();
            let _ = tx.window(
                &Header {
                    stream_id: c.http_id,
                    timestamp,
                    acknowledge,
                    maximum,
                    ..Header::default()
                },
                0,
            );
        }
        if let Some(a) = c.app.as_mut() {
            if a.reply != Reply::Ended {
                if c.out.len() < OUT_LOW_WATER || c.close_sent {
                    a.recv.release_all();
                }
                if a.recv.window_due() {
                    let (acknowledge, maximum) = a.recv.announce();
                    let _ = self.outputs[a.output].tx.window(
                        &Header {
                            stream_id: a.id ^ 1,
                            timestamp,
                            acknowledge,
                            maximum,
                            ..Header::default()
                        },
                        0,
                    );
                }
            }
        }
        if c.closing && c.out.is_empty() {
            self.finish(slot);
        }
    }

    /// The close handshake is over (or the connection failed) and every byte is out: end
    /// both directions of the tunnel and of the application stream, forget the connection.
    fn finish(&mut self, slot: usize) {
        let timestamp = self.timestamp;
        let c = &mut self.conns[slot];
        if let Some(a) = c.app.as_mut() {
            let tx = &mut self.outputs[a.output].tx;
            if !a.initial_ended {
                a.initial_ended = true;
                let h = Header {
                    stream_id: a.id,
                    timestamp,
                    sequence: a.send.sequence,
                    ..Header::default()
                };
                let _ = if c.close_received {
                    tx.end(&h, &[])
                } else {
                    tx.abort(&h, &[])
                };
            }
            if a.reply != Reply::Ended {
                a.reply = Reply::Ended;
                let _ = tx.reset(&Header::at(a.id ^ 1, timestamp), &[]);
            }
        }
        let tx = &mut self.outputs[c.input].tx;
        if !c.in_ended {
            c.in_ended = true;
            let _ = tx.reset(&Header::at(c.http_id, timestamp), &[]);
        }
        if !c.reply_ended {
            c.reply_ended = true;
            let _ = tx.end(
                &Header {
                    stream_id: c.http_id ^ 1,
                    timestamp,
                    sequence: c.send.sequence,
                    ..Header::default()
                },
                &[],
            );
        }
        self.remove(slot);
    }

    fn expire_timers(&mut self) {
        while let Some(Reverse((at, slot, http_id))) = self.timers.peek().copied() {
            if at > self.now {
                break;
            }
            self.timers.pop();
            let live = self
                .conns
                .get(slot)
                .is_some_and(|c| c.http_id == http_id && c.deadline == Some(at));
            if live {
                self.on_timeout(slot);
                self.mark_dirty(slot);
            }
        }
    }
}

impl Nukleus for WsNukleus {
    fn kind(&self) -> &'static str {
        "ws"
    }

    fn poll(&mut self, context: &PollContext) -> usize {
        self.timestamp = context.timestamp;
        self.now = context.now;
        let mut work = 0;
        let mut inputs = std::mem::take(&mut self.inputs);
        work += plumbing::read_frames(&mut inputs, self.core, |input, f| {
            if self.is_http[input] {
                self.on_http_frame(input, f)
            } else {
                self.on_app_frame(input, f)
            }
        });
        self.inputs = inputs;
        if self
            .timers
            .peek()
            .is_some_and(|Reverse((at, _, _))| *at <= self.now)
        {
            self.expire_timers();
            work += 1;
        }
        let dirty = self.dirty.take();
        for &slot in &dirty {
            self.process(slot);
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
        self.timers.peek().map(|Reverse((at, _, _))| *at)
    }

    fn gauges(&self, out: &mut Vec<(&'static str, u64)>) {
        out.push(("connections", self.conns.len() as u64));
        out.push(("upgrades_total", self.upgrades));
        out.push(("upgrades_rejected_total", self.rejected));
        out.push(("protocol_failures_total", self.failures));
        out.push(("streams_reset_ring_full_total", self.refused_resets));
    }

    fn shutdown(&mut self) {
        // Going away (1001) to every open connection, best effort.
        let slots: Vec<usize> = self.conns.iter().map(|(slot, _)| slot).collect();
        for slot in slots {
            self.server_close(slot, close_code::GOING_AWAY, "server shutting down");
            self.conns[slot].closing = true;
            self.flush(slot);
        }
        for output in &mut self.outputs {
            output.publish();
        }
    }
}
