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
//!
//! What HTTP/1.1 itself decides per connection (request boundaries, keep-alive, pipelining,
//! 100-continue, upgrades, limits) is the sans-I/O [`h1::Connection`]; the nukleus maps it to
//! streams: `network.rs` (the connection's stream, reading requests, writing responses out),
//! `application.rs` (one exchange per request), `pressure.rs` (memory and drain).

mod application;
pub mod chunked;
pub mod ext;
pub mod fuzzing;
pub mod h1;
mod head_cache;
mod network;
mod pressure;
pub mod request;
pub mod request_cache;
pub mod response;
pub mod tls_begin_ex;

use std::time::{Duration, Instant};

use slab::Slab;
use streams::{
    plumbing, split_links, DirtySet, Header, Nukleus, Output, PeerLink, PeerStreams, PollContext,
    RecvWindow, Remote, RingReader, SendWindow, SlotIds, Slots,
};

use request::HttpLimits;
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

/// One request as a stream to its application (what HTTP makes of it is in `h1`).
struct Exchange {
    conn: usize,
    /// Initial stream id (http -> app); the reply is `id ^ 1`.
    id: u64,
    app: usize,
    /// Credit the application granted for the request body.
    send: SendWindow,
    /// Credit granted to the application for the response.
    recv: RecvWindow,
}

/// One connection as a stream from the network nukleus, and its HTTP/1.1 state.
struct Connection {
    /// Initial stream id from the network nukleus; our reply is `net_id ^ 1`.
    net_id: u64,
    input: usize,
    recv: RecvWindow,
    send: SendWindow,
    h1: h1::Connection,
    input_ended: bool,
    reply_ended: bool,
    /// Pseudo-headers appended to every request head: the verified TLS client identity.
    identity: Vec<(&'static str, String)>,
    /// The client, for log lines.
    remote: Remote,
}

/// Capacity a drained connection buffer keeps for the next burst; beyond it, memory goes back.
const KEEP: usize = 16 * 1024;

pub struct HttpNukleus {
    config: HttpConfig,
    /// The response window of a pipelined request not first in line: its share of
    /// `max_buffered_bytes` (at least 1 KiB, at most a window).
    pipelined_window: u32,
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
    /// Exchanges by slot, with the generation of each slot's stream ids.
    exchanges: Slots<Exchange>,
    dirty: DirtySet,
    /// Connections closed because a full ring refused one of their frames (DESIGN §3).
    refused_resets: u64,
    scratch: Vec<u8>,
    date: DateCache,
    /// The last response head rendered, with its framing and whether it closes the connection.
    heads: h1::Heads,
    /// The last request head read; `None` when a route takes a key from the path (a hit
    /// would skip computing it).
    request_heads: Option<request_cache::RequestCache>,
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
        let request_heads = config
            .routes
            .iter()
            .all(|r| r.key_segment.is_none())
            .then(request_cache::RequestCache::default);
        let share = config.max_buffered_bytes / config.limits.max_pipelined.max(1);
        let pipelined_window = share.max(1024).min(config.window as usize) as u32;
        HttpNukleus {
            pipelined_window,
            local_targets,
            request_heads,
            config,
            core,
            ids: SlotIds::new(instance),
            inputs,
            outputs,
            is_network,
            by_network,
            connections: Slab::new(),
            exchanges: Slots::new(),
            dirty: DirtySet::default(),
            refused_resets: 0,
            shed_total: 0,
            draining: false,
            scratch: Vec::with_capacity(1024),
            date: DateCache::default(),
            heads: h1::Heads::default(),
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

    fn scan_interval(&self) -> Duration {
        (self.config.idle_timeout.min(self.config.request_timeout) / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(1))
    }
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
