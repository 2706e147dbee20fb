//! What the switch nukleus runs: the whole switch in one instance ([`Switch`], every call
//! answered at once), or one instance among several ([`Instance`], calls that need other
//! instances answered when their mesh replies arrive). The nukleus talks to both through
//! [`Engine`].

use crate::api::{self, ApiError, ResponseBody, WsRequest};
use crate::cluster::{Instance, Token};
use crate::nodes::{ConnId, Drained};
use crate::ports::NodeIdx;
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
    SendMsg(Vec<(Vec<String>, String)>),
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
    /// The call of a REST request.
    pub fn from_rest(route: &api::Route, body: &[u8]) -> Result<Call, ApiError> {
        Ok(match route {
            api::Route::RegPort { node } => {
                let req: api::RegPortRequest = json(body)?;
                Call::RegPort {
                    node: node.clone(),
                    ports: req.ports,
                    subscribe: req.subscribe,
                }
            }
            api::Route::UnRegPort { node } => Call::UnRegPort {
                node: node.clone(),
                ports: json::<api::PortsRequest>(body)?.ports,
            },
            api::Route::Relet { node } => Call::Relet { node: node.clone() },
            api::Route::SendMsg => Call::SendMsg(api::send_batch(json(body)?)?),
            api::Route::QueryPort => Call::QueryPort(json::<api::PortsRequest>(body)?.ports),
            api::Route::QueryNode => Call::QueryNode(json::<api::QueryNodeRequest>(body)?.nodes),
        })
    }

    /// The call of a WebSocket request from `node`'s receiving connection, with its id.
    pub fn from_ws(node: &str, text: &str) -> (u64, Result<Call, ApiError>) {
        let req = match serde_json::from_str::<WsRequest>(text) {
            Ok(req) => req,
            Err(e) => return (ws_id(text), Err(ApiError::BadJson(e.to_string()))),
        };
        let node = node.to_string();
        match req {
            WsRequest::Regport { id, body } => (
                id,
                Ok(Call::RegPort {
                    node,
                    ports: body.ports,
                    subscribe: body.subscribe,
                }),
            ),
            WsRequest::Unregport { id, body } => (
                id,
                Ok(Call::UnRegPort {
                    node,
                    ports: body.ports,
                }),
            ),
            WsRequest::Sendmsg { id, body } => (id, api::send_batch(body).map(Call::SendMsg)),
            WsRequest::Queryport { id, body } => (id, Ok(Call::QueryPort(body.ports))),
            WsRequest::Querynode { id, body } => (id, Ok(Call::QueryNode(body.nodes))),
            WsRequest::Relet { id } => (id, Ok(Call::Relet { node })),
        }
    }
}

fn json<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadJson(e.to_string()))
}

/// Best effort: the `id` of a WebSocket request that failed to parse as a whole.
fn ws_id(text: &str) -> u64 {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: u64,
    }
    serde_json::from_str::<IdOnly>(text).map_or(0, |v| v.id)
}

/// The reply body of a completed call.
pub fn response(shape: Shape, reply: Result<Reply, SwitchError>) -> Result<ResponseBody, ApiError> {
    let reply = reply?;
    Ok(match (shape, reply) {
        (Shape::RegPort(ports), Reply::RegPort(r)) => api::reg_port_response(ports, r),
        (Shape::UnRegPort(ports), Reply::UnRegPort(r)) => api::unreg_port_response(ports, r),
        (Shape::SendMsg, Reply::SendMsg(r)) => api::send_msg_response(r),
        (Shape::QueryPort(ports), Reply::QueryPort(r)) => api::query_port_response(ports, r),
        (Shape::QueryNode(nodes), Reply::QueryNode(r)) => api::query_node_response(nodes, r),
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
                instance.reg_port(token, &node, ports.clone(), subscribe, out);
                Ok(Shape::RegPort(ports))
            }
            Call::UnRegPort { node, ports } => {
                instance.unreg_port(token, &node, ports.clone(), out);
                Ok(Shape::UnRegPort(ports))
            }
            Call::SendMsg(messages) => {
                instance.send_msg(token, messages, out);
                Ok(Shape::SendMsg)
            }
            Call::QueryPort(ports) => {
                instance.query_port(token, ports.clone());
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
