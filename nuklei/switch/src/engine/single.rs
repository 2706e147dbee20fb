//! The whole switch in one instance: the degenerate cluster of one. Every call completes at
//! once — but an acknowledged SendMsg, which completes when its receivers acknowledged —
//! through the same [`SwitchEngine`] outputs as a cluster instance's.

use std::collections::VecDeque;

use hashbrown::HashMap;

use super::{completion, Completion, SwitchEngine, WatcherCall};
use crate::api::{self, ApiError};
use crate::auth::Grant;
use crate::cluster::Token;
use crate::nodes::{ConnId, Drained};
use crate::ports::NodeIdx;
use crate::queue::Batch;
use crate::request::{self, Parsed, Request};
use crate::switch::{CloseReason, Config, Metrics, Output, Session, Switch, SwitchError};

/// [`Switch`] behind the [`SwitchEngine`] interface.
#[derive(Debug)]
pub struct SingleEngine {
    switch: Switch,
    /// What the switch said for receiving connections, in order: written by the switch,
    /// moved to `ready` when polled.
    events: Vec<Output>,
    ready: VecDeque<Output>,
    done: VecDeque<(Token, Completion)>,
    /// Acknowledged sends waiting, with their WebSocket request id (`None`: REST).
    acked: HashMap<Token, Option<u64>>,
}

impl SingleEngine {
    /// A switch with `config`, empty.
    pub fn new(config: Config) -> SingleEngine {
        SingleEngine {
            switch: Switch::new(config),
            events: Vec::new(),
            ready: VecDeque::new(),
            done: VecDeque::new(),
            acked: HashMap::new(),
        }
    }

    /// The switch itself (tests, embedders).
    pub fn switch(&self) -> &Switch {
        &self.switch
    }

    /// Runs a parsed call of `node`'s; `ws_id`: its WebSocket request id.
    fn run(
        &mut self,
        token: Token,
        ws_id: Option<u64>,
        node: &str,
        parsed: Parsed<'_>,
        now: u64,
        grant: &dyn Grant,
    ) {
        if let Err(e) = super::call::authorize(node, &parsed.request, grant) {
            self.done.push_back((token, completion(ws_id, Err(e))));
            return;
        }
        if let Request::SendMsg {
            messages,
            ack: true,
        } = &parsed.request
        {
            let started = if messages.iter().any(|m| m.targets().is_none()) {
                Err(ApiError::BadRequest(
                    "each message needs exactly one of \"port\" or \"ports\"".into(),
                ))
            } else {
                let batch = messages
                    .iter()
                    .map(|m| (m.targets().unwrap_or_default(), m.body.as_ref(), m.escaping));
                self.switch
                    .send_msg_acked(token, batch, now, &mut self.events)
                    .map_err(ApiError::from)
            };
            match started {
                Ok(()) => {
                    self.acked.insert(token, ws_id);
                    self.collect_acked();
                }
                Err(e) => self.done.push_back((token, completion(ws_id, Err(e)))),
            }
            return;
        }
        let result = api::execute(&mut self.switch, node, parsed, now, &mut self.events);
        self.done.push_back((token, completion(ws_id, result)));
    }

    /// Acknowledged sends the switch completed.
    fn collect_acked(&mut self) {
        if self.acked.is_empty() {
            return;
        }
        for (token, report, acks) in self.switch.take_acked() {
            let ws_id = self.acked.remove(&token).flatten();
            let body = api::send_acked_response(report, acks);
            self.done.push_back((token, completion(ws_id, Ok(body))));
        }
    }
}

impl SwitchEngine for SingleEngine {
    fn handle_wait_msg(
        &mut self,
        node: &str,
        address: &str,
        conn: ConnId,
        now: u64,
    ) -> Result<Session, SwitchError> {
        let session = self
            .switch
            .wait_msg(node, address, conn, now, &mut self.events);
        self.collect_acked();
        session
    }

    fn handle_open_watcher(&mut self, conn: ConnId) -> Session {
        self.switch.open_watcher(conn)
    }

    fn handle_watcher_call(
        &mut self,
        token: Token,
        watcher: NodeIdx,
        call: WatcherCall,
        ws_id: Option<u64>,
    ) {
        let result = match call {
            WatcherCall::Watch(request) => self
                .switch
                .watcher_watch(watcher, request, &mut self.events)
                .map(api::watch_response),
            WatcherCall::Unwatch(watch) => self
                .switch
                .watcher_unwatch(watcher, watch)
                .map(|()| api::ResponseBody::Unwatch(api::UnwatchResponse { unwatched: watch })),
        };
        let result = result.map_err(ApiError::from);
        self.done.push_back((token, completion(ws_id, result)));
    }

    fn handle_relet(&mut self, node: &str, now: u64) -> Result<u64, SwitchError> {
        self.switch.relet(node, now)
    }

    fn handle_connection_closed(&mut self, conn: ConnId) -> bool {
        let receiving = self.switch.connection_closed(conn, &mut self.events);
        self.collect_acked();
        receiving
    }

    fn handle_close(&mut self, conn: ConnId, reason: CloseReason) -> bool {
        let receiving = self.switch.close(conn, reason, &mut self.events);
        self.collect_acked();
        receiving
    }

    fn handle_timeout(&mut self, now: u64) -> usize {
        let expired = self.switch.tick(now, &mut self.events);
        self.collect_acked();
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
        match api::parse_rest(route, body) {
            Ok(parsed) => {
                let node = route.node().unwrap_or_default();
                self.run(token, None, node, parsed, now, grant)
            }
            Err(e) => self.done.push_back((token, Completion::Rest(Err(e)))),
        }
    }

    fn handle_ws(&mut self, token: Token, node: &str, text: &str, now: u64, grant: &dyn Grant) {
        match request::parse_ws(text) {
            Ok((id, parsed)) => {
                let parsed = api::with_watch_id(id, parsed);
                self.run(token, Some(id), node, parsed, now, grant);
                // An ack may complete acknowledged sends.
                self.collect_acked();
            }
            Err(e) => {
                let result = Err(ApiError::BadJson(e.to_string()));
                let id = request::ws_id(text);
                self.done.push_back((token, completion(Some(id), result)));
            }
        }
    }

    fn handle_metrics(&mut self, token: Token, requests: u64, refused: u64) {
        let metrics = self.switch.metrics();
        self.done.push_back((
            token,
            Completion::Metrics {
                metrics,
                requests,
                refused,
            },
        ));
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
        self.switch.next_deadline()
    }

    fn queued(&self, node: NodeIdx) -> usize {
        self.switch.node(node).map_or(0, |n| n.queued())
    }

    fn batch(&self, node: NodeIdx, max_bytes: usize) -> Option<Batch<'_>> {
        self.switch.batch(node, max_bytes)
    }

    fn consume(&mut self, node: NodeIdx, pushes: usize, bytes: usize) -> Drained {
        self.switch.consume(node, pushes, bytes)
    }

    fn drain(&mut self, node: NodeIdx, max_bytes: usize, out: &mut Vec<u8>) -> Drained {
        self.switch.drain(node, max_bytes, out)
    }

    fn metrics(&self) -> Metrics {
        self.switch.metrics()
    }

    fn lease_ms(&self) -> u64 {
        self.switch.nodes().lease_ms()
    }
}
