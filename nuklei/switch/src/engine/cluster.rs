//! One switch instance of several (see [`crate::cluster`]) behind the [`SwitchEngine`]
//! interface: calls are parsed into [`Call`]s and started at the instance; they complete when
//! every part has answered, here or over the mesh.

use std::collections::VecDeque;
use std::sync::Arc;

use hashbrown::HashMap;

use super::{completion, response, Call, Completion, Shape, SwitchEngine, WatcherCall};
use crate::api::{self, ApiError, ResponseBody};
use crate::auth::Grant;
use crate::cluster::{Instance, InstanceConfig, Token};
use crate::mesh::Msg;
use crate::nodes::{ConnId, Drained};
use crate::ports::NodeIdx;
use crate::queue::Batch;
use crate::switch::{CloseReason, Metrics, Output, Reply, Session, SwitchError};
use streams::LentFrame;

/// A call in flight: what its reply needs, and its WebSocket request id (`None`: REST).
#[derive(Debug)]
struct InFlight {
    shape: Shape,
    ws_id: Option<u64>,
}

/// [`Instance`] behind the [`SwitchEngine`] interface.
pub struct ClusterEngine {
    instance: Instance,
    events: Vec<Output>,
    ready: VecDeque<Output>,
    in_flight: HashMap<Token, InFlight>,
    done: VecDeque<(Token, Completion)>,
}

impl ClusterEngine {
    /// Instance `config.me` of `config.instances`.
    pub fn new(config: InstanceConfig) -> ClusterEngine {
        ClusterEngine {
            instance: Instance::new(config),
            events: Vec::new(),
            ready: VecDeque::new(),
            in_flight: HashMap::new(),
            done: VecDeque::new(),
        }
    }

    /// The number of instances of the cluster.
    pub fn instances(&self) -> usize {
        self.instance.instances()
    }

    /// Starts `call` under `token`: it completes here and now (Relet, errors) or when the
    /// instance reports it done.
    fn start(
        &mut self,
        token: Token,
        call: Result<(Call, Option<u64>), ApiError>,
        ws_id: Option<u64>,
        now: u64,
    ) {
        let instance = &mut self.instance;
        let out = &mut self.events;
        let at_once = |result| Err(result);
        let shape = match call {
            Err(e) => at_once(Err(e)),
            Ok((call, Some(session))) if scoped_node(&call).is_some() => {
                match instance.check_session(scoped_node(&call).unwrap_or_default(), session) {
                    Err(e) => at_once(Err(e.into())),
                    Ok(()) => Self::run(instance, out, token, call, now),
                }
            }
            Ok((call, _)) => Self::run(instance, out, token, call, now),
        };
        match shape {
            Ok(shape) => {
                self.in_flight.insert(token, InFlight { shape, ws_id });
            }
            Err(result) => self.done.push_back((token, completion(ws_id, result))),
        }
        self.collect();
    }

    /// Starts `call` at the instance: the shape of its reply, or its result at once.
    fn run(
        instance: &mut Instance,
        out: &mut Vec<Output>,
        token: Token,
        call: Call,
        now: u64,
    ) -> Result<Shape, Result<ResponseBody, ApiError>> {
        Ok(match call {
            Call::RegPort {
                node,
                ports,
                subscribe,
                if_owner,
            } => {
                // The instance keeps its copy until the shards answer (to roll back).
                let expected = if_owner.as_ref().map(|o| o.as_deref());
                let ports = Arc::new(ports);
                instance.reg_port_shared(token, &node, ports.clone(), subscribe, expected, out);
                Shape::RegPort(ports)
            }
            Call::UnRegPort { node, ports } => {
                instance.unreg_port(token, &node, &ports, out);
                Shape::UnRegPort(ports)
            }
            Call::SendMsg { batch, ack } => {
                instance.send_msg(token, batch, ack, out);
                Shape::SendMsg
            }
            Call::QueryPort(ports) => {
                instance.query_port(token, &ports);
                Shape::QueryPort(ports)
            }
            Call::QueryNode(nodes) => {
                instance.query_node(token, nodes.clone());
                Shape::QueryNode(nodes)
            }
            Call::Relet { node } => {
                return Err(instance
                    .relet(&node, now)
                    .map(|deadline| api::relet_response(deadline, instance.nodes().lease_ms()))
                    .map_err(ApiError::from))
            }
            Call::Watch { node, request } => {
                instance.watch(token, &node, request, out);
                Shape::Watch
            }
            Call::Unwatch { node, watch } => {
                return Err(instance
                    .unwatch(&node, watch)
                    .map(|()| ResponseBody::Unwatch(api::UnwatchResponse { unwatched: watch }))
                    .map_err(ApiError::from))
            }
            Call::ListPorts(page) => {
                instance.list_ports(token, page);
                Shape::Listing
            }
            Call::ListNodes(page) => {
                instance.list_nodes(token, page);
                Shape::Listing
            }
            Call::NodePorts { node, page } => {
                instance.node_ports(token, &node, page);
                Shape::Listing
            }
            Call::Handover { node, to, ports } => {
                instance.handover(token, &node, &to, &ports, out);
                Shape::Handover(ports)
            }
            Call::Ack { node, upto } => {
                return Err(instance
                    .ack(&node, upto, out)
                    .map(|acknowledged| ResponseBody::Ack(api::AckResponse { acknowledged }))
                    .map_err(ApiError::from))
            }
        })
    }

    /// Moves the instance's completed operations to `done`.
    fn collect(&mut self) {
        for (token, reply) in self.instance.take_done() {
            let Some(call) = self.in_flight.remove(&token) else {
                continue;
            };
            let completion = match (call.shape, reply) {
                (
                    Shape::Metrics,
                    Ok(Reply::Metrics {
                        metrics,
                        requests,
                        refused,
                    }),
                ) => Completion::Metrics {
                    metrics,
                    requests,
                    refused,
                },
                (shape, reply) => completion(call.ws_id, response(shape, reply)),
            };
            self.done.push_back((token, completion));
        }
    }
}

/// The node a node-scoped call acts for.
fn scoped_node(call: &Call) -> Option<&str> {
    match call {
        Call::RegPort { node, .. }
        | Call::UnRegPort { node, .. }
        | Call::Relet { node }
        | Call::Watch { node, .. }
        | Call::Unwatch { node, .. }
        | Call::Handover { node, .. }
        | Call::Ack { node, .. } => Some(node),
        _ => None,
    }
}

impl SwitchEngine for ClusterEngine {
    fn handle_wait_msg(
        &mut self,
        node: &str,
        address: &str,
        conn: ConnId,
        now: u64,
    ) -> Result<Session, SwitchError> {
        let session = self
            .instance
            .wait_msg(node, address, conn, now, &mut self.events);
        self.collect();
        session
    }

    fn handle_open_watcher(&mut self, conn: ConnId) -> Session {
        self.instance.open_watcher(conn)
    }

    fn handle_watcher_call(
        &mut self,
        token: Token,
        watcher: NodeIdx,
        call: WatcherCall,
        ws_id: Option<u64>,
    ) {
        match call {
            WatcherCall::Watch(request) => {
                self.in_flight.insert(
                    token,
                    InFlight {
                        shape: Shape::Watch,
                        ws_id,
                    },
                );
                self.instance
                    .watcher_watch(token, watcher, request, &mut self.events);
            }
            WatcherCall::Unwatch(watch) => {
                let result = self
                    .instance
                    .watcher_unwatch(watcher, watch)
                    .map(|()| ResponseBody::Unwatch(api::UnwatchResponse { unwatched: watch }))
                    .map_err(ApiError::from);
                self.done.push_back((token, completion(ws_id, result)));
            }
        }
        self.collect();
    }

    fn handle_relet(&mut self, node: &str, now: u64) -> Result<u64, SwitchError> {
        self.instance.relet(node, now)
    }

    fn handle_connection_closed(&mut self, conn: ConnId) -> bool {
        let receiving = self.instance.connection_closed(conn, &mut self.events);
        self.collect();
        receiving
    }

    fn handle_close(&mut self, conn: ConnId, reason: CloseReason) -> bool {
        let receiving = self.instance.close(conn, reason, &mut self.events);
        self.collect();
        receiving
    }

    fn handle_timeout(&mut self, now: u64) -> usize {
        let expired = self.instance.tick(now, &mut self.events);
        self.collect();
        expired
    }

    fn handle_rest(
        &mut self,
        token: Token,
        route: &api::Route,
        body: &[u8],
        now: u64,
        grant: &dyn Grant,
    ) {
        let call = Call::from_rest(route, body, grant);
        self.start(token, call, None, now);
    }

    fn handle_ws(&mut self, token: Token, node: &str, text: &str, now: u64, grant: &dyn Grant) {
        let (id, call) = Call::from_ws(node, text, grant);
        self.start(token, call, Some(id), now);
    }

    fn handle_metrics(&mut self, token: Token, requests: u64, refused: u64) {
        self.instance.set_exchange_counts(requests, refused);
        self.in_flight.insert(
            token,
            InFlight {
                shape: Shape::Metrics,
                ws_id: None,
            },
        );
        self.instance.query_metrics(token);
        self.collect();
    }

    fn handle_exchange_counts(&mut self, requests: u64, refused: u64) {
        self.instance.set_exchange_counts(requests, refused);
    }

    fn handle_mesh(&mut self, from: usize, msg: Msg<'_>) {
        self.instance.on_mesh(from, msg, &mut self.events);
        self.collect();
    }

    fn poll_event(&mut self) -> Option<Output> {
        if self.ready.is_empty() {
            self.ready.extend(self.events.drain(..));
        }
        self.ready.pop_front()
    }

    fn poll_done(&mut self) -> Option<(Token, Completion)> {
        self.done.pop_front()
    }

    fn poll_timeout(&self) -> Option<u64> {
        self.instance.next_deadline()
    }

    fn poll_transmit(&mut self, peer: usize) -> Option<&mut Vec<u8>> {
        Some(self.instance.outbox(peer))
    }

    fn transmit_bytes(&self) -> usize {
        self.instance.outbox_bytes()
    }

    fn lend_frame(&mut self, peer: usize, frame: LentFrame) -> Result<(), LentFrame> {
        self.instance.outbox_to(peer).lend(frame)
    }

    fn take_frame(&mut self, peer: usize, written_only: bool) -> Option<(LentFrame, usize)> {
        let outbox = self.instance.outbox_to(peer);
        if written_only {
            outbox.take_written_frame()
        } else {
            outbox.take_frame()
        }
    }

    fn holds_frame(&self, peer: usize) -> bool {
        self.instance.holds_frame(peer)
    }

    fn queued(&self, node: NodeIdx) -> usize {
        self.instance.node(node).map_or(0, |n| n.queued())
    }

    fn batch(&self, node: NodeIdx, max_bytes: usize) -> Option<Batch<'_>> {
        self.instance.nodes().batch(node, max_bytes)
    }

    fn consume(&mut self, node: NodeIdx, pushes: usize, bytes: usize) -> Drained {
        self.instance.consume(node, pushes, bytes)
    }

    fn drain(&mut self, node: NodeIdx, max_bytes: usize, out: &mut Vec<u8>) -> Drained {
        self.instance.drain(node, max_bytes, out)
    }

    fn metrics(&self) -> Metrics {
        self.instance.metrics()
    }

    fn lease_ms(&self) -> u64 {
        self.instance.nodes().lease_ms()
    }
}
