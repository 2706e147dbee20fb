//! The switch nukleus: the port switch ([`Switch`]) served over streams.
//!
//! Two kinds of peers send it exchanges:
//!
//! * **http** (REST and Server-Sent Events): BEGIN carries the request head
//!   ([`nukleus_http::ext::RequestHead`]), the body arrives as DATA within the window granted
//!   here, END ends it. The reply is a BEGIN with [`ext::encode_response`] and a
//!   `Content-Length` body, or for `GET /v1/nodes/{node}/messages` with
//!   `Accept: text/event-stream` an open-ended `text/event-stream` (http chunks it) that is the
//!   node's receiving connection: every batch of pushes is one `data: [...]\n\n` event.
//! * **ws** (WebSocket messages, one exchange per WebSocket): BEGIN carries
//!   `[protocol len:u8][subprotocol][request head of the upgrade]`; each DATA is a message
//!   fragment (`FLAG_INIT` first, `FLAG_FIN` last, extension `[kind:u8]`, 1 text, 2 binary);
//!   FLUSH `ping` is a client ping; END: the client closed; ABORT: the connection was lost. The
//!   reply is BEGIN (accept), DATA messages in the same format, END with an optional
//!   `[code:u16 LE][reason]` close extension. The WebSocket is the node's receiving
//!   connection; every text message on it is an API request ([`api::handle_ws`]) and renews
//!   the lease, and every batch of pushes is one message (a JSON array).
//!
//! Pushes are batched: when a node's queue goes non-empty the switch says so
//! ([`Output::Pending`]); at the end of the poll the queue is drained into one frame per
//! connection, as much as the connection's window allows. A node whose queue exceeds its byte
//! limit is disconnected (slow consumer), so memory stays bounded whatever the reader does.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use nukleus_http::ext::{self, RequestHead};
use streams::copy;
use streams::frame::{self, Frame, FLAG_FIN, FLAG_INIT};
use streams::{
    plumbing, split_links, Header, Nukleus, Output as StreamOutput, PeerLink, PollContext,
    RecvWindow, RingReader, SendWindow, SlotIds,
};

use crate::api::{self, ApiError, ErrorBody, ErrorDetail};
use crate::auth::{self, AuthError, Need, TokenGrant, Tokens};
use crate::clock::LeaseClock;
use crate::cluster::{InstanceConfig, Token};
use crate::engine::cluster::ClusterEngine;
use crate::engine::single::SingleEngine;
use crate::engine::{Completion, SwitchEngine};
use crate::gate::{ClusterGateConfig, GateChange, Refusal, ServingGate};
use crate::mesh::{MeshReader, Msg};
use crate::nodes::ConnId;
use crate::ports::NodeIdx;
use crate::switch::{CloseReason, Config, Metrics, Output};

mod exchanges;
mod mastership;
mod mesh_io;
mod metrics_text;
mod push;
mod receivers;
mod rest;
mod tokens;
mod watcher;
mod watcher_state;

pub use mesh_io::{flush_mesh_to, lend_mesh_frame, read_mesh_frame};
pub use metrics_text::metrics_text;
pub use receivers::wait_msg_node;
pub use watcher::watch_of_query;
pub use watcher_state::{is_watcher_path, WatcherCounts, WatcherPermit, WatcherRefusal};

/// Settings of the switch nukleus.
#[derive(Clone, Debug)]
pub struct SwitchNukleusConfig {
    /// The switch itself: lease, shards, limits.
    pub switch: Config,
    /// Bearer tokens.
    pub tokens: Vec<TokenGrant>,
    /// Window granted for request bodies and WebSocket messages.
    pub window: u32,
    /// Largest REST request body (else 413).
    pub max_request_bytes: usize,
    /// Largest WebSocket message (else the socket is closed with 1009).
    pub max_message_bytes: usize,
    /// A cluster member's switch serves only while the member holds the master's lease.
    pub cluster: Option<ClusterGateConfig>,
    /// Tokens reloaded while the server runs, and how to ask for a reload.
    pub reload: Option<TokenReload>,
    /// The node-less watchers open, counted over every instance that shares it.
    pub watchers: Arc<WatcherCounts>,
}

/// The tokens as the reaktor reloads them (SIGHUP, `POST /v1/admin/reload`).
#[derive(Clone)]
pub struct TokenReload {
    /// Where new token lists are published.
    pub updates: Arc<crate::auth::TokenUpdates>,
    /// Reads the topology file again and publishes its tokens.
    pub trigger: crate::auth::ReloadTrigger,
}

impl std::fmt::Debug for TokenReload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReload")
            .field("generation", &self.updates.generation())
            .finish_non_exhaustive()
    }
}

impl Default for SwitchNukleusConfig {
    fn default() -> Self {
        SwitchNukleusConfig {
            switch: Config::default(),
            tokens: Vec::new(),
            window: 65536,
            max_request_bytes: 8 << 20,
            max_message_bytes: 8 << 20,
            cluster: None,
            reload: None,
            watchers: Arc::default(),
        }
    }
}

/// WebSocket close codes the switch uses (4000–4999 are for applications).
pub mod close_code {
    /// Normal closure (shutdown).
    pub const GOING_AWAY: u16 = 1001;
    /// A message larger than the limit.
    pub const TOO_BIG: u16 = 1009;
    /// Internal error.
    pub const INTERNAL: u16 = 1011;
    /// A new receiving connection of the same node replaced this one.
    pub const REPLACED: u16 = 4000;
    /// The node did not relet in time.
    pub const LEASE_EXPIRED: u16 = 4001;
    /// The node's push queue exceeded its limit.
    pub const SLOW_CONSUMER: u16 = 4002;
    /// This cluster member stopped being the master (the reason names the master if known).
    pub const NOT_MASTER: u16 = 4003;
    /// The token the connection was opened with was revoked (token reload).
    pub const TOKEN_REVOKED: u16 = 4004;
    /// The watch a node-less watcher's query asked for could not start (e.g. a cursor of
    /// another switch); the reason says why.
    pub const WATCH_FAILED: u16 = 4005;
}

/// Stream id of the mesh between two switch instances: one stream per direction, DATA only.
/// It needs no window: each instance reads its mesh inputs on every poll whatever else it
/// does, and stops taking new client requests while its mesh outboxes are over
/// [`MESH_HIGH_WATER`], so an outbox only grows by replies it must send, and those are bounded
/// by the requests in flight.
const MESH_STREAM: u64 = 1;
/// Mesh bytes waiting to be written beyond which client input is not read.
const MESH_HIGH_WATER: usize = 4 << 20;
/// The smallest DATA frame lent to the engine for its mesh records: with less room in the
/// ring, its records wait in the outbox's overflow.
pub const MESH_FRAME_MIN: usize = 256;

/// WebSocket message kinds in DATA extensions.
const WS_TEXT: u8 = 1;

/// Reply bytes queued on one exchange beyond which no more request input is acknowledged.
const OUT_HIGH_WATER: usize = 256 * 1024;
/// WebSocket calls in flight at other switch instances beyond which no more request input is
/// acknowledged.
const MAX_AWAITING: usize = 1024;
/// Largest push batch drained at once.
const MAX_BATCH: usize = 1 << 20;

/// Where a REST request goes, decided at BEGIN.
enum Target {
    Api(api::Route),
    Metrics,
    /// `POST /v1/admin/reload`.
    Reload,
    /// Answered with this error at END.
    Error(u16, ErrorBody),
    /// Answered at END with this refusal: a cluster member that does not serve (307 to the
    /// master, or 503), or a WaitMsg while the server drains (503).
    Refused(Refusal),
}

struct Rest {
    target: Target,
    body: Vec<u8>,
    too_large: bool,
    /// The bearer token it came with (a compare-and-register may need more of it).
    token: Option<String>,
}

/// A node's receiving connection (SSE or WebSocket).
struct Receiver {
    node: Arc<str>,
    idx: NodeIdx,
    conn: ConnId,
    /// The session WaitMsg opened (its first push names it).
    session: u64,
    /// The token it was opened with: a reload that revokes it closes the connection.
    token: Option<String>,
    /// Still the node's receiving connection in the switch.
    online: bool,
    /// WebSocket (else SSE).
    ws: bool,
    /// WebSocket message being assembled.
    message: Vec<u8>,
    message_kind: u8,
    /// A node-less watcher's (`/v1/watch`), not a node's.
    watcher: Option<watcher_state::WatcherState>,
}

impl Receiver {
    /// The receiving connection `session` opened on `conn`: a node's (`watcher: None`) or a
    /// node-less watcher's.
    fn opened(
        node: Arc<str>,
        session: &crate::switch::Session,
        conn: ConnId,
        token: Option<String>,
        ws: bool,
        watcher: Option<watcher_state::WatcherState>,
    ) -> Receiver {
        Receiver {
            node,
            idx: session.node,
            conn,
            session: session.session,
            token,
            online: true,
            ws,
            message: Vec::new(),
            message_kind: WS_TEXT,
            watcher,
        }
    }
}

enum Role {
    Rest(Rest),
    Receiver(Receiver),
    /// Answered (or refused); input is discarded until it ends.
    Done,
}

struct Exchange {
    id: u64,
    ws: bool,
    /// Credit we granted the peer for input.
    recv: RecvWindow,
    /// Credit the peer granted us for the reply.
    send: SendWindow,
    /// Input reserved bytes not yet acknowledged (held back while replies pile up).
    held: u64,
    request_ended: bool,
    reply_begun: bool,
    reply_ended: bool,
    /// Reply units (WebSocket messages; bytes for http) and how much of the first is sent.
    out: VecDeque<Vec<u8>>,
    out_sent: usize,
    out_bytes: usize,
    /// End the reply with this extension once `out` is sent.
    end_with: Option<Vec<u8>>,
    role: Role,
    dirty: bool,
    /// WebSocket replies of calls in flight at other switch instances, in request order:
    /// `None` until the call completes; completed replies move to `out` from the front.
    awaiting: VecDeque<(Token, Option<Vec<u8>>)>,
}

/// Where the reply of a call in flight goes.
/// A call in flight: the exchange its completion goes to.
struct Pending {
    input: usize,
    slot: usize,
    id: u64,
}

/// The mesh to the other switch instances (fission).
struct Mesh {
    /// Per instance: the output index of its link (`None` for this instance).
    output_of: Vec<Option<usize>>,
    /// Per input: the instance it comes from, if it is a mesh input.
    peer_of_input: Vec<Option<usize>>,
    readers: Vec<MeshReader>,
}

/// The switch nukleus.
pub struct SwitchNukleus {
    config: SwitchNukleusConfig,
    core: usize,
    instance: u16,
    /// The switch, sans I/O: one instance, or one of several (`mesh`).
    engine: Box<dyn SwitchEngine>,
    /// How the engine was made, to make an empty one when a mastership begins or ends.
    instance_config: Option<InstanceConfig>,
    /// Whether switch calls are served (a cluster member's: only as master), with what epoch.
    gate: ServingGate,
    /// Whether push batches may leave in this poll (the lease held when it began to drain).
    pushes_allowed: bool,
    mesh: Option<Mesh>,
    /// Calls in flight, by token: where their completion goes.
    pending: HashMap<Token, Pending>,
    /// Watchers' calls in flight, by token.
    watcher_calls: HashMap<Token, watcher_state::WatcherPending>,
    /// The watch of a watcher opened by the BEGIN being read, started once its exchange is
    /// in the table.
    opening_watch: Option<(
        Token,
        watcher_state::WatcherPending,
        crate::engine::WatcherCall,
    )>,
    next_token: Token,
    tokens: Tokens,
    /// The generation of the reloaded tokens last applied.
    tokens_seen: u64,
    inputs: Vec<RingReader>,
    outputs: Vec<StreamOutput>,
    is_ws: Vec<bool>,
    /// Per input: the peer's exchange slot -> our state.
    exchanges: Vec<Vec<Option<Exchange>>>,
    /// Receiving connection -> (input, slot).
    conns: HashMap<ConnId, (usize, usize)>,
    next_conn: ConnId,
    dirty: Vec<(usize, usize)>,
    scratch: Vec<u8>,
    start: Instant,
    /// Lease time: stops while the switch is stalled (see [`LeaseClock`]).
    clock: LeaseClock,
    now_ms: u64,
    timestamp: u64,
    requests: u64,
    refused: u64,
    /// Exchanges closed because a full ring refused one of their frames (DESIGN §3).
    refused_resets: u64,
    /// Switch calls answered 307/503 because this member did not serve.
    refused_not_master: u64,
    /// The reaktor drains (graceful stop): receivers were closed, no new WaitMsg is taken.
    draining: bool,
}

fn header(stream_id: u64, timestamp: u64) -> Header {
    Header::at(stream_id, timestamp)
}

fn error_body(code: &str, message: String) -> ErrorBody {
    ErrorBody {
        error: ErrorDetail {
            code: code.to_string(),
            message,
        },
    }
}

fn auth_body(e: &AuthError) -> ErrorBody {
    error_body(e.code(), e.to_string())
}

/// `[code:u16 LE][reason]`, the END extension that closes a WebSocket with a code.
fn close_ext(code: u16, reason: &str) -> Vec<u8> {
    let mut out = code.to_le_bytes().to_vec();
    // A close frame carries at most 123 bytes of reason.
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&reason.as_bytes()[..end]);
    out
}

impl SwitchNukleus {
    /// A switch nukleus on `core`, instance `instance` of its kind, with its peer links.
    pub fn new(
        config: SwitchNukleusConfig,
        core: usize,
        instance: u16,
        links: Vec<PeerLink>,
    ) -> SwitchNukleus {
        let (inputs, outputs) = split_links(links);
        let is_ws = outputs
            .iter()
            .map(|o| o.role.carries == streams::Carries::WsMessages)
            .collect();
        let exchanges = outputs.iter().map(|_| Vec::new()).collect();
        // Links to other switch instances make this one instance of several: the peer with
        // ordinal k among them is instance k, or k + 1 from this instance's index on.
        let me = usize::from(instance);
        let peers: Vec<(usize, usize)> = outputs
            .iter()
            .enumerate()
            .filter(|(_, o)| o.role.is_mesh())
            .map(|(i, o)| {
                (
                    i,
                    if o.ordinal < me {
                        o.ordinal
                    } else {
                        o.ordinal + 1
                    },
                )
            })
            .collect();
        let mut instance_config = None;
        let (engine, mesh): (Box<dyn SwitchEngine>, _) = if peers.is_empty() {
            (Box::new(SingleEngine::new(config.switch.clone())), None)
        } else {
            let count = peers.len() + 1;
            let mut output_of = vec![None; count];
            let mut peer_of_input = vec![None; outputs.len()];
            for &(i, peer) in &peers {
                output_of[peer] = Some(i);
                peer_of_input[i] = Some(peer);
            }
            let instance = InstanceConfig {
                me,
                instances: count,
                lease_ms: config.switch.lease_ms,
                limits: config.switch.limits.clone(),
                incarnation: config.switch.incarnation,
            };
            instance_config = Some(instance.clone());
            let engine = ClusterEngine::new(instance);
            let mesh = Mesh {
                output_of,
                peer_of_input,
                readers: (0..count).map(|_| MeshReader::default()).collect(),
            };
            (Box::new(engine), Some(mesh))
        };
        let clock = LeaseClock::new(config.switch.lease_ms);
        let gate = config
            .cluster
            .clone()
            .map_or_else(ServingGate::alone, ServingGate::member);
        SwitchNukleus {
            engine,
            instance_config,
            gate,
            pushes_allowed: true,
            mesh,
            pending: HashMap::new(),
            watcher_calls: HashMap::new(),
            opening_watch: None,
            next_token: 1,
            tokens: Tokens::new(&config.tokens),
            tokens_seen: config.reload.as_ref().map_or(0, |r| r.updates.generation()),
            config,
            core,
            instance,
            inputs,
            outputs,
            is_ws,
            exchanges,
            conns: HashMap::new(),
            next_conn: 1,
            dirty: Vec::new(),
            scratch: Vec::new(),
            start: Instant::now(),
            clock,
            now_ms: 0,
            timestamp: 0,
            requests: 0,
            refused: 0,
            refused_resets: 0,
            refused_not_master: 0,
            draining: false,
        }
    }

    /// This instance's counters.
    pub fn metrics(&self) -> Metrics {
        self.engine.metrics()
    }

    /// The number of switch instances this one is part of.
    pub fn instances(&self) -> usize {
        self.mesh.as_ref().map_or(1, |m| m.output_of.len())
    }

    fn mark(&mut self, input: usize, slot: usize) {
        if let Some(Some(x)) = self.exchanges[input].get_mut(slot) {
            if !x.dirty {
                x.dirty = true;
                self.dirty.push((input, slot));
            }
        }
    }

    /// The request stream ended (END, or FIN on its BEGIN).
    fn on_end(&mut self, input: usize, slot: usize) {
        let Some(Some(x)) = self.exchanges[input].get_mut(slot) else {
            return;
        };
        x.request_ended = true;
        if x.ws {
            // The client closed the WebSocket: the node goes offline.
            self.receiver_gone(input, slot);
            if let Some(Some(x)) = self.exchanges[input].get_mut(slot) {
                if x.end_with.is_none() && !x.reply_ended {
                    x.end_with = Some(Vec::new());
                }
            }
        } else {
            self.on_request_end(input, slot);
        }
        self.mark(input, slot);
    }

    /// Lease time at `now`.
    fn now_ms(&mut self, now: Instant) -> u64 {
        let raw = now.saturating_duration_since(self.start).as_millis() as u64;
        let stalled = self.clock.stalled_ms();
        let lease_now = self.clock.now(raw);
        if self.clock.stalled_ms() > stalled {
            tracing::info!(
                core = self.core,
                stalled_ms = self.clock.stalled_ms() - stalled,
                "switch woke late; leases do not count the time it could not see relets"
            );
        }
        lease_now
    }
}

impl Nukleus for SwitchNukleus {
    fn kind(&self) -> &'static str {
        "switch"
    }

    fn poll(&mut self, context: &PollContext) -> usize {
        self.timestamp = context.timestamp;
        self.now_ms = self.now_ms(context.now);
        let mut work = self.look_at_gate(context.now);
        work += self.look_at_tokens();
        self.engine
            .handle_exchange_counts(self.requests, self.refused);
        // Frames for the mesh records only when the poll has input to handle: an idle poll
        // would claim them and drop them unused (records written without one, by a timeout
        // say, go to the outboxes' overflow).
        if self.inputs.iter().any(|rx| rx.pending_bytes() > 0) {
            self.lend_mesh_frames();
        }
        let mut inputs = std::mem::take(&mut self.inputs);
        // While the mesh is backed up, take no new client requests (mesh input is always read).
        let backed_up = self.engine.transmit_bytes() > MESH_HIGH_WATER;
        for (input, rx) in inputs.iter_mut().enumerate() {
            if let Some(peer) = self.mesh.as_ref().and_then(|m| m.peer_of_input[input]) {
                work += rx.read(1024, |type_id, bytes| {
                    self.on_mesh_frame(peer, type_id, bytes)
                });
                self.run_events();
                self.run_done();
                continue;
            }
            if backed_up {
                continue;
            }
            work += rx.read(1024, |type_id, bytes| match Frame::new(type_id, bytes) {
                Ok(f) => {
                    self.on_frame(input, f);
                    self.run_events();
                    self.run_done();
                }
                Err(e) => tracing::error!(core = self.core, error = %e, "malformed frame"),
            });
        }
        self.inputs = inputs;
        self.run_events();
        self.run_done();
        // Leases only after the input: a relet that waited in a ring while the switch was
        // not running is a sign of life it must see before it declares a node gone.
        if self.clock.may_expire(self.now_ms)
            && self.engine.poll_timeout().is_some_and(|d| d <= self.now_ms)
        {
            work += self.engine.handle_timeout(self.now_ms);
            self.run_events();
            self.run_done();
        }
        self.clock.wake_at(self.engine.poll_timeout());
        // No push leaves once the lease has ended, whatever the poll did before.
        self.pushes_allowed = self.gate.holds(Instant::now());
        let mut rounds = 0;
        while !self.dirty.is_empty() && rounds < 2 {
            rounds += 1;
            let dirty = std::mem::take(&mut self.dirty);
            for &(input, slot) in &dirty {
                self.progress(input, slot);
                self.run_events();
            }
        }
        self.flush_mesh();
        for (output, id) in plumbing::refused(&mut self.outputs) {
            self.on_refused(output, id);
        }
        self.run_events();
        plumbing::publish(&mut self.outputs);
        work
    }

    fn deadline(&self) -> Option<Instant> {
        let soon = if self.dirty.is_empty() {
            None
        } else {
            Some(Instant::now())
        };
        let mesh_waiting = self.engine.transmit_bytes() > 0;
        let soon = soon.or(mesh_waiting.then(Instant::now));
        self.engine
            .poll_timeout()
            .map(|ms| self.start + Duration::from_millis(self.clock.raw_wake_of(ms)))
            .into_iter()
            .chain(soon)
            .chain(self.gate.deadline())
            .min()
    }

    fn gauges(&self, out: &mut Vec<(&'static str, u64)>) {
        let m = self.engine.metrics();
        out.push(("ports", m.ports));
        out.push(("streams_reset_ring_full_total", self.refused_resets));
        out.push(("nodes_online", m.nodes_online));
        out.push(("watchers", m.watchers));
        out.push(("messages_sent_total", m.messages_sent));
        out.push(("messages_dropped_total", m.messages_dropped));
        out.push((
            "slow_consumer_disconnects_total",
            m.slow_consumer_disconnects,
        ));
        out.push(("requests_total", self.requests));
        if self.gate.is_member() {
            out.push(("epoch", self.gate.epoch().unwrap_or(0)));
            out.push(("refused_not_master_total", self.refused_not_master));
        }
        let open = self
            .exchanges
            .iter()
            .flatten()
            .filter(|x| x.is_some())
            .count();
        out.push(("exchanges", open as u64));
    }

    fn drain(&mut self) {
        self.begin_drain();
    }

    fn drained(&self) -> bool {
        self.exchanges.iter().flatten().all(Option::is_none)
    }

    fn shutdown(&mut self) {
        let timestamp = self.timestamp;
        for (input, table) in self.exchanges.iter_mut().enumerate() {
            let tx = &mut self.outputs[input].tx;
            for x in table.iter_mut().flatten() {
                if !x.reply_ended {
                    if x.ws && x.reply_begun {
                        let h = Header {
                            stream_id: x.id ^ 1,
                            timestamp,
                            sequence: x.send.sequence,
                            ..Header::default()
                        };
                        let _ = tx.end(
                            &h,
                            &close_ext(close_code::GOING_AWAY, "server shutting down"),
                        );
                    } else {
                        let _ = tx.abort(&header(x.id ^ 1, timestamp), &[]);
                    }
                }
                if !x.request_ended {
                    let _ = tx.reset(&header(x.id, timestamp), &[]);
                }
            }
            table.clear();
        }
        for output in &mut self.outputs {
            output.publish();
        }
    }
}
