//! The echo nukleus: the worked example of an application nukleus behind `http`.
//!
//! - `GET /healthz` answers `200 ok`;
//! - `POST /echo` streams the request body back as the response body, under flow control
//!   (request bytes are acknowledged only once echoed, so memory stays bounded whatever the
//!   client's speed);
//! - `GET /` answers `Hello, World!` (the benchmark response);
//! - anything else: 404, or 405 for a known path with the wrong method.
//!
//! Streams come from http: a BEGIN with the request head (see `nukleus_http::ext`), DATA,
//! END; http pre-grants the reply window with a WINDOW on the reply stream.
//!
//! Streams from a `ws` peer are WebSocket connections (the protocol of `nukleus_ws::app`):
//! each DATA is one message fragment (flags `FLAG_INIT`/`FLAG_FIN`, a one-byte kind
//! extension) and is echoed with the same flags and kind, under the same flow control
//! (fragments are split further when the reply window is short). END (the client closed)
//! ends the reply once everything is echoed, which answers the close with code 1000.
//! Clients commonly send a whole message before reading its echo (Autobahn's 9.x cases send
//! 16 MiB messages that way), so a message is taken in whole up to [`MESSAGE_BUFFER`] bytes
//! before the window closes; beyond that, and once a complete message waits, the echo is
//! paced by the reply window only. Memory per connection is bounded by `MESSAGE_BUFFER` plus
//! the request window.

use std::collections::VecDeque;

use nukleus_http::ext::{self, RequestHead};
use streams::frame::{self, Frame};
use streams::{
    plumbing, split_links, Header, Nukleus, Output, PeerLink, PollContext, RecvWindow, RingReader,
    SendWindow, SlotIds,
};

/// Window granted for request bodies.
pub const REQUEST_WINDOW: u32 = 65536;

/// WebSocket mode: bytes of one incomplete message taken in before its echo has started.
pub const MESSAGE_BUFFER: usize = 16 << 20;

/// A response known in full from the request line: its body and encoded head.
struct FixedResponse {
    body: &'static [u8],
    /// The BEGIN extension, encoded once (not per request).
    head: Vec<u8>,
    /// `head` followed by `body`: a whole answer's record bytes, copied in one piece.
    whole: Vec<u8>,
}

impl FixedResponse {
    fn new(status: u16, body: &'static [u8]) -> FixedResponse {
        let mut length = itoa::Buffer::new();
        let headers = [
            ("Content-Type", &b"text/plain"[..]),
            ("Content-Length", length.format(body.len()).as_bytes()),
        ];
        let mut head = Vec::new();
        ext::encode_response(&mut head, status, headers.into_iter());
        let whole = [&head[..], body].concat();
        FixedResponse { body, head, whole }
    }
}

/// Indices into `EchoNukleus::fixed`; each `*_HEAD` answers a HEAD request (no body).
const HELLO: usize = 0;
const HEALTHZ: usize = 2;
const NOT_ALLOWED: usize = 4;
const NOT_FOUND: usize = 6;

/// Sends a fixed response, head and body, ending it with FIN, if the reply window takes it
/// whole (http pre-grants it with the request's BEGIN). Returns whether it was sent.
#[inline(always)]
fn answer(
    tx: &mut streams::RingWriter,
    response: &FixedResponse,
    send: &mut SendWindow,
    id: u64,
    timestamp: u64,
) -> bool {
    let FixedResponse { body, head, whole } = response;
    if send.writable(body.len()) != body.len() || (send.maximum == 0 && !body.is_empty()) {
        return false;
    }
    let mut h = Header::at(id ^ 1, timestamp);
    // The whole response in one record: a BEGIN with FIN when there is no body, else a DATA
    // flagged OPEN (head and body) and FIN.
    if body.is_empty() {
        let _ = tx.begin_flags(&h, frame::FLAG_FIN, 0, head);
    } else {
        h.sequence = send.sequence;
        let reserved = send.consume(body.len());
        let _ = tx.begin_data_joined(&h, frame::FLAG_FIN, reserved, whole, head.len());
    }
    true
}

/// A request head from http that does not read: the exchange is reset on both streams.
#[cold]
fn malformed(core: usize, tx: &mut streams::RingWriter, id: u64, timestamp: u64) {
    tracing::error!(core, "malformed request head from http");
    let _ = tx.reset(&Header::at(id, timestamp), &[]);
    let _ = tx.abort(&Header::at(id ^ 1, timestamp), &[]);
}

fn fixed_responses() -> Vec<FixedResponse> {
    let mut table = Vec::new();
    for (status, body) in [
        (200, &b"Hello, World!"[..]),
        (200, b"ok\n"),
        (405, b"method not allowed\n"),
        (404, b"not found\n"),
    ] {
        table.push(FixedResponse::new(status, body));
        table.push(FixedResponse::new(status, &body[..0]));
    }
    table
}

enum Mode {
    /// The response is complete; waiting for the request to end.
    Fixed {
        /// Index into `EchoNukleus::fixed`.
        response: usize,
        /// The response head was sent (it waits for the reply credit and the request's end,
        /// so head, body and END leave together and pipelined responses stay in order).
        begun: bool,
    },
    /// Echoing the request body.
    Echo,
    /// Echoing WebSocket messages fragment by fragment (a stream from `ws`).
    Messages,
}

/// A run of `pending` bytes that arrived as one message fragment.
struct Fragment {
    len: usize,
    flags: u32,
    kind: u8,
}

struct Exchange {
    id: u64,
    mode: Mode,
    /// Credit for the request body we granted.
    recv: RecvWindow,
    /// Credit http granted for our response.
    send: SendWindow,
    /// Request bytes received but not yet echoed (bounded by `REQUEST_WINDOW`).
    pending: Vec<u8>,
    /// `Messages` mode: how `pending` splits into fragments.
    fragments: VecDeque<Fragment>,
    /// `Messages` mode: leading bytes of `pending` already acknowledged (taken in whole).
    acked_pending: usize,
    /// `Messages` mode: fragments in `fragments` that end a message.
    fins: usize,
    request_ended: bool,
    reply_ended: bool,
}

pub struct EchoNukleus {
    core: usize,
    inputs: Vec<RingReader>,
    outputs: Vec<Output>,
    /// Per input: http's exchange slot -> our state.
    exchanges: Vec<Vec<Option<Exchange>>>,
    scratch: Vec<u8>,
    fixed: Vec<FixedResponse>,
    timestamp: u64,
    dirty: Vec<(usize, usize)>,
    /// Exchanges reset because a full ring refused one of their frames (DESIGN §3).
    refused_resets: u64,
}

impl EchoNukleus {
    pub fn new(core: usize, links: Vec<PeerLink>) -> EchoNukleus {
        let (inputs, outputs) = split_links(links);
        let exchanges = outputs.iter().map(|_| Vec::new()).collect();
        EchoNukleus {
            core,
            inputs,
            outputs,
            exchanges,
            scratch: Vec::new(),
            fixed: fixed_responses(),
            timestamp: 0,
            dirty: Vec::new(),
            refused_resets: 0,
        }
    }

    /// A full ring refused a frame of stream `id` to `input`'s peer: that exchange is reset
    /// on both of its streams (the ring defers what does not fit) and counted.
    fn on_refused(&mut self, input: usize, id: u64) {
        let slot = SlotIds::slot(id);
        let Some(Some(x)) = self.exchanges[input].get(slot) else {
            return;
        };
        if x.id != id | 1 {
            return;
        }
        let tx = &mut self.outputs[input].tx;
        if !x.reply_ended {
            let _ = tx.abort(&Header::at(x.id ^ 1, self.timestamp), &[]);
        }
        if !x.request_ended {
            let _ = tx.reset(&Header::at(x.id, self.timestamp), &[]);
        }
        self.exchanges[input][slot] = None;
        self.refused_resets += 1;
    }

    fn on_frame(&mut self, input: usize, f: Frame<'_>) {
        let slot = SlotIds::slot(f.stream_id());
        if f.type_id() == frame::BEGIN && !frame::is_reply(f.stream_id()) {
            self.on_begin(input, slot, f);
            return;
        }
        let timestamp = self.timestamp;
        let Some(Some(x)) = self.exchanges[input].get_mut(slot) else {
            return;
        };
        if x.id != f.stream_id() | 1 {
            return;
        }
        let tx = &mut self.outputs[input].tx;
        match (f.type_id(), frame::is_reply(f.stream_id())) {
            (frame::WINDOW, true) => {
                x.send.on_window(f.acknowledge(), f.maximum(), f.padding());
                self.dirty.push((input, slot));
            }
            (frame::DATA, false) => {
                if x.recv.on_data(f.reserved()).is_err() {
                    let _ = tx.reset(&Header::at(x.id, timestamp), &[]);
                    let _ = tx.abort(&Header::at(x.id ^ 1, timestamp), &[]);
                    self.exchanges[input][slot] = None;
                    return;
                }
                match x.mode {
                    Mode::Echo => x.pending.extend_from_slice(f.payload()),
                    Mode::Messages => {
                        x.pending.extend_from_slice(f.payload());
                        x.fragments.push_back(Fragment {
                            len: f.payload().len(),
                            flags: f.flags() & (frame::FLAG_INIT | frame::FLAG_FIN),
                            kind: f.extension().first().copied().unwrap_or(0),
                        });
                        x.fins += (f.flags() & frame::FLAG_FIN != 0) as usize;
                    }
                    Mode::Fixed { .. } => x.recv.release(f.reserved() as u64),
                }
                x.recv
                    .release(f.reserved() as u64 - f.payload().len() as u64);
                self.dirty.push((input, slot));
            }
            (frame::END, false) => {
                x.request_ended = true;
                self.dirty.push((input, slot));
            }
            (frame::ABORT, false) | (frame::RESET, true) => {
                if !x.reply_ended {
                    let _ = tx.abort(&Header::at(x.id ^ 1, timestamp), &[]);
                }
                if !x.request_ended && f.type_id() == frame::RESET {
                    let _ = tx.reset(&Header::at(x.id, timestamp), &[]);
                }
                self.exchanges[input][slot] = None;
            }
            _ => {}
        }
    }

    fn on_begin(&mut self, input: usize, slot: usize, f: Frame<'_>) {
        if self.outputs[input].role.carries == streams::Carries::WsMessages {
            return self.on_ws_begin(input, slot, f.stream_id());
        }
        let id = f.stream_id();
        let timestamp = self.timestamp;
        let core = self.core;
        let tx = &mut self.outputs[input].tx;
        // Routing needs the method and path only; the full head is read for /echo alone.
        let Some((method, path)) = ext::request_line(f.extension()) else {
            return malformed(core, tx, id, timestamp);
        };
        let head_request = method == b"HEAD";
        let fixed = |response: usize| Mode::Fixed {
            response: response + head_request as usize,
            begun: false,
        };
        let mode = match (method, path) {
            (b"GET" | b"HEAD", b"/healthz") => fixed(HEALTHZ),
            (b"GET" | b"HEAD", b"/") => fixed(HELLO),
            (b"POST" | b"PUT", b"/echo") => Mode::Echo,
            (_, b"/healthz" | b"/" | b"/echo") => fixed(NOT_ALLOWED),
            _ => fixed(NOT_FOUND),
        };
        // http marks a request without a body with FIN on its BEGIN (no END follows).
        let request_ended = f.flags() & frame::FLAG_FIN != 0;
        let has_body = !request_ended;
        if let Mode::Echo = mode {
            let Some(request) = RequestHead::parse(f.extension()) else {
                return malformed(core, tx, id, timestamp);
            };
            let content_type = request
                .header("content-type")
                .unwrap_or(b"application/octet-stream");
            self.scratch.clear();
            match request.header("content-length") {
                Some(length) => {
                    let headers = [("Content-Type", content_type), ("Content-Length", length)];
                    ext::encode_response(&mut self.scratch, 200, headers.into_iter());
                }
                None => ext::encode_response(
                    &mut self.scratch,
                    200,
                    [("Content-Type", content_type)].into_iter(),
                ),
            }
        }
        if let Mode::Echo = mode {
            let _ = tx.begin(&Header::at(id ^ 1, timestamp), 0, &self.scratch);
        }
        // http pre-grants the reply window in the BEGIN.
        let mut send = SendWindow::default();
        send.on_window(f.acknowledge(), f.maximum(), 0);
        if let Mode::Fixed { response, .. } = mode {
            if request_ended && answer(tx, &self.fixed[response], &mut send, id, timestamp) {
                // Answered in full and nothing more can arrive: no state to keep.
                if let Some(stale) = self.exchanges[input].get_mut(slot) {
                    *stale = None;
                }
                return;
            }
        }
        let mut x = Exchange {
            id,
            mode,
            recv: RecvWindow::new(REQUEST_WINDOW),
            send,
            pending: Vec::new(),
            fragments: VecDeque::new(),
            acked_pending: 0,
            fins: 0,
            request_ended,
            reply_ended: false,
        };
        if has_body {
            let (acknowledge, maximum) = x.recv.announce();
            let _ = tx.window(
                &Header {
                    stream_id: id,
                    timestamp,
                    acknowledge,
                    maximum,
                    ..Header::default()
                },
                0,
            );
        }
        let table = &mut self.exchanges[input];
        if table.len() <= slot {
            table.resize_with(slot + 1, || None);
        }
        table[slot] = Some(x);
        self.dirty.push((input, slot));
    }

    /// A WebSocket connection from ws: accept it and grant the message window.
    fn on_ws_begin(&mut self, input: usize, slot: usize, id: u64) {
        let timestamp = self.timestamp;
        let tx = &mut self.outputs[input].tx;
        let reply = Header::at(id ^ 1, timestamp);
        let _ = tx.begin(&reply, 0, &[]);
        let mut x = Exchange {
            id,
            mode: Mode::Messages,
            recv: RecvWindow::new(REQUEST_WINDOW),
            send: SendWindow::default(),
            pending: Vec::new(),
            fragments: VecDeque::new(),
            acked_pending: 0,
            fins: 0,
            request_ended: false,
            reply_ended: false,
        };
        let (acknowledge, maximum) = x.recv.announce();
        let _ = tx.window(
            &Header {
                stream_id: id,
                timestamp,
                acknowledge,
                maximum,
                ..Header::default()
            },
            0,
        );
        let table = &mut self.exchanges[input];
        if table.len() <= slot {
            table.resize_with(slot + 1, || None);
        }
        table[slot] = Some(x);
    }

    /// `Messages` mode: echoes fragments within the reply window, splitting a fragment when
    /// the window is short (the first piece keeps `FLAG_INIT`, the last `FLAG_FIN`). Returns
    /// the payload bytes sent.
    fn echo_fragments(x: &mut Exchange, tx: &mut streams::RingWriter, timestamp: u64) -> usize {
        let room = tx.max_payload() - 64;
        let mut sent = 0;
        while let Some(fragment) = x.fragments.front_mut() {
            let n = if fragment.len == 0 {
                if x.send.available() < x.send.padding as usize {
                    break;
                }
                0
            } else {
                let n = x.send.writable(fragment.len.min(room));
                if n == 0 {
                    break;
                }
                n
            };
            let flags = (fragment.flags & frame::FLAG_INIT)
                | if n == fragment.len {
                    fragment.flags & frame::FLAG_FIN
                } else {
                    0
                };
            let h = Header {
                stream_id: x.id ^ 1,
                timestamp,
                sequence: x.send.sequence,
                ..Header::default()
            };
            let reserved = x.send.consume(n);
            if tx
                .data(
                    &h,
                    flags,
                    reserved,
                    &[fragment.kind],
                    &x.pending[sent..sent + n],
                )
                .is_err()
            {
                x.send.sequence -= reserved as u64;
                break;
            }
            sent += n;
            fragment.len -= n;
            fragment.flags &= !frame::FLAG_INIT;
            if fragment.len == 0 {
                x.fins -= (fragment.flags & frame::FLAG_FIN != 0) as usize;
                x.fragments.pop_front();
            }
        }
        sent
    }

    /// Sends what credit allows, acknowledges echoed request bytes, ends finished replies.
    fn progress(&mut self, input: usize, slot: usize) {
        let timestamp = self.timestamp;
        let Some(Some(x)) = self.exchanges[input].get_mut(slot) else {
            return;
        };
        let tx = &mut self.outputs[input].tx;
        if let Mode::Fixed { response, begun } = &mut x.mode {
            if !*begun {
                *begun = answer(tx, &self.fixed[*response], &mut x.send, x.id, timestamp);
                x.reply_ended = *begun;
            }
        }
        let sent = match x.mode {
            Mode::Messages => Self::echo_fragments(x, tx, timestamp),
            _ => tx.data_within(&mut x.send, x.id ^ 1, timestamp, &x.pending),
        };
        x.pending.drain(..sent);
        if let Mode::Echo = x.mode {
            x.recv.release(sent as u64);
        }
        if let Mode::Messages = x.mode {
            let already = sent.min(x.acked_pending);
            x.acked_pending -= already;
            x.recv.release((sent - already) as u64);
            if x.fins == 0 && x.pending.len() <= MESSAGE_BUFFER {
                // Take the open message in whole (see the module docs).
                x.recv.release((x.pending.len() - x.acked_pending) as u64);
                x.acked_pending = x.pending.len();
            }
        }
        if x.recv.window_due() && !x.request_ended {
            let (acknowledge, maximum) = x.recv.announce();
            let _ = tx.window(
                &Header {
                    stream_id: x.id,
                    timestamp,
                    acknowledge,
                    maximum,
                    ..Header::default()
                },
                0,
            );
        }
        if x.request_ended && x.pending.is_empty() && x.fragments.is_empty() && !x.reply_ended {
            let _ = tx.end(
                &Header {
                    stream_id: x.id ^ 1,
                    timestamp,
                    sequence: x.send.sequence,
                    ..Header::default()
                },
                &[],
            );
            x.reply_ended = true;
        }
        if x.reply_ended && x.request_ended {
            self.exchanges[input][slot] = None;
        }
    }
}

impl Nukleus for EchoNukleus {
    fn kind(&self) -> &'static str {
        "echo"
    }

    fn poll(&mut self, context: &PollContext) -> usize {
        self.timestamp = context.timestamp;
        let mut inputs = std::mem::take(&mut self.inputs);
        let work =
            plumbing::read_frames(&mut inputs, self.core, |input, f| self.on_frame(input, f));
        self.inputs = inputs;
        let mut dirty = std::mem::take(&mut self.dirty);
        for &(input, slot) in &dirty {
            self.progress(input, slot);
        }
        dirty.clear();
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
        for (input, id) in plumbing::refused(&mut self.outputs) {
            self.on_refused(input, id);
        }
        plumbing::publish(&mut self.outputs);
        work
    }

    fn gauges(&self, out: &mut Vec<(&'static str, u64)>) {
        let open = self
            .exchanges
            .iter()
            .flatten()
            .filter(|x| x.is_some())
            .count();
        out.push(("exchanges", open as u64));
        out.push(("streams_reset_ring_full_total", self.refused_resets));
    }
}
