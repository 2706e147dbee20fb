//! The whole switch in one instance: the degenerate cluster of one. Every call completes at
//! once, through the same [`SwitchEngine`] outputs as a cluster instance's.

use std::collections::VecDeque;

use super::{Completion, SwitchEngine};
use crate::api;
use crate::cluster::Token;
use crate::nodes::{ConnId, Drained};
use crate::ports::NodeIdx;
use crate::queue::Batch;
use crate::switch::{Config, Metrics, Output, Session, Switch, SwitchError};

/// [`Switch`] behind the [`SwitchEngine`] interface.
#[derive(Debug)]
pub struct SingleEngine {
    switch: Switch,
    /// What the switch said for receiving connections, in order: written by the switch,
    /// moved to `ready` when polled.
    events: Vec<Output>,
    ready: VecDeque<Output>,
    done: VecDeque<(Token, Completion)>,
}

impl SingleEngine {
    /// A switch with `config`, empty.
    pub fn new(config: Config) -> SingleEngine {
        SingleEngine {
            switch: Switch::new(config),
            events: Vec::new(),
            ready: VecDeque::new(),
            done: VecDeque::new(),
        }
    }

    /// The switch itself (tests, embedders).
    pub fn switch(&self) -> &Switch {
        &self.switch
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
        self.switch
            .wait_msg(node, address, conn, now, &mut self.events)
    }

    fn handle_relet(&mut self, node: &str, now: u64) -> Result<u64, SwitchError> {
        self.switch.relet(node, now)
    }

    fn handle_connection_closed(&mut self, conn: ConnId) -> bool {
        self.switch.connection_closed(conn, &mut self.events)
    }

    fn handle_timeout(&mut self, now: u64) -> usize {
        self.switch.tick(now, &mut self.events)
    }

    fn handle_rest(&mut self, token: Token, route: &api::Route, body: &[u8], now: u64) {
        let result = api::handle(&mut self.switch, route, body, now, &mut self.events);
        self.done.push_back((token, Completion::Rest(result)));
    }

    fn handle_ws(&mut self, token: Token, node: &str, text: &str, now: u64) {
        let reply = api::handle_ws(&mut self.switch, node, text, now, &mut self.events);
        self.done.push_back((token, Completion::Ws(reply)));
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
