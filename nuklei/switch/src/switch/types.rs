//! The switch's vocabulary, shared by both engines, the API encoders and the cluster: its
//! configuration, what it tells the caller to do ([`Output`]), its errors, and the replies of
//! its operations.

use std::sync::Arc;

use crate::limits::{LimitError, Limits};
use crate::nodes::ConnId;
use crate::ports::NodeIdx;

/// Switch configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Lease duration: a node that does not relet within this many milliseconds goes offline.
    pub lease_ms: u64,
    /// Number of port shards (at least 1).
    pub shards: usize,
    /// Size limits.
    pub limits: Limits,
    /// This incarnation of the switch: a number larger than any of an earlier one (the
    /// nukleus uses its start time in microseconds), from which session numbers and event
    /// sequence numbers count, so that a session or cursor of before a restart is never taken
    /// for one of after it.
    pub incarnation: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            lease_ms: 10_000,
            shards: 1,
            limits: Limits::default(),
            incarnation: 0,
        }
    }
}

/// Why the switch asks the caller to close a receiving connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The node opened a new receiving connection.
    Replaced,
    /// The node did not relet in time.
    LeaseExpired,
    /// The node's outbound queue exceeded its byte limit.
    SlowConsumer {
        /// Bytes that would have been queued.
        queued: usize,
        /// The limit.
        limit: usize,
    },
    /// The token the connection was opened with was removed, or no longer grants the node.
    TokenRevoked,
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::Replaced => f.write_str("replaced by a new receiving connection"),
            CloseReason::LeaseExpired => f.write_str("lease expired"),
            CloseReason::SlowConsumer { queued, limit } => write!(
                f,
                "slow consumer: {queued} bytes would be queued, the limit is {limit} bytes"
            ),
            CloseReason::TokenRevoked => f.write_str(
                "the token of this connection was revoked (removed from the topology, or no longer granted this node)",
            ),
        }
    }
}

/// Something the caller must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// A node's queue went from empty to non-empty: drain it ([`Switch::drain`]) to its
    /// receiving connection `conn` when that connection can take data. Emitted once per
    /// empty→non-empty transition.
    Pending {
        /// The node.
        node: NodeIdx,
        /// Its receiving connection.
        conn: ConnId,
    },
    /// Close this receiving connection, telling the peer `reason`. The node is already offline
    /// and its ports released; a later `connection_closed(conn)` is ignored.
    Close {
        /// The node id.
        node: Arc<str>,
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
}

/// Errors of switch commands. Every error leaves the switch unchanged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SwitchError {
    /// A limit was exceeded.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// The node has no receiving connection.
    #[error("node {0:?} has no receiving connection (call WaitMsg first)")]
    NotOnline(String),
    /// A node-less watcher's connection closed before its call ran.
    #[error("the watcher's connection has closed: open a new one")]
    WatcherGone,
    /// A port name was empty where a port is required.
    #[error("the empty port name is reserved for broadcast")]
    EmptyPortName,
    /// A node id was empty.
    #[error("node id must not be empty")]
    EmptyNodeId,
    /// The connection already receives for another node.
    #[error("connection {conn} is already the receiving connection of node {node:?}")]
    ConnectionInUse {
        /// The connection.
        conn: ConnId,
        /// The node it receives for.
        node: String,
    },
    /// A port shard ran out of 32-bit address space.
    #[error("port table shard is full")]
    ShardFull,
    /// The request makes no sense (a handover to the giver itself, …).
    #[error("{0}")]
    Invalid(String),
    /// A watch could not be added or removed.
    #[error(transparent)]
    Watch(#[from] WatchError),
    /// A watch's `from` cursor is not a position of this switch.
    #[error("{0}")]
    BadCursor(String),
    /// The call names a session of the node that is not its current one.
    #[error("session {named} of node {node:?} is not its receiving connection any more (it is {current}): the call was not applied")]
    SessionReplaced {
        /// The node.
        node: String,
        /// The session the call named.
        named: u64,
        /// The node's current session.
        current: u64,
    },
    /// A request that acts for a node reached a switch instance that is not the node's home
    /// (with several switch instances, http and ws route such requests by the node id).
    #[error("node {node:?} lives on switch instance {home}, this is instance {here}: route requests for a node by its id (the default http/ws routes to `switch` do)")]
    Misdirected {
        /// The node.
        node: String,
        /// Its home instance.
        home: usize,
        /// The instance that received the request.
        here: usize,
    },
}

/// A new receiving session ([`Switch::wait_msg`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Session {
    /// The node's index (stable while it is online).
    pub node: NodeIdx,
    /// Session number, unique in this switch.
    pub session: u64,
    /// Lease deadline (ms).
    pub lease_deadline: u64,
    /// True if an older receiving connection was replaced.
    pub replaced: bool,
}

/// A port that could not be registered, with its owner: a failed registration is discovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedPort {
    /// Position of the port in the request.
    pub index: usize,
    /// The owner's node id.
    pub owner: Arc<str>,
    /// The owner's address.
    pub address: Arc<str>,
}

/// Result of RegPort.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegPortReply {
    /// Ports newly registered by this request (re-registrations of own ports not counted).
    pub registered: usize,
    /// Ports owned by another node.
    pub failed: Vec<FailedPort>,
}

/// Result of UnRegPort: positions in the request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnRegPortReply {
    /// Released.
    pub released: Vec<usize>,
    /// Owned by another node (left alone).
    pub not_owned: Vec<usize>,
    /// Not registered.
    pub unknown: Vec<usize>,
}

/// Result of SendMsg.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendReport {
    /// Pushes queued.
    pub delivered: u64,
    /// Targets dropped (unknown port, owner offline, or owner disconnected as slow consumer).
    pub dropped: u64,
}

impl std::ops::AddAssign for SendReport {
    fn add_assign(&mut self, rhs: Self) {
        self.delivered += rhs.delivered;
        self.dropped += rhs.dropped;
    }
}

/// Owner of a port (QueryPort).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortOwner {
    /// Owner node id.
    pub node: Arc<str>,
    /// Owner address.
    pub address: Arc<str>,
}

/// An online node (QueryNode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// Node id.
    pub node: Arc<str>,
    /// Announced address.
    pub address: Arc<str>,
    /// Ports held.
    pub ports: usize,
    /// Lease deadline (ms).
    pub lease_deadline: u64,
    /// Bytes queued for its receiving connection.
    pub queued_bytes: usize,
}

impl Metrics {
    /// The counters as an array, in declaration order (for the mesh).
    pub fn to_array(&self) -> [u64; 12] {
        [
            self.ports,
            self.nodes_online,
            self.registrations,
            self.registration_conflicts,
            self.releases,
            self.release_notifications,
            self.messages_sent,
            self.messages_dropped,
            self.slow_consumer_disconnects,
            self.lease_expiries,
            self.replaced_connections,
            self.watchers,
        ]
    }

    /// The counters from [`Metrics::to_array`].
    pub fn from_array(a: [u64; 12]) -> Metrics {
        Metrics {
            ports: a[0],
            nodes_online: a[1],
            registrations: a[2],
            registration_conflicts: a[3],
            releases: a[4],
            release_notifications: a[5],
            messages_sent: a[6],
            messages_dropped: a[7],
            slow_consumer_disconnects: a[8],
            lease_expiries: a[9],
            replaced_connections: a[10],
            watchers: a[11],
        }
    }
}

/// Counters; see [`Switch::metrics`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Ports registered now.
    pub ports: u64,
    /// Nodes with a receiving connection now.
    pub nodes_online: u64,
    /// Ports newly registered (total).
    pub registrations: u64,
    /// Registrations refused because another node owns the port.
    pub registration_conflicts: u64,
    /// Ports released, any reason.
    pub releases: u64,
    /// Release notifications queued.
    pub release_notifications: u64,
    /// Message pushes queued.
    pub messages_sent: u64,
    /// Message targets dropped.
    pub messages_dropped: u64,
    /// Nodes disconnected as slow consumers.
    pub slow_consumer_disconnects: u64,
    /// Nodes whose lease expired.
    pub lease_expiries: u64,
    /// Receiving connections replaced by a new WaitMsg.
    pub replaced_connections: u64,
    /// Node-less watchers connected now (not counted in `nodes_online`).
    pub watchers: u64,
}

/// The answer of an operation, as the engines pass it to the REST/WS encoders
/// (`engine::response`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// RegPort.
    RegPort(RegPortReply),
    /// UnRegPort.
    UnRegPort(UnRegPortReply),
    /// SendMsg.
    SendMsg(SendReport),
    /// QueryPort, in request order.
    QueryPort(Vec<Option<PortOwner>>),
    /// QueryNode, in request order.
    QueryNode(Vec<Option<NodeInfo>>),
    /// A watch started.
    Watch(WatchReply),
    /// A call that answers nothing but success (unwatch).
    Done,
    /// A page of ports by prefix.
    ListPorts(PortListing),
    /// A page of online nodes.
    ListNodes(NodeListing),
    /// A page of a node's ports.
    NodePorts(NodePortsListing),
    /// What a handover moved.
    Handover(HandoverReply),
    /// Pushes acknowledged by an `ack`.
    Acked(u64),
    /// An acknowledged SendMsg: what it queued and what the receivers acknowledged.
    SendAcked(SendReport, crate::ack::AckReport),
    /// The counters of every switch instance, summed ([`crate::cluster::Instance::query_metrics`]).
    Metrics {
        /// Switch counters.
        metrics: Metrics,
        /// Exchanges opened by the switch nuklei.
        requests: u64,
        /// Exchanges refused before reaching the switch (auth, routing).
        refused: u64,
    },
}

/// Why a watch could not be added.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    /// The session has a watch of this id.
    #[error(
        "this receiving connection already has a watch {0}: unwatch it first or pick another id"
    )]
    Exists(u64),
    /// The node has as many watches as it may.
    #[error("the node has {count} watches, the limit is {limit} watches per node")]
    TooMany {
        /// Watches the node has.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// No such watch.
    #[error("this receiving connection has no watch {0}")]
    Unknown(u64),
}

/// A watch started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchReply {
    /// Its id.
    pub id: u64,
    /// Where it stands: per instance, the sequence after which its events follow.
    pub cursor: Vec<u64>,
}

/// A port in a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedPort {
    /// The port.
    pub port: String,
    /// Its owner.
    pub owner: Arc<str>,
    /// The owner's address (`""`: none announced).
    pub address: Arc<str>,
}

/// A page of ports by prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortListing {
    /// The ports, in name order.
    pub ports: Vec<ListedPort>,
    /// The cursor of the next page (`None`: this was the last).
    pub next: Option<String>,
}

/// A page of online nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeListing {
    /// The nodes, in id order.
    pub nodes: Vec<NodeInfo>,
    /// The cursor of the next page.
    pub next: Option<String>,
}

/// A page of one node's ports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodePortsListing {
    /// The ports.
    pub ports: Vec<String>,
    /// The cursor of the next page.
    pub next: Option<String>,
    /// The cursor's port had left the node: a shard's part started again.
    pub restarted: bool,
}

/// What a handover did, as positions in the request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HandoverReply {
    /// Moved to the receiver.
    pub moved: Vec<usize>,
    /// Not the giver's (left alone).
    pub not_owned: Vec<usize>,
    /// Not registered.
    pub unknown: Vec<usize>,
}
