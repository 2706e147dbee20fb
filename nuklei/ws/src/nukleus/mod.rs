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

mod app_side;
mod ending;
mod http_side;
mod progress;

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
    /// An accepted connection with no bytes either way for this long is closed (1001, "idle
    /// timeout"); `None`: never.
    pub idle_timeout: Option<Duration>,
    /// Route targets that watch their connections' liveness themselves (the switch's lease):
    /// the idle timeout does not apply to connections routed to them.
    pub idle_exempt: Vec<String>,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            routes: Vec::new(),
            protocols: Vec::new(),
            limits: session::Config::default(),
            window: 65536,
            close_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(60)),
            idle_exempt: Vec::new(),
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
    /// The idle timeout applies (not for routes whose application watches liveness itself).
    idle_timed: bool,
    /// When bytes last went either way (client bytes in, the application's messages out).
    last_active: Instant,
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
    /// Idle checks: at most one per connection, re-armed from its last activity when due.
    idle_timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    /// The reaktor drains: every connection was sent 1001, new upgrades get 503.
    draining: bool,
    idle_closes: u64,
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
            idle_timers: BinaryHeap::new(),
            draining: false,
            idle_closes: 0,
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
        if self
            .idle_timers
            .peek()
            .is_some_and(|Reverse((at, _, _))| *at <= self.now)
        {
            self.expire_idle();
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
        let close = self.timers.peek().map(|Reverse((at, _, _))| *at);
        let idle = self.idle_timers.peek().map(|Reverse((at, _, _))| *at);
        close.into_iter().chain(idle).min()
    }

    fn gauges(&self, out: &mut Vec<(&'static str, u64)>) {
        out.push(("connections", self.conns.len() as u64));
        out.push(("upgrades_total", self.upgrades));
        out.push(("upgrades_rejected_total", self.rejected));
        out.push(("protocol_failures_total", self.failures));
        out.push(("streams_reset_ring_full_total", self.refused_resets));
        out.push(("idle_timeouts_total", self.idle_closes));
    }

    fn drain(&mut self) {
        self.begin_drain();
    }

    fn drained(&self) -> bool {
        self.conns.is_empty()
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
