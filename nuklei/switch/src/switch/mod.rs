//! The port switch state machine (BYPSS) for one process: typed commands in, typed outputs and
//! per-node push queues out. Sans-I/O and single-threaded: no sockets, threads or clocks; the
//! caller passes `now` (milliseconds on any monotonic clock) where time matters.
//!
//! # Decomposition
//!
//! State splits into two kinds of owner:
//!
//! * **Port shards** ([`PortShard`]) — the port table, partitioned by [`shard_of`] on the port
//!   name. A shard knows port → owner *node index*, the per-node port lists (for release on node
//!   death) and release subscriptions. It knows nothing about connections or queues, and is
//!   usable on its own.
//! * **Node home** ([`NodeRegistry`]) — for each node: id ↔ index, announced address, receiving
//!   connection, session, lease, port count and the **outbound push queue**. All pushes for a
//!   node go through this one place, which is what makes per-node FIFO order and
//!   no-duplicates a local property: a push is appended exactly once, to one queue, and
//!   drained in order.
//!
//! A request flows *resolve on shards, then act at the node home*:
//!
//! * RegPort / UnRegPort / QueryPort are split by port hash; each shard returns per-port
//!   results (success, owner index, subscribers of a released port), and the node home turns
//!   owner indices into ids and addresses and queues release notifications.
//! * SendMsg resolves each target port to its owner on its shard, then appends the messages to
//!   the owners' queues **in the order the sender listed them**. When shards run on other cores,
//!   the request handler first collects the owner of every target (one round trip per shard,
//!   in parallel), and only then walks the batch in its original order and enqueues — so a
//!   batch spanning shards cannot be reordered by which shard answered first. Two requests are
//!   ordered by the order in which their enqueue steps run at the node home, which is the only
//!   order a receiver can observe. (A port that changes owner between resolve and enqueue is
//!   the same race as a message sent just before an unregister; the message goes to the owner
//!   at resolve time — the owner of record when it was sent.)
//! * Node death (lease expiry, closed or replaced receiving connection, slow consumer) starts at
//!   the node home (which drops the queue and bumps nothing else), fans out `release_all` to
//!   every shard, and routes their subscriber lists back to the subscribers' homes.
//!
//! This type, [`Switch`], runs the node home and N shards in one thread, which is the complete
//! single-process implementation; with fission the same pieces are placed on different cores and
//! the calls between them become stream messages.

use std::sync::Arc;

use crate::json::Escaping;
use crate::limits::{LimitError, Limits};
use crate::nodes::{ConnId, Drained, Node, NodeRegistry, Push, PushOutcome, ReleaseReason};
use crate::ports::{
    shard_of, NodeIdx, Outcome, PortShard, RegisterError, SubscribeOutcome, Subscriber,
};
use crate::queue::Batch;
use crate::watch::{self, Event, Journal, OfflineReason, Watchers, What};

pub(crate) mod types;

pub use types::{
    CloseReason, Config, FailedPort, HandoverReply, ListedPort, Metrics, NodeInfo, NodeListing,
    NodePortsListing, Output, PortListing, PortOwner, RegPortReply, Reply, SendReport, Session,
    SwitchError, UnRegPortReply, WatchError, WatchReply,
};

#[derive(Clone, Copy, Debug)]
pub(crate) enum Cause {
    Closed,
    LeaseExpired,
    SlowConsumer { queued: usize, limit: usize },
    Revoked,
}

impl Cause {
    /// How the receiving connection is closed (`None`: it closed itself), counting slow
    /// consumers in `metrics`.
    pub(crate) fn close_reason(self, metrics: &mut Metrics) -> Option<CloseReason> {
        match self {
            Cause::Closed => None,
            Cause::LeaseExpired => Some(CloseReason::LeaseExpired),
            Cause::SlowConsumer { queued, limit } => {
                metrics.slow_consumer_disconnects += 1;
                Some(CloseReason::SlowConsumer { queued, limit })
            }
            Cause::Revoked => Some(CloseReason::TokenRevoked),
        }
    }

    pub(crate) fn offline_reason(self) -> OfflineReason {
        match self {
            Cause::Closed => OfflineReason::Closed,
            Cause::LeaseExpired => OfflineReason::LeaseExpired,
            Cause::SlowConsumer { .. } => OfflineReason::SlowConsumer,
            Cause::Revoked => OfflineReason::TokenRevoked,
        }
    }
}

/// Nodes a watch push overflowed, as work for `run_offline`.
pub(crate) fn slow_consumers(
    slow: Vec<(NodeIdx, usize, usize)>,
) -> impl Iterator<Item = (NodeIdx, Cause)> {
    slow.into_iter()
        .map(|(node, queued, limit)| (node, Cause::SlowConsumer { queued, limit }))
}

/// Journals `event` (instance 0: the whole switch) and fans it out to the watches.
pub(crate) fn emit(
    journal: &mut Journal,
    watchers: &mut Watchers,
    nodes: &mut NodeRegistry,
    event: &Event<'_>,
    out: &mut Vec<Output>,
    slow: &mut Vec<(NodeIdx, usize, usize)>,
) -> u64 {
    let seq = journal.append(event);
    if watchers.may_want(event.what.kind(), event.key) {
        watch::fan_out(watchers, nodes, 0, seq, event, out, slow);
    }
    seq
}

/// The port switch: node home plus N port shards, in one thread.
#[derive(Debug)]
pub struct Switch {
    pub(crate) limits: Limits,
    pub(crate) nodes: NodeRegistry,
    pub(crate) shards: Vec<PortShard>,
    pub(crate) metrics: Metrics,
    /// Every port and node event, numbered (see [`crate::watch`]).
    pub(crate) journal: Journal,
    /// The nodes' watches.
    pub(crate) watchers: Watchers,
    /// Acknowledged deliveries waiting for their receivers.
    pub(crate) acks: crate::ack::Acks,
    /// The acknowledged send being queued, if one is.
    pub(crate) ack_op: Option<u64>,
    pub(crate) next_ack_op: u64,
    /// Acknowledged sends waiting: their token and what they queued.
    pub(crate) ack_calls: hashbrown::HashMap<u64, (u64, SendReport)>,
}

impl Default for Switch {
    fn default() -> Self {
        Self::new(Config::default())
    }
}

impl Switch {
    /// A switch with `config`.
    pub fn new(config: Config) -> Self {
        let shards = config.shards.max(1);
        Switch {
            nodes: NodeRegistry::with_sessions_from(
                config.lease_ms,
                config.limits.max_queued_bytes,
                config.incarnation + 1,
            ),
            journal: Journal::new(config.limits.watch_history, config.incarnation),
            watchers: Watchers::new(1),
            acks: crate::ack::Acks::default(),
            ack_op: None,
            next_ack_op: 1,
            ack_calls: hashbrown::HashMap::new(),
            limits: config.limits,
            shards: (0..shards).map(|_| PortShard::with_random_seed()).collect(),
            metrics: Metrics::default(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The node registry (read-only).
    pub fn nodes(&self) -> &NodeRegistry {
        &self.nodes
    }

    /// The port shards (read-only).
    pub fn shards(&self) -> &[PortShard] {
        &self.shards
    }

    /// The node record at `idx`.
    pub fn node(&self, idx: NodeIdx) -> Option<&Node> {
        self.nodes.get(idx)
    }

    /// The index of node `id`.
    pub fn node_index(&self, id: &str) -> Option<NodeIdx> {
        self.nodes.lookup(id)
    }

    /// Counters and gauges.
    pub fn metrics(&self) -> Metrics {
        Metrics {
            ports: self.shards.iter().map(|s| s.len() as u64).sum(),
            nodes_online: self.nodes.online() as u64,
            watchers: self.nodes.watchers() as u64,
            ..self.metrics
        }
    }

    /// WaitMsg: `conn` becomes the receiving connection of `node`, which announces `address`.
    /// A previous receiving connection of the node is closed (`Output::Close` with
    /// [`CloseReason::Replaced`]) and all the node's ports are released (reason `replaced`).
    /// Repeating WaitMsg on the node's current connection only renews the lease.
    pub fn wait_msg(
        &mut self,
        node: &str,
        address: &str,
        conn: ConnId,
        now: u64,
        out: &mut Vec<Output>,
    ) -> Result<Session, SwitchError> {
        check_wait_msg(&self.limits, node, address)?;
        if let Some(renewed) = rewait(&mut self.nodes, node, conn, now) {
            return renewed;
        }
        let idx = self.nodes.intern(node);
        let mut replaced = false;
        if let Some(old) = self.nodes.disconnect(idx) {
            replaced = true;
            self.metrics.replaced_connections += 1;
            out.push(Output::Close {
                node: self
                    .nodes
                    .get(idx)
                    .map(|n| n.id().clone())
                    .unwrap_or_default(),
                conn: old,
                reason: CloseReason::Replaced,
            });
            self.watchers.remove_node(idx);
            let mut work = Vec::new();
            self.release_node_ports(idx, ReleaseReason::Replaced, &mut work, out);
            self.run_offline(work, out);
        }
        let session = connect(&mut self.nodes, idx, conn, address, now, replaced);
        let what = if replaced {
            What::Replaced
        } else {
            What::Online
        };
        self.emit(&Event::node(what, node, address), out);
        Ok(session)
    }

    /// Numbers and journals `event` and queues it for the watches it matches (a watcher that
    /// cannot take it goes offline as a slow consumer).
    pub(crate) fn emit(&mut self, event: &Event<'_>, out: &mut Vec<Output>) -> u64 {
        let mut slow = Vec::new();
        let seq = emit(
            &mut self.journal,
            &mut self.watchers,
            &mut self.nodes,
            event,
            out,
            &mut slow,
        );
        if !slow.is_empty() {
            self.run_offline(slow_consumers(slow).collect(), out);
        }
        seq
    }

    /// Relet: extend the lease of an online node; returns the new deadline.
    pub fn relet(&mut self, node: &str, now: u64) -> Result<u64, SwitchError> {
        let idx = self.online_index(node)?;
        self.nodes
            .relet(idx, now)
            .map_err(|_| SwitchError::NotOnline(node.to_string()))
    }

    /// A connection closed. If it was a node's receiving connection, the node goes offline and
    /// its ports are released (reason `node_offline`). Returns whether it was one.
    pub fn connection_closed(&mut self, conn: ConnId, out: &mut Vec<Output>) -> bool {
        match self.nodes.by_conn(conn) {
            Some(idx) => {
                self.run_offline(vec![(idx, Cause::Closed)], out);
                true
            }
            None => false,
        }
    }

    /// The caller closes receiving connection `conn` for `reason` (a revoked token): its
    /// node goes offline as if its lease had run out, with [`Output::Close`] for `reason`.
    pub fn close(&mut self, conn: ConnId, reason: CloseReason, out: &mut Vec<Output>) -> bool {
        let Some(idx) = self.nodes.by_conn(conn) else {
            return false;
        };
        let cause = match reason {
            CloseReason::TokenRevoked => Cause::Revoked,
            CloseReason::LeaseExpired => Cause::LeaseExpired,
            CloseReason::SlowConsumer { queued, limit } => Cause::SlowConsumer { queued, limit },
            CloseReason::Replaced => Cause::Closed,
        };
        self.run_offline(vec![(idx, cause)], out);
        true
    }

    /// Time is `now`: nodes whose lease ran out go offline (their connections are closed with
    /// [`CloseReason::LeaseExpired`], their ports released). Returns how many.
    pub fn tick(&mut self, now: u64, out: &mut Vec<Output>) -> usize {
        self.acks.expire(now);
        let expired = self.nodes.expired(now);
        let n = expired.len();
        self.metrics.lease_expiries += n as u64;
        self.run_offline(
            expired
                .into_iter()
                .map(|i| (i, Cause::LeaseExpired))
                .collect(),
            out,
        );
        n
    }

    /// When to call [`tick`] next: the earliest lease deadline on record, if any. It may be a
    /// deadline that a relet has since extended (then that tick finds nothing, harmlessly);
    /// it is never later than the real next expiry. `O(1)`.
    ///
    /// [`tick`]: Switch::tick
    pub fn next_deadline(&self) -> Option<u64> {
        match (self.nodes.next_deadline(), self.acks.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// RegPort: register `ports` for `node` (which must be online). Ports the node already owns
    /// succeed again; ports owned by another node are returned with owner id and address, and
    /// with `subscribe` the node is subscribed to their release. Validation failures and the
    /// per-node port limit reject the whole request with no change.
    pub fn reg_port<S: AsRef<str>>(
        &mut self,
        node: &str,
        ports: &[S],
        subscribe: bool,
        out: &mut Vec<Output>,
    ) -> Result<RegPortReply, SwitchError> {
        self.check_ports(ports)?;
        let idx = self.online_index(node)?;
        let (base, session) = self
            .nodes
            .get(idx)
            .map_or((0, 0), |n| (n.ports(), n.session()));
        let nshards = self.shards.len();
        let mut new: Vec<u32> = Vec::new();
        let mut failed: Vec<(usize, NodeIdx)> = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let port = port.as_ref();
            let shard = &mut self.shards[shard_of(port.as_bytes(), nshards)];
            let before = shard.len();
            match shard.register(port, idx) {
                Ok(()) => {
                    if shard.len() != before {
                        new.push(i as u32);
                        if base + new.len() > self.limits.max_ports_per_node {
                            let count = base + new.len();
                            self.rollback(ports, &new, idx);
                            return Err(LimitError::TooManyPortsForNode {
                                count,
                                limit: self.limits.max_ports_per_node,
                            }
                            .into());
                        }
                    }
                }
                Err(RegisterError::Owned(owner)) => failed.push((i, owner.0)),
                Err(RegisterError::EmptyName) => {
                    self.rollback(ports, &new, idx);
                    return Err(SwitchError::EmptyPortName);
                }
                Err(RegisterError::NameTooLong(len)) => {
                    self.rollback(ports, &new, idx);
                    return Err(LimitError::PortNameTooLong {
                        len,
                        limit: self.limits.max_port_name_len,
                    }
                    .into());
                }
                Err(RegisterError::ShardFull) => {
                    self.rollback(ports, &new, idx);
                    return Err(SwitchError::ShardFull);
                }
            }
        }
        self.nodes.add_ports(idx, new.len() as isize);
        self.metrics.registrations += new.len() as u64;
        self.metrics.registration_conflicts += failed.len() as u64;
        if let Some((id, address)) = self
            .nodes
            .get(idx)
            .map(|n| (n.id().clone(), n.address().clone()))
        {
            for &i in &new {
                let event = Event::acquired(ports[i as usize].as_ref(), &id, &address);
                self.emit(&event, out);
            }
        }
        let mut reply = RegPortReply {
            registered: new.len(),
            failed: Vec::with_capacity(failed.len()),
        };
        for (i, owner) in failed {
            if subscribe {
                let port = ports[i].as_ref();
                let shard = &mut self.shards[shard_of(port.as_bytes(), nshards)];
                let outcome = shard.subscribe(port, Subscriber { node: idx, session });
                debug_assert_eq!(outcome, SubscribeOutcome::Subscribed(owner));
            }
            if let Some(n) = self.nodes.get(owner) {
                reply.failed.push(FailedPort {
                    index: i,
                    owner: n.id().clone(),
                    address: n.address().clone(),
                });
            }
        }
        Ok(reply)
    }

    fn rollback<S: AsRef<str>>(&mut self, ports: &[S], new: &[u32], idx: NodeIdx) {
        let nshards = self.shards.len();
        for &i in new {
            let port = ports[i as usize].as_ref();
            let outcome = self.shards[shard_of(port.as_bytes(), nshards)].unregister(port, idx);
            debug_assert_eq!(outcome, Outcome::Released(Vec::new()));
        }
    }

    /// UnRegPort: release those of `ports` that `node` owns; subscribers are notified (reason
    /// `unregistered`). Ports owned by others are left alone.
    pub fn unreg_port<S: AsRef<str>>(
        &mut self,
        node: &str,
        ports: &[S],
        out: &mut Vec<Output>,
    ) -> Result<UnRegPortReply, SwitchError> {
        self.check_ports(ports)?;
        let idx = self.online_index(node)?;
        let nshards = self.shards.len();
        let mut reply = UnRegPortReply::default();
        let mut work = Vec::new();
        let id = self
            .nodes
            .get(idx)
            .map(|n| n.id().clone())
            .unwrap_or_default();
        for (i, port) in ports.iter().enumerate() {
            let port = port.as_ref();
            match self.shards[shard_of(port.as_bytes(), nshards)].unregister(port, idx) {
                Outcome::Released(subs) => {
                    reply.released.push(i);
                    let event = Event::released(port, &id, ReleaseReason::Unregistered);
                    self.emit(&event, out);
                    if !subs.is_empty() {
                        let port: Arc<str> = Arc::from(port);
                        for s in subs {
                            notify(
                                &mut self.nodes,
                                &mut self.metrics,
                                s,
                                &port,
                                ReleaseReason::Unregistered,
                                &mut work,
                                out,
                            );
                        }
                    }
                }
                Outcome::NotOwner(_) => reply.not_owned.push(i),
                Outcome::Unknown => reply.unknown.push(i),
            }
        }
        let n = reply.released.len();
        self.nodes.add_ports(idx, -(n as isize));
        self.metrics.releases += n as u64;
        self.run_offline(work, out);
        Ok(reply)
    }

    /// SendMsg: a batch of `(targets, body)`; each target port gets one push of `body` on its
    /// owner's queue, in batch order; a target `""` pushes to every node with a receiving
    /// connection. Unknown ports are dropped (counted). The whole batch is validated first.
    pub fn send_msg<'b, S, I>(
        &mut self,
        batch: I,
        out: &mut Vec<Output>,
    ) -> Result<SendReport, SwitchError>
    where
        S: AsRef<str> + 'b,
        I: IntoIterator<Item = (&'b [S], &'b str)>,
        I::IntoIter: Clone,
    {
        let batch = batch
            .into_iter()
            .map(|(ports, body)| (ports, body, Escaping::Scan));
        self.send_msg_as(batch, out)
    }

    /// [`Switch::send_msg`] of a batch of `(targets, body, escaping)`: `escaping` tells
    /// whether the targets and body are known to need no JSON escapes in their pushes.
    pub fn send_msg_as<'b, S, I>(
        &mut self,
        batch: I,
        out: &mut Vec<Output>,
    ) -> Result<SendReport, SwitchError>
    where
        S: AsRef<str> + 'b,
        I: IntoIterator<Item = (&'b [S], &'b str, Escaping)> + Clone,
    {
        let mut targets = 0usize;
        for (ports, body, _) in batch.clone() {
            self.limits.check_body(body)?;
            for p in ports {
                self.limits.check_port_name(p.as_ref())?;
            }
            targets += ports.len();
        }
        self.limits.check_messages_in_request(targets)?;
        let mut report = SendReport::default();
        let mut last = None;
        for (ports, body, escaping) in batch {
            report += self.send_unchecked(ports, body, escaping, &mut last, out);
        }
        Ok(report)
    }

    /// SendMsg of one body to `ports` (unicast, multicast, or `""` broadcast).
    pub fn send<S: AsRef<str>>(
        &mut self,
        ports: &[S],
        body: &str,
        out: &mut Vec<Output>,
    ) -> Result<SendReport, SwitchError> {
        self.send_msg(std::iter::once((ports, body)), out)
    }

    /// `last`: the previous unicast target of the batch and its owner, so that a run of
    /// messages to one port looks the port up once. Owners change within a batch only when a
    /// slow consumer is taken offline, which clears it. A port listed twice is one target.
    fn send_unchecked<'b, S: AsRef<str>>(
        &mut self,
        ports: &'b [S],
        body: &str,
        escaping: Escaping,
        last: &mut Option<(&'b str, NodeIdx)>,
        out: &mut Vec<Output>,
    ) -> SendReport {
        let mut report = SendReport::default();
        match crate::batch::distinct(ports, |p| p.as_ref()) {
            None => {
                for port in ports {
                    report += self.send_one(port.as_ref(), body, escaping, last, out);
                }
            }
            Some(keep) => {
                for i in keep {
                    report += self.send_one(ports[i].as_ref(), body, escaping, last, out);
                }
            }
        }
        self.metrics.messages_sent += report.delivered;
        self.metrics.messages_dropped += report.dropped;
        report
    }

    fn send_one<'b>(
        &mut self,
        port: &'b str,
        body: &str,
        escaping: Escaping,
        last: &mut Option<(&'b str, NodeIdx)>,
        out: &mut Vec<Output>,
    ) -> SendReport {
        let mut report = SendReport::default();
        if port.is_empty() {
            let targets: Vec<NodeIdx> = self.nodes.online_nodes().collect();
            for t in targets {
                let r = self.deliver(t, port, body, escaping, out);
                if r.dropped > 0 {
                    *last = None;
                }
                report += r;
            }
            return report;
        }
        let owner = match *last {
            Some((p, owner)) if same_name(p, port) => Some(owner),
            _ => self.shards[shard_of(port.as_bytes(), self.shards.len())].owner(port),
        };
        match owner {
            Some(owner) => {
                let r = self.deliver(owner, port, body, escaping, out);
                *last = if r.dropped > 0 {
                    None
                } else {
                    Some((port, owner))
                };
                report += r;
            }
            None => report.dropped += 1,
        }
        report
    }

    fn deliver(
        &mut self,
        node: NodeIdx,
        port: &str,
        body: &str,
        escaping: Escaping,
        out: &mut Vec<Output>,
    ) -> SendReport {
        let outcome = match self.ack_op {
            None => self.nodes.push_msg_as(node, port, body, escaping),
            Some(op) => {
                let number = self.acks.expect(node, op);
                let outcome = self.nodes.push_object(node, |buf| {
                    crate::ack::encode_msg(port, body, escaping, number, buf)
                });
                if !matches!(outcome, PushOutcome::Queued { .. }) {
                    self.acks.cancel(node);
                }
                outcome
            }
        };
        match outcome {
            PushOutcome::Queued { first } => {
                if first {
                    if let Some(conn) = self.nodes.get(node).and_then(Node::conn) {
                        out.push(Output::Pending { node, conn });
                    }
                }
                SendReport {
                    delivered: 1,
                    dropped: 0,
                }
            }
            PushOutcome::Offline => SendReport {
                delivered: 0,
                dropped: 1,
            },
            PushOutcome::SlowConsumer { queued, limit } => {
                self.run_offline(vec![(node, Cause::SlowConsumer { queued, limit })], out);
                SendReport {
                    delivered: 0,
                    dropped: 1,
                }
            }
        }
    }

    /// QueryPort: owner id and address of each port, in request order.
    pub fn query_port<S: AsRef<str>>(
        &self,
        ports: &[S],
    ) -> Result<Vec<Option<PortOwner>>, SwitchError> {
        self.limits.check_ports_in_request(ports.len())?;
        let nshards = self.shards.len();
        Ok(ports
            .iter()
            .map(|p| {
                let p = p.as_ref();
                self.shards[shard_of(p.as_bytes(), nshards)]
                    .owner(p)
                    .and_then(|o| self.nodes.get(o))
                    .map(|n| PortOwner {
                        node: n.id().clone(),
                        address: n.address().clone(),
                    })
            })
            .collect())
    }

    /// QueryNode: address and state of each node, in request order (`None`: offline/unknown).
    pub fn query_node<S: AsRef<str>>(
        &self,
        nodes: &[S],
    ) -> Result<Vec<Option<NodeInfo>>, SwitchError> {
        self.limits.check_nodes_in_request(nodes.len())?;
        Ok(nodes
            .iter()
            .map(|id| {
                self.nodes
                    .lookup(id.as_ref())
                    .and_then(|i| self.nodes.get(i))
                    .filter(|n| n.conn().is_some())
                    .map(|n| NodeInfo {
                        node: n.id().clone(),
                        address: n.address().clone(),
                        ports: n.ports(),
                        lease_deadline: n.lease_deadline(),
                        queued_bytes: n.queued_bytes(),
                    })
            })
            .collect())
    }

    /// Encode the oldest pushes for `node` as one JSON array into `out` (as many as fit in
    /// `max_bytes`, at least one), e.g.
    /// `[{"type":"msg","port":"p","body":"..."},{"type":"released","port":"q","reason":"node_offline"}]`.
    /// If pushes remain, call again when the connection can take more.
    pub fn drain(&mut self, node: NodeIdx, max_bytes: usize, out: &mut Vec<u8>) -> Drained {
        self.nodes.drain(node, max_bytes, out)
    }

    /// The oldest pushes for `node` that fit in a frame of `max_bytes` (as [`Switch::drain`]
    /// would write them), to copy out in place (e.g. straight into a stream) and then take off
    /// the queue with [`Switch::consume`].
    pub fn batch(&self, node: NodeIdx, max_bytes: usize) -> Option<Batch<'_>> {
        self.nodes.batch(node, max_bytes)
    }

    /// Take the batch last returned by [`Switch::batch`] off the queue of `node`.
    pub fn consume(&mut self, node: NodeIdx, pushes: usize, bytes: usize) -> Drained {
        self.nodes.consume(node, pushes, bytes)
    }

    /// Take the oldest push for `node` (typed alternative to [`Switch::drain`]).
    pub fn pop(&mut self, node: NodeIdx) -> Option<Push> {
        self.nodes.pop(node)
    }

    /// Refuses a call for `session` of `node` unless that is the node's current session.
    pub fn check_session(&self, node: &str, session: u64) -> Result<(), SwitchError> {
        let idx = self.online_index(node)?;
        let current = self.nodes.get(idx).map_or(0, Node::session);
        if current != session {
            return Err(SwitchError::SessionReplaced {
                node: node.to_string(),
                named: session,
                current,
            });
        }
        Ok(())
    }

    pub(crate) fn online_index(&self, node: &str) -> Result<NodeIdx, SwitchError> {
        self.nodes
            .lookup(node)
            .filter(|&i| self.nodes.get(i).and_then(Node::conn).is_some())
            .ok_or_else(|| SwitchError::NotOnline(node.to_string()))
    }

    pub(crate) fn check_ports<S: AsRef<str>>(&self, ports: &[S]) -> Result<(), SwitchError> {
        self.limits.check_ports_in_request(ports.len())?;
        for p in ports {
            let p = p.as_ref();
            if p.is_empty() {
                return Err(SwitchError::EmptyPortName);
            }
            self.limits.check_port_name(p)?;
        }
        Ok(())
    }

    /// Release every port of `idx` on every shard, notifying subscribers.
    fn release_node_ports(
        &mut self,
        idx: NodeIdx,
        reason: ReleaseReason,
        work: &mut Vec<(NodeIdx, Cause)>,
        out: &mut Vec<Output>,
    ) {
        let Switch {
            shards,
            nodes,
            metrics,
            journal,
            watchers,
            ..
        } = self;
        let id = nodes.get(idx).map(|n| n.id().clone()).unwrap_or_default();
        let mut released = 0u64;
        let mut slow = Vec::new();
        for shard in shards.iter_mut() {
            released += u64::from(shard.release_all(idx, |name, subs| {
                let event = Event::released(name, &id, reason);
                emit(journal, watchers, nodes, &event, out, &mut slow);
                if !subs.is_empty() {
                    let port: Arc<str> = Arc::from(name);
                    for s in subs {
                        notify(nodes, metrics, s, &port, reason, work, out);
                    }
                }
            }));
        }
        nodes.add_ports(idx, -(released as isize));
        metrics.releases += released;
        work.extend(slow_consumers(slow));
    }

    /// Take nodes offline, including the cascade of subscribers that turn out to be slow
    /// consumers while being notified.
    pub(crate) fn run_offline(&mut self, mut work: Vec<(NodeIdx, Cause)>, out: &mut Vec<Output>) {
        while let Some((idx, cause)) = work.pop() {
            let Some(id) = self.nodes.get(idx).map(|n| n.id().clone()) else {
                continue;
            };
            let watcher = self.nodes.get(idx).is_some_and(Node::is_watcher);
            let Some(conn) = self.nodes.disconnect(idx) else {
                continue;
            };
            let reason = cause.close_reason(&mut self.metrics);
            self.watchers.remove_node(idx);
            if watcher {
                end_watcher(&mut self.nodes, idx, id, conn, reason, out);
                continue;
            }
            self.acks.gone(idx);
            let event = Event::node(What::Offline(cause.offline_reason()), &id, "");
            let mut slow = Vec::new();
            emit(
                &mut self.journal,
                &mut self.watchers,
                &mut self.nodes,
                &event,
                out,
                &mut slow,
            );
            work.extend(slow_consumers(slow));
            if let Some(reason) = reason {
                out.push(Output::Close {
                    node: id,
                    conn,
                    reason,
                });
            }
            self.release_node_ports(idx, ReleaseReason::NodeOffline, &mut work, out);
            self.nodes.forget(idx);
        }
    }
}

/// A node-less watcher's connection ended (its watches already removed): no ports, no node
/// event; its Close if the switch closes it, and its place in the registry freed.
pub(crate) fn end_watcher(
    nodes: &mut NodeRegistry,
    idx: NodeIdx,
    id: Arc<str>,
    conn: ConnId,
    reason: Option<CloseReason>,
    out: &mut Vec<Output>,
) {
    if let Some(reason) = reason {
        out.push(Output::Close {
            node: id,
            conn,
            reason,
        });
    }
    nodes.forget(idx);
}

/// Validates the node id and address of a WaitMsg.
pub(crate) fn check_wait_msg(
    limits: &Limits,
    node: &str,
    address: &str,
) -> Result<(), SwitchError> {
    if node.is_empty() {
        return Err(SwitchError::EmptyNodeId);
    }
    limits.check_node_id(node)?;
    limits.check_address(address)?;
    Ok(())
}

/// A WaitMsg on a connection that already receives: for the same node it renews the lease,
/// for another node it is an error. `None`: the connection receives for nobody yet.
pub(crate) fn rewait(
    nodes: &mut NodeRegistry,
    node: &str,
    conn: ConnId,
    now: u64,
) -> Option<Result<Session, SwitchError>> {
    let idx = nodes.by_conn(conn)?;
    let id = nodes.get(idx).map(|n| n.id().clone());
    Some(match id {
        Some(id) if id.as_ref() == node => nodes
            .relet(idx, now)
            .map(|lease_deadline| Session {
                node: idx,
                session: nodes.get(idx).map_or(0, Node::session),
                lease_deadline,
                replaced: false,
            })
            .map_err(|_| SwitchError::NotOnline(node.to_string())),
        other => Err(SwitchError::ConnectionInUse {
            conn,
            node: other.map(|s| s.to_string()).unwrap_or_default(),
        }),
    })
}

/// Brings `idx` online on `conn` and describes the new session.
pub(crate) fn connect(
    nodes: &mut NodeRegistry,
    idx: NodeIdx,
    conn: ConnId,
    address: &str,
    now: u64,
    replaced: bool,
) -> Session {
    let session = nodes.connect(idx, conn, address, now);
    Session {
        node: idx,
        session,
        lease_deadline: nodes.get(idx).map_or(0, Node::lease_deadline),
        replaced,
    }
}

/// Queue a release notification for a subscriber still in the session it subscribed in.
fn notify(
    nodes: &mut NodeRegistry,
    metrics: &mut Metrics,
    sub: Subscriber,
    port: &Arc<str>,
    reason: ReleaseReason,
    work: &mut Vec<(NodeIdx, Cause)>,
    out: &mut Vec<Output>,
) {
    if !nodes.in_session(sub.node, sub.session) {
        return;
    }
    match nodes.push_released(sub.node, port, reason) {
        PushOutcome::Queued { first } => {
            metrics.release_notifications += 1;
            if first {
                if let Some(conn) = nodes.get(sub.node).and_then(Node::conn) {
                    out.push(Output::Pending {
                        node: sub.node,
                        conn,
                    });
                }
            }
        }
        PushOutcome::Offline => {}
        PushOutcome::SlowConsumer { queued, limit } => {
            work.push((sub.node, Cause::SlowConsumer { queued, limit }))
        }
    }
}

/// Whether two port names are equal, compared in line: `==` on strings calls `memcmp`, which
/// costs more than comparing the few bytes of a name (this runs once per message).
#[inline(always)]
fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(true, |same, (x, y)| same & (x == y))
}

#[cfg(test)]
mod seed_tests {
    use super::*;

    /// The index of every shard of a switch is seeded at random, so no client can compute
    /// names that collide in it (before, shard i had the fixed seed 0x9e37_79b9_7f4a_7c15 ^ i).
    #[test]
    fn two_switches_hash_the_same_names_apart() {
        let config = Config {
            shards: 2,
            ..Config::default()
        };
        let (a, b) = (Switch::new(config.clone()), Switch::new(config));
        for shard in 0..2 {
            let apart = (0..4)
                .filter(|i| {
                    let name = format!("port-{i}");
                    a.shards[shard].index_tag(name.as_bytes())
                        != b.shards[shard].index_tag(name.as_bytes())
                })
                .count();
            assert!(apart >= 3, "shard {shard}: {apart} of 4 names hashed apart");
        }
    }
}
