//! The server side of one HTTP/1.1 connection, sans-I/O: request bytes in, request heads and
//! body pieces out; response heads and bodies in, wire bytes out in request order.
//!
//! It decides everything HTTP/1.1 decides per connection — where one request ends and the next
//! begins (pipelining, bounded by `max_pipelined`), whether the connection stays open
//! (keep-alive, `Connection: close`, HTTP/1.0), `Expect: 100-continue`, protocol upgrades, the
//! request limits and timeouts — and nothing about streams: the nukleus turns what it says into
//! frames (`network.rs`, `application.rs`). Like hyper's h1 connection it has a reading and a
//! writing state:
//!
//! - **Reading**, one per connection: `Head` (between requests, or within a head) ->
//!   `Body(x)` while request x's body arrives -> `Head`; a bodiless upgrade request makes it
//!   `Upgrading(x)` (the bytes after it wait unread) -> `Tunnel(x)` once a 101 is written
//!   (`Head` when the upgrade is refused) -> `TunnelEnded`. Apart from it, `closing` is
//!   keep-alive turned off: no more heads are read, and the connection ends once the queued
//!   responses are out.
//! - **Writing**, one per request in a queue in request order: `Awaiting` ->
//!   `Streaming(framing)` -> `Done`. Only the first in the queue writes to `out`; the others
//!   buffer until their turn. A request leaves the queue when its response is done and its
//!   request ended.
//!
//! Requests are the caller's exchanges, named by a [`Tag`]; errors http answers itself
//! (400, 408, 413, 431, ...) are requests without one.

mod encode;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::chunked::ChunkError;
use crate::ext::ResponseHead;
use crate::head_cache::{HeadCache, Variant};
use crate::request::{self, Body, HttpLimits, Parsed, Rejection};
use crate::request_cache::RequestCache;
use crate::response;
pub use encode::Framing;
use encode::{HeadFacts, LAST_CHUNK};

/// The interim response a request with `Expect: 100-continue` gets when its turn comes.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The caller's name for a request (the nukleus: its exchange slot).
pub type Tag = usize;

/// Rendered response heads shared by a nukleus's connections, with the framing and close
/// decision each implied.
pub type Heads = HeadCache<(Framing, bool)>;

/// What the connection reads next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// A request head (between requests, or the rest of one).
    Head,
    /// The body of request `x`.
    Body(Tag),
    /// A bodiless upgrade request waits for its answer: the bytes after it are the new
    /// protocol's after a 101 and the next request otherwise, so they wait unread.
    Upgrading(Tag),
    /// Protocols switched: every byte belongs to the tunnel of request `x`.
    Tunnel(Tag),
    /// The tunnel's request side ended; nothing more is read.
    TunnelEnded,
}

/// Where a response stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writing {
    Awaiting,
    Streaming(Framing),
    Done,
}

/// One request on the connection and its response.
#[derive(Debug)]
pub struct Transaction {
    /// `None`: a response http writes itself (an error).
    tag: Option<Tag>,
    body: Body,
    request_ended: bool,
    writing: Writing,
    /// Response bytes written before this request's turn.
    buffered: Vec<u8>,
    close_after: bool,
    is_head: bool,
    upgrade: bool,
    minor_version: u8,
    /// The 100 Continue is still to be written (when this request reaches the front).
    expect_continue: bool,
}

impl Transaction {
    pub fn tag(&self) -> Option<Tag> {
        self.tag
    }

    pub fn request_ended(&self) -> bool {
        self.request_ended
    }

    pub fn writing(&self) -> Writing {
        self.writing
    }
}

/// What the connection made of the next input bytes.
#[derive(Debug)]
pub enum Read<'a> {
    /// Nothing now: more bytes are needed, or the application's credit, or an upgrade's
    /// answer, or earlier requests must complete first (`max_pipelined`).
    Wait,
    /// No more requests are read on this connection: the bytes are dropped.
    Discard,
    /// A complete request head (`consumed` bytes of the input). The caller opens an exchange
    /// and calls [`Connection::open`], or [`Connection::reject`].
    Head(Parsed),
    /// A complete request head that repeats the one the cache holds
    /// ([`Connection::read_cached`] only): as `Head`, but its BEGIN extension is
    /// [`RequestCache::extension`] (not copied into the scratch buffer).
    Repeat(Parsed),
    /// `used` input bytes gave `data` of the body of request `tag` (at most the budget);
    /// `finished`: that body is complete.
    Body {
        tag: Tag,
        used: usize,
        data: &'a [u8],
        finished: bool,
    },
    /// The head is malformed or beyond a limit: answer it with [`Connection::reject`].
    BadHead(Rejection),
    /// The body of request `tag` is malformed or beyond `max_body_bytes`: see
    /// [`Connection::fail_body`].
    BadBody(Tag, Rejection),
}

/// What the first bytes of a response meant for the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Begun {
    /// An upgrade was refused: the request (bodiless) is complete, end it towards the
    /// application; the bytes held behind it are the next request.
    pub end_request: bool,
    /// A 101 was written: the bytes held since the request are the tunnel's first.
    pub tunnel: bool,
}

/// Where response body bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// The first `n` bytes of the payload go to the network as they are (the first response
    /// in line, unframed): the caller sends what it can and queues the rest in `out`.
    Direct(usize),
    /// Framed into `out` or the request's buffer.
    Framed,
}

/// Response body bytes came for a request whose response head was not written: the
/// application broke the exchange's order (the caller drops the connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataBeforeHead;

impl std::fmt::Display for DataBeforeHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("response DATA before BEGIN")
    }
}

/// What the end of the client's input means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputEnd {
    /// A response without a known end (chunked, until close) streams to a client that went
    /// away: drop the connection (as nginx takes such a FIN for a client abort).
    Abort,
    /// The request being read ends here: END it towards the application, or ABORT it when
    /// `incomplete`. Then [`Connection::retire`].
    EndRequest { tag: Tag, incomplete: bool },
    /// Nothing was being read. Then [`Connection::retire`].
    Idle,
}

/// Why a connection is due to be closed by the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// A request head started and was not completed within `request_timeout`: 408.
    SlowHead,
    /// Nothing in flight for `idle_timeout`: close.
    Idle,
}

/// The server side of one HTTP/1.1 connection.
#[derive(Debug)]
pub struct Connection {
    reading: Reading,
    /// Keep-alive is off: no more requests are read; the connection ends once the queued
    /// responses are out.
    closing: bool,
    queue: VecDeque<Transaction>,
    /// Unread request bytes (a partial head, body bytes waiting for credit, bytes held behind
    /// an upgrade or the pipelining limit).
    pub input: Vec<u8>,
    /// Response bytes, in order, waiting for the network's credit.
    pub out: Vec<u8>,
    /// Last time request bytes arrived or a response completed.
    last_activity: Instant,
    /// When the first byte of a still incomplete request head arrived.
    head_started: Option<Instant>,
}

impl Connection {
    pub fn new(now: Instant) -> Connection {
        Connection {
            reading: Reading::Head,
            closing: false,
            queue: VecDeque::new(),
            input: Vec::new(),
            out: Vec::new(),
            last_activity: now,
            head_started: None,
        }
    }

    pub fn reading(&self) -> Reading {
        self.reading
    }

    /// Keep-alive is off (see the field).
    pub fn closing(&self) -> bool {
        self.closing
    }

    /// Requests in flight, in request order.
    pub fn transactions(&self) -> impl Iterator<Item = &Transaction> {
        self.queue.iter()
    }

    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }

    /// Body or tunnel bytes are being read.
    pub fn receiving(&self) -> Option<Tag> {
        match self.reading {
            Reading::Body(x) | Reading::Tunnel(x) => Some(x),
            _ => None,
        }
    }

    /// After the last request (an error, `Connection: close`), input is dropped unread.
    pub fn input_discarded(&self) -> bool {
        self.closing && matches!(self.reading, Reading::Head | Reading::Upgrading(_))
    }

    /// Protocols were switched on this connection.
    pub fn upgraded(&self) -> bool {
        matches!(self.reading, Reading::Tunnel(_) | Reading::TunnelEnded)
    }

    /// Held input may be read now (after earlier requests completed or credit came).
    pub fn may_read(&self, limits: &HttpLimits) -> bool {
        !self.input.is_empty()
            && self.receiving().is_none()
            && !self.closing
            && self.queue.len() < limits.max_pipelined
    }

    /// Everything is said: the reply may end.
    pub fn finished(&self) -> bool {
        self.closing && self.queue.is_empty() && self.out.is_empty() && self.receiving().is_none()
    }

    /// The first request in line while its response still streams: the one whose
    /// application gets more response credit as the network keeps up.
    pub fn front_streaming(&self) -> Option<Tag> {
        self.queue
            .front()
            .filter(|t| t.writing != Writing::Done)
            .and_then(|t| t.tag)
    }

    /// Bytes of memory the connection holds.
    pub fn held_bytes(&self) -> usize {
        let waiting: usize = self.queue.iter().map(|t| t.buffered.capacity()).sum();
        self.input.capacity() + self.out.capacity() + waiting
    }

    fn index(&self, tag: Tag) -> Option<usize> {
        // Applications answer in order as a rule: the one asked for is the first in line.
        match self.queue.front() {
            Some(first) if first.tag == Some(tag) => Some(0),
            _ => self.queue.iter().position(|t| t.tag == Some(tag)),
        }
    }

    /// Stops reading a body or tunnel (the request ended some other way).
    fn stop_receiving(&mut self) {
        self.reading = match self.reading {
            Reading::Body(_) => Reading::Head,
            Reading::Tunnel(_) => Reading::TunnelEnded,
            other => other,
        };
    }

    // ----- reading ---------------------------------------------------------------------------

    /// Request bytes arrived.
    pub fn arrived(&mut self, now: Instant) {
        self.last_activity = now;
    }

    /// After arrived bytes were read: starts or stops the clock of an incomplete head.
    pub fn track_head(&mut self, now: Instant) {
        let partial_head = !self.input.is_empty()
            && self.reading == Reading::Head
            && self.queue.is_empty()
            && !self.closing;
        self.head_started = if partial_head {
            self.head_started.or(Some(now))
        } else {
            None
        };
    }

    /// Reads what `input` starts with. `budget`: body bytes the application can take now;
    /// `route` maps a path to a route index; `scratch` receives the BEGIN extension of a head
    /// or the decoded bytes of a chunked body.
    pub fn read<'a>(
        &mut self,
        input: &'a [u8],
        budget: usize,
        limits: &HttpLimits,
        route: impl Fn(&str) -> Option<usize>,
        scratch: &'a mut Vec<u8>,
    ) -> Read<'a> {
        self.read_cached(input, budget, limits, route, scratch, None)
    }

    /// [`Connection::read`] with the last request head read (the nukleus's, shared by its
    /// connections): a head that repeats it is not parsed again (see `request_cache`) and is
    /// read as [`Read::Repeat`]. It must only be given while `route` always maps a path to
    /// the same route.
    pub fn read_cached<'a>(
        &mut self,
        input: &'a [u8],
        budget: usize,
        limits: &HttpLimits,
        route: impl Fn(&str) -> Option<usize>,
        scratch: &'a mut Vec<u8>,
        cache: Option<&mut RequestCache>,
    ) -> Read<'a> {
        if let Some(tag) = self.receiving() {
            return self.read_body(tag, input, budget, limits.max_body_bytes, scratch);
        }
        if self.closing {
            return Read::Discard;
        }
        if matches!(self.reading, Reading::Upgrading(_))
            || input.is_empty()
            || self.queue.len() >= limits.max_pipelined
        {
            return Read::Wait;
        }
        if let Some(parsed) = cache.as_ref().and_then(|c| c.hit(input)) {
            return Read::Repeat(parsed);
        }
        match request::parse_head(input, limits, route, scratch) {
            Ok(None) => Read::Wait,
            Ok(Some(parsed)) => {
                if let Some(cache) = cache {
                    cache.put(input, &parsed, scratch);
                }
                Read::Head(parsed)
            }
            Err(rejection) => Read::BadHead(rejection),
        }
    }

    fn read_body<'a>(
        &mut self,
        tag: Tag,
        input: &'a [u8],
        budget: usize,
        max_body: u64,
        scratch: &'a mut Vec<u8>,
    ) -> Read<'a> {
        let Some(i) = self.queue.iter().rposition(|t| t.tag == Some(tag)) else {
            self.stop_receiving();
            return Read::Wait;
        };
        let t = &mut self.queue[i];
        let (used, data, finished): (usize, &'a [u8], bool) = match &mut t.body {
            Body::None => (0, &[], true),
            Body::Length(remaining) => {
                let n = (*remaining as usize).min(input.len()).min(budget);
                *remaining -= n as u64;
                (n, &input[..n], *remaining == 0)
            }
            Body::Tunnel => {
                let n = input.len().min(budget);
                (n, &input[..n], false)
            }
            Body::Chunked(decoder) => {
                scratch.clear();
                let decoded = &mut *scratch;
                match decoder.decode(input, budget, |piece| decoded.extend_from_slice(piece)) {
                    Ok(_) if decoder.total > max_body => {
                        let too_large = Rejection {
                            status: 413,
                            reason: "request body larger than the configured max_body_bytes",
                        };
                        return Read::BadBody(tag, too_large);
                    }
                    Ok(used) => (used, &scratch[..], decoder.is_done()),
                    Err(ChunkError::Malformed(reason)) => {
                        return Read::BadBody(
                            tag,
                            Rejection {
                                status: 400,
                                reason,
                            },
                        )
                    }
                }
            }
        };
        if finished {
            t.request_ended = true;
            self.stop_receiving();
        }
        Read::Body {
            tag,
            used,
            data,
            finished,
        }
    }

    /// The caller opened an exchange for a parsed request: it joins the queue. `upgrade`: the
    /// request may switch protocols (bodiless, to a peer that can take a tunnel); `close`: its
    /// response closes the connection.
    #[inline]
    pub fn open(&mut self, tag: Tag, parsed: &Parsed, upgrade: bool, close: bool) {
        let has_body = !matches!(parsed.body, Body::None);
        // An upgrade's request stays open: after a 101 it carries the tunnel.
        let no_body = !has_body && !upgrade;
        let expect_continue = parsed.expect_continue && has_body;
        self.queue.push_back(Transaction {
            tag: Some(tag),
            body: parsed.body.clone(),
            request_ended: no_body,
            writing: Writing::Awaiting,
            buffered: Vec::new(),
            close_after: close,
            is_head: parsed.is_head,
            upgrade,
            minor_version: parsed.minor_version,
            expect_continue,
        });
        if upgrade {
            // `Connection: close` applies if the upgrade is refused (`close_after`).
            self.reading = Reading::Upgrading(tag);
        } else if close {
            self.closing = true;
        }
        if !no_body && !upgrade {
            self.reading = Reading::Body(tag);
        }
        if self.queue.len() == 1 && expect_continue {
            self.out.extend_from_slice(CONTINUE);
            if let Some(t) = self.queue.back_mut() {
                t.expect_continue = false;
            }
        }
    }

    /// Answers an error of http's own after the responses already queued; nothing more is
    /// read. Retired requests are passed to `retired`.
    pub fn reject(
        &mut self,
        rejection: Rejection,
        date: &[u8],
        now: Instant,
        retired: impl FnMut(Tag),
    ) {
        self.closing = true;
        self.stop_receiving();
        let mut t = Transaction {
            tag: None,
            body: Body::None,
            request_ended: true,
            writing: Writing::Done,
            buffered: Vec::new(),
            close_after: true,
            is_head: false,
            upgrade: false,
            minor_version: 1,
            expect_continue: false,
        };
        let first = self.queue.is_empty();
        let target = if first {
            &mut self.out
        } else {
            &mut t.buffered
        };
        response::error_response(target, rejection.status, rejection.reason, date);
        self.queue.push_back(t);
        if first {
            self.retire(now, retired);
        }
    }

    /// The body of request `tag` turned out bad (`Read::BadBody`): it leaves the queue.
    /// Returns whether its response had not started — then the caller answers the error with
    /// [`Connection::reject`], else it drops the connection.
    pub fn fail_body(&mut self, tag: Tag) -> bool {
        self.stop_receiving();
        match self.index(tag).and_then(|i| self.queue.remove(i)) {
            Some(t) => t.writing == Writing::Awaiting && t.buffered.is_empty(),
            None => false,
        }
    }

    /// The client's input ended (the connection half-closed or went away).
    pub fn end_input(&mut self) -> InputEnd {
        self.closing = true;
        let open_ended = !self.upgraded()
            && self.queue.iter().any(|t| {
                matches!(
                    t.writing,
                    Writing::Streaming(Framing::Chunked | Framing::Raw)
                )
            });
        if open_ended {
            return InputEnd::Abort;
        }
        let tag = match self.reading {
            Reading::Body(x) | Reading::Upgrading(x) => {
                self.reading = Reading::Head;
                x
            }
            Reading::Tunnel(x) => {
                self.reading = Reading::TunnelEnded;
                x
            }
            Reading::Head | Reading::TunnelEnded => return InputEnd::Idle,
        };
        // The client went away mid-request, ended a tunnel, or half-closed while its upgrade
        // waited for an answer (a request without body: it is complete).
        let Some(i) = self.index(tag) else {
            return InputEnd::Idle;
        };
        let t = &mut self.queue[i];
        t.request_ended = true;
        InputEnd::EndRequest {
            tag,
            incomplete: !matches!(t.body, Body::Tunnel | Body::None),
        }
    }

    /// The application wants no (more) of request `tag`'s body. Unread body bytes stand
    /// between us and the next request: no more requests are read.
    pub fn request_refused(&mut self, tag: Tag, now: Instant, retired: impl FnMut(Tag)) {
        if let Some(i) = self.index(tag) {
            self.queue[i].request_ended = true;
        }
        if self.receiving() == Some(tag) {
            self.stop_receiving();
            self.closing = true;
        }
        if self.reading == Reading::Upgrading(tag) {
            self.reading = Reading::Head; // bodiless: what follows is the next request
        }
        self.retire(now, retired);
    }

    /// Request `tag` is dropped before its response started (the caller answers an error in
    /// its place). Returns whether its request had not ended (the caller aborts it).
    pub fn forget(&mut self, tag: Tag) -> bool {
        if self.receiving() == Some(tag) {
            self.stop_receiving();
        }
        if self.reading == Reading::Upgrading(tag) {
            self.reading = Reading::Head;
        }
        match self.index(tag).and_then(|i| self.queue.remove(i)) {
            Some(t) => !t.request_ended,
            None => false,
        }
    }

    /// Closes the connection once what is queued is answered (idle timeout).
    pub fn close(&mut self) {
        self.closing = true;
    }

    /// Graceful stop: an idle connection closes now; one with requests in flight closes once
    /// they are answered (the last response not yet begun says `Connection: close`); a
    /// half-received head may still complete (its response closes the connection); tunnels are
    /// for the kind that took them over. Returns whether anything changed.
    pub fn drain(&mut self) -> bool {
        if self.upgraded() || matches!(self.reading, Reading::Upgrading(_)) || self.closing {
            return false;
        }
        match self.queue.back_mut() {
            None if !self.input.is_empty() => return false,
            None => {}
            Some(last) if last.writing == Writing::Awaiting && last.buffered.is_empty() => {
                last.close_after = true;
            }
            Some(_) => {}
        }
        self.closing = true;
        true
    }

    /// Whether the clock says this connection is due: only a connection with nothing in
    /// flight (the application or the tunnel decides otherwise).
    pub fn expiry(
        &self,
        now: Instant,
        idle_timeout: Duration,
        request_timeout: Duration,
    ) -> Option<Expiry> {
        if self.reading != Reading::Head || self.closing || !self.queue.is_empty() {
            return None;
        }
        // Bytes held back (behind a refused upgrade or the pipelining limit) are a request
        // head that started by the last activity at the latest.
        let head_started = match self.head_started {
            None if !self.input.is_empty() => Some(self.last_activity),
            started => started,
        };
        match head_started {
            Some(started) if now.saturating_duration_since(started) >= request_timeout => {
                Some(Expiry::SlowHead)
            }
            None if now.saturating_duration_since(self.last_activity) >= idle_timeout => {
                Some(Expiry::Idle)
            }
            _ => None,
        }
    }

    // ----- writing ---------------------------------------------------------------------------

    /// Whether request `tag`'s response has not started (nothing written for it yet).
    pub fn response_unstarted(&self, tag: Tag) -> bool {
        self.index(tag).is_some_and(|i| {
            let t = &self.queue[i];
            t.writing == Writing::Awaiting && t.buffered.is_empty()
        })
    }

    /// The application's response head for request `tag` (its BEGIN extension). `Err`: the
    /// head cannot be written, with the reason: the caller answers 500 in its place if the
    /// response has not started ([`Connection::response_unstarted`]), else drops the
    /// connection (a second head: the first is already on its way).
    pub fn response_head(
        &mut self,
        tag: Tag,
        extension: &[u8],
        heads: &mut Heads,
        date: &[u8],
    ) -> Result<Begun, &'static str> {
        let Some(i) = self.index(tag) else {
            return Err("response to a request no longer in flight");
        };
        let t = &mut self.queue[i];
        if t.writing != Writing::Awaiting {
            return Err("a second response head for one request");
        }
        let target = if i == 0 {
            &mut self.out
        } else {
            &mut t.buffered
        };
        let variant = Variant {
            is_head: t.is_head,
            minor_version: t.minor_version,
            close_after: t.close_after,
        };
        let plain = Begun {
            end_request: false,
            tunnel: false,
        };
        // An upgrade may change the connection's state beyond the head: never cached.
        if !t.upgrade {
            if let Some((rendered, (framing, close_after))) = heads.get(extension, variant) {
                target.extend_from_slice(rendered);
                t.close_after = close_after;
                t.writing = Writing::Streaming(framing);
                return Ok(plain);
            }
        }
        let head = match ResponseHead::parse(extension) {
            None => return Err("the application sent a malformed response"),
            Some(head) if head.status == 101 && !t.upgrade => {
                return Err("the application switched protocols on a request that cannot upgrade")
            }
            Some(head) => head,
        };
        let switched = t.upgrade && head.status == 101;
        let mut begun = plain;
        if t.upgrade {
            if self.reading == Reading::Upgrading(tag) {
                self.reading = Reading::Head;
            }
            if !switched && !t.request_ended {
                // Upgrade not taken: an ordinary bodiless request (RFC 9110 §7.8). It ends
                // here, and the bytes held behind it are read as the next request.
                t.request_ended = true;
                begun.end_request = true;
            }
        }
        let start = target.len();
        let facts = HeadFacts {
            is_head: t.is_head,
            minor_version: t.minor_version,
            close_after: &mut t.close_after,
        };
        let framing = encode::write_response_head(target, &head, facts, date, switched);
        if !t.upgrade {
            heads.put(
                extension,
                variant,
                &target[start..],
                (framing, t.close_after),
            );
        }
        t.writing = Writing::Streaming(framing);
        if switched {
            t.body = Body::Tunnel;
            if t.request_ended {
                self.reading = Reading::TunnelEnded;
            } else {
                self.reading = Reading::Tunnel(tag);
                begun.tunnel = true;
            }
        }
        Ok(begun)
    }

    /// A whole response at once — head (the application's BEGIN extension), `body` and end —
    /// for request `tag`, when that is the plain case: the request is first in line, its head
    /// is the one `heads` holds for it (no upgrade) and says `Content-Length` of exactly
    /// `body`. Does what [`Connection::response_head`], [`Connection::response_data`] and
    /// [`Connection::response_end`] in a row would, with one lookup. Returns false, having
    /// changed nothing, otherwise (the caller takes those three steps).
    pub fn response_whole(
        &mut self,
        tag: Tag,
        extension: &[u8],
        body: &[u8],
        heads: &Heads,
        now: Instant,
        mut retired: impl FnMut(Tag),
    ) -> bool {
        let Some(t) = self.queue.front_mut() else {
            return false;
        };
        if t.tag != Some(tag) || t.writing != Writing::Awaiting || t.upgrade {
            return false;
        }
        let variant = Variant {
            is_head: t.is_head,
            minor_version: t.minor_version,
            close_after: t.close_after,
        };
        let Some((rendered, (framing, close_after))) = heads.get(extension, variant) else {
            return false;
        };
        if framing != Framing::Length(body.len() as u64) {
            return false;
        }
        t.close_after = close_after;
        t.writing = Writing::Done;
        self.out.extend_from_slice(rendered);
        streams::copy::extend(&mut self.out, body);
        if !t.request_ended {
            return true; // its body still arrives: it stays first in line
        }
        // What `retire` does, for a first in line known to be done.
        self.queue.pop_front();
        self.closing |= close_after;
        self.last_activity = now;
        retired(tag);
        if self.queue.front().is_some_and(|next| {
            !next.buffered.is_empty() || next.expect_continue || next.writing == Writing::Done
        }) {
            self.retire(now, retired);
        }
        true
    }

    /// Response body bytes for request `tag`.
    pub fn response_data(&mut self, tag: Tag, payload: &[u8]) -> Result<Sent, DataBeforeHead> {
        let i = self.index(tag).ok_or(DataBeforeHead)?;
        let t = &mut self.queue[i];
        let Writing::Streaming(framing) = t.writing else {
            return Err(DataBeforeHead);
        };
        // Beyond Content-Length, bytes are dropped.
        let take = |remaining: u64| (remaining as usize).min(payload.len());
        if i == 0 && matches!(framing, Framing::Length(_) | Framing::Raw) {
            let n = match framing {
                Framing::Length(remaining) => {
                    let n = take(remaining);
                    t.writing = Writing::Streaming(Framing::Length(remaining - n as u64));
                    n
                }
                _ => payload.len(),
            };
            return Ok(Sent::Direct(n));
        }
        let target = if i == 0 {
            &mut self.out
        } else {
            &mut t.buffered
        };
        match framing {
            Framing::None => {}
            Framing::Length(remaining) => {
                let n = take(remaining);
                streams::copy::extend(target, &payload[..n]);
                t.writing = Writing::Streaming(Framing::Length(remaining - n as u64));
            }
            Framing::Chunked => encode::chunk(target, payload),
            Framing::Raw => streams::copy::extend(target, payload),
        }
        Ok(Sent::Framed)
    }

    /// Request `tag`'s response is complete. Retired requests are passed to `retired`.
    pub fn response_end(&mut self, tag: Tag, now: Instant, retired: impl FnMut(Tag)) {
        let Some(i) = self.index(tag) else {
            return;
        };
        let t = &mut self.queue[i];
        match t.writing {
            Writing::Streaming(Framing::Chunked) => {
                let target = if i == 0 {
                    &mut self.out
                } else {
                    &mut t.buffered
                };
                target.extend_from_slice(LAST_CHUNK);
            }
            // The body was delimited by the close.
            Writing::Streaming(Framing::Raw) => t.close_after = true,
            _ => {}
        }
        t.writing = Writing::Done;
        if i == 0 {
            self.retire(now, retired);
        }
    }

    /// Retires the finished requests at the front of the queue, passing their tags to
    /// `retired`, and moves the next one's buffered response (and 100 Continue) to `out`.
    pub fn retire(&mut self, now: Instant, mut retired: impl FnMut(Tag)) {
        while let Some(t) = self.queue.front_mut() {
            if !t.buffered.is_empty() {
                self.out.append(&mut t.buffered);
            }
            if t.expect_continue {
                // Rare: a pipelined request with Expect: 100-continue reached the front.
                self.out.extend_from_slice(CONTINUE);
                t.expect_continue = false;
            }
            if t.writing != Writing::Done || !t.request_ended {
                break;
            }
            if t.close_after {
                self.closing = true;
            }
            let tag = t.tag;
            self.queue.pop_front();
            self.last_activity = now;
            if let Some(tag) = tag {
                retired(tag);
            }
        }
    }
}
