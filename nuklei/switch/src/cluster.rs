//! One switch instance among several (fission): sans-I/O, single-threaded, talking to the
//! other instances only through [`mesh`](crate::mesh) messages.
//!
//! # Who owns what
//!
//! With `n` instances, instance `i` is
//!
//! * the **port shard** for every port with `shard_of(port, n) == i`: the port table entries,
//!   their owners (node id, session, address, copied here when the owner registered) and
//!   release subscriptions;
//! * the **node home** for every node with `home_of(node, n) == i`: its receiving
//!   connection, session, lease, port count and push queue. http and ws route every request
//!   that names a node (`/v1/nodes/{node}/…`, `/v1/ws/{node}`) to its home by the same hash,
//!   so a node's receiving connection, relets, RegPort and UnRegPort arrive where its state is.
//!   A node-scoped request that arrives elsewhere is refused ([`SwitchError::Misdirected`]).
//!
//! Requests that name no node (SendMsg, QueryPort, QueryNode) are served by whichever instance
//! received them (the *front*), which asks the owners.
//!
//! # How each operation runs
//!
//! * **RegPort / UnRegPort** at the node's home: the batch is split by port shard, each shard
//!   registers its part and answers (new positions, failed positions with their owner), the
//!   home merges. The per-node port limit is checked on the merged result; if it is exceeded,
//!   the new registrations are rolled back and the request fails as a whole, as it does on one
//!   instance.
//! * **SendMsg** in two phases at the front. Phase one resolves every target port to its
//!   owner (node and session) on the port's shard. Phase two walks the batch in the order the
//!   sender listed it and queues each push at the owner's home, and runs for the front's SendMsg
//!   requests strictly in arrival order. Ring order then carries that order to every home, so
//!   messages from one sender reach a node in the order sent, whichever shards resolved first.
//!   A broadcast (`""`) is an item for every instance. The reply waits for every home's
//!   acknowledgement, so `delivered`/`dropped` count what was really queued.
//! * **Node death** (connection closed, lease expired, slow consumer, replaced) at the home:
//!   the home tells every instance ([`Msg::NodeGone`]), each releases the node's ports in its
//!   shard and sends release notifications to the subscribers' homes. Sessions are unique
//!   across instances (`local * n + i`), so a notification for a node's earlier session is
//!   recognised and dropped wherever it arrives.
//! * **QueryPort / QueryNode** at the front: asked of the port shards / node homes, merged.
//!
//! Every operation completes with exactly one entry in [`Instance::take_done`], under the
//! caller's token, possibly at once (all parts local) or after mesh replies arrive.

use std::collections::VecDeque;
use std::sync::Arc;

use hashbrown::HashMap;

use crate::batch::SendBatch;
use crate::limits::{LimitError, Limits};
use crate::mesh::{HomeInfo, Item, Msg, NodeRef, OwnerInfo};
use crate::nodes::{ConnId, Drained, Node, NodeRegistry, PushOutcome, ReleaseReason};
use crate::ports::{shard_of, NodeIdx, Outcome, PortShard, RegisterError, Subscriber};
use crate::switch::{
    check_wait_msg, connect, rewait, CloseReason, FailedPort, Metrics, NodeInfo, Output, PortOwner,
    RegPortReply, Reply, SendReport, Session, SwitchError, UnRegPortReply,
};

/// The instance that is home of `node` among `instances`.
pub fn home_of(node: &str, instances: usize) -> usize {
    shard_of(node.as_bytes(), instances)
}

/// The instance whose shard holds `port` among `instances`.
pub fn shard_instance(port: &str, instances: usize) -> usize {
    shard_of(port.as_bytes(), instances)
}

/// Caller's correlation of an operation with its completion.
pub type Token = u64;

/// A completed operation.
pub type Done = (Token, Result<Reply, SwitchError>);

/// Configuration of one instance.
#[derive(Clone, Debug)]
pub struct InstanceConfig {
    /// This instance's index.
    pub me: usize,
    /// How many switch instances there are (at least 1).
    pub instances: usize,
    /// Lease duration (ms).
    pub lease_ms: u64,
    /// Size limits.
    pub limits: Limits,
}

/// Sentinel owner index for a node this shard has never seen (owns nothing here).
const NO_OWNER: NodeIdx = NodeIdx::MAX;

#[derive(Debug)]
struct OwnerRec {
    id: Arc<str>,
    address: Arc<str>,
    /// Home, index there, session.
    at_home: NodeRef,
}

/// The nodes a port shard refers to: owners of its ports and subscribers, by dense index.
#[derive(Debug, Default)]
struct Owners {
    by_id: HashMap<Arc<str>, NodeIdx>,
    recs: Vec<Option<OwnerRec>>,
    free: Vec<NodeIdx>,
}

impl Owners {
    fn lookup(&self, id: &str) -> Option<NodeIdx> {
        self.by_id.get(id).copied()
    }

    fn get(&self, idx: NodeIdx) -> Option<&OwnerRec> {
        self.recs.get(idx as usize).and_then(Option::as_ref)
    }

    /// The record of `id`, created or moved to `session` (a node's ports of an earlier session
    /// were released before its home could send anything for a later one).
    fn upsert(&mut self, id: &str, address: &str, at_home: NodeRef) -> NodeIdx {
        if let Some(idx) = self.lookup(id) {
            if let Some(rec) = self.recs[idx as usize].as_mut() {
                rec.at_home = at_home;
                if rec.address.as_ref() != address {
                    rec.address = Arc::from(address);
                }
            }
            return idx;
        }
        let id: Arc<str> = Arc::from(id);
        let rec = OwnerRec {
            id: id.clone(),
            address: Arc::from(address),
            at_home,
        };
        let idx = match self.free.pop() {
            Some(idx) => {
                self.recs[idx as usize] = Some(rec);
                idx
            }
            None => {
                self.recs.push(Some(rec));
                (self.recs.len() - 1) as NodeIdx
            }
        };
        self.by_id.insert(id, idx);
        idx
    }

    fn remove(&mut self, idx: NodeIdx) {
        if let Some(rec) = self.recs.get_mut(idx as usize).and_then(Option::take) {
            self.by_id.remove(&rec.id);
            self.free.push(idx);
        }
    }

    fn session(&self, idx: NodeIdx) -> Option<u64> {
        self.get(idx).map(|r| r.at_home.session)
    }
}

#[derive(Clone, Copy, Debug)]
enum Cause {
    Closed,
    LeaseExpired,
    SlowConsumer { queued: usize, limit: usize },
}

/// A port another node owns: position, owner id and address.
type Failed = (u32, Arc<str>, Arc<str>);

struct RegOp {
    token: Token,
    node: NodeIdx,
    session: u64,
    ports: Vec<String>,
    waiting: usize,
    new: Vec<u32>,
    failed: Vec<Failed>,
    error: Option<SwitchError>,
}

struct UnregOp {
    token: Token,
    node: NodeIdx,
    session: u64,
    waiting: usize,
    reply: UnRegPortReply,
}

struct SendOp {
    token: Token,
    messages: SendBatch,
    /// Owner of each target, flattened in batch order (`None`: unknown or broadcast).
    owners: Vec<Option<NodeRef>>,
    /// Phase one: resolutions outstanding.
    waiting: usize,
    /// Phase two: acknowledgements outstanding.
    acks: usize,
    report: SendReport,
}

enum Op {
    Reg(RegOp),
    Unreg(UnregOp),
    Send(SendOp),
    QueryPort {
        token: Token,
        waiting: usize,
        owners: Vec<Option<PortOwner>>,
    },
    QueryNode {
        token: Token,
        nodes: Vec<String>,
        waiting: usize,
        infos: Vec<Option<NodeInfo>>,
    },
    Counters {
        token: Token,
        waiting: usize,
        values: [u64; 13],
    },
}

/// One switch instance: a node home and a port shard.
pub struct Instance {
    me: usize,
    count: usize,
    limits: Limits,
    nodes: NodeRegistry,
    shard: PortShard,
    owners: Owners,
    metrics: Metrics,
    ops: HashMap<u64, Op>,
    next_op: u64,
    /// SendMsg operations in arrival order: phase two runs in this order.
    send_order: VecDeque<u64>,
    outbox: Vec<Vec<u8>>,
    done: Vec<Done>,
    work: Vec<(NodeIdx, Cause)>,
    /// Exchanges the nukleus opened and refused (reported with the counters).
    exchanges: (u64, u64),
}

impl Instance {
    /// Instance `config.me` of `config.instances`.
    pub fn new(config: InstanceConfig) -> Instance {
        let count = config.instances.max(1);
        Instance {
            me: config.me,
            count,
            nodes: NodeRegistry::new(config.lease_ms, config.limits.max_queued_bytes),
            limits: config.limits,
            shard: PortShard::with_seed(0x9e37_79b9_7f4a_7c15 ^ config.me as u64),
            owners: Owners::default(),
            metrics: Metrics::default(),
            ops: HashMap::new(),
            next_op: 1,
            send_order: VecDeque::new(),
            outbox: vec![Vec::new(); count],
            done: Vec::new(),
            work: Vec::new(),
            exchanges: (0, 0),
        }
    }

    /// This instance's index.
    pub fn index(&self) -> usize {
        self.me
    }

    /// Number of instances.
    pub fn instances(&self) -> usize {
        self.count
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The nodes homed here.
    pub fn nodes(&self) -> &NodeRegistry {
        &self.nodes
    }

    /// The record of a node homed here.
    pub fn node(&self, idx: NodeIdx) -> Option<&Node> {
        self.nodes.get(idx)
    }

    /// This instance's counters: ports in its shard, nodes homed here, and what it did.
    pub fn metrics(&self) -> Metrics {
        Metrics {
            ports: self.shard.len() as u64,
            nodes_online: self.nodes.online() as u64,
            ..self.metrics
        }
    }

    /// Tells the instance how many exchanges its nukleus opened and refused, for
    /// [`Instance::query_metrics`].
    pub fn set_exchange_counts(&mut self, opened: u64, refused: u64) {
        self.exchanges = (opened, refused);
    }

    fn counters(&self) -> [u64; 13] {
        let mut v = [0; 13];
        v[..11].copy_from_slice(&self.metrics().to_array());
        v[11] = self.exchanges.0;
        v[12] = self.exchanges.1;
        v
    }

    /// The counters of every instance, summed. Completes under `token`.
    pub fn query_metrics(&mut self, token: Token) {
        let op = self.new_op();
        for peer in 0..self.count {
            if peer != self.me {
                self.send(peer, &Msg::QueryCounters { op });
            }
        }
        self.ops.insert(
            op,
            Op::Counters {
                token,
                waiting: self.count - 1,
                values: self.counters(),
            },
        );
        self.try_finish(op, &mut Vec::new());
    }

    /// Operations waiting for mesh replies.
    pub fn pending_ops(&self) -> usize {
        self.ops.len()
    }

    /// Mesh bytes to send to instance `peer` (the caller sends a prefix and drains it).
    pub fn outbox(&mut self, peer: usize) -> &mut Vec<u8> {
        &mut self.outbox[peer]
    }

    /// Bytes waiting in all outboxes.
    pub fn outbox_bytes(&self) -> usize {
        self.outbox.iter().map(Vec::len).sum()
    }

    /// Completed operations since the last call.
    pub fn take_done(&mut self) -> std::vec::Drain<'_, Done> {
        self.done.drain(..)
    }

    fn home(&self, node: &str) -> usize {
        home_of(node, self.count)
    }

    fn global(&self, local_session: u64) -> u64 {
        local_session * self.count as u64 + self.me as u64
    }

    fn send(&mut self, peer: usize, msg: &Msg<'_>) {
        msg.encode(&mut self.outbox[peer]);
    }

    fn new_op(&mut self) -> u64 {
        let op = self.next_op;
        self.next_op += 1;
        op
    }

    fn check_home(&self, node: &str) -> Result<(), SwitchError> {
        let home = self.home(node);
        if home == self.me {
            Ok(())
        } else {
            Err(SwitchError::Misdirected {
                node: node.to_string(),
                home,
                here: self.me,
            })
        }
    }

    fn online_index(&self, node: &str) -> Result<NodeIdx, SwitchError> {
        self.check_home(node)?;
        self.nodes
            .lookup(node)
            .filter(|&i| self.nodes.get(i).and_then(Node::conn).is_some())
            .ok_or_else(|| SwitchError::NotOnline(node.to_string()))
    }

    fn check_ports(&self, ports: &[String]) -> Result<(), SwitchError> {
        self.limits.check_ports_in_request(ports.len())?;
        for p in ports {
            if p.is_empty() {
                return Err(SwitchError::EmptyPortName);
            }
            self.limits.check_port_name(p)?;
        }
        Ok(())
    }

    // ---- node home -------------------------------------------------------------------------

    /// WaitMsg: `conn` becomes the receiving connection of `node` (homed here). A previous
    /// receiving connection is closed ([`CloseReason::Replaced`]) and the node's ports are
    /// released everywhere.
    pub fn wait_msg(
        &mut self,
        node: &str,
        address: &str,
        conn: ConnId,
        now: u64,
        out: &mut Vec<Output>,
    ) -> Result<Session, SwitchError> {
        check_wait_msg(&self.limits, node, address)?;
        self.check_home(node)?;
        if let Some(renewed) = rewait(&mut self.nodes, node, conn, now) {
            return renewed;
        }
        let idx = self.nodes.intern(node);
        let old_session = self.nodes.get(idx).map_or(0, Node::session);
        let mut replaced = false;
        if let Some(old) = self.nodes.disconnect(idx) {
            replaced = true;
            self.metrics.replaced_connections += 1;
            let id = self
                .nodes
                .get(idx)
                .map(|n| n.id().clone())
                .unwrap_or_default();
            out.push(Output::Close {
                node: id.clone(),
                conn: old,
                reason: CloseReason::Replaced,
            });
            self.node_gone(&id, self.global(old_session), ReleaseReason::Replaced, out);
            self.settle(out);
        }
        Ok(connect(&mut self.nodes, idx, conn, address, now, replaced))
    }

    /// Relet: extend the lease of a node homed here.
    pub fn relet(&mut self, node: &str, now: u64) -> Result<u64, SwitchError> {
        let idx = self.online_index(node)?;
        self.nodes
            .relet(idx, now)
            .map_err(|_| SwitchError::NotOnline(node.to_string()))
    }

    /// A connection closed; if it was a receiving connection, its node goes offline.
    pub fn connection_closed(&mut self, conn: ConnId, out: &mut Vec<Output>) -> bool {
        match self.nodes.by_conn(conn) {
            Some(idx) => {
                self.work.push((idx, Cause::Closed));
                self.settle(out);
                true
            }
            None => false,
        }
    }

    /// Nodes whose lease ran out at `now` go offline; returns how many.
    pub fn tick(&mut self, now: u64, out: &mut Vec<Output>) -> usize {
        let expired = self.nodes.expired(now);
        self.metrics.lease_expiries += expired.len() as u64;
        let n = expired.len();
        self.work
            .extend(expired.into_iter().map(|i| (i, Cause::LeaseExpired)));
        self.settle(out);
        n
    }

    /// The earliest lease deadline on record.
    pub fn next_deadline(&self) -> Option<u64> {
        self.nodes.next_deadline()
    }

    /// Take a batch of [`NodeRegistry::batch`] off the queue of a node homed here (see
    /// [`NodeRegistry::consume`]).
    pub fn consume(&mut self, node: NodeIdx, pushes: usize, bytes: usize) -> Drained {
        self.nodes.consume(node, pushes, bytes)
    }

    /// Encode the oldest pushes of a node homed here (see [`NodeRegistry::drain`]).
    pub fn drain(&mut self, node: NodeIdx, max_bytes: usize, out: &mut Vec<u8>) -> Drained {
        self.nodes.drain(node, max_bytes, out)
    }

    /// Take nodes offline, including the cascade of subscribers that turn out to be slow
    /// consumers while being notified.
    fn settle(&mut self, out: &mut Vec<Output>) {
        while let Some((idx, cause)) = self.work.pop() {
            let Some((id, session)) = self.nodes.get(idx).map(|n| (n.id().clone(), n.session()))
            else {
                continue;
            };
            let Some(conn) = self.nodes.disconnect(idx) else {
                continue;
            };
            let reason = match cause {
                Cause::Closed => None,
                Cause::LeaseExpired => Some(CloseReason::LeaseExpired),
                Cause::SlowConsumer { queued, limit } => {
                    self.metrics.slow_consumer_disconnects += 1;
                    Some(CloseReason::SlowConsumer { queued, limit })
                }
            };
            if let Some(reason) = reason {
                out.push(Output::Close {
                    node: id.clone(),
                    conn,
                    reason,
                });
            }
            self.node_gone(&id, self.global(session), ReleaseReason::NodeOffline, out);
            self.nodes.forget(idx);
        }
    }

    /// A node homed here ended `session`: every shard releases its ports.
    fn node_gone(&mut self, id: &str, session: u64, reason: ReleaseReason, out: &mut Vec<Output>) {
        let msg = Msg::NodeGone {
            node: id,
            session,
            reason,
        };
        for peer in 0..self.count {
            if peer != self.me {
                self.send(peer, &msg);
            }
        }
        self.release_here(id, session, reason, out);
    }

    /// Queue `push` for node `idx` homed here if it is still in `session` (global).
    fn deliver_here(
        &mut self,
        idx: NodeIdx,
        session: u64,
        push: PushRef<'_>,
        out: &mut Vec<Output>,
    ) -> SendReport {
        let current = self
            .nodes
            .get(idx)
            .filter(|n| n.conn().is_some())
            .map(|n| self.global(n.session()));
        if current != Some(session) {
            return dropped(1);
        }
        self.push_here(idx, push, out)
    }

    fn push_here(&mut self, idx: NodeIdx, push: PushRef<'_>, out: &mut Vec<Output>) -> SendReport {
        let outcome = match push {
            PushRef::Msg { port, body } => self.nodes.push_msg(idx, port, body),
            PushRef::Released { port, reason } => self.nodes.push_released(idx, port, reason),
        };
        match outcome {
            PushOutcome::Queued { first } => {
                if first {
                    if let Some(conn) = self.nodes.get(idx).and_then(Node::conn) {
                        out.push(Output::Pending { node: idx, conn });
                    }
                }
                SendReport {
                    delivered: 1,
                    dropped: 0,
                }
            }
            PushOutcome::Offline => dropped(1),
            PushOutcome::SlowConsumer { queued, limit } => {
                self.work.push((idx, Cause::SlowConsumer { queued, limit }));
                dropped(1)
            }
        }
    }

    fn deliver_items(&mut self, items: Vec<Item<'_>>, out: &mut Vec<Output>) -> SendReport {
        let mut report = SendReport::default();
        for item in items {
            match item {
                Item::Unicast {
                    node,
                    session,
                    port,
                    body,
                } => {
                    let r = self.deliver_here(node, session, PushRef::Msg { port, body }, out);
                    self.count_messages(r);
                    report += r;
                }
                Item::Broadcast { body } => {
                    let r = self.broadcast_here(body, out);
                    report += r;
                }
                Item::Released {
                    node,
                    session,
                    port,
                    reason,
                } => {
                    let push = PushRef::Released { port, reason };
                    let r = self.deliver_here(node, session, push, out);
                    self.metrics.release_notifications += r.delivered;
                }
            }
        }
        self.settle(out);
        report
    }

    fn count_messages(&mut self, r: SendReport) {
        self.metrics.messages_sent += r.delivered;
        self.metrics.messages_dropped += r.dropped;
    }

    fn broadcast_here(&mut self, body: &str, out: &mut Vec<Output>) -> SendReport {
        let targets: Vec<NodeIdx> = self.nodes.online_nodes().collect();
        let mut report = SendReport::default();
        for t in targets {
            report += self.push_here(t, PushRef::Msg { port: "", body }, out);
        }
        self.count_messages(report);
        report
    }

    // ---- port shard ------------------------------------------------------------------------

    /// Registers `ports` here for `node` in `session`.
    fn register_here(
        &mut self,
        node: &str,
        at_home: NodeRef,
        address: &str,
        subscribe: bool,
        ports: &[(u32, &str)],
    ) -> (Vec<u32>, Vec<Failed>, Option<SwitchError>) {
        let session = at_home.session;
        let owner = self.owners.upsert(node, address, at_home);
        let mut new = Vec::new();
        let mut failed = Vec::new();
        let mut error = None;
        for (pos, port) in ports {
            let before = self.shard.len();
            match self.shard.register(port, owner) {
                Ok(()) => {
                    if self.shard.len() != before {
                        new.push(*pos);
                    }
                }
                Err(RegisterError::Owned(other)) => {
                    if subscribe {
                        self.shard.subscribe(
                            port,
                            Subscriber {
                                node: owner,
                                session,
                            },
                        );
                    }
                    if let Some(rec) = self.owners.get(other.0) {
                        failed.push((*pos, rec.id.clone(), rec.address.clone()));
                    }
                }
                Err(RegisterError::EmptyName) => error = Some(SwitchError::EmptyPortName),
                Err(RegisterError::NameTooLong(len)) => {
                    error = Some(
                        LimitError::PortNameTooLong {
                            len,
                            limit: crate::ports::MAX_NAME_LEN,
                        }
                        .into(),
                    )
                }
                Err(RegisterError::ShardFull) => error = Some(SwitchError::ShardFull),
            }
        }
        self.metrics.registrations += new.len() as u64;
        self.metrics.registration_conflicts += failed.len() as u64;
        (new, failed, error)
    }

    /// Releases those of `ports` that `node` owns here, notifying subscribers.
    fn unregister_here(
        &mut self,
        node: &str,
        ports: &[(u32, &str)],
        out: &mut Vec<Output>,
    ) -> UnRegPortReply {
        let owner = self.owners.lookup(node).unwrap_or(NO_OWNER);
        let mut reply = UnRegPortReply::default();
        for (pos, port) in ports {
            match self.shard.unregister(port, owner) {
                Outcome::Released(subs) => {
                    reply.released.push(*pos as usize);
                    for s in subs {
                        self.notify(s, port, ReleaseReason::Unregistered, out);
                    }
                }
                Outcome::NotOwner(_) => reply.not_owned.push(*pos as usize),
                Outcome::Unknown => reply.unknown.push(*pos as usize),
            }
        }
        self.metrics.releases += reply.released.len() as u64;
        reply
    }

    /// Node `id` ended `session`: release its ports in this shard and forget it.
    fn release_here(
        &mut self,
        id: &str,
        session: u64,
        reason: ReleaseReason,
        out: &mut Vec<Output>,
    ) {
        let Some(idx) = self.owners.lookup(id) else {
            return;
        };
        if self.owners.session(idx) != Some(session) {
            return;
        }
        let mut released: Vec<(String, Vec<Subscriber>)> = Vec::new();
        let count = self.shard.release_all(idx, |name, subs| {
            if !subs.is_empty() {
                released.push((name.to_string(), subs));
            }
        });
        self.metrics.releases += u64::from(count);
        self.owners.remove(idx);
        for (port, subs) in released {
            for s in subs {
                self.notify(s, &port, reason, out);
            }
        }
    }

    /// Send a release notification to a subscriber's home, if it is still in its session.
    fn notify(
        &mut self,
        sub: Subscriber,
        port: &str,
        reason: ReleaseReason,
        out: &mut Vec<Output>,
    ) {
        let Some(to) = self
            .owners
            .get(sub.node)
            .map(|r| r.at_home)
            .filter(|r| r.session == sub.session)
        else {
            return;
        };
        if usize::from(to.home) == self.me {
            let push = PushRef::Released { port, reason };
            let r = self.deliver_here(to.idx, to.session, push, out);
            self.metrics.release_notifications += r.delivered;
        } else {
            let msg = Msg::Deliver {
                op: 0,
                items: vec![Item::Released {
                    node: to.idx,
                    session: to.session,
                    port,
                    reason,
                }],
            };
            self.send(usize::from(to.home), &msg);
        }
    }

    fn resolve_here(&self, port: &str) -> Option<NodeRef> {
        self.shard
            .owner(port)
            .and_then(|o| self.owners.get(o))
            .map(|r| r.at_home)
    }

    fn owner_here(&self, port: &str) -> Option<PortOwner> {
        self.shard
            .owner(port)
            .and_then(|o| self.owners.get(o))
            .map(|r| PortOwner {
                node: r.id.clone(),
                address: r.address.clone(),
            })
    }

    /// Splits `(position, port)` pairs by shard instance.
    fn split_ports<'a>(
        &self,
        ports: impl Iterator<Item = (usize, &'a String)>,
    ) -> Vec<Vec<(u32, &'a str)>> {
        let mut parts = vec![Vec::new(); self.count];
        for (pos, port) in ports {
            parts[shard_instance(port, self.count)].push((pos as u32, port.as_str()));
        }
        parts
    }

    /// Sends each non-empty part of a split request to its instance as the message `make`
    /// builds from it; returns how many were sent (the replies to wait for).
    fn scatter<'a>(
        &mut self,
        parts: Vec<Vec<(u32, &'a str)>>,
        make: impl Fn(Vec<(u32, &'a str)>) -> Msg<'a>,
    ) -> usize {
        let mut sent = 0;
        for (peer, part) in parts.into_iter().enumerate() {
            if !part.is_empty() {
                sent += 1;
                make(part).encode(&mut self.outbox[peer]);
            }
        }
        sent
    }

    // ---- operations ------------------------------------------------------------------------

    /// Checks a RegPort/UnRegPort of `ports` for `node` (homed here, online): its index, or
    /// `None` after completing `token` with the error.
    fn admit_node_call(&mut self, token: Token, node: &str, ports: &[String]) -> Option<NodeIdx> {
        let checked = self
            .check_ports(ports)
            .and_then(|()| self.online_index(node));
        match checked {
            Ok(idx) => Some(idx),
            Err(e) => {
                self.done.push((token, Err(e)));
                None
            }
        }
    }

    /// RegPort for `node` (homed here, online). Completes under `token`.
    pub fn reg_port(
        &mut self,
        token: Token,
        node: &str,
        ports: Vec<String>,
        subscribe: bool,
        out: &mut Vec<Output>,
    ) {
        let Some(idx) = self.admit_node_call(token, node, &ports) else {
            return;
        };
        let (local, address) = self
            .nodes
            .get(idx)
            .map_or((0, Arc::from("")), |n| (n.session(), n.address().clone()));
        let session = self.global(local);
        let at_home = NodeRef {
            home: self.me as u16,
            idx,
            session,
        };
        let op = self.new_op();
        let mut parts = self.split_ports(ports.iter().enumerate());
        let mine = std::mem::take(&mut parts[self.me]);
        let (new, failed, error) = self.register_here(node, at_home, &address, subscribe, &mine);
        let waiting = self.scatter(parts, |part| Msg::Register {
            op,
            node,
            at_home,
            address: &address,
            subscribe,
            ports: part,
        });
        self.ops.insert(
            op,
            Op::Reg(RegOp {
                token,
                node: idx,
                session,
                ports,
                waiting,
                new,
                failed,
                error,
            }),
        );
        self.try_finish(op, out);
    }

    /// UnRegPort for `node` (homed here, online). Completes under `token`.
    pub fn unreg_port(
        &mut self,
        token: Token,
        node: &str,
        ports: &[String],
        out: &mut Vec<Output>,
    ) {
        let Some(idx) = self.admit_node_call(token, node, ports) else {
            return;
        };
        let session = self.global(self.nodes.get(idx).map_or(0, Node::session));
        let op = self.new_op();
        let mut parts = self.split_ports(ports.iter().enumerate());
        let mine = std::mem::take(&mut parts[self.me]);
        let reply = self.unregister_here(node, &mine, out);
        let waiting = self.scatter(parts, |part| Msg::Unregister {
            op,
            node,
            ports: part,
        });
        self.ops.insert(
            op,
            Op::Unreg(UnregOp {
                token,
                node: idx,
                session,
                waiting,
                reply,
            }),
        );
        self.settle(out);
        self.try_finish(op, out);
    }

    /// SendMsg: `(targets, body)` in order; a target `""` broadcasts. Completes under `token`.
    pub fn send_msg(&mut self, token: Token, messages: SendBatch, out: &mut Vec<Output>) {
        let check = || -> Result<(), SwitchError> {
            for (ports, body) in messages.messages() {
                self.limits.check_body(body)?;
                for p in ports {
                    self.limits.check_port_name(p)?;
                }
            }
            self.limits
                .check_messages_in_request(messages.target_count())?;
            Ok(())
        };
        if let Err(e) = check() {
            self.done.push((token, Err(e)));
            return;
        }
        let op = self.new_op();
        let mut owners = vec![None; messages.target_count()];
        let mut parts = vec![Vec::new(); self.count];
        for (pos, port) in messages.targets().enumerate() {
            if !port.is_empty() {
                parts[shard_instance(port, self.count)].push((pos as u32, port));
            }
        }
        for (pos, port) in std::mem::take(&mut parts[self.me]) {
            owners[pos as usize] = self.resolve_here(port);
        }
        let waiting = self.scatter(parts, |part| Msg::Resolve { op, ports: part });
        self.ops.insert(
            op,
            Op::Send(SendOp {
                token,
                messages,
                owners,
                waiting,
                acks: 0,
                report: SendReport::default(),
            }),
        );
        self.send_order.push_back(op);
        self.advance_sends(out);
    }

    /// QueryPort: owners of `ports`, in order. Completes under `token`.
    pub fn query_port(&mut self, token: Token, ports: &[String]) {
        if let Err(e) = self.limits.check_ports_in_request(ports.len()) {
            self.done.push((token, Err(e.into())));
            return;
        }
        let op = self.new_op();
        let mut owners = vec![None; ports.len()];
        let mut parts = self.split_ports(ports.iter().enumerate());
        for (pos, port) in std::mem::take(&mut parts[self.me]) {
            owners[pos as usize] = self.owner_here(port);
        }
        let waiting = self.scatter(parts, |part| Msg::QueryPorts { op, ports: part });
        self.ops.insert(
            op,
            Op::QueryPort {
                token,
                waiting,
                owners,
            },
        );
        self.try_finish(op, &mut Vec::new());
    }

    /// QueryNode: online nodes among `nodes`, in order. Completes under `token`.
    pub fn query_node(&mut self, token: Token, nodes: Vec<String>) {
        if let Err(e) = self.limits.check_nodes_in_request(nodes.len()) {
            self.done.push((token, Err(e.into())));
            return;
        }
        let op = self.new_op();
        let mut infos = vec![None; nodes.len()];
        let mut parts = vec![Vec::new(); self.count];
        for (pos, id) in nodes.iter().enumerate() {
            parts[self.home(id)].push((pos as u32, id.as_str()));
        }
        for (pos, id) in std::mem::take(&mut parts[self.me]) {
            infos[pos as usize] = self.home_info(id).map(|i| node_info(id, i));
        }
        let waiting = self.scatter(parts, |part| Msg::QueryNodes { op, nodes: part });
        self.ops.insert(
            op,
            Op::QueryNode {
                token,
                nodes,
                waiting,
                infos,
            },
        );
        self.try_finish(op, &mut Vec::new());
    }

    fn home_info(&self, id: &str) -> Option<HomeInfo<'_>> {
        self.nodes
            .lookup(id)
            .and_then(|i| self.nodes.get(i))
            .filter(|n| n.conn().is_some())
            .map(|n| HomeInfo {
                address: n.address(),
                ports: n.ports() as u64,
                lease_deadline: n.lease_deadline(),
                queued_bytes: n.queued_bytes() as u64,
            })
    }

    /// Runs phase two of the SendMsg operations at the head of the arrival order whose owners
    /// are all resolved.
    fn advance_sends(&mut self, out: &mut Vec<Output>) {
        while let Some(&op) = self.send_order.front() {
            let Some(Op::Send(send)) = self.ops.get_mut(&op) else {
                self.send_order.pop_front();
                continue;
            };
            if send.waiting > 0 {
                return;
            }
            self.send_order.pop_front();
            let messages = std::mem::take(&mut send.messages);
            let owners = std::mem::take(&mut send.owners);
            let mut report = SendReport::default();
            let mut items: Vec<Vec<Item<'_>>> = vec![Vec::new(); self.count];
            let mut k = 0;
            for (ports, body) in messages.messages() {
                for port in ports {
                    let owner = owners.get(k).copied().flatten();
                    k += 1;
                    if port.is_empty() {
                        for (peer, list) in items.iter_mut().enumerate() {
                            if peer != self.me {
                                list.push(Item::Broadcast { body });
                            }
                        }
                        report += self.broadcast_here(body, out);
                        continue;
                    }
                    let Some(to) = owner else {
                        report.dropped += 1;
                        self.metrics.messages_dropped += 1;
                        continue;
                    };
                    if usize::from(to.home) == self.me {
                        let push = PushRef::Msg { port, body };
                        let r = self.deliver_here(to.idx, to.session, push, out);
                        self.count_messages(r);
                        report += r;
                    } else {
                        items[usize::from(to.home)].push(Item::Unicast {
                            node: to.idx,
                            session: to.session,
                            port,
                            body,
                        });
                    }
                }
            }
            let mut acks = 0;
            for (peer, list) in items.into_iter().enumerate() {
                if !list.is_empty() {
                    acks += 1;
                    Msg::Deliver { op, items: list }.encode(&mut self.outbox[peer]);
                }
            }
            if let Some(Op::Send(send)) = self.ops.get_mut(&op) {
                send.acks = acks;
                send.report += report;
            }
            self.settle(out);
            self.try_finish(op, out);
        }
    }

    /// Completes `op` if nothing is outstanding.
    fn try_finish(&mut self, op: u64, out: &mut Vec<Output>) {
        let ready = match self.ops.get(&op) {
            Some(Op::Reg(r)) => r.waiting == 0,
            Some(Op::Unreg(u)) => u.waiting == 0,
            Some(Op::Send(s)) => s.waiting == 0 && s.acks == 0 && s.messages.is_empty(),
            Some(Op::QueryPort { waiting, .. })
            | Some(Op::QueryNode { waiting, .. })
            | Some(Op::Counters { waiting, .. }) => *waiting == 0,
            None => false,
        };
        if !ready {
            return;
        }
        let Some(finished) = self.ops.remove(&op) else {
            return;
        };
        let done = match finished {
            Op::Reg(r) => (r.token, self.finish_reg(r, out)),
            Op::Unreg(mut u) => {
                let n = u.reply.released.len();
                if self.nodes.get(u.node).map(|n| self.global(n.session())) == Some(u.session) {
                    self.nodes.add_ports(u.node, -(n as isize));
                }
                u.reply.released.sort_unstable();
                u.reply.not_owned.sort_unstable();
                u.reply.unknown.sort_unstable();
                (u.token, Ok(Reply::UnRegPort(u.reply)))
            }
            Op::Send(s) => (s.token, Ok(Reply::SendMsg(s.report))),
            Op::QueryPort { token, owners, .. } => (token, Ok(Reply::QueryPort(owners))),
            Op::QueryNode { token, infos, .. } => (token, Ok(Reply::QueryNode(infos))),
            Op::Counters { token, values, .. } => {
                let mut metrics = [0; 11];
                metrics.copy_from_slice(&values[..11]);
                let reply = Reply::Metrics {
                    metrics: Metrics::from_array(metrics),
                    requests: values[11],
                    refused: values[12],
                };
                (token, Ok(reply))
            }
        };
        self.done.push(done);
    }

    fn finish_reg(&mut self, mut r: RegOp, out: &mut Vec<Output>) -> Result<Reply, SwitchError> {
        let current = self.nodes.get(r.node).map(|n| self.global(n.session()));
        let base = self.nodes.get(r.node).map_or(0, Node::ports);
        let error = r.error.take().or_else(|| {
            let count = base + r.new.len();
            (count > self.limits.max_ports_per_node).then(|| {
                LimitError::TooManyPortsForNode {
                    count,
                    limit: self.limits.max_ports_per_node,
                }
                .into()
            })
        });
        let node = self
            .nodes
            .get(r.node)
            .map(|n| n.id().to_string())
            .unwrap_or_default();
        if let Some(e) = error {
            // Roll back what this request registered, so it fails as a whole.
            let ports = std::mem::take(&mut r.ports);
            let mut parts =
                self.split_ports(r.new.iter().map(|&p| (p as usize, &ports[p as usize])));
            let mine = std::mem::take(&mut parts[self.me]);
            self.unregister_here(&node, &mine, out);
            self.scatter(parts, |part| Msg::Unregister {
                op: 0,
                node: &node,
                ports: part,
            });
            self.settle(out);
            return Err(e);
        }
        if current == Some(r.session) {
            self.nodes.add_ports(r.node, r.new.len() as isize);
        }
        r.failed.sort_unstable_by_key(|(pos, _, _)| *pos);
        Ok(Reply::RegPort(RegPortReply {
            registered: r.new.len(),
            failed: r
                .failed
                .into_iter()
                .map(|(pos, owner, address)| FailedPort {
                    index: pos as usize,
                    owner,
                    address,
                })
                .collect(),
        }))
    }

    // ---- mesh input ------------------------------------------------------------------------

    /// Handles one mesh record from instance `from`.
    pub fn on_mesh(&mut self, from: usize, msg: Msg<'_>, out: &mut Vec<Output>) {
        match msg {
            Msg::Register {
                op,
                node,
                at_home,
                address,
                subscribe,
                ports,
            } => {
                let (new, failed, error) =
                    self.register_here(node, at_home, address, subscribe, &ports);
                let reply = Msg::Registered {
                    op,
                    new,
                    failed: failed
                        .iter()
                        .map(|(pos, owner, address)| {
                            let owner = OwnerInfo {
                                node: owner,
                                session: 0,
                                address,
                            };
                            (*pos, owner)
                        })
                        .collect(),
                    full: error.is_some(),
                };
                reply.encode(&mut self.outbox[from]);
            }
            Msg::Registered {
                op,
                new,
                failed,
                full,
            } => {
                if let Some(Op::Reg(r)) = self.ops.get_mut(&op) {
                    r.new.extend(new);
                    r.failed.extend(
                        failed
                            .into_iter()
                            .map(|(pos, o)| (pos, Arc::from(o.node), Arc::from(o.address))),
                    );
                    if full && r.error.is_none() {
                        r.error = Some(SwitchError::ShardFull);
                    }
                    r.waiting -= 1;
                }
                self.try_finish(op, out);
            }
            Msg::Unregister { op, node, ports } => {
                let reply = self.unregister_here(node, &ports, out);
                self.settle(out);
                if op != 0 {
                    let pos = |v: Vec<usize>| v.into_iter().map(|p| p as u32).collect();
                    let msg = Msg::Unregistered {
                        op,
                        released: pos(reply.released),
                        not_owned: pos(reply.not_owned),
                        unknown: pos(reply.unknown),
                    };
                    msg.encode(&mut self.outbox[from]);
                }
            }
            Msg::Unregistered {
                op,
                released,
                not_owned,
                unknown,
            } => {
                if let Some(Op::Unreg(u)) = self.ops.get_mut(&op) {
                    let widen = |v: Vec<u32>| v.into_iter().map(|p| p as usize);
                    u.reply.released.extend(widen(released));
                    u.reply.not_owned.extend(widen(not_owned));
                    u.reply.unknown.extend(widen(unknown));
                    u.waiting -= 1;
                }
                self.try_finish(op, out);
            }
            Msg::Resolve { op, ports } => {
                let owners = ports
                    .iter()
                    .filter_map(|(pos, port)| self.resolve_here(port).map(|o| (*pos, o)))
                    .collect();
                Msg::Resolved { op, owners }.encode(&mut self.outbox[from]);
            }
            Msg::Resolved { op, owners } => {
                if let Some(Op::Send(s)) = self.ops.get_mut(&op) {
                    for (pos, o) in owners {
                        if let Some(slot) = s.owners.get_mut(pos as usize) {
                            *slot = Some(o);
                        }
                    }
                    s.waiting -= 1;
                }
                self.advance_sends(out);
            }
            Msg::QueryPorts { op, ports } => {
                let found: Vec<(u32, PortOwner)> = ports
                    .iter()
                    .filter_map(|(pos, port)| self.owner_here(port).map(|o| (*pos, o)))
                    .collect();
                let owners = found
                    .iter()
                    .map(|(pos, o)| {
                        let info = OwnerInfo {
                            node: &o.node,
                            session: 0,
                            address: &o.address,
                        };
                        (*pos, info)
                    })
                    .collect();
                Msg::Owners { op, owners }.encode(&mut self.outbox[from]);
            }
            Msg::Owners { op, owners } => {
                if let Some(Op::QueryPort {
                    waiting,
                    owners: slots,
                    ..
                }) = self.ops.get_mut(&op)
                {
                    for (pos, o) in owners {
                        if let Some(slot) = slots.get_mut(pos as usize) {
                            *slot = Some(PortOwner {
                                node: Arc::from(o.node),
                                address: Arc::from(o.address),
                            });
                        }
                    }
                    *waiting -= 1;
                }
                self.try_finish(op, out);
            }
            Msg::Deliver { op, items } => {
                let report = self.deliver_items(items, out);
                if op != 0 {
                    let msg = Msg::Delivered {
                        op,
                        delivered: report.delivered,
                        dropped: report.dropped,
                    };
                    msg.encode(&mut self.outbox[from]);
                }
            }
            Msg::Delivered {
                op,
                delivered,
                dropped,
            } => {
                if let Some(Op::Send(s)) = self.ops.get_mut(&op) {
                    s.report += SendReport { delivered, dropped };
                    s.acks -= 1;
                }
                self.try_finish(op, out);
            }
            Msg::NodeGone {
                node,
                session,
                reason,
            } => {
                self.release_here(node, session, reason, out);
                self.settle(out);
            }
            Msg::QueryCounters { op } => {
                let values = self.counters().to_vec();
                Msg::Counters { op, values }.encode(&mut self.outbox[from]);
            }
            Msg::Counters { op, values } => {
                if let Some(Op::Counters {
                    waiting,
                    values: sum,
                    ..
                }) = self.ops.get_mut(&op)
                {
                    for (s, v) in sum.iter_mut().zip(values) {
                        *s += v;
                    }
                    *waiting -= 1;
                }
                self.try_finish(op, out);
            }
            Msg::QueryNodes { op, nodes } => {
                let infos: Vec<(u32, HomeInfo<'_>)> = nodes
                    .iter()
                    .filter_map(|(pos, id)| self.home_info(id).map(|i| (*pos, i)))
                    .collect();
                let mut bytes = Vec::new();
                Msg::NodeInfos { op, infos }.encode(&mut bytes);
                self.outbox[from].extend_from_slice(&bytes);
            }
            Msg::NodeInfos { op, infos } => {
                if let Some(Op::QueryNode {
                    nodes,
                    waiting,
                    infos: slots,
                    ..
                }) = self.ops.get_mut(&op)
                {
                    for (pos, info) in infos {
                        if let (Some(slot), Some(id)) =
                            (slots.get_mut(pos as usize), nodes.get(pos as usize))
                        {
                            *slot = Some(node_info(id, info));
                        }
                    }
                    *waiting -= 1;
                }
                self.try_finish(op, out);
            }
        }
    }
}

/// A push to queue, borrowed from the request or the mesh record it came in (the queue
/// encodes it; nothing is allocated per push).
#[derive(Clone, Copy)]
enum PushRef<'a> {
    Msg {
        port: &'a str,
        body: &'a str,
    },
    Released {
        port: &'a str,
        reason: ReleaseReason,
    },
}

fn dropped(n: u64) -> SendReport {
    SendReport {
        delivered: 0,
        dropped: n,
    }
}

fn node_info(id: &str, i: HomeInfo<'_>) -> NodeInfo {
    NodeInfo {
        node: Arc::from(id),
        address: Arc::from(i.address),
        ports: i.ports as usize,
        lease_deadline: i.lease_deadline,
        queued_bytes: i.queued_bytes as usize,
    }
}
