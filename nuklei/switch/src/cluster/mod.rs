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

use crate::batch::{PortNames, SendBatch};
use crate::json::Escaping;
use crate::limits::{LimitError, Limits};
use crate::mesh::{
    DeliverWriter, HomeInfo, Item, ItemReader, Items, MeshOut, Msg, NodeRef, Outbox, OwnerInfo,
    ResolveWriter, ResolvedWriter,
};
use crate::nodes::{ConnId, Drained, Node, NodeRegistry, PushOutcome, ReleaseReason};
use crate::ports::{shard_of, NodeIdx, Outcome, PortShard, RegisterError, Subscriber};
use crate::switch::{
    check_wait_msg, connect, end_watcher, rewait, CloseReason, FailedPort, Metrics, NodeInfo,
    Output, PortOwner, RegPortReply, Reply, SendReport, Session, SwitchError, UnRegPortReply,
};
use crate::watch::{Event, Interest, Journal, Watchers, What};

mod coord;
mod home;
mod mesh_in;
mod ops;
mod pending;
mod shard;
mod watch;
pub use pending::Token;
use pending::{GiveOp, NodePortsOp, Registrant, TakeOp, WatchOp};

/// The instance that is home of `node` among `instances`.
pub fn home_of(node: &str, instances: usize) -> usize {
    shard_of(node.as_bytes(), instances)
}

/// The instance whose shard holds `port` among `instances`.
pub fn shard_instance(port: &str, instances: usize) -> usize {
    shard_of(port.as_bytes(), instances)
}

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
    /// This incarnation (see [`crate::switch::Config::incarnation`]): the same for every
    /// instance of one start.
    pub incarnation: u64,
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

use crate::switch::Cause;

/// A port another node owns: position, owner id and address.
type Failed = (u32, Arc<str>, Arc<str>);

struct RegOp {
    token: Token,
    node: NodeIdx,
    session: u64,
    ports: Arc<PortNames>,
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
    /// The pushes ask for acknowledgement.
    ack: bool,
    /// Acknowledgement reports outstanding (one per home an acknowledged Deliver went to).
    ack_waiting: usize,
    ack_report: crate::ack::AckReport,
    messages: SendBatch,
    /// Owner of each target, flattened in batch order (`None`: unknown or broadcast).
    owners: Vec<Option<NodeRef>>,
    /// Per instance, the positions of the targets whose owner it was asked for, in the
    /// order of its Resolve record (and of its Resolved reply).
    resolving: Vec<Vec<u32>>,
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
        values: [u64; 14],
    },
    Watch(WatchOp),
    ListPorts {
        token: Token,
        limit: usize,
        waiting: usize,
        pages: Vec<(Vec<crate::switch::ListedPort>, bool)>,
    },
    ListNodes {
        token: Token,
        limit: usize,
        waiting: usize,
        pages: Vec<(Vec<NodeInfo>, bool)>,
    },
    NodePorts(NodePortsOp),
    HandoverGive(GiveOp),
    HandoverTake(TakeOp),
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
    outbox: Vec<Outbox>,
    done: Vec<Done>,
    work: Vec<(NodeIdx, Cause)>,
    /// Exchanges the nukleus opened and refused (reported with the counters).
    exchanges: (u64, u64),
    /// This instance's events, numbered (port events of its shard, node events of its
    /// nodes).
    journal: Journal,
    /// Which homes want which of this instance's events.
    interest: Interest,
    /// The watches of the nodes homed here.
    watchers: Watchers,
    /// Scratch: the homes an event goes to.
    homes: Vec<u16>,
    /// Acknowledged deliveries to the nodes homed here.
    acks: crate::ack::Acks,
    /// While queuing the items of an acknowledged delivery: its local operation.
    ack_op: Option<u64>,
    /// Local acknowledgement operation -> (the instance whose SendMsg it is, its op there).
    ack_ops: HashMap<u64, (usize, u64)>,
    /// Ports reserved for nodes homed here by handovers in flight (counted against their
    /// limit).
    reserved: HashMap<NodeIdx, usize>,
    /// The last time this instance was told (for deadlines set on mesh input).
    now: u64,
}

impl Instance {
    /// Instance `config.me` of `config.instances`.
    pub fn new(config: InstanceConfig) -> Instance {
        let count = config.instances.max(1);
        Instance {
            me: config.me,
            count,
            nodes: NodeRegistry::with_sessions_from(
                config.lease_ms,
                config.limits.max_queued_bytes,
                config.incarnation / count as u64 + 1,
            ),
            journal: Journal::new(config.limits.watch_history, config.incarnation),
            interest: Interest::default(),
            watchers: Watchers::new(count),
            homes: Vec::new(),
            acks: crate::ack::Acks::default(),
            ack_op: None,
            ack_ops: HashMap::new(),
            reserved: HashMap::new(),
            now: 0,
            limits: config.limits,
            shard: PortShard::with_random_seed(),
            owners: Owners::default(),
            metrics: Metrics::default(),
            ops: HashMap::new(),
            next_op: 1,
            send_order: VecDeque::new(),
            outbox: (0..count).map(|_| Outbox::default()).collect(),
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
            watchers: self.nodes.watchers() as u64,
            ..self.metrics
        }
    }

    /// Tells the instance how many exchanges its nukleus opened and refused, for
    /// [`Instance::query_metrics`].
    pub fn set_exchange_counts(&mut self, opened: u64, refused: u64) {
        self.exchanges = (opened, refused);
    }

    fn counters(&self) -> [u64; 14] {
        let mut v = [0; 14];
        v[..12].copy_from_slice(&self.metrics().to_array());
        v[12] = self.exchanges.0;
        v[13] = self.exchanges.1;
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

    /// Mesh bytes to send to instance `peer` beyond those written into a lent frame (all of
    /// them when none is lent; the caller sends a prefix and drains it).
    pub fn outbox(&mut self, peer: usize) -> &mut Vec<u8> {
        self.outbox[peer].overflow()
    }

    /// The records to instance `peer`: to lend it a frame of the ring to that peer and take
    /// the frame back ([`Outbox::lend`], [`Outbox::take_frame`]).
    pub fn outbox_to(&mut self, peer: usize) -> &mut Outbox {
        &mut self.outbox[peer]
    }

    /// Whether the outbox to `peer` holds a lent frame.
    pub fn holds_frame(&self, peer: usize) -> bool {
        self.outbox[peer].holds_frame()
    }

    /// Bytes waiting in all outboxes (lent frames included).
    pub fn outbox_bytes(&self) -> usize {
        self.outbox.iter().map(MeshOut::len).sum()
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

    /// Checks a request's ports by their lengths (in bytes, in order): their number, and the
    /// first one empty or too long names the error.
    fn check_ports(&self, lens: impl ExactSizeIterator<Item = usize>) -> Result<(), SwitchError> {
        self.limits.check_ports_in_request(lens.len())?;
        for len in lens {
            if len == 0 {
                return Err(SwitchError::EmptyPortName);
            }
            self.limits.check_port_name_len(len)?;
        }
        Ok(())
    }
}

/// A push to queue, borrowed from the request or the mesh record it came in (the queue
/// encodes it; nothing is allocated per push).
#[derive(Clone, Copy)]
enum PushRef<'a> {
    Msg {
        port: &'a str,
        body: &'a str,
        escaping: Escaping,
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

#[cfg(test)]
mod seed_tests {
    use super::*;

    /// A cluster instance's port shard is seeded at random, as a single switch's are (before,
    /// it had the fixed seed 0x9e37_79b9_7f4a_7c15 ^ its index).
    #[test]
    fn two_instances_with_the_same_index_hash_the_same_names_apart() {
        let config = || InstanceConfig {
            me: 1,
            instances: 2,
            lease_ms: 10_000,
            limits: Limits::default(),
            incarnation: 0,
        };
        let (a, b) = (Instance::new(config()), Instance::new(config()));
        let apart = (0..4)
            .filter(|i| {
                let name = format!("port-{i}");
                a.shard.index_tag(name.as_bytes()) != b.shard.index_tag(name.as_bytes())
            })
            .count();
        assert!(apart >= 3, "{apart} of 4 names hashed apart");
    }
}
