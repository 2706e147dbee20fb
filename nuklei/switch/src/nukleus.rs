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

use crate::api::{self, ApiError, ErrorBody, ErrorDetail, ResponseBody};
use crate::auth::{self, AuthError, Need, TokenGrant, Tokens};
use crate::clock::LeaseClock;
use crate::cluster::{Instance, InstanceConfig, Token};
use crate::engine::{Call, Engine, Shape};
use crate::mesh::{MeshReader, Msg};
use crate::nodes::ConnId;
use crate::ports::NodeIdx;
use crate::switch::{CloseReason, Config, Metrics, Output, Reply, Switch};

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
}

impl Default for SwitchNukleusConfig {
    fn default() -> Self {
        SwitchNukleusConfig {
            switch: Config::default(),
            tokens: Vec::new(),
            window: 65536,
            max_request_bytes: 8 << 20,
            max_message_bytes: 8 << 20,
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
}

/// Stream id of the mesh between two switch instances: one stream per direction, DATA only.
/// It needs no window: each instance reads its mesh inputs on every poll whatever else it
/// does, and stops taking new client requests while its mesh outboxes are over
/// [`MESH_HIGH_WATER`], so an outbox only grows by replies it must send, and those are bounded
/// by the requests in flight.
const MESH_STREAM: u64 = 1;
/// Mesh bytes waiting to be written beyond which client input is not read.
const MESH_HIGH_WATER: usize = 4 << 20;

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
    /// Answered with this error at END.
    Error(u16, ErrorBody),
}

struct Rest {
    target: Target,
    body: Vec<u8>,
    too_large: bool,
}

/// A node's receiving connection (SSE or WebSocket).
struct Receiver {
    node: Arc<str>,
    idx: NodeIdx,
    conn: ConnId,
    /// Still the node's receiving connection in the switch.
    online: bool,
    /// WebSocket (else SSE).
    ws: bool,
    /// WebSocket message being assembled.
    message: Vec<u8>,
    message_kind: u8,
    last_relet: u64,
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
struct Pending {
    input: usize,
    slot: usize,
    id: u64,
    /// The WebSocket request id (`None`: a REST request).
    ws_id: Option<u64>,
    shape: Shape,
}

/// The mesh to the other switch instances (fission).
struct Mesh {
    /// Per instance: the output index of its link (`None` for this instance).
    output_of: Vec<Option<usize>>,
    /// Per input: the instance it comes from, if it is a mesh input.
    peer_of_input: Vec<Option<usize>>,
    readers: Vec<MeshReader>,
    pending: HashMap<Token, Pending>,
    next_token: Token,
}

/// The switch nukleus.
pub struct SwitchNukleus {
    config: SwitchNukleusConfig,
    core: usize,
    instance: u16,
    engine: Engine,
    mesh: Option<Mesh>,
    tokens: Tokens,
    inputs: Vec<RingReader>,
    outputs: Vec<StreamOutput>,
    is_ws: Vec<bool>,
    /// Per input: the peer's exchange slot -> our state.
    exchanges: Vec<Vec<Option<Exchange>>>,
    /// Receiving connection -> (input, slot).
    conns: HashMap<ConnId, (usize, usize)>,
    next_conn: ConnId,
    events: Vec<Output>,
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

fn close_code_of(reason: &CloseReason) -> u16 {
    match reason {
        CloseReason::Replaced => close_code::REPLACED,
        CloseReason::LeaseExpired => close_code::LEASE_EXPIRED,
        CloseReason::SlowConsumer { .. } => close_code::SLOW_CONSUMER,
    }
}

fn close_name(reason: &CloseReason) -> &'static str {
    match reason {
        CloseReason::Replaced => "replaced",
        CloseReason::LeaseExpired => "lease_expired",
        CloseReason::SlowConsumer { .. } => "slow_consumer",
    }
}

/// The node of a WaitMsg path: `/v1/nodes/{node}/messages` or `/v1/ws/{node}`.
pub fn wait_msg_node(path: &str) -> Option<Result<String, ApiError>> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let node = match segments.as_slice() {
        [v, "nodes", node, "messages"] if *v == api::VERSION => node,
        [v, "ws", node] if *v == api::VERSION => node,
        _ => return None,
    };
    Some(
        auth::percent_decode(node)
            .ok_or_else(|| ApiError::BadRequest(format!("bad percent-encoding in {node:?}"))),
    )
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
        let (engine, mesh) = if peers.is_empty() {
            (
                Engine::Single(Box::new(Switch::new(config.switch.clone()))),
                None,
            )
        } else {
            let count = peers.len() + 1;
            let mut output_of = vec![None; count];
            let mut peer_of_input = vec![None; outputs.len()];
            for &(i, peer) in &peers {
                output_of[peer] = Some(i);
                peer_of_input[i] = Some(peer);
            }
            let instance = Instance::new(InstanceConfig {
                me,
                instances: count,
                lease_ms: config.switch.lease_ms,
                limits: config.switch.limits.clone(),
            });
            let mesh = Mesh {
                output_of,
                peer_of_input,
                readers: (0..count).map(|_| MeshReader::default()).collect(),
                pending: HashMap::new(),
                next_token: 1,
            };
            (Engine::Cluster(Box::new(instance)), Some(mesh))
        };
        let clock = LeaseClock::new(config.switch.lease_ms);
        SwitchNukleus {
            engine,
            mesh,
            tokens: Tokens::new(&config.tokens),
            config,
            core,
            instance,
            inputs,
            outputs,
            is_ws,
            exchanges,
            conns: HashMap::new(),
            next_conn: 1,
            events: Vec::new(),
            dirty: Vec::new(),
            scratch: Vec::new(),
            start: Instant::now(),
            clock,
            now_ms: 0,
            timestamp: 0,
            requests: 0,
            refused: 0,
            refused_resets: 0,
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

    fn on_frame(&mut self, input: usize, f: Frame<'_>) {
        let slot = SlotIds::slot(f.stream_id());
        let reply = frame::is_reply(f.stream_id());
        if f.type_id() == frame::BEGIN && !reply {
            self.on_begin(input, slot, f);
            // A request without a body carries FIN on its BEGIN instead of a separate END.
            let opened =
                matches!(self.exchanges[input].get(slot), Some(Some(x)) if x.id == f.stream_id());
            if f.flags() & frame::FLAG_FIN != 0 && opened {
                self.on_end(input, slot);
            }
            return;
        }
        let Some(Some(x)) = self.exchanges[input].get_mut(slot) else {
            return;
        };
        if x.id != f.stream_id() | 1 {
            return;
        }
        match (f.type_id(), reply) {
            (frame::WINDOW, true) => {
                x.send.on_window(f.acknowledge(), f.maximum(), f.padding());
                self.mark(input, slot);
            }
            (frame::DATA, false) => {
                if let Err(e) = x.recv.on_data(f.reserved()) {
                    tracing::warn!(core = self.core, error = %e, "peer broke the input window");
                    self.teardown(input, slot, true, true);
                    return;
                }
                let padding = (f.reserved() as u64).saturating_sub(f.payload().len() as u64);
                x.recv.release(padding);
                x.held += f.payload().len() as u64;
                self.on_data(input, slot, f);
                self.mark(input, slot);
            }
            (frame::FLUSH, false) if f.extension() == b"ping" => {
                if let Role::Receiver(r) = &mut x.role {
                    if r.online {
                        let _ = self.engine.relet(&r.node, self.now_ms);
                        r.last_relet = self.now_ms;
                    }
                }
            }
            (frame::END, false) => self.on_end(input, slot),
            (frame::ABORT, false) => {
                x.request_ended = true;
                self.teardown(input, slot, false, true);
            }
            (frame::RESET, true) => {
                x.reply_ended = true;
                self.teardown(input, slot, true, false);
            }
            _ => {}
        }
    }

    /// Ends an exchange abnormally: RESET our input (if `reset`) and ABORT our reply (if
    /// `abort`) unless already ended; a receiving connection goes offline.
    fn teardown(&mut self, input: usize, slot: usize, reset: bool, abort: bool) {
        self.receiver_gone(input, slot);
        let timestamp = self.timestamp;
        let Some(Some(x)) = self.exchanges[input].get_mut(slot) else {
            return;
        };
        let tx = &mut self.outputs[input].tx;
        if reset && !x.request_ended {
            let _ = tx.reset(&header(x.id, timestamp), &[]);
        }
        if abort && !x.reply_ended {
            let _ = tx.abort(&header(x.id ^ 1, timestamp), &[]);
        }
        self.exchanges[input][slot] = None;
    }

    /// A full ring refused a frame of stream `id` to output `output`: that exchange is torn
    /// down on both of its streams (the ring defers what does not fit) and counted. A mesh
    /// record refused stays in its outbox and goes out later: nothing is lost there.
    fn on_refused(&mut self, output: usize, id: u64) {
        if self.outputs[output].role.is_mesh() {
            return;
        }
        let slot = SlotIds::slot(id);
        match self.exchanges[output].get(slot) {
            Some(Some(x)) if x.id == id | 1 => {}
            _ => return,
        }
        tracing::warn!(core = self.core, peer = %self.outputs[output].peer, "stream buffer full: closing the exchange whose frame it refused");
        self.refused_resets += 1;
        self.teardown(output, slot, true, true);
    }

    /// The exchange's receiving connection is gone: take the node offline (once).
    fn receiver_gone(&mut self, input: usize, slot: usize) {
        let Some(Some(x)) = self.exchanges[input].get_mut(slot) else {
            return;
        };
        if let Role::Receiver(r) = &mut x.role {
            self.conns.remove(&r.conn);
            if r.online {
                r.online = false;
                self.engine.connection_closed(r.conn, &mut self.events);
            }
        }
    }

    fn on_begin(&mut self, input: usize, slot: usize, f: Frame<'_>) {
        let id = f.stream_id();
        let ws = self.is_ws[input];
        self.requests += 1;
        let mut x = Exchange {
            id,
            ws,
            recv: RecvWindow::new(self.config.window),
            // http pre-grants the reply window in its BEGIN (ws grants with WINDOW frames).
            send: SendWindow::default(),
            held: 0,
            request_ended: false,
            reply_begun: false,
            reply_ended: false,
            out: VecDeque::new(),
            out_sent: 0,
            out_bytes: 0,
            end_with: None,
            role: Role::Done,
            dirty: false,
            awaiting: VecDeque::new(),
        };
        x.send.on_window(f.acknowledge(), f.maximum(), 0);
        let extension = f.extension();
        let head_bytes = if ws {
            extension
                .split_first()
                .and_then(|(&n, rest)| rest.get(n as usize..))
        } else {
            Some(extension)
        };
        let Some(head) = head_bytes.and_then(RequestHead::parse) else {
            tracing::error!(
                core = self.core,
                "malformed BEGIN extension: refusing stream"
            );
            let tx = &mut self.outputs[input].tx;
            let _ = tx.reset(&header(id, self.timestamp), &[]);
            let _ = tx.abort(&header(id ^ 1, self.timestamp), &[]);
            return;
        };
        self.scratch.clear();
        if ws {
            self.begin_ws(&mut x, &head);
        } else {
            self.begin_http(&mut x, &head);
        }
        let tx = &mut self.outputs[input].tx;
        if !x.reply_begun {
            // REST: the reply begins at END; nothing to send yet.
        } else {
            let _ = tx.begin(&header(id ^ 1, self.timestamp), 0, &self.scratch);
        }
        let (acknowledge, maximum) = x.recv.announce();
        let _ = tx.window(
            &Header {
                stream_id: id,
                timestamp: self.timestamp,
                acknowledge,
                maximum,
                ..Header::default()
            },
            0,
        );
        if let Role::Receiver(r) = &x.role {
            self.conns.insert(r.conn, (input, slot));
        }
        let table = &mut self.exchanges[input];
        if table.len() <= slot {
            table.resize_with(slot + 1, || None);
        }
        table[slot] = Some(x);
        self.mark(input, slot);
    }

    /// Authenticates a WaitMsg and opens the receiving connection; on success the exchange
    /// becomes a [`Receiver`]. Errors come back as (HTTP status, body).
    fn open_receiver(
        &mut self,
        head: &RequestHead<'_>,
        node: Result<String, ApiError>,
        ws: bool,
    ) -> Result<Receiver, (u16, ErrorBody)> {
        let node = node.map_err(|e| (e.status(), e.body()))?;
        let token = auth::bearer(head.header("authorization"))
            .map(str::to_string)
            .or_else(|| auth::query_param(head.query(), "token"));
        self.tokens
            .check(token.as_deref(), Need::Node(&node))
            .map_err(|e| (e.status(), auth_body(&e)))?;
        let address = auth::query_param(head.query(), "address")
            .or_else(|| {
                head.header("x-node-address")
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .map(str::to_string)
            })
            .unwrap_or_default();
        let conn = self.next_conn;
        let session = self
            .engine
            .wait_msg(&node, &address, conn, self.now_ms, &mut self.events)
            .map_err(|e| {
                let e = ApiError::from(e);
                (e.status(), e.body())
            })?;
        self.next_conn += 1;
        Ok(Receiver {
            node: Arc::from(node.as_str()),
            idx: session.node,
            conn,
            online: true,
            ws,
            message: Vec::new(),
            message_kind: WS_TEXT,
            last_relet: self.now_ms,
        })
    }

    fn begin_ws(&mut self, x: &mut Exchange, head: &RequestHead<'_>) {
        let node = match wait_msg_node(head.path()) {
            Some(node) => node,
            None => Err(ApiError::NotFound(head.path().to_string())),
        };
        match self.open_receiver(head, node, true) {
            Ok(r) => {
                // The reply BEGIN accepts the upgrade: ws sends the 101 now.
                x.reply_begun = true;
                x.role = Role::Receiver(r);
            }
            Err((status, body)) => {
                // Refused before accepting: END without BEGIN, and the client gets this HTTP
                // status (401, 403, ...) instead of a 101.
                self.refused += 1;
                let mut refusal = Vec::new();
                nukleus_ws::app::encode_refusal(&mut refusal, status, &body.error.message);
                x.end_with = Some(refusal);
            }
        }
    }

    fn begin_http(&mut self, x: &mut Exchange, head: &RequestHead<'_>) {
        let path = head.path();
        if let Some(node) = wait_msg_node(path) {
            let wants_events = head
                .header("accept")
                .is_some_and(|v| contains_ignore_case(v, b"text/event-stream"));
            if head.method != "GET" {
                let e = ApiError::MethodNotAllowed {
                    method: head.method.to_string(),
                    path: path.to_string(),
                };
                x.role = self.rest_error(e.status(), e.body());
            } else if !wants_events {
                let body = error_body(
                    "not_acceptable",
                    "WaitMsg needs a WebSocket upgrade (at /v1/ws/{node}) or `Accept: text/event-stream`".into(),
                );
                x.role = self.rest_error(406, body);
            } else {
                match self.open_receiver(head, node, false) {
                    Ok(r) => {
                        x.reply_begun = true;
                        ext::encode_response(
                            &mut self.scratch,
                            200,
                            [
                                ("Content-Type", &b"text/event-stream"[..]),
                                ("Cache-Control", &b"no-cache"[..]),
                            ]
                            .into_iter(),
                        );
                        x.role = Role::Receiver(r);
                    }
                    Err((status, body)) => x.role = self.rest_error(status, body),
                }
            }
            return;
        }
        let token = auth::bearer(head.header("authorization"));
        if head.path().trim_end_matches('/') == "/v1/metrics" {
            x.role = if head.method != "GET" {
                let e = ApiError::MethodNotAllowed {
                    method: head.method.to_string(),
                    path: path.to_string(),
                };
                self.rest_error(e.status(), e.body())
            } else {
                match self.tokens.check(token, Need::Admin) {
                    Ok(()) => Role::Rest(Rest {
                        target: Target::Metrics,
                        body: Vec::new(),
                        too_large: false,
                    }),
                    Err(e) => self.rest_error(e.status(), auth_body(&e)),
                }
            };
            return;
        }
        x.role = match api::route(head.method, head.target) {
            Err(e) => self.rest_error(e.status(), e.body()),
            Ok(route) => {
                let need = route.node().map_or(Need::Any, Need::Node);
                match self.tokens.check(token, need) {
                    Err(e) => self.rest_error(e.status(), auth_body(&e)),
                    Ok(()) => {
                        let too_large = head
                            .header("content-length")
                            .and_then(|v| std::str::from_utf8(v).ok())
                            .and_then(|v| v.trim().parse::<u64>().ok())
                            .is_some_and(|n| n > self.config.max_request_bytes as u64);
                        Role::Rest(Rest {
                            target: Target::Api(route),
                            body: Vec::new(),
                            too_large,
                        })
                    }
                }
            }
        };
    }

    fn rest_error(&mut self, status: u16, body: ErrorBody) -> Role {
        self.refused += 1;
        Role::Rest(Rest {
            target: Target::Error(status, body),
            body: Vec::new(),
            too_large: false,
        })
    }

    fn on_data(&mut self, input: usize, slot: usize, f: Frame<'_>) {
        let max_request = self.config.max_request_bytes;
        let max_message = self.config.max_message_bytes;
        let Some(Some(x)) = self.exchanges[input].get_mut(slot) else {
            return;
        };
        let payload = f.payload();
        match &mut x.role {
            Role::Rest(rest) => {
                if !rest.too_large && rest.body.len() + payload.len() > max_request {
                    rest.too_large = true;
                    rest.body = Vec::new();
                }
                if !rest.too_large {
                    copy::extend(&mut rest.body, payload);
                }
                // The body is copied out of the ring: acknowledge it at once.
                x.recv.release(payload.len() as u64);
                x.held -= payload.len() as u64;
            }
            Role::Done => {
                x.recv.release(payload.len() as u64);
                x.held -= payload.len() as u64;
            }
            Role::Receiver(r) if !r.ws || !r.online => {
                x.recv.release(payload.len() as u64);
                x.held -= payload.len() as u64;
            }
            Role::Receiver(r) => {
                if f.flags() & FLAG_INIT != 0 {
                    r.message.clear();
                    r.message_kind = f.extension().first().copied().unwrap_or(WS_TEXT);
                }
                if r.message.len() + payload.len() > max_message {
                    let reason = format!("message larger than {max_message} bytes");
                    x.end_with = Some(close_ext(close_code::TOO_BIG, &reason));
                    r.message = Vec::new();
                    x.recv.release(payload.len() as u64);
                    x.held -= payload.len() as u64;
                    self.receiver_gone(input, slot);
                    return;
                }
                if f.flags() & (FLAG_INIT | FLAG_FIN) == FLAG_INIT | FLAG_FIN {
                    // A message in one frame is read where it lies, in the stream.
                    self.on_message(input, slot, payload);
                    return;
                }
                copy::extend(&mut r.message, payload);
                if f.flags() & FLAG_FIN != 0 {
                    let message = std::mem::take(&mut r.message);
                    self.on_message(input, slot, &message);
                    if let Some(Some(Exchange {
                        role: Role::Receiver(r),
                        ..
                    })) = self.exchanges[input].get_mut(slot)
                    {
                        if r.message.capacity() == 0 {
                            r.message = message;
                            r.message.clear();
                        }
                    }
                }
            }
        }
    }

    /// A complete WebSocket message from a node's receiving connection: an API request.
    fn on_message(&mut self, input: usize, slot: usize, message: &[u8]) {
        let now = self.now_ms;
        let lease_ms = self.engine.lease_ms();
        let Some(Some(x)) = self.exchanges[input].get_mut(slot) else {
            return;
        };
        let Role::Receiver(r) = &mut x.role else {
            return;
        };
        // Any message is a heartbeat; relet at most ten times per lease to keep the lease heap
        // small under a flood of requests.
        if now.saturating_sub(r.last_relet) * 10 >= lease_ms {
            let _ = self.engine.relet(&r.node, now);
            r.last_relet = now;
        }
        let reply = match (std::str::from_utf8(message), &mut self.engine) {
            (Ok(text), Engine::Single(switch)) => {
                api::handle_ws(switch, &r.node, text, now, &mut self.events)
            }
            (Ok(text), Engine::Cluster(_)) => {
                let (id, call) = Call::from_ws(&r.node, text);
                self.start_call(input, slot, Some(id), call);
                return;
            }
            (Err(_), _) => serde_json::to_string(&api::WsReply {
                id: 0,
                body: api::ResponseBody::Error(
                    ApiError::BadJson("message is not UTF-8 JSON".into()).body(),
                ),
            })
            .unwrap_or_default(),
        };
        if x.awaiting.is_empty() {
            x.out_bytes += reply.len();
            x.out.push_back(reply.into_bytes());
        } else {
            // Behind replies still in flight: keep request order.
            x.awaiting.push_back((0, Some(reply.into_bytes())));
        }
    }

    /// Starts a call at this instance (cluster mode); its reply goes to the exchange when it
    /// completes, here and now or after mesh replies.
    fn start_call(
        &mut self,
        input: usize,
        slot: usize,
        ws_id: Option<u64>,
        call: Result<Call, ApiError>,
    ) {
        let (Engine::Cluster(instance), Some(mesh)) = (&mut self.engine, &mut self.mesh) else {
            return;
        };
        let Some(Some(x)) = self.exchanges[input].get_mut(slot) else {
            return;
        };
        let token = mesh.next_token;
        mesh.next_token += 1;
        if ws_id.is_some() {
            x.awaiting.push_back((token, None));
        }
        let id = x.id;
        let immediate = match call {
            Err(e) => Err(e),
            Ok(call) => match Engine::start(instance, token, call, self.now_ms, &mut self.events) {
                Ok(shape) => {
                    mesh.pending.insert(
                        token,
                        Pending {
                            input,
                            slot,
                            id,
                            ws_id,
                            shape,
                        },
                    );
                    return;
                }
                Err(result) => result,
            },
        };
        self.complete(input, slot, id, ws_id, token, immediate);
    }

    /// Delivers the completions of calls in flight (cluster mode).
    fn run_done(&mut self) {
        let Engine::Cluster(instance) = &mut self.engine else {
            return;
        };
        let done: Vec<_> = instance.take_done().collect();
        for (token, reply) in done {
            let Some(mesh) = self.mesh.as_mut() else {
                return;
            };
            let Some(p) = mesh.pending.remove(&token) else {
                continue;
            };
            if let (
                Shape::Metrics,
                Ok(Reply::Metrics {
                    metrics,
                    requests,
                    refused,
                }),
            ) = (&p.shape, &reply)
            {
                if matches!(self.exchanges[p.input].get(p.slot), Some(Some(x)) if x.id == p.id) {
                    let text = metrics_text(metrics, *requests, *refused);
                    self.respond(p.input, p.slot, 200, b"text/plain; version=0.0.4", text);
                    self.mark(p.input, p.slot);
                }
                continue;
            }
            let result = crate::engine::response(p.shape, reply);
            self.complete(p.input, p.slot, p.id, p.ws_id, token, result);
        }
    }

    /// The reply of a call: a WebSocket message in request order, or the REST response.
    fn complete(
        &mut self,
        input: usize,
        slot: usize,
        id: u64,
        ws_id: Option<u64>,
        token: Token,
        result: Result<ResponseBody, ApiError>,
    ) {
        match ws_id {
            Some(ws_id) => {
                let Some(Some(x)) = self.exchanges[input].get_mut(slot) else {
                    return;
                };
                if x.id != id {
                    return;
                }
                let reply = api::WsReply {
                    id: ws_id,
                    body: result.unwrap_or_else(|e| ResponseBody::Error(e.body())),
                };
                let bytes = serde_json::to_vec(&reply).unwrap_or_default();
                if let Some(entry) = x.awaiting.iter_mut().find(|(t, _)| *t == token) {
                    entry.1 = Some(bytes);
                } else {
                    x.awaiting.push_back((token, Some(bytes)));
                }
                while x.awaiting.front().is_some_and(|(_, r)| r.is_some()) {
                    if let Some((_, Some(bytes))) = x.awaiting.pop_front() {
                        x.out_bytes += bytes.len();
                        x.out.push_back(bytes);
                    }
                }
                self.mark(input, slot);
            }
            None => {
                if !matches!(self.exchanges[input].get(slot), Some(Some(x)) if x.id == id) {
                    return;
                }
                let (status, body) = match result {
                    Ok(b) => (200, serde_json::to_vec(&b).unwrap_or_default()),
                    Err(e) => (
                        e.status(),
                        serde_json::to_vec(&e.body()).unwrap_or_default(),
                    ),
                };
                self.respond(input, slot, status, b"application/json", body);
                self.mark(input, slot);
            }
        }
    }

    /// A REST request is complete: run it and queue the response.
    fn on_request_end(&mut self, input: usize, slot: usize) {
        let Some(Some(x)) = self.exchanges[input].get_mut(slot) else {
            return;
        };
        if !matches!(x.role, Role::Rest(_)) {
            return;
        }
        let Role::Rest(rest) = std::mem::replace(&mut x.role, Role::Done) else {
            return;
        };
        let (status, content_type, body): (u16, &[u8], Vec<u8>) = match rest.target {
            Target::Error(status, body) => (
                status,
                b"application/json",
                serde_json::to_vec(&body).unwrap_or_default(),
            ),
            Target::Metrics => {
                if let (Engine::Cluster(instance), Some(mesh)) = (&mut self.engine, &mut self.mesh)
                {
                    // Sum the counters of every instance.
                    let token = mesh.next_token;
                    mesh.next_token += 1;
                    let id = x.id;
                    mesh.pending.insert(
                        token,
                        Pending {
                            input,
                            slot,
                            id,
                            ws_id: None,
                            shape: Shape::Metrics,
                        },
                    );
                    instance.query_metrics(token);
                    return;
                }
                (
                    200,
                    b"text/plain; version=0.0.4",
                    metrics_text(&self.engine.metrics(), self.requests, self.refused),
                )
            }
            Target::Api(_) if rest.too_large => {
                let body = error_body(
                    "limit_exceeded",
                    format!(
                        "request body is larger than {} bytes",
                        self.config.max_request_bytes
                    ),
                );
                (
                    413,
                    b"application/json",
                    serde_json::to_vec(&body).unwrap_or_default(),
                )
            }
            Target::Api(route) => {
                let Engine::Single(switch) = &mut self.engine else {
                    let call = Call::from_rest(&route, &rest.body);
                    self.start_call(input, slot, None, call);
                    return;
                };
                let (status, body) =
                    match api::handle(switch, &route, &rest.body, self.now_ms, &mut self.events) {
                        Ok(b) => (200, serde_json::to_vec(&b).unwrap_or_default()),
                        Err(e) => (
                            e.status(),
                            serde_json::to_vec(&e.body()).unwrap_or_default(),
                        ),
                    };
                (status, b"application/json", body)
            }
        };
        self.respond(input, slot, status, content_type, body);
    }

    /// Sends a REST response: head, `Content-Length` body, end.
    fn respond(
        &mut self,
        input: usize,
        slot: usize,
        status: u16,
        content_type: &[u8],
        body: Vec<u8>,
    ) {
        let mut length = itoa::Buffer::new();
        let length = length.format(body.len());
        self.scratch.clear();
        let mut headers: Vec<(&str, &[u8])> = vec![
            ("Content-Type", content_type),
            ("Content-Length", length.as_bytes()),
        ];
        if status == 401 {
            headers.push(("WWW-Authenticate", b"Bearer realm=\"switch\""));
        }
        ext::encode_response(&mut self.scratch, status, headers.into_iter());
        let Some(Some(x)) = self.exchanges[input].get_mut(slot) else {
            return;
        };
        let _ = self.outputs[input]
            .tx
            .begin(&header(x.id ^ 1, self.timestamp), 0, &self.scratch);
        x.reply_begun = true;
        if !body.is_empty() {
            x.out_bytes += body.len();
            x.out.push_back(body);
        }
        x.end_with = Some(Vec::new());
    }

    /// Runs the switch's outputs: schedule drains, close replaced/expired/slow connections.
    fn run_events(&mut self) {
        while !self.events.is_empty() {
            let events = std::mem::take(&mut self.events);
            for event in events {
                match event {
                    Output::Pending { conn, .. } => {
                        if let Some(&(input, slot)) = self.conns.get(&conn) {
                            self.mark(input, slot);
                        }
                    }
                    Output::Close { conn, reason, node } => {
                        let Some((input, slot)) = self.conns.remove(&conn) else {
                            continue;
                        };
                        tracing::debug!(core = self.core, instance = self.instance, node = %node, %reason, "closing receiving connection");
                        let Some(Some(x)) = self.exchanges[input].get_mut(slot) else {
                            continue;
                        };
                        let Role::Receiver(r) = &mut x.role else {
                            continue;
                        };
                        r.online = false;
                        let text = reason.to_string();
                        if r.ws {
                            x.end_with = Some(close_ext(close_code_of(&reason), &text));
                        } else {
                            let mut event = b"event: close\ndata: ".to_vec();
                            let detail = serde_json::json!({
                                "reason": close_name(&reason),
                                "message": text,
                            });
                            event.extend_from_slice(detail.to_string().as_bytes());
                            event.extend_from_slice(b"\n\n");
                            x.out_bytes += event.len();
                            x.out.push_back(event);
                            x.end_with = Some(Vec::new());
                        }
                        self.mark(input, slot);
                    }
                }
            }
        }
    }

    /// End of poll for one exchange: drain pushes into the reply, send within the window,
    /// acknowledge input, end the reply when done.
    fn progress(&mut self, input: usize, slot: usize) {
        let timestamp = self.timestamp;
        let window = self.config.window;
        let Some(Some(x)) = self.exchanges[input].get_mut(slot) else {
            return;
        };
        x.dirty = false;
        let tx = &mut self.outputs[input].tx;
        let room = tx.max_payload() - 64;
        let ext_kind = [WS_TEXT];
        let mut stalled = false;
        loop {
            if x.out.is_empty() && x.reply_begun && !x.reply_ended && x.end_with.is_none() {
                if let Role::Receiver(r) = &x.role {
                    // A batch (at least 1 KiB of pushes, as below) that fits in the window
                    // and in one frame goes straight from the node's queue into the stream.
                    // It is cut to one frame's room: a longer queue leaves as several whole
                    // messages, never through `out` in pieces (which cost a copy here and
                    // a reassembly in the client).
                    let (prefix, suffix): (&[u8], &[u8]) = if r.ws {
                        (b"", b"")
                    } else {
                        (b"data: ", b"\n\n")
                    };
                    let framing = prefix.len() + suffix.len();
                    let credit = x.send.writable(MAX_BATCH);
                    let batch = (r.online && credit > 0)
                        .then(|| {
                            self.engine
                                .batch(r.idx, credit.min(room - framing).max(1024))
                        })
                        .flatten()
                        .filter(|b| b.frame_len() + framing <= credit.min(room));
                    if let Some(batch) = batch {
                        let n = batch.frame_len() + framing;
                        let h = Header {
                            stream_id: x.id ^ 1,
                            timestamp,
                            sequence: x.send.sequence,
                            ..Header::default()
                        };
                        let reserved = x.send.consume(n);
                        let (flags, extension): (u32, &[u8]) = if x.ws {
                            (FLAG_INIT | FLAG_FIN, &ext_kind)
                        } else {
                            (0, &[])
                        };
                        let Ok(dst) = tx.claim_data(&h, flags, reserved, extension, n) else {
                            x.send.sequence -= reserved as u64;
                            stalled = true;
                            break;
                        };
                        let (head, rest) = dst.split_at_mut(prefix.len());
                        let (body, tail) = rest.split_at_mut(batch.frame_len());
                        head.copy_from_slice(prefix);
                        batch.write(body);
                        tail.copy_from_slice(suffix);
                        let (pushes, bytes) = (batch.pushes, batch.queued_bytes());
                        self.engine.consume(r.idx, pushes, bytes);
                        continue;
                    }
                    // Else (a push larger than the window or a frame): through `out`, in
                    // pieces.
                    let queued = self.engine.queued(r.idx);
                    let credit = x.send.writable(MAX_BATCH);
                    if r.online && queued > 0 && credit > 0 {
                        let mut batch = Vec::new();
                        if !r.ws {
                            batch.extend_from_slice(b"data: ");
                        }
                        self.engine.drain(r.idx, credit.max(1024), &mut batch);
                        if !r.ws {
                            batch.extend_from_slice(b"\n\n");
                        }
                        x.out_bytes += batch.len();
                        x.out.push_back(batch);
                    }
                }
            }
            let Some(front) = x.out.front() else { break };
            let left = front.len() - x.out_sent;
            let n = x.send.writable(left.min(room));
            if n == 0 && left > 0 {
                break;
            }
            let mut flags = 0;
            if x.ws {
                if x.out_sent == 0 {
                    flags |= FLAG_INIT;
                }
                if n == left {
                    flags |= FLAG_FIN;
                }
            }
            let h = Header {
                stream_id: x.id ^ 1,
                timestamp,
                sequence: x.send.sequence,
                ..Header::default()
            };
            let reserved = x.send.consume(n);
            let extension: &[u8] = if x.ws { &ext_kind } else { &[] };
            let piece = &front[x.out_sent..x.out_sent + n];
            if tx.data(&h, flags, reserved, extension, piece).is_err() {
                x.send.sequence -= reserved as u64;
                stalled = true;
                break;
            }
            x.out_sent += n;
            if x.out_sent == front.len() {
                x.out_bytes -= front.len();
                x.out.pop_front();
                x.out_sent = 0;
            }
        }
        // Acknowledge input once replies are not piling up (nor calls in flight at other
        // switch instances).
        if x.held > 0 && x.out_bytes < OUT_HIGH_WATER && x.awaiting.len() < MAX_AWAITING {
            x.recv.release(x.held);
            x.held = 0;
        }
        if !x.request_ended && x.recv.window_due() {
            x.recv.maximum = window;
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
        if x.out.is_empty() && !x.reply_ended {
            if let Some(extension) = x.end_with.take() {
                // A WebSocket exchange that never began is a refusal: END alone.
                if !x.reply_begun && !x.ws {
                    let _ = tx.begin(&header(x.id ^ 1, timestamp), 0, &[]);
                    x.reply_begun = true;
                }
                let h = Header {
                    stream_id: x.id ^ 1,
                    timestamp,
                    sequence: x.send.sequence,
                    ..Header::default()
                };
                if tx.end(&h, &extension).is_err() {
                    x.end_with = Some(extension);
                    stalled = true;
                } else {
                    x.reply_ended = true;
                }
            }
        }
        if x.reply_ended && x.request_ended {
            self.receiver_gone(input, slot);
            self.exchanges[input][slot] = None;
        } else if stalled {
            // The ring is full: try again next poll.
            x.dirty = true;
            self.dirty.push((input, slot));
        }
    }

    /// A frame on the mesh from switch instance `peer`: its DATA carries mesh records.
    fn on_mesh_frame(&mut self, peer: usize, type_id: u32, bytes: &[u8]) {
        let f = match Frame::new(type_id, bytes) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(core = self.core, error = %e, "malformed mesh frame");
                return;
            }
        };
        if f.type_id() != frame::DATA {
            return;
        }
        let (Engine::Cluster(instance), Some(mesh)) = (&mut self.engine, &mut self.mesh) else {
            return;
        };
        let events = &mut self.events;
        let core = self.core;
        mesh.readers[peer].feed(f.payload(), |record| match Msg::decode(record) {
            Ok(msg) => instance.on_mesh(peer, msg, events),
            Err(e) => tracing::error!(core, peer, error = %e, "undecodable mesh record"),
        });
    }

    /// Writes the mesh outboxes into the rings to the other instances, as much as fits.
    fn flush_mesh(&mut self) {
        let (Engine::Cluster(instance), Some(mesh)) = (&mut self.engine, &mut self.mesh) else {
            return;
        };
        for (peer, output) in mesh.output_of.iter().enumerate() {
            let Some(output) = *output else { continue };
            let tx = &mut self.outputs[output].tx;
            let room = tx.max_payload() - 64;
            let outbox = instance.outbox(peer);
            let mut sent = 0;
            while sent < outbox.len() {
                let n = (outbox.len() - sent).min(room);
                let h = header(MESH_STREAM, self.timestamp);
                if tx.data(&h, 0, 0, &[], &outbox[sent..sent + n]).is_err() {
                    break;
                }
                sent += n;
            }
            outbox.drain(..sent);
        }
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

fn auth_body(e: &AuthError) -> ErrorBody {
    error_body(e.code(), e.to_string())
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// The switch's counters in Prometheus text format.
pub fn metrics_text(m: &Metrics, requests: u64, refused: u64) -> Vec<u8> {
    let rows: [(&str, &str, &str, u64); 13] = [
        ("switch_ports", "gauge", "Ports registered", m.ports),
        (
            "switch_nodes_online",
            "gauge",
            "Nodes with a receiving connection",
            m.nodes_online,
        ),
        (
            "switch_registrations_total",
            "counter",
            "Ports newly registered",
            m.registrations,
        ),
        (
            "switch_registration_conflicts_total",
            "counter",
            "Registrations refused: owned by another node",
            m.registration_conflicts,
        ),
        (
            "switch_releases_total",
            "counter",
            "Ports released, any reason",
            m.releases,
        ),
        (
            "switch_release_notifications_total",
            "counter",
            "Release notifications queued",
            m.release_notifications,
        ),
        (
            "switch_messages_sent_total",
            "counter",
            "Message pushes queued",
            m.messages_sent,
        ),
        (
            "switch_messages_dropped_total",
            "counter",
            "Message targets dropped (unknown port, owner offline)",
            m.messages_dropped,
        ),
        (
            "switch_slow_consumer_disconnects_total",
            "counter",
            "Nodes disconnected as slow consumers",
            m.slow_consumer_disconnects,
        ),
        (
            "switch_lease_expiries_total",
            "counter",
            "Nodes whose lease expired",
            m.lease_expiries,
        ),
        (
            "switch_replaced_connections_total",
            "counter",
            "Receiving connections replaced by a new WaitMsg",
            m.replaced_connections,
        ),
        (
            "switch_requests_total",
            "counter",
            "Exchanges opened (REST requests and receiving connections)",
            requests,
        ),
        (
            "switch_requests_refused_total",
            "counter",
            "Requests refused before reaching the switch (auth, routing)",
            refused,
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, value) in rows {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    }
    out.into_bytes()
}

impl Nukleus for SwitchNukleus {
    fn kind(&self) -> &'static str {
        "switch"
    }

    fn poll(&mut self, context: &PollContext) -> usize {
        self.timestamp = context.timestamp;
        self.now_ms = self.now_ms(context.now);
        let mut work = 0;
        if let Engine::Cluster(instance) = &mut self.engine {
            instance.set_exchange_counts(self.requests, self.refused);
        }
        let mut inputs = std::mem::take(&mut self.inputs);
        // While the mesh is backed up, take no new client requests (mesh input is always read).
        let backed_up = match &self.engine {
            Engine::Cluster(c) => c.outbox_bytes() > MESH_HIGH_WATER,
            Engine::Single(_) => false,
        };
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
            && self
                .engine
                .next_deadline()
                .is_some_and(|d| d <= self.now_ms)
        {
            work += self.engine.tick(self.now_ms, &mut self.events);
            self.run_events();
            self.run_done();
        }
        self.clock.wake_at(self.engine.next_deadline());
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
        let mesh_waiting = match &self.engine {
            Engine::Cluster(c) => c.outbox_bytes() > 0,
            Engine::Single(_) => false,
        };
        let soon = soon.or(mesh_waiting.then(Instant::now));
        self.engine
            .next_deadline()
            .map(|ms| self.start + Duration::from_millis(self.clock.raw_wake_of(ms)))
            .into_iter()
            .chain(soon)
            .min()
    }

    fn gauges(&self, out: &mut Vec<(&'static str, u64)>) {
        let m = self.engine.metrics();
        out.push(("ports", m.ports));
        out.push(("streams_reset_ring_full_total", self.refused_resets));
        out.push(("nodes_online", m.nodes_online));
        out.push(("messages_sent_total", m.messages_sent));
        out.push(("messages_dropped_total", m.messages_dropped));
        out.push(("requests_total", self.requests));
        let open = self
            .exchanges
            .iter()
            .flatten()
            .filter(|x| x.is_some())
            .count();
        out.push(("exchanges", open as u64));
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
