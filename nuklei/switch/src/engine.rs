//! What the switch nukleus runs: the whole switch in one instance ([`Switch`], every call
//! answered at once), or one instance among several ([`Instance`], calls that need other
//! instances answered when their mesh replies arrive). The nukleus talks to both through
//! [`Engine`].

use std::borrow::Cow;

use crate::api::{self, ApiError, ResponseBody};
use crate::batch::SendBatch;
use crate::cluster::{Instance, Token};
use crate::nodes::{ConnId, Drained};
use crate::ports::NodeIdx;
use crate::queue::Batch;
use crate::request::{self, Request, Str};
use crate::switch::{Metrics, Output, Reply, Session, Switch, SwitchError};

/// The switch state behind a nukleus.
pub enum Engine {
    /// All ports and nodes in this instance.
    Single(Box<Switch>),
    /// One of several instances; see [`crate::cluster`].
    Cluster(Box<Instance>),
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

/// The reply body of a completed call.
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

impl Engine {
    /// Starts `call` in a cluster instance under `token`; returns what the reply needs, or the
    /// reply itself when the call completes here and now (Relet).
    pub fn start(
        instance: &mut Instance,
        token: Token,
        call: Call,
        now: u64,
        out: &mut Vec<Output>,
    ) -> Result<Shape, Result<ResponseBody, ApiError>> {
        match call {
            Call::RegPort {
                node,
                ports,
                subscribe,
            } => {
                // The instance keeps its copy until the shards answer (to roll back).
                instance.reg_port(token, &node, ports.clone(), subscribe, out);
                Ok(Shape::RegPort(ports))
            }
            Call::UnRegPort { node, ports } => {
                instance.unreg_port(token, &node, &ports, out);
                Ok(Shape::UnRegPort(ports))
            }
            Call::SendMsg(messages) => {
                instance.send_msg(token, messages, out);
                Ok(Shape::SendMsg)
            }
            Call::QueryPort(ports) => {
                instance.query_port(token, &ports);
                Ok(Shape::QueryPort(ports))
            }
            Call::QueryNode(nodes) => {
                instance.query_node(token, nodes.clone());
                Ok(Shape::QueryNode(nodes))
            }
            Call::Relet { node } => Err(instance
                .relet(&node, now)
                .map(|deadline| api::relet_response(deadline, instance.nodes().lease_ms()))
                .map_err(ApiError::from)),
        }
    }

    /// WaitMsg.
    pub fn wait_msg(
        &mut self,
        node: &str,
        address: &str,
        conn: ConnId,
        now: u64,
        out: &mut Vec<Output>,
    ) -> Result<Session, SwitchError> {
        match self {
            Engine::Single(s) => s.wait_msg(node, address, conn, now, out),
            Engine::Cluster(c) => c.wait_msg(node, address, conn, now, out),
        }
    }

    /// Relet.
    pub fn relet(&mut self, node: &str, now: u64) -> Result<u64, SwitchError> {
        match self {
            Engine::Single(s) => s.relet(node, now),
            Engine::Cluster(c) => c.relet(node, now),
        }
    }

    /// A connection closed.
    pub fn connection_closed(&mut self, conn: ConnId, out: &mut Vec<Output>) -> bool {
        match self {
            Engine::Single(s) => s.connection_closed(conn, out),
            Engine::Cluster(c) => c.connection_closed(conn, out),
        }
    }

    /// Leases.
    pub fn tick(&mut self, now: u64, out: &mut Vec<Output>) -> usize {
        match self {
            Engine::Single(s) => s.tick(now, out),
            Engine::Cluster(c) => c.tick(now, out),
        }
    }

    /// The next lease deadline.
    pub fn next_deadline(&self) -> Option<u64> {
        match self {
            Engine::Single(s) => s.next_deadline(),
            Engine::Cluster(c) => c.next_deadline(),
        }
    }

    /// Pushes queued for a node homed here.
    pub fn queued(&self, node: NodeIdx) -> usize {
        match self {
            Engine::Single(s) => s.node(node).map_or(0, |n| n.queued()),
            Engine::Cluster(c) => c.node(node).map_or(0, |n| n.queued()),
        }
    }

    /// The oldest pushes of a node that fit in a frame of `max_bytes`, to copy out in place
    /// and then take off the queue with [`Engine::consume`].
    pub fn batch(&self, node: NodeIdx, max_bytes: usize) -> Option<Batch<'_>> {
        match self {
            Engine::Single(s) => s.batch(node, max_bytes),
            Engine::Cluster(c) => c.nodes().batch(node, max_bytes),
        }
    }

    /// Take the batch last returned by [`Engine::batch`] off the node's queue.
    pub fn consume(&mut self, node: NodeIdx, pushes: usize, bytes: usize) -> Drained {
        match self {
            Engine::Single(s) => s.consume(node, pushes, bytes),
            Engine::Cluster(c) => c.consume(node, pushes, bytes),
        }
    }

    /// Drain a node's pushes.
    pub fn drain(&mut self, node: NodeIdx, max_bytes: usize, out: &mut Vec<u8>) -> Drained {
        match self {
            Engine::Single(s) => s.drain(node, max_bytes, out),
            Engine::Cluster(c) => c.drain(node, max_bytes, out),
        }
    }

    /// Counters of this instance.
    pub fn metrics(&self) -> Metrics {
        match self {
            Engine::Single(s) => s.metrics(),
            Engine::Cluster(c) => c.metrics(),
        }
    }

    /// Lease duration (ms).
    pub fn lease_ms(&self) -> u64 {
        match self {
            Engine::Single(s) => s.nodes().lease_ms(),
            Engine::Cluster(c) => c.nodes().lease_ms(),
        }
    }
}
