//! An application behind http that answers every request from its head alone (the
//! `metrics` and `cluster` kinds): the stream side written once — the request BEGIN, a body
//! read and discarded, the response head once http granted the reply window, the body within
//! it, teardown and full rings — around a [`Respond`]er that says what to answer.

use nukleus_http::ext::{self, RequestHead};
use streams::frame::{self, Frame};
use streams::{
    plumbing, split_links, Header, Nukleus, Output, PeerLink, PollContext, RecvWindow, RingReader,
    SendWindow, SlotIds,
};

/// A complete response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub content_type: &'static [u8],
    /// Headers beyond Content-Type and Content-Length.
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// A `text/plain` answer.
    pub fn text(status: u16, body: impl Into<Vec<u8>>) -> Answer {
        Answer {
            status,
            content_type: b"text/plain",
            headers: Vec::new(),
            body: body.into(),
        }
    }
}

/// What a [`ResponderNukleus`] answers.
pub trait Respond: Send {
    /// The kind's name (logs, metrics).
    fn kind(&self) -> &'static str;
    /// The response to a request, from its head (GET and HEAD alike: the nukleus leaves the
    /// body out for HEAD).
    fn respond(&mut self, request: &RequestHead<'_>) -> Answer;
    /// Gauges for `/metrics`.
    fn gauges(&self, _out: &mut Vec<(&'static str, u64)>) {}
}

struct Exchange {
    id: u64,
    answer: Answer,
    sent: usize,
    head_only: bool,
    begun: bool,
    recv: RecvWindow,
    send: SendWindow,
    request_ended: bool,
    reply_ended: bool,
}

/// An application behind http that answers each request from its head alone, with a
/// [`Respond`]er; a request body is read and discarded.
pub struct ResponderNukleus<R> {
    core: usize,
    responder: R,
    inputs: Vec<RingReader>,
    outputs: Vec<Output>,
    exchanges: Vec<Vec<Option<Exchange>>>,
    dirty: Vec<(usize, usize)>,
    /// Scrapes reset because a full ring refused one of their frames (DESIGN §3).
    refused_resets: u64,
    scratch: Vec<u8>,
    timestamp: u64,
}

/// The window a responder grants a request body (which it reads and discards).
pub const REQUEST_WINDOW: u32 = 8192;

/// What a responder puts into a stream buffer, named after its kind.
pub fn stream_needs(kind: &str) -> Vec<crate::kind::StreamNeed> {
    vec![crate::kind::StreamNeed::Window {
        setting: format!("the {kind} kind's request window ({REQUEST_WINDOW}, fixed)"),
        bytes: REQUEST_WINDOW as usize,
    }]
}

fn header(timestamp: u64, stream_id: u64) -> Header {
    Header::at(stream_id, timestamp)
}

impl<R: Respond> ResponderNukleus<R> {
    pub fn new(core: usize, links: Vec<PeerLink>, responder: R) -> ResponderNukleus<R> {
        let (inputs, outputs) = split_links(links);
        ResponderNukleus {
            core,
            responder,
            exchanges: outputs.iter().map(|_| Vec::new()).collect(),
            inputs,
            outputs,
            dirty: Vec::new(),
            refused_resets: 0,
            scratch: Vec::new(),
            timestamp: 0,
        }
    }

    /// A full ring refused a frame of stream `id`: that scrape is reset on both of its
    /// streams (the ring defers what does not fit) and counted.
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
            let _ = tx.abort(&header(self.timestamp, x.id ^ 1), &[]);
        }
        if !x.request_ended {
            let _ = tx.reset(&header(self.timestamp, x.id), &[]);
        }
        self.exchanges[input][slot] = None;
        self.refused_resets += 1;
    }

    fn on_frame(&mut self, input: usize, f: Frame<'_>) {
        let timestamp = self.timestamp;
        let id = f.stream_id();
        let slot = SlotIds::slot(id);
        if f.type_id() == frame::BEGIN && !frame::is_reply(id) {
            self.on_begin(input, slot, f);
            return;
        }
        let Some(Some(x)) = self.exchanges[input].get_mut(slot) else {
            return;
        };
        if x.id != id | 1 {
            return;
        }
        match (f.type_id(), frame::is_reply(id)) {
            (frame::WINDOW, true) => {
                x.send.on_window(f.acknowledge(), f.maximum(), f.padding());
            }
            (frame::DATA, false) => {
                // A request body is read and discarded.
                if x.recv.on_data(f.reserved()).is_err() {
                    let (initial, reply) = (header(timestamp, x.id), header(timestamp, x.id ^ 1));
                    let tx = &mut self.outputs[input].tx;
                    let _ = tx.reset(&initial, &[]);
                    if !x.reply_ended {
                        let _ = tx.abort(&reply, &[]);
                    }
                    self.exchanges[input][slot] = None;
                    return;
                }
                x.recv.release(f.reserved() as u64);
            }
            (frame::END, false) => x.request_ended = true,
            (frame::ABORT, false) | (frame::RESET, true) => {
                let (initial, reply) = (header(timestamp, x.id), header(timestamp, x.id ^ 1));
                let tx = &mut self.outputs[input].tx;
                if !x.reply_ended {
                    let _ = tx.abort(&reply, &[]);
                }
                if !x.request_ended && f.type_id() == frame::RESET {
                    let _ = tx.reset(&initial, &[]);
                }
                self.exchanges[input][slot] = None;
                return;
            }
            _ => return,
        }
        self.dirty.push((input, slot));
    }

    fn on_begin(&mut self, input: usize, slot: usize, f: Frame<'_>) {
        let id = f.stream_id();
        let Some(request) = RequestHead::parse(f.extension()) else {
            tracing::error!(
                core = self.core,
                kind = self.responder.kind(),
                "malformed request head"
            );
            let (initial, reply) = (header(self.timestamp, id), header(self.timestamp, id ^ 1));
            let tx = &mut self.outputs[input].tx;
            let _ = tx.reset(&initial, &[]);
            let _ = tx.abort(&reply, &[]);
            return;
        };
        let head_only = request.method == "HEAD";
        let answer = self.responder.respond(&request);
        let has_body = request.header("content-length").is_some_and(|l| l != b"0")
            || request.header("transfer-encoding").is_some();
        let mut x = Exchange {
            id,
            answer,
            sent: 0,
            head_only,
            begun: false,
            recv: RecvWindow::new(REQUEST_WINDOW),
            send: SendWindow::default(),
            // http marks a request without a body with FIN on its BEGIN (no END follows).
            request_ended: f.flags() & frame::FLAG_FIN != 0,
            reply_ended: false,
        };
        // http pre-grants the reply window in the BEGIN.
        x.send.on_window(f.acknowledge(), f.maximum(), 0);
        if has_body {
            let (acknowledge, maximum) = x.recv.announce();
            let header = Header {
                acknowledge,
                maximum,
                ..header(self.timestamp, id)
            };
            let _ = self.outputs[input].tx.window(&header, 0);
        }
        let table = &mut self.exchanges[input];
        if table.len() <= slot {
            table.resize_with(slot + 1, || None);
        }
        table[slot] = Some(x);
        self.dirty.push((input, slot));
    }

    /// Sends the head once http granted the reply window, then the body within the window.
    fn progress(&mut self, input: usize, slot: usize) {
        let timestamp = self.timestamp;
        let Some(Some(x)) = self.exchanges[input].get_mut(slot) else {
            return;
        };
        let tx = &mut self.outputs[input].tx;
        let reply = |sequence| Header {
            stream_id: x.id ^ 1,
            timestamp,
            sequence,
            ..Header::default()
        };
        if !x.begun && x.send.maximum > 0 {
            let length = x.answer.body.len().to_string();
            let mut headers: Vec<(&str, &[u8])> = vec![
                ("Content-Type", x.answer.content_type),
                ("Content-Length", length.as_bytes()),
            ];
            headers.extend(x.answer.headers.iter().map(|(n, v)| (*n, v.as_bytes())));
            self.scratch.clear();
            ext::encode_response(&mut self.scratch, x.answer.status, headers.into_iter());
            if tx.begin(&reply(0), 0, &self.scratch).is_err() {
                return;
            }
            x.begun = true;
            if x.head_only {
                x.sent = x.answer.body.len();
            }
        }
        if !x.begun {
            return;
        }
        x.sent += tx.data_within(&mut x.send, x.id ^ 1, timestamp, &x.answer.body[x.sent..]);
        if x.sent == x.answer.body.len() && !x.reply_ended {
            let _ = tx.end(&reply(x.send.sequence), &[]);
            x.reply_ended = true;
        }
        if x.recv.window_due() && !x.request_ended {
            let (acknowledge, maximum) = x.recv.announce();
            let header = Header {
                stream_id: x.id,
                timestamp,
                acknowledge,
                maximum,
                ..Header::default()
            };
            let _ = tx.window(&header, 0);
        }
        if x.reply_ended && x.request_ended {
            self.exchanges[input][slot] = None;
        }
    }
}

impl<R: Respond> Nukleus for ResponderNukleus<R> {
    fn kind(&self) -> &'static str {
        self.responder.kind()
    }

    fn poll(&mut self, context: &PollContext) -> usize {
        self.timestamp = context.timestamp;
        let mut work = 0;
        let mut inputs = std::mem::take(&mut self.inputs);
        work += plumbing::read_frames(&mut inputs, self.core, |input, f| self.on_frame(input, f));
        self.inputs = inputs;
        let dirty = std::mem::take(&mut self.dirty);
        for &(input, slot) in &dirty {
            self.progress(input, slot);
        }
        for (input, id) in plumbing::refused(&mut self.outputs) {
            self.on_refused(input, id);
        }
        plumbing::publish(&mut self.outputs);
        work
    }

    fn gauges(&self, out: &mut Vec<(&'static str, u64)>) {
        self.responder.gauges(out);
        out.push(("streams_reset_ring_full_total", self.refused_resets));
    }
}
