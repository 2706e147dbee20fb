//! The switch engine: what the switch nukleus drives, sans I/O, in the quinn-proto style.
//! Inputs are `handle_*` calls (a WaitMsg, a relet, a closed connection, the clock, an API
//! call under a token, a mesh record); outputs are `poll_*` calls (events for receiving
//! connections, completed calls, the next lease deadline, mesh bytes to send) and the push
//! queues the nukleus drains into frames.
//!
//! One trait, two engines: [`single::SingleEngine`] (all ports and nodes here, every call
//! completed at once; the degenerate cluster of one) and [`cluster::ClusterEngine`] (one
//! instance of several, calls that need other instances completed when their mesh replies
//! arrive). The nukleus is written once against [`SwitchEngine`].

use std::borrow::Cow;

use crate::api::{self, ApiError, ResponseBody};
use crate::batch::SendBatch;
use crate::cluster::Token;
use crate::mesh::Msg;
use crate::nodes::{ConnId, Drained};
use crate::ports::NodeIdx;
use crate::queue::Batch;
use crate::request::{self, Request, Str};
use crate::switch::{Metrics, Output, Reply, Session, SwitchError};

pub mod cluster;
pub mod single;

/// A completed call, as [`SwitchEngine::poll_done`] hands it out.
#[derive(Debug)]
pub enum Completion {
    /// A REST call's reply body or error.
    Rest(Result<ResponseBody, ApiError>),
    /// A WebSocket request's reply message, serialized (id included).
    Ws(String),
    /// `/v1/metrics`: the counters of every instance, summed.
    Metrics {
        /// Switch counters.
        metrics: Metrics,
        /// Exchanges opened by the switch nuklei.
        requests: u64,
        /// Exchanges refused before reaching the switch (auth, routing).
        refused: u64,
    },
}

/// The switch as its nukleus drives it. Every call completes with exactly one
/// [`Completion`] under its token, at once or later; receiving connections learn of pushes
/// and closes through [`SwitchEngine::poll_event`].
pub trait SwitchEngine: Send {
    // ----- inputs -----------------------------------------------------------------------

    /// WaitMsg: `conn` becomes the receiving connection of `node`.
    fn handle_wait_msg(
        &mut self,
        node: &str,
        address: &str,
        conn: ConnId,
        now: u64,
    ) -> Result<Session, SwitchError>;

    /// A heartbeat of `node`'s receiving connection; the new lease deadline.
    fn handle_relet(&mut self, node: &str, now: u64) -> Result<u64, SwitchError>;

    /// A connection closed; whether it was a receiving connection.
    fn handle_connection_closed(&mut self, conn: ConnId) -> bool;

    /// The clock reached `now`: expire leases; how many nodes went offline.
    fn handle_timeout(&mut self, now: u64) -> usize;

    /// A REST call (`route`, request `body`) under `token`.
    fn handle_rest(&mut self, token: Token, route: &api::Route, body: &[u8], now: u64);

    /// A request message on `node`'s WebSocket under `token`.
    fn handle_ws(&mut self, token: Token, node: &str, text: &str, now: u64);

    /// `/v1/metrics` under `token`; `requests` and `refused` are this nukleus's exchange
    /// counts.
    fn handle_metrics(&mut self, token: Token, requests: u64, refused: u64);

    /// Records from switch instance `from` (cluster only).
    fn handle_mesh(&mut self, _from: usize, _msg: Msg<'_>) {}

    /// This nukleus's exchange counts, for other instances' `/v1/metrics` (cluster only).
    fn handle_exchange_counts(&mut self, _requests: u64, _refused: u64) {}

    // ----- outputs ----------------------------------------------------------------------

    /// The next event for a receiving connection (pushes pending, close).
    fn poll_event(&mut self) -> Option<Output>;

    /// The next completed call.
    fn poll_done(&mut self) -> Option<(Token, Completion)>;

    /// The next lease deadline.
    fn poll_timeout(&self) -> Option<u64>;

    /// Bytes to send to switch instance `peer` (cluster only); the caller drains what it
    /// sent.
    fn poll_transmit(&mut self, _peer: usize) -> Option<&mut Vec<u8>> {
        None
    }

    /// Bytes waiting in every mesh outbox.
    fn transmit_bytes(&self) -> usize {
        0
    }

    // ----- push queues and state --------------------------------------------------------

    /// Pushes queued for a node homed here.
    fn queued(&self, node: NodeIdx) -> usize;

    /// The oldest pushes of a node that fit in a frame of `max_bytes`, to copy out in place
    /// and then take off the queue with [`SwitchEngine::consume`].
    fn batch(&self, node: NodeIdx, max_bytes: usize) -> Option<Batch<'_>>;

    /// Takes the batch last returned by [`SwitchEngine::batch`] off the node's queue.
    fn consume(&mut self, node: NodeIdx, pushes: usize, bytes: usize) -> Drained;

    /// Drains a node's pushes as a JSON array into `out`.
    fn drain(&mut self, node: NodeIdx, max_bytes: usize, out: &mut Vec<u8>) -> Drained;

    /// Counters of this instance.
    fn metrics(&self) -> Metrics;

    /// Lease duration (ms).
    fn lease_ms(&self) -> u64;
}

/// An API call, parsed, for the node a request acts for.
#[derive(Debug)]
pub enum Call {
    /// RegPort.
    RegPort {
        /// Node.
        node: String,
        /// Ports.
        ports: Vec<String>,
        /// Subscribe to failed ports' release.
        subscribe: bool,
    },
    /// UnRegPort.
    UnRegPort {
        /// Node.
        node: String,
        /// Ports.
        ports: Vec<String>,
    },
    /// SendMsg.
    SendMsg(SendBatch),
    /// QueryPort.
    QueryPort(Vec<String>),
    /// QueryNode.
    QueryNode(Vec<String>),
    /// Relet.
    Relet {
        /// Node.
        node: String,
    },
}

/// What is needed to build the reply body once a call completes.
#[derive(Debug)]
pub enum Shape {
    /// RegPort of these ports.
    RegPort(Vec<String>),
    /// UnRegPort of these ports.
    UnRegPort(Vec<String>),
    /// SendMsg.
    SendMsg,
    /// QueryPort of these ports.
    QueryPort(Vec<String>),
    /// QueryNode of these nodes.
    QueryNode(Vec<String>),
    /// `GET /v1/metrics`: the counters of every instance.
    Metrics,
}

impl Call {
    /// The call of a parsed request for `node` (the acting node of RegPort, UnRegPort, Relet).
    pub fn from_request(node: &str, req: Request<'_>) -> Result<Call, ApiError> {
        let owned =
            |v: Vec<Str<'_>>| -> Vec<String> { v.into_iter().map(Cow::into_owned).collect() };
        Ok(match req {
            Request::RegPort { ports, subscribe } => Call::RegPort {
                node: node.to_string(),
                ports: owned(ports),
                subscribe,
            },
            Request::UnRegPort { ports } => Call::UnRegPort {
                node: node.to_string(),
                ports: owned(ports),
            },
            Request::SendMsg { messages } => {
                let mut batch = SendBatch::with_capacity(messages.len());
                for m in &messages {
                    let Some(targets) = m.targets() else {
                        return Err(ApiError::BadRequest(
                            "each message needs exactly one of \"port\" or \"ports\"".into(),
                        ));
                    };
                    batch.push(targets.iter().map(|t| t.as_ref()), &m.body);
                }
                Call::SendMsg(batch)
            }
            Request::QueryPort { ports } => Call::QueryPort(owned(ports)),
            Request::QueryNode { nodes } => Call::QueryNode(owned(nodes)),
            Request::Relet => Call::Relet {
                node: node.to_string(),
            },
        })
    }

    /// The call of a REST request.
    pub fn from_rest(route: &api::Route, body: &[u8]) -> Result<Call, ApiError> {
        let node = route.node().unwrap_or_default();
        if let api::Route::Relet { node } = route {
            return Ok(Call::Relet { node: node.clone() });
        }
        let text = std::str::from_utf8(body)
            .map_err(|e| ApiError::BadJson(format!("request body is not UTF-8: {e}")))?;
        let req =
            request::parse_body(route.op(), text).map_err(|e| ApiError::BadJson(e.to_string()))?;
        Call::from_request(node, req)
    }

    /// The call of a WebSocket request from `node`'s receiving connection, with its id.
    pub fn from_ws(node: &str, text: &str) -> (u64, Result<Call, ApiError>) {
        match request::parse_ws(text) {
            Err(e) => (request::ws_id(text), Err(ApiError::BadJson(e.to_string()))),
            Ok((id, req)) => (id, Call::from_request(node, req)),
        }
    }
}

/// The reply body of a completed call of shape `shape`.
pub fn response(shape: Shape, reply: Result<Reply, SwitchError>) -> Result<ResponseBody, ApiError> {
    let reply = reply?;
    Ok(match (shape, reply) {
        (Shape::RegPort(ports), Reply::RegPort(r)) => api::reg_port_response(&ports, r),
        (Shape::UnRegPort(ports), Reply::UnRegPort(r)) => api::unreg_port_response(&ports, r),
        (Shape::SendMsg, Reply::SendMsg(r)) => api::send_msg_response(r),
        (Shape::QueryPort(ports), Reply::QueryPort(r)) => api::query_port_response(&ports, r),
        (Shape::QueryNode(nodes), Reply::QueryNode(r)) => api::query_node_response(&nodes, r),
        (shape, reply) => {
            tracing::error!(?shape, ?reply, "switch reply does not match its call");
            return Err(ApiError::BadRequest(
                "internal error: mismatched reply".into(),
            ));
        }
    })
}
