//! The versioned switch API: serde bodies for REST and WebSocket, and a sans-I/O dispatcher.
//!
//! # REST (`/v1`)
//!
//! | method and path | request body | response body |
//! |---|---|---|
//! | `POST /v1/nodes/{node}/ports` | `{"ports":["a","b"],"subscribe":true}` | `{"registered":1,"failed":[{"port":"b","owner":"n2","address":"10.0.0.2:7000"}]}` |
//! | `DELETE /v1/nodes/{node}/ports` | `{"ports":["a"]}` | `{"released":["a"],"not_owned":[],"unknown":[]}` |
//! | `POST /v1/nodes/{node}/relet` | none | `{"lease_deadline":12000,"lease_ms":10000}` |
//! | `POST /v1/messages` | `{"messages":[{"port":"p","body":"text"},{"ports":["a","b"],"body":"x"}]}` | `{"delivered":3,"dropped":0}` |
//! | `POST /v1/ports/query` | `{"ports":["a"]}` | `{"ports":[{"port":"a","owner":"n1","address":"…"}]}` |
//! | `POST /v1/nodes/query` | `{"nodes":["n1"]}` | `{"nodes":[{"node":"n1","online":true,"address":"…","ports":1}]}` |
//!
//! A message `port` of `""` broadcasts to every node with a receiving connection. Bodies are
//! opaque strings. Errors are `{"error":{"code":"limit_exceeded","message":"…"}}` with a 4xx/5xx
//! status. WaitMsg (the receiving connection) and connection close are connection events the
//! HTTP/WebSocket layer reports to [`Switch::wait_msg`] and [`Switch::connection_closed`].
//!
//! # WebSocket
//!
//! The same operations as text messages on the node's connection, with an `op` and a
//! caller-chosen `id` echoed in the reply: `{"op":"regport","id":1,"ports":["a"]}` →
//! `{"id":1,"registered":1,"failed":[]}`. Ops: `regport`, `unregport`, `sendmsg`, `queryport`,
//! `querynode`, `relet`. Pushes from the switch are JSON arrays (see [`Switch::drain`]), so a
//! client tells replies (objects) from pushes (arrays) by the first byte.
//!
//! Authentication is the caller's: resolve the [`Route`] first with [`route`], check the
//! bearer token against [`Route::node`], then call [`handle`].
//!
//! The request types here are the API's description for clients (serde); the switch itself
//! reads requests with the borrowing single-pass parser of [`crate::request`].

use serde::{Deserialize, Serialize};

mod coord;

pub use coord::*;

use crate::limits::LimitError;
use crate::request::{self, Message, Op, Parsed, Request, Str};
use crate::switch::{
    NodeInfo, Output, PortOwner, RegPortReply, SendReport, Switch, SwitchError, UnRegPortReply,
};

/// The API version prefix.
pub const VERSION: &str = "v1";

/// `POST /v1/nodes/{node}/ports` and op `regport`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegPortRequest {
    /// Ports to register.
    pub ports: Vec<String>,
    /// Subscribe to release notifications of the ports that fail.
    #[serde(default)]
    pub subscribe: bool,
}

/// A port that failed to register, with its owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedPortBody {
    /// The port.
    pub port: String,
    /// The owner node id (`null`: a compare-and-register found the port free).
    pub owner: Option<String>,
    /// The owner's address (`null` if it announced none).
    pub address: Option<String>,
}

/// Reply to RegPort.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegPortResponse {
    /// Ports newly registered.
    pub registered: usize,
    /// Ports owned by another node.
    pub failed: Vec<FailedPortBody>,
}

/// A list of ports: `DELETE /v1/nodes/{node}/ports`, `POST /v1/ports/query`, ops `unregport`
/// and `queryport`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortsRequest {
    /// The ports.
    pub ports: Vec<String>,
}

/// Reply to UnRegPort.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnRegPortResponse {
    /// Released.
    pub released: Vec<String>,
    /// Owned by another node; left alone.
    pub not_owned: Vec<String>,
    /// Not registered.
    pub unknown: Vec<String>,
}

/// One message of SendMsg: `port` (unicast, `""` = broadcast) or `ports` (multicast).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageBody {
    /// Single target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// Several targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<String>>,
    /// Opaque body.
    pub body: String,
}

impl MessageBody {
    /// The targets: `ports` if given, else `[port]`.
    pub fn targets(&self) -> Result<&[String], ApiError> {
        match (&self.port, &self.ports) {
            (None, Some(ports)) => Ok(ports),
            (Some(port), None) => Ok(std::slice::from_ref(port)),
            _ => Err(ApiError::BadRequest(
                "each message needs exactly one of \"port\" or \"ports\"".into(),
            )),
        }
    }
}

/// `POST /v1/messages` and op `sendmsg`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendMsgRequest {
    /// The batch, delivered in this order.
    pub messages: Vec<MessageBody>,
}

/// Reply to SendMsg.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendMsgResponse {
    /// Pushes queued.
    pub delivered: u64,
    /// Targets dropped (unknown port or owner gone).
    pub dropped: u64,
    /// With `"ack": true`: pushes the receivers acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged: Option<u64>,
    /// With `"ack": true`: pushes not acknowledged (receiver offline, or no acknowledgement
    /// within a lease).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unacknowledged: Option<u64>,
}

/// One port of a QueryPort reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortInfoBody {
    /// The port.
    pub port: String,
    /// Owner node id, `null` if unregistered.
    pub owner: Option<String>,
    /// Owner address, `null` if unregistered or the owner announced none.
    pub address: Option<String>,
}

/// Reply to QueryPort.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryPortResponse {
    /// In request order.
    pub ports: Vec<PortInfoBody>,
}

/// `POST /v1/nodes/query` and op `querynode`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryNodeRequest {
    /// Node ids.
    pub nodes: Vec<String>,
}

/// One node of a QueryNode reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfoBody {
    /// Node id.
    pub node: String,
    /// Has a receiving connection.
    pub online: bool,
    /// Announced address (`null` when offline or none was announced).
    pub address: Option<String>,
    /// Ports held.
    pub ports: usize,
}

/// Reply to QueryNode.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryNodeResponse {
    /// In request order.
    pub nodes: Vec<NodeInfoBody>,
}

/// Reply to Relet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReletResponse {
    /// New lease deadline (ms, switch clock).
    pub lease_deadline: u64,
    /// Lease duration (ms).
    pub lease_ms: u64,
}

/// Error details.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable machine-readable code.
    pub code: String,
    /// Human-readable message naming what was wrong (and the limit, for limits).
    pub message: String,
}

/// Error reply body: `{"error":{"code":…,"message":…}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Any reply body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ResponseBody {
    /// RegPort.
    RegPort(RegPortResponse),
    /// UnRegPort.
    UnRegPort(UnRegPortResponse),
    /// SendMsg.
    SendMsg(SendMsgResponse),
    /// QueryPort.
    QueryPort(QueryPortResponse),
    /// QueryNode.
    QueryNode(QueryNodeResponse),
    /// Relet.
    Relet(ReletResponse),
    /// Watch.
    Watch(WatchResponse),
    /// Unwatch.
    Unwatch(UnwatchResponse),
    /// A page of ports.
    ListPorts(ListPortsResponse),
    /// A page of nodes.
    ListNodes(ListNodesResponse),
    /// A page of a node's ports.
    NodePorts(NodePortsResponse),
    /// Handover.
    Handover(HandoverResponse),
    /// Ack.
    Ack(AckResponse),
    /// Error.
    Error(ErrorBody),
}

/// A WebSocket request: `{"op":"regport","id":1,...}` (the client's view; the switch parses
/// with [`request::parse_ws`], which accepts the same shapes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum WsRequest {
    /// Register ports.
    Regport {
        /// Request id, echoed.
        id: u64,
        /// Body.
        #[serde(flatten)]
        body: RegPortRequest,
    },
    /// Release ports.
    Unregport {
        /// Request id, echoed.
        id: u64,
        /// Body.
        #[serde(flatten)]
        body: PortsRequest,
    },
    /// Send messages.
    Sendmsg {
        /// Request id, echoed.
        id: u64,
        /// Body.
        #[serde(flatten)]
        body: SendMsgRequest,
    },
    /// Query ports.
    Queryport {
        /// Request id, echoed.
        id: u64,
        /// Body.
        #[serde(flatten)]
        body: PortsRequest,
    },
    /// Query nodes.
    Querynode {
        /// Request id, echoed.
        id: u64,
        /// Body.
        #[serde(flatten)]
        body: QueryNodeRequest,
    },
    /// Heartbeat.
    Relet {
        /// Request id, echoed.
        id: u64,
    },
}

/// A WebSocket reply: `{"id":1, ...reply fields}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WsReply {
    /// The request id (0 if the request could not be parsed).
    pub id: u64,
    /// The reply.
    #[serde(flatten)]
    pub body: ResponseBody,
}

/// API errors.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The body is not the JSON the route expects.
    #[error("invalid request body: {0}")]
    BadJson(String),
    /// The request is well-formed JSON but not a valid request.
    #[error("{0}")]
    BadRequest(String),
    /// No such route.
    #[error("no route for {0}")]
    NotFound(String),
    /// The route exists with other methods.
    #[error("method {method} not allowed for {path}")]
    MethodNotAllowed {
        /// The method.
        method: String,
        /// The path.
        path: String,
    },
    /// The credentials may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The switch refused.
    #[error(transparent)]
    Switch(#[from] SwitchError),
}

impl From<LimitError> for ApiError {
    fn from(e: LimitError) -> Self {
        ApiError::Switch(SwitchError::Limit(e))
    }
}

impl ApiError {
    /// HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadJson(_) | ApiError::BadRequest(_) => 400,
            ApiError::NotFound(_) => 404,
            ApiError::MethodNotAllowed { .. } => 405,
            ApiError::Forbidden(_) => 403,
            ApiError::Switch(e) => match e {
                SwitchError::Limit(LimitError::TooManyPortsForNode { .. }) => 409,
                SwitchError::Limit(LimitError::QueueFull { .. }) => 503,
                SwitchError::Limit(_) => 413,
                SwitchError::NotOnline(_)
                | SwitchError::ConnectionInUse { .. }
                | SwitchError::WatcherGone => 409,
                SwitchError::EmptyPortName | SwitchError::EmptyNodeId => 400,
                SwitchError::ShardFull => 507,
                SwitchError::Misdirected { .. } => 421,
                SwitchError::Watch(crate::watch::WatchError::Unknown(_)) => 404,
                SwitchError::Watch(_) | SwitchError::SessionReplaced { .. } => 409,
                SwitchError::BadCursor(_) | SwitchError::Invalid(_) => 400,
            },
        }
    }

    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadJson(_) => "bad_json",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::Switch(e) => match e {
                SwitchError::Limit(_) => "limit_exceeded",
                SwitchError::NotOnline(_) => "node_not_online",
                SwitchError::WatcherGone => "watcher_gone",
                SwitchError::ConnectionInUse { .. } => "connection_in_use",
                SwitchError::EmptyPortName => "empty_port",
                SwitchError::EmptyNodeId => "empty_node",
                SwitchError::ShardFull => "shard_full",
                SwitchError::Misdirected { .. } => "misdirected",
                SwitchError::Watch(crate::watch::WatchError::Exists(_)) => "watch_exists",
                SwitchError::Watch(crate::watch::WatchError::TooMany { .. }) => "limit_exceeded",
                SwitchError::Watch(crate::watch::WatchError::Unknown(_)) => "unknown_watch",
                SwitchError::BadCursor(_) => "bad_cursor",
                SwitchError::Invalid(_) => "bad_request",
                SwitchError::SessionReplaced { .. } => "session_replaced",
            },
        }
    }

    /// The error as a reply body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code().to_string(),
                message: self.to_string(),
            },
        }
    }
}

/// A resolved REST route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `POST /v1/nodes/{node}/ports`.
    RegPort {
        /// Node id (percent-decoded).
        node: String,
    },
    /// `DELETE /v1/nodes/{node}/ports`.
    UnRegPort {
        /// Node id (percent-decoded).
        node: String,
    },
    /// `POST /v1/nodes/{node}/relet`.
    Relet {
        /// Node id (percent-decoded).
        node: String,
    },
    /// `POST /v1/messages`.
    SendMsg,
    /// `POST /v1/ports/query`.
    QueryPort,
    /// `POST /v1/nodes/query`.
    QueryNode,
    /// `POST /v1/nodes/{node}/watches`.
    Watch {
        /// Node id.
        node: String,
    },
    /// `DELETE /v1/nodes/{node}/watches/{watch}`.
    Unwatch {
        /// Node id.
        node: String,
        /// The watch.
        watch: u64,
    },
    /// `GET /v1/ports`.
    ListPorts(crate::listing::PageRequest),
    /// `GET /v1/nodes`.
    ListNodes(crate::listing::PageRequest),
    /// `GET /v1/nodes/{node}/ports`.
    NodePorts {
        /// Whose ports.
        node: String,
        /// The page (`after`, `limit`).
        page: crate::listing::PageRequest,
    },
    /// `POST /v1/nodes/{node}/handover`.
    Handover {
        /// The giving node.
        node: String,
    },
    /// `POST /v1/nodes/{node}/ack`.
    Ack {
        /// Node id.
        node: String,
    },
}

impl Route {
    /// The operation of this route.
    pub fn op(&self) -> Op {
        match self {
            Route::RegPort { .. } => Op::RegPort,
            Route::UnRegPort { .. } => Op::UnRegPort,
            Route::Relet { .. } => Op::Relet,
            Route::SendMsg => Op::SendMsg,
            Route::QueryPort => Op::QueryPort,
            Route::QueryNode => Op::QueryNode,
            Route::Watch { .. } => Op::Watch,
            Route::Unwatch { .. } => Op::Unwatch,
            Route::ListPorts(_) => Op::ListPorts,
            Route::ListNodes(_) => Op::ListNodes,
            Route::NodePorts { .. } => Op::NodePorts,
            Route::Handover { .. } => Op::Handover,
            Route::Ack { .. } => Op::Ack,
        }
    }

    /// The node the request acts for, if any (for authorization).
    pub fn node(&self) -> Option<&str> {
        match self {
            Route::RegPort { node }
            | Route::UnRegPort { node }
            | Route::Relet { node }
            | Route::Watch { node }
            | Route::Unwatch { node, .. }
            | Route::Handover { node }
            | Route::Ack { node } => Some(node),
            _ => None,
        }
    }
}

/// Resolve `method` and `path` (query string allowed, ignored) to a route.
pub fn route(method: &str, path: &str) -> Result<Route, ApiError> {
    let path_only = path.split(['?', '#']).next().unwrap_or_default();
    let segments: Vec<&str> = path_only.trim_matches('/').split('/').collect();
    let not_allowed = || ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: path_only.to_string(),
    };
    let post = |r: Route| {
        if method == "POST" {
            Ok(r)
        } else {
            Err(not_allowed())
        }
    };
    let query = path
        .split_once('?')
        .map(|(_, q)| q.split('#').next().unwrap_or(q));
    let get = |r: Route| {
        if method == "GET" {
            Ok(r)
        } else {
            Err(not_allowed())
        }
    };
    match segments.as_slice() {
        [v, "messages"] if *v == VERSION => post(Route::SendMsg),
        [v, "ports", "query"] if *v == VERSION => post(Route::QueryPort),
        [v, "nodes", "query"] if *v == VERSION => post(Route::QueryNode),
        [v, "ports"] if *v == VERSION => get(Route::ListPorts(page_query(query)?)),
        [v, "nodes"] if *v == VERSION => get(Route::ListNodes(page_query(query)?)),
        [v, "nodes", node, "ports"] if *v == VERSION => {
            let node = percent_decode(node)?;
            match method {
                "POST" => Ok(Route::RegPort { node }),
                "DELETE" => Ok(Route::UnRegPort { node }),
                "GET" => Ok(Route::NodePorts {
                    node,
                    page: page_query(query)?,
                }),
                _ => Err(not_allowed()),
            }
        }
        [v, "nodes", node, "relet"] if *v == VERSION => post(Route::Relet {
            node: percent_decode(node)?,
        }),
        [v, "nodes", node, "watches"] if *v == VERSION => post(Route::Watch {
            node: percent_decode(node)?,
        }),
        [v, "nodes", node, "watches", watch] if *v == VERSION => {
            let watch = watch
                .parse::<u64>()
                .map_err(|_| ApiError::BadRequest(format!("watch id {watch:?} is not a number")))?;
            let node = percent_decode(node)?;
            if method == "DELETE" {
                Ok(Route::Unwatch { node, watch })
            } else {
                Err(not_allowed())
            }
        }
        [v, "nodes", node, "handover"] if *v == VERSION => post(Route::Handover {
            node: percent_decode(node)?,
        }),
        [v, "nodes", node, "ack"] if *v == VERSION => post(Route::Ack {
            node: percent_decode(node)?,
        }),
        _ => Err(ApiError::NotFound(path_only.to_string())),
    }
}

fn percent_decode(s: &str) -> Result<String, ApiError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| ApiError::BadRequest(format!("bad percent-encoding in {s:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| ApiError::BadRequest(format!("node id {s:?} is not UTF-8 after decoding")))
}

/// The request of a REST call: from its route (listings, unwatch), or its body (a relet's
/// may be empty).
pub fn parse_rest<'a>(route: &'a Route, body: &'a [u8]) -> Result<Parsed<'a>, ApiError> {
    if let Some(parsed) = route_request(route) {
        return Ok(parsed);
    }
    if matches!(route, Route::Relet { .. }) && body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Parsed {
            request: Request::Relet,
            session: None,
        });
    }
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::BadJson(format!("request body is not UTF-8: {e}")))?;
    request::parse_body(route.op(), text).map_err(|e| ApiError::BadJson(e.to_string()))
}

/// Run a routed REST request against the switch.
pub fn handle(
    switch: &mut Switch,
    route: &Route,
    body: &[u8],
    now: u64,
    out: &mut Vec<Output>,
) -> Result<ResponseBody, ApiError> {
    let node = route.node().unwrap_or_default();
    let parsed = parse_rest(route, body)?;
    execute(switch, node, parsed, now, out)
}

/// Run a parsed request for `node` (the acting node of node-scoped calls), in the session
/// it names if it names one.
pub fn execute(
    switch: &mut Switch,
    node: &str,
    parsed: Parsed<'_>,
    now: u64,
    out: &mut Vec<Output>,
) -> Result<ResponseBody, ApiError> {
    if let Some(session) = parsed.session {
        switch.check_session(node, session)?;
    }
    let req = parsed.request;
    if let Some(result) = coord::execute(switch, node, &req, out) {
        return result;
    }
    match req {
        Request::RegPort {
            ports, subscribe, ..
        } => reg_port(switch, node, &ports, subscribe, out),
        Request::UnRegPort { ports } => unreg_port(switch, node, &ports, out),
        Request::SendMsg {
            messages,
            ack: false,
        } => send_msg(switch, &messages, out),
        Request::SendMsg { ack: true, .. } => Err(ApiError::BadRequest(
            "acknowledged delivery completes later: run it with Switch::send_msg_acked".into(),
        )),
        Request::QueryPort { ports } => query_port(switch, &ports),
        Request::QueryNode { nodes } => query_node(switch, &nodes),
        Request::Relet => relet(switch, node, now),
        other => Err(ApiError::BadRequest(format!(
            "not a call of this switch: {other:?}"
        ))),
    }
}

/// A REST response: status and JSON body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestResponse {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Vec<u8>,
}

/// Route and run a REST request (no authorization check; use [`route`] + [`handle`] for that).
pub fn handle_rest(
    switch: &mut Switch,
    method: &str,
    path: &str,
    body: &[u8],
    now: u64,
    out: &mut Vec<Output>,
) -> RestResponse {
    let result = route(method, path).and_then(|r| handle(switch, &r, body, now, out));
    let (status, body) = match result {
        Ok(b) => (200, b),
        Err(e) => (e.status(), ResponseBody::Error(e.body())),
    };
    RestResponse {
        status,
        body: serde_json::to_vec(&body).unwrap_or_default(),
    }
}

/// Run a WebSocket text message from the connection of `node`; returns the reply text.
pub fn handle_ws(
    switch: &mut Switch,
    node: &str,
    text: &str,
    now: u64,
    out: &mut Vec<Output>,
) -> String {
    let reply = match request::parse_ws(text) {
        Err(e) => WsReply {
            id: request::ws_id(text),
            body: ResponseBody::Error(ApiError::BadJson(e.to_string()).body()),
        },
        Ok((id, parsed)) => WsReply {
            id,
            body: execute(switch, node, with_watch_id(id, parsed), now, out)
                .unwrap_or_else(|e| ResponseBody::Error(e.body())),
        },
    };
    serde_json::to_string(&reply).unwrap_or_default()
}

/// RegPort.
pub fn reg_port(
    switch: &mut Switch,
    node: &str,
    ports: &[Str<'_>],
    subscribe: bool,
    out: &mut Vec<Output>,
) -> Result<ResponseBody, ApiError> {
    let reply = switch.reg_port(node, ports, subscribe, out)?;
    Ok(reg_port_response(ports, reply))
}

/// The RegPort reply body for the request's `ports`.
pub fn reg_port_response<P>(ports: &P, reply: RegPortReply) -> ResponseBody
where
    P: std::ops::Index<usize> + ?Sized,
    P::Output: AsRef<str>,
{
    ResponseBody::RegPort(RegPortResponse {
        registered: reply.registered,
        failed: reply
            .failed
            .into_iter()
            .map(|f| FailedPortBody {
                port: ports[f.index].as_ref().to_string(),
                owner: announced(&f.owner),
                address: announced(&f.address),
            })
            .collect(),
    })
}

/// UnRegPort.
pub fn unreg_port(
    switch: &mut Switch,
    node: &str,
    ports: &[Str<'_>],
    out: &mut Vec<Output>,
) -> Result<ResponseBody, ApiError> {
    let reply = switch.unreg_port(node, ports, out)?;
    Ok(unreg_port_response(ports, reply))
}

/// The UnRegPort reply body for the request's `ports`.
pub fn unreg_port_response<S: AsRef<str>>(ports: &[S], reply: UnRegPortReply) -> ResponseBody {
    let take = |v: Vec<usize>| -> Vec<String> {
        v.into_iter()
            .map(|i| ports[i].as_ref().to_string())
            .collect()
    };
    ResponseBody::UnRegPort(UnRegPortResponse {
        released: take(reply.released),
        not_owned: take(reply.not_owned),
        unknown: take(reply.unknown),
    })
}

/// SendMsg.
pub fn send_msg(
    switch: &mut Switch,
    messages: &[Message<'_>],
    out: &mut Vec<Output>,
) -> Result<ResponseBody, ApiError> {
    if messages.iter().any(|m| m.targets().is_none()) {
        return Err(ApiError::BadRequest(
            "each message needs exactly one of \"port\" or \"ports\"".into(),
        ));
    }
    let batch = messages
        .iter()
        .map(|m| (m.targets().unwrap_or_default(), m.body.as_ref(), m.escaping));
    let report = switch.send_msg_as(batch, out)?;
    Ok(send_msg_response(report))
}

/// The SendMsg reply body.
pub fn send_msg_response(report: SendReport) -> ResponseBody {
    ResponseBody::SendMsg(SendMsgResponse {
        delivered: report.delivered,
        dropped: report.dropped,
        ..SendMsgResponse::default()
    })
}

/// The reply body of an acknowledged SendMsg.
pub fn send_acked_response(report: SendReport, acks: crate::ack::AckReport) -> ResponseBody {
    ResponseBody::SendMsg(SendMsgResponse {
        delivered: report.delivered,
        dropped: report.dropped,
        acknowledged: Some(acks.acknowledged),
        unacknowledged: Some(acks.unacknowledged),
    })
}

/// A WebSocket watch without an explicit id is named by its request's id (the client knows
/// it before the reply, so events that come first are not a surprise).
pub fn with_watch_id(id: u64, mut parsed: Parsed<'_>) -> Parsed<'_> {
    if let Request::Watch(spec) = &mut parsed.request {
        spec.watch.get_or_insert(id);
    }
    parsed
}

/// QueryPort.
pub fn query_port(switch: &Switch, ports: &[Str<'_>]) -> Result<ResponseBody, ApiError> {
    let owners = switch.query_port(ports)?;
    Ok(query_port_response(ports, owners))
}

/// The QueryPort reply body for the request's `ports`.
pub fn query_port_response<S: AsRef<str>>(
    ports: &[S],
    owners: Vec<Option<PortOwner>>,
) -> ResponseBody {
    ResponseBody::QueryPort(QueryPortResponse {
        ports: ports
            .iter()
            .zip(owners)
            .map(|(port, o)| PortInfoBody {
                port: port.as_ref().to_string(),
                owner: o.as_ref().map(|o| o.node.to_string()),
                address: o.as_ref().and_then(|o| announced(&o.address)),
            })
            .collect(),
    })
}

/// QueryNode.
pub fn query_node(switch: &Switch, nodes: &[Str<'_>]) -> Result<ResponseBody, ApiError> {
    let infos = switch.query_node(nodes)?;
    Ok(query_node_response(nodes, infos))
}

/// The QueryNode reply body for the request's `nodes`.
pub fn query_node_response<S: AsRef<str>>(
    nodes: &[S],
    infos: Vec<Option<NodeInfo>>,
) -> ResponseBody {
    ResponseBody::QueryNode(QueryNodeResponse {
        nodes: nodes
            .iter()
            .zip(infos)
            .map(|(node, info)| NodeInfoBody {
                node: node.as_ref().to_string(),
                online: info.is_some(),
                address: info.as_ref().and_then(|i| announced(&i.address)),
                ports: info.as_ref().map_or(0, |i| i.ports),
            })
            .collect(),
    })
}

/// A node's address as the API reports it: `None` (JSON `null`) when the node announced
/// none.
pub fn announced(address: &str) -> Option<String> {
    (!address.is_empty()).then(|| address.to_string())
}

/// Relet.
pub fn relet(switch: &mut Switch, node: &str, now: u64) -> Result<ResponseBody, ApiError> {
    let lease_deadline = switch.relet(node, now)?;
    Ok(relet_response(lease_deadline, switch.nodes().lease_ms()))
}

/// The Relet reply body.
pub fn relet_response(lease_deadline: u64, lease_ms: u64) -> ResponseBody {
    ResponseBody::Relet(ReletResponse {
        lease_deadline,
        lease_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route("POST", "/v1/nodes/n%3A1/ports"),
            Ok(Route::RegPort { node: "n:1".into() })
        );
        assert_eq!(
            route("DELETE", "/v1/nodes/n1/ports?x=1"),
            Ok(Route::UnRegPort { node: "n1".into() })
        );
        assert_eq!(route("POST", "/v1/messages"), Ok(Route::SendMsg));
        assert_eq!(route("POST", "/v1/ports/query"), Ok(Route::QueryPort));
        assert_eq!(route("POST", "/v1/nodes/query"), Ok(Route::QueryNode));
        assert_eq!(
            route("POST", "/v1/nodes/n1/relet"),
            Ok(Route::Relet { node: "n1".into() })
        );
        assert_eq!(route("GET", "/v1/messages").unwrap_err().status(), 405);
        assert_eq!(route("POST", "/v2/messages").unwrap_err().status(), 404);
        assert_eq!(
            route("POST", "/v1/nodes/%zz/ports").unwrap_err().status(),
            400
        );
    }

    #[test]
    fn ws_request_shapes() {
        let r: WsRequest =
            serde_json::from_str(r#"{"op":"regport","id":1,"ports":["a"],"subscribe":true}"#)
                .unwrap();
        assert_eq!(
            r,
            WsRequest::Regport {
                id: 1,
                body: RegPortRequest {
                    ports: vec!["a".into()],
                    subscribe: true
                }
            }
        );
        let r: WsRequest = serde_json::from_str(r#"{"op":"relet","id":7}"#).unwrap();
        assert_eq!(r, WsRequest::Relet { id: 7 });
        let reply = WsReply {
            id: 3,
            body: ResponseBody::SendMsg(SendMsgResponse {
                delivered: 2,
                dropped: 1,
                ..SendMsgResponse::default()
            }),
        };
        assert_eq!(
            serde_json::to_string(&reply).unwrap(),
            r#"{"id":3,"delivered":2,"dropped":1}"#
        );
    }
}
