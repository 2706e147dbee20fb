//! The console's HTTP side, one instance per core behind http:
//!
//! - `GET /console`: the page ([`Page`]).
//! - `GET /console/stream`: server-sent events: `hello` (the plan, the history, recent
//!   events), then a `tick` per interval (the [`Hub`]'s shared bytes).
//! - `GET /console/plan[?costs=measured]`: the running placement as JSON.
//! - `GET /console/topology`: the running topology file, tokens left out (the what-if's start).
//! - `POST /console/what-if[?costs=declared]`: a topology in the body; the running and the
//!   proposed placement with their predicted throughput (JSON), or 400 with the reason.
//!
//! Every request needs an admin token (`Authorization: Bearer …` or `?token=…`): 401
//! without, 403 with a token that is not an admin's.
//!
//! Bounded work per viewer: a tick is the same bytes for everyone; a viewer that has not taken
//! the previous tick yet (its window is full) gets the newest one when it has, never a queue.
//! With no viewer an instance has no deadline and does nothing but read its (empty) rings.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nukleus_http::ext::{self, RequestHead};
use nukleus_switch::auth::{bearer, query_param, Need};
use streams::frame::{self, Frame};
use streams::{
    plumbing, split_links, Header, Nukleus, Output, PeerLink, PollContext, RecvWindow, RingReader,
    SendWindow, SlotIds,
};

use super::hub::{Tick, Viewer};
use super::page::Page;
use super::whatif::{Costs, Slot};
use super::Shared;
use super::REQUEST_WINDOW;

/// How soon to look again for a what-if's answer, or for a tick another core is making.
const RETRY: Duration = Duration::from_millis(2);

fn header(timestamp: u64, stream_id: u64) -> Header {
    Header::at(stream_id, timestamp)
}

/// What an exchange is doing.
enum Phase {
    /// Reading a what-if's body (up to the limit; beyond it the rest is discarded).
    Body {
        text: Vec<u8>,
        too_large: bool,
        costs: Costs,
    },
    /// Waiting for the what-if thread.
    Planning(Slot),
    /// Answering: the head goes out with the first window, then `out`, then END.
    Answer,
    /// A live stream: the head, then events until the viewer leaves.
    Stream { _viewer: Viewer, seen: u64 },
}

struct Exchange {
    id: u64,
    phase: Phase,
    /// The response head, until it is sent.
    head: Option<Vec<u8>>,
    head_only: bool,
    /// Bytes to send, in order, with how much of the first is sent.
    out: VecDeque<Arc<[u8]>>,
    sent: usize,
    recv: RecvWindow,
    send: SendWindow,
    request_ended: bool,
    reply_ended: bool,
}

/// One core's console.
pub struct ConsoleNukleus {
    core: usize,
    shared: Arc<Shared>,
    inputs: Vec<RingReader>,
    outputs: Vec<Output>,
    exchanges: Vec<Vec<Option<Exchange>>>,
    dirty: Vec<(usize, usize)>,
    /// (input, slot) of the live streams and of the exchanges waiting for a what-if.
    streams: Vec<(usize, usize)>,
    planning: Vec<(usize, usize)>,
    /// When this instance next asks the hub for a tick (while it has viewers).
    next_tick: Option<Instant>,
    timestamp: u64,
    requests: u64,
    refused_auth: u64,
    ticks_sent: u64,
    ticks_skipped: u64,
    what_ifs: u64,
    refused_resets: u64,
    /// The reaktor drains: live streams were ended, new ones are refused.
    draining: bool,
}

fn json_error(code: &str, message: &str) -> Vec<u8> {
    let mut body = serde_json::to_vec(&serde_json::json!({
        "error": {"code": code, "message": message}
    }))
    .expect("plain data serializes");
    body.push(b'\n');
    body
}

/// Encodes a response head with the headers every console answer carries.
fn head(status: u16, content_type: &str, length: Option<usize>, extra: &[(&str, &str)]) -> Vec<u8> {
    let length = length.map(|l| l.to_string());
    let mut headers: Vec<(&str, &[u8])> = vec![
        ("Content-Type", content_type.as_bytes()),
        ("Cache-Control", b"no-store"),
        ("X-Content-Type-Options", b"nosniff"),
        ("Referrer-Policy", b"no-referrer"),
    ];
    if let Some(length) = &length {
        headers.push(("Content-Length", length.as_bytes()));
    }
    for (name, value) in extra {
        headers.push((name, value.as_bytes()));
    }
    let mut out = Vec::new();
    ext::encode_response(&mut out, status, headers.into_iter());
    out
}

impl ConsoleNukleus {
    pub fn new(core: usize, links: Vec<PeerLink>, shared: Arc<Shared>) -> ConsoleNukleus {
        let (inputs, outputs) = split_links(links);
        ConsoleNukleus {
            core,
            shared,
            exchanges: outputs.iter().map(|_| Vec::new()).collect(),
            inputs,
            outputs,
            dirty: Vec::new(),
            streams: Vec::new(),
            planning: Vec::new(),
            next_tick: None,
            timestamp: 0,
            requests: 0,
            refused_auth: 0,
            ticks_sent: 0,
            ticks_skipped: 0,
            what_ifs: 0,
            refused_resets: 0,
            draining: false,
        }
    }

    fn exchange(&mut self, input: usize, id: u64) -> Option<&mut Exchange> {
        match self.exchanges[input].get_mut(SlotIds::slot(id)) {
            Some(Some(x)) if x.id == id | 1 => Some(x),
            _ => None,
        }
    }

    /// Ends both streams of an exchange that failed and forgets it.
    fn drop_exchange(&mut self, input: usize, slot: usize) {
        let Some(Some(x)) = self.exchanges[input].get_mut(slot).map(Option::take) else {
            return;
        };
        let tx = &mut self.outputs[input].tx;
        if !x.reply_ended {
            let _ = tx.abort(&header(self.timestamp, x.id ^ 1), &[]);
        }
        if !x.request_ended {
            let _ = tx.reset(&header(self.timestamp, x.id), &[]);
        }
    }

    fn on_frame(&mut self, input: usize, f: Frame<'_>, now: Instant) {
        let id = f.stream_id();
        let slot = SlotIds::slot(id);
        if f.type_id() == frame::BEGIN && !frame::is_reply(id) {
            self.on_begin(input, slot, f, now);
            return;
        }
        let limit = self.shared.settings.max_what_if_bytes;
        let Some(x) = self.exchange(input, id) else {
            return;
        };
        match (f.type_id(), frame::is_reply(id)) {
            (frame::WINDOW, true) => x.send.on_window(f.acknowledge(), f.maximum(), f.padding()),
            (frame::DATA, false) => {
                if x.recv.on_data(f.reserved()).is_err() {
                    self.drop_exchange(input, slot);
                    return;
                }
                x.recv.release(f.reserved() as u64);
                if let Phase::Body {
                    text, too_large, ..
                } = &mut x.phase
                {
                    let payload = f.payload();
                    if text.len() + payload.len() > limit {
                        *too_large = true;
                        text.clear();
                    } else if !*too_large {
                        text.extend_from_slice(payload);
                    }
                }
            }
            (frame::END, false) => {
                x.request_ended = true;
                self.on_body_end(input, slot);
            }
            (frame::ABORT, false) | (frame::RESET, true) => {
                // The client went away (or http gave up on it): release everything.
                if let Some(Some(x)) = self.exchanges[input].get_mut(slot) {
                    if f.type_id() == frame::ABORT {
                        x.request_ended = true;
                    } else {
                        x.reply_ended = true;
                    }
                }
                self.drop_exchange(input, slot);
                return;
            }
            _ => return,
        }
        self.dirty.push((input, slot));
    }

    /// The whole what-if body arrived: plan it, or say why not.
    fn on_body_end(&mut self, input: usize, slot: usize) {
        let Some(Some(x)) = self.exchanges[input].get_mut(slot) else {
            return;
        };
        let Phase::Body {
            text,
            too_large,
            costs,
        } = &mut x.phase
        else {
            return;
        };
        let limit = self.shared.settings.max_what_if_bytes;
        if *too_large {
            let message = format!("the topology is larger than the what-if accepts ([console] max_what_if_bytes = {limit})");
            Self::answer(
                x,
                413,
                "application/json",
                json_error("too_large", &message),
                &[],
            );
            return;
        }
        let text = match String::from_utf8(std::mem::take(text)) {
            Ok(text) => text,
            Err(_) => {
                Self::answer(
                    x,
                    400,
                    "application/json",
                    json_error("not_utf8", "the topology is not UTF-8 text"),
                    &[],
                );
                return;
            }
        };
        match self.shared.what_if.submit(text, *costs) {
            Ok(answer) => {
                x.phase = Phase::Planning(answer);
                self.what_ifs += 1;
                self.planning.push((input, slot));
            }
            Err(_) => Self::answer(
                x,
                503,
                "application/json",
                json_error(
                    "busy",
                    "another what-if is being planned; try again in a moment",
                ),
                &[("Retry-After", "1")],
            ),
        }
    }

    fn answer(
        x: &mut Exchange,
        status: u16,
        content_type: &str,
        body: Vec<u8>,
        extra: &[(&str, &str)],
    ) {
        x.head = Some(head(status, content_type, Some(body.len()), extra));
        if !x.head_only {
            x.out.push_back(body.into());
        }
        x.phase = Phase::Answer;
    }

    fn on_begin(&mut self, input: usize, slot: usize, f: Frame<'_>, now: Instant) {
        let id = f.stream_id();
        let Some(request) = RequestHead::parse(f.extension()) else {
            tracing::error!(core = self.core, "console: malformed request head");
            let tx = &mut self.outputs[input].tx;
            let _ = tx.reset(&header(self.timestamp, id), &[]);
            let _ = tx.abort(&header(self.timestamp, id ^ 1), &[]);
            return;
        };
        self.requests += 1;
        let has_body = request.header("content-length").is_some_and(|l| l != b"0")
            || request.header("transfer-encoding").is_some();
        let mut x = Exchange {
            id,
            phase: Phase::Answer,
            head: None,
            head_only: request.method == "HEAD",
            out: VecDeque::new(),
            sent: 0,
            recv: RecvWindow::new(REQUEST_WINDOW),
            send: SendWindow::default(),
            // http marks a request without a body with FIN on its BEGIN (no END follows).
            request_ended: f.flags() & frame::FLAG_FIN != 0,
            reply_ended: false,
        };
        // http pre-grants the reply window in the BEGIN.
        x.send.on_window(f.acknowledge(), f.maximum(), 0);
        self.route(&mut x, &request, input, slot, now);
        if has_body && !x.request_ended {
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
        // A what-if without a body (or an empty one) is complete now.
        if matches!(
            self.exchanges[input][slot]
                .as_ref()
                .map(|x| (&x.phase, x.request_ended)),
            Some((Phase::Body { .. }, true))
        ) {
            self.on_body_end(input, slot);
        }
    }

    fn route(
        &mut self,
        x: &mut Exchange,
        request: &RequestHead<'_>,
        input: usize,
        slot: usize,
        now: Instant,
    ) {
        let token = bearer(request.header("authorization"))
            .map(str::to_owned)
            .or_else(|| query_param(request.query(), "token"));
        if let Err(e) = self.shared.tokens.check(token.as_deref(), Need::Admin) {
            self.refused_auth += 1;
            let status = e.status();
            let message = format!("{e}: the console needs an admin token of [[switch.token]] (admin = true), as `Authorization: Bearer TOKEN` or `/console?token=TOKEN`");
            let mut body = message.into_bytes();
            body.push(b'\n');
            let challenge = [("WWW-Authenticate", "Bearer realm=\"reaktor console\"")];
            let extra: &[(&str, &str)] = if status == 401 { &challenge } else { &[] };
            Self::answer(x, status, "text/plain; charset=utf-8", body, extra);
            return;
        }
        let costs = match query_param(request.query(), "costs").as_deref() {
            Some("declared") => Costs::Declared,
            _ => Costs::Measured,
        };
        let path = request.path().trim_end_matches('/');
        let method = request.method;
        let get = method == "GET" || method == "HEAD";
        let allow = |x: &mut Exchange, allowed: &str| {
            let body = format!("method not allowed: use {allowed}\n").into_bytes();
            Self::answer(
                x,
                405,
                "text/plain; charset=utf-8",
                body,
                &[("Allow", allowed)],
            );
        };
        match path {
            "/console" if get => {
                let page = Page::get();
                let csp = page.content_security_policy.as_str();
                let extra = [
                    ("Content-Security-Policy", csp),
                    ("X-Frame-Options", "DENY"),
                ];
                Self::answer(
                    x,
                    200,
                    "text/html; charset=utf-8",
                    page.html.clone(),
                    &extra,
                );
            }
            "/console/topology" if get => {
                let body = self.shared.topology_text.clone().into_bytes();
                Self::answer(x, 200, "text/plain; charset=utf-8", body, &[]);
            }
            "/console/plan" if get => {
                let view = super::whatif::current_view(
                    self.shared.what_if.current(),
                    &self.shared.stats,
                    costs,
                );
                let body = serde_json::to_vec(&view).expect("plain data serializes");
                Self::answer(x, 200, "application/json", body, &[]);
            }
            "/console/stream" if get && self.draining => Self::answer(
                x,
                503,
                "application/json",
                json_error("shutting_down", "the server is shutting down"),
                &[("Retry-After", "5")],
            ),
            "/console/stream" if get => match self.shared.hub.admit(now) {
                Some(viewer) => {
                    x.head = Some(head(200, "text/event-stream", None, &[]));
                    if !x.head_only {
                        x.out.push_back(self.shared.hub.hello().into());
                    }
                    x.phase = Phase::Stream {
                        _viewer: viewer,
                        seen: 0,
                    };
                    self.streams.push((input, slot));
                    self.next_tick
                        .get_or_insert(now + self.shared.settings.interval);
                }
                None => {
                    let message = format!(
                        "the console has {} viewers already ([console] max_viewers = {}); close one or raise the limit",
                        self.shared.hub.viewers(),
                        self.shared.settings.max_viewers
                    );
                    Self::answer(
                        x,
                        503,
                        "application/json",
                        json_error("too_many_viewers", &message),
                        &[("Retry-After", "5")],
                    );
                }
            },
            "/console/what-if" if method == "POST" => {
                let length = request
                    .header("content-length")
                    .and_then(|l| std::str::from_utf8(l).ok()?.trim().parse::<usize>().ok());
                let limit = self.shared.settings.max_what_if_bytes;
                if length.is_some_and(|l| l > limit) {
                    let message = format!("the topology is larger than the what-if accepts ([console] max_what_if_bytes = {limit})");
                    Self::answer(
                        x,
                        413,
                        "application/json",
                        json_error("too_large", &message),
                        &[],
                    );
                    return;
                }
                x.phase = Phase::Body {
                    text: Vec::new(),
                    too_large: false,
                    costs,
                };
            }
            "/console" | "/console/plan" | "/console/stream" | "/console/topology" => {
                allow(x, "GET, HEAD")
            }
            "/console/what-if" => allow(x, "POST"),
            _ => {
                let body = b"not found: the console serves /console, /console/stream, /console/plan, /console/topology and /console/what-if\n".to_vec();
                Self::answer(x, 404, "text/plain; charset=utf-8", body, &[]);
            }
        }
    }

    /// Sends what the windows allow: the head, queued bytes, END once an answer is out.
    fn progress(&mut self, input: usize, slot: usize) {
        let timestamp = self.timestamp;
        let Some(Some(x)) = self.exchanges[input].get_mut(slot) else {
            return;
        };
        let tx = &mut self.outputs[input].tx;
        if x.head.is_some() && x.send.maximum > 0 {
            let reply = Header {
                stream_id: x.id ^ 1,
                timestamp,
                ..Header::default()
            };
            if tx
                .begin(&reply, 0, x.head.as_deref().unwrap_or_default())
                .is_err()
            {
                return;
            }
            x.head = None;
        }
        if x.head.is_some() || matches!(x.phase, Phase::Body { .. } | Phase::Planning(_)) {
            self.window_if_due(input, slot);
            return;
        }
        while let Some(front) = x.out.front() {
            x.sent += tx.data_within(&mut x.send, x.id ^ 1, timestamp, &front[x.sent..]);
            if x.sent < front.len() {
                break;
            }
            x.out.pop_front();
            x.sent = 0;
        }
        let streaming = matches!(x.phase, Phase::Stream { .. }) && !x.head_only;
        if x.out.is_empty() && !streaming && !x.reply_ended {
            let end = Header {
                stream_id: x.id ^ 1,
                timestamp,
                sequence: x.send.sequence,
                ..Header::default()
            };
            let _ = tx.end(&end, &[]);
            x.reply_ended = true;
        }
        self.window_if_due(input, slot);
        if let Some(Some(x)) = self.exchanges[input].get(slot) {
            if x.reply_ended && x.request_ended {
                self.exchanges[input][slot] = None;
            }
        }
    }

    fn window_if_due(&mut self, input: usize, slot: usize) {
        let Some(Some(x)) = self.exchanges[input].get_mut(slot) else {
            return;
        };
        if x.recv.window_due() && !x.request_ended {
            let (acknowledge, maximum) = x.recv.announce();
            let header = Header {
                stream_id: x.id,
                timestamp: self.timestamp,
                acknowledge,
                maximum,
                ..Header::default()
            };
            let _ = self.outputs[input].tx.window(&header, 0);
        }
    }

    /// Hands the hub's tick to every live stream on this core that has not had it.
    fn deliver(&mut self, tick: &Tick) {
        let mut streams = std::mem::take(&mut self.streams);
        streams.retain(|&(input, slot)| {
            let Some(Some(x)) = self.exchanges[input].get_mut(slot) else {
                return false;
            };
            let Phase::Stream { seen, .. } = &mut x.phase else {
                return false;
            };
            if *seen >= tick.seq || x.head_only {
                return true;
            }
            *seen = tick.seq;
            // Whatever has not started to go out is replaced by the newest tick.
            let waiting = if x.sent > 0 {
                x.out.len().saturating_sub(1)
            } else {
                x.out.len()
            };
            if waiting > 0 && x.out.back().is_some_and(|b| b.starts_with(b"event: tick")) {
                x.out.pop_back();
                self.ticks_skipped += 1;
            }
            x.out.push_back(tick.event.clone());
            self.ticks_sent += 1;
            self.dirty.push((input, slot));
            true
        });
        self.streams = streams;
    }

    /// Answers the what-ifs whose plan is ready.
    fn collect_plans(&mut self) {
        let mut planning = std::mem::take(&mut self.planning);
        planning.retain(|&(input, slot)| {
            let Some(Some(x)) = self.exchanges[input].get_mut(slot) else {
                return false;
            };
            let Phase::Planning(answer) = &x.phase else {
                return false;
            };
            let Some(answer) = answer.try_lock().ok().and_then(|mut a| a.take()) else {
                return true;
            };
            Self::answer(x, answer.status, "application/json", answer.body, &[]);
            self.dirty.push((input, slot));
            false
        });
        self.planning = planning;
    }

    /// The poll when there is something to do: out of line, so the poll at rest (every duty
    /// cycle of its core) is a short function.
    #[inline(never)]
    fn poll_work(&mut self, now: Instant) -> usize {
        let mut inputs = std::mem::take(&mut self.inputs);
        let mut work = plumbing::read_frames(&mut inputs, self.core, |input, f| {
            self.on_frame(input, f, now)
        });
        self.inputs = inputs;
        if !self.planning.is_empty() {
            self.collect_plans();
        }
        if self.streams.is_empty() {
            self.next_tick = None;
        } else if self.next_tick.is_some_and(|due| now >= due) {
            let (tick, next) = self.shared.hub.poll(now);
            if let Some(tick) = tick {
                self.deliver(&tick);
            }
            self.next_tick = Some(next.max(now + RETRY));
            work += 1;
        }
        let dirty = std::mem::take(&mut self.dirty);
        for &(input, slot) in &dirty {
            self.progress(input, slot);
        }
        work += dirty.len();
        for (input, id) in plumbing::refused(&mut self.outputs) {
            self.on_refused(input, id);
        }
        plumbing::publish(&mut self.outputs);
        work
    }

    /// No tick due (or nobody watching), no answer under way, nothing arrived and nothing
    /// left to publish: the poll has nothing to do. It runs every duty cycle of its core, so
    /// this look (a load of each input ring's tail) is all the console costs a core between
    /// ticks and while nobody uses it: ~45 instructions, where the full poll of empty rings
    /// took ~205, 3.5% of an echo request's (benches/console_instructions.sh).
    fn at_rest(&self, now: Instant) -> bool {
        self.next_tick.is_none_or(|due| now < due)
            && self.planning.is_empty()
            && self.dirty.is_empty()
            && self.inputs.iter().all(|rx| rx.pending_bytes() == 0)
            && self
                .outputs
                .iter()
                .all(|o| o.tx.deferred() == 0 && !o.tx.has_refused())
    }

    /// A full ring refused a frame of stream `id`: reset that exchange and count it.
    fn on_refused(&mut self, input: usize, id: u64) {
        if self.exchange(input, id).is_some() {
            self.drop_exchange(input, SlotIds::slot(id));
            self.refused_resets += 1;
        }
    }
}

impl Nukleus for ConsoleNukleus {
    fn kind(&self) -> &'static str {
        "console"
    }

    fn poll(&mut self, context: &PollContext) -> usize {
        self.timestamp = context.timestamp;
        if self.at_rest(context.now) {
            if self.streams.is_empty() {
                // The last viewer may have left since the last tick: no deadline either.
                self.next_tick = None;
            }
            return 0;
        }
        self.poll_work(context.now)
    }

    fn deadline(&self) -> Option<Instant> {
        let planning = (!self.planning.is_empty()).then(|| Instant::now() + RETRY);
        self.next_tick.into_iter().chain(planning).min()
    }

    fn gauges(&self, out: &mut Vec<(&'static str, u64)>) {
        out.push(("viewers", self.streams.len() as u64));
        out.push(("requests_total", self.requests));
        out.push(("requests_unauthorized_total", self.refused_auth));
        out.push(("ticks_sent_total", self.ticks_sent));
        out.push(("ticks_skipped_total", self.ticks_skipped));
        out.push(("what_ifs_total", self.what_ifs));
        out.push(("streams_reset_ring_full_total", self.refused_resets));
    }

    fn drain(&mut self) {
        // Every live stream ends with a `close` event (the page says the server went away).
        self.draining = true;
        for (input, slot) in std::mem::take(&mut self.streams) {
            if let Some(Some(x)) = self.exchanges[input].get_mut(slot) {
                if !x.head_only {
                    let event = b"event: close\ndata: {\"reason\":\"going_away\",\"message\":\"server shutting down\"}\n\n";
                    x.out.push_back(Arc::from(&event[..]));
                }
                x.phase = Phase::Answer;
                self.dirty.push((input, slot));
            }
        }
    }

    fn drained(&self) -> bool {
        self.exchanges.iter().flatten().all(Option::is_none)
    }

    fn shutdown(&mut self) {
        for input in 0..self.exchanges.len() {
            for slot in 0..self.exchanges[input].len() {
                self.drop_exchange(input, slot);
            }
        }
        plumbing::publish(&mut self.outputs);
    }
}
