//! The node registry ("node home"): node id ↔ dense index, address, receiving connection,
//! lease, outbound push queue with a byte limit, and per-node port count.
//!
//! A node exists in the registry while it has a receiving connection (WaitMsg) and is removed
//! ([`NodeRegistry::forget`]) once it went offline and its ports were released, so indices are
//! reused. Every WaitMsg starts a new **session**, numbered from one counter for the whole
//! registry, so a `(node index, session)` pair never refers to two incarnations of a node, even
//! after index reuse — subscriptions and anything else kept elsewhere use that pair.
//!
//! A **watcher** ([`NodeRegistry::open_watcher`]) is a receiving connection that is not a
//! node (a dashboard, an operator's tool): it has an index, a session and a push queue, so
//! watches deliver to it as to a node, but no id anyone can name, no lease, no ports, and it
//! is neither listed nor counted among the online nodes.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::sync::Arc;

use hashbrown::HashMap;

use crate::json::{write_string, Escaping, Reader};
use crate::ports::NodeIdx;
use crate::queue::{Batch, PushQueue};

/// Id of a connection, chosen by the caller (e.g. the HTTP/WebSocket layer's stream id).
pub type ConnId = u64;

/// Why a port was released, as told to subscribers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReleaseReason {
    /// The owner unregistered it.
    Unregistered,
    /// The owner went offline (lease expired, receiving connection closed, slow consumer).
    NodeOffline,
    /// The owner opened a new receiving connection, which drops all its ports.
    Replaced,
}

impl ReleaseReason {
    /// The wire name: `unregistered`, `node_offline` or `replaced`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseReason::Unregistered => "unregistered",
            ReleaseReason::NodeOffline => "node_offline",
            ReleaseReason::Replaced => "replaced",
        }
    }

    /// The reason of wire name `name`.
    pub fn from_name(name: &str) -> Option<ReleaseReason> {
        [
            ReleaseReason::Unregistered,
            ReleaseReason::NodeOffline,
            ReleaseReason::Replaced,
        ]
        .into_iter()
        .find(|r| r.as_str() == name)
    }
}

/// One push for a node's receiving connection, typed. Queues hold pushes encoded
/// ([`PushQueue`]); this is what [`NodeRegistry::pop`] decodes them back to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Push {
    /// A message sent to `port` (`""` for a broadcast).
    Msg {
        /// Target port.
        port: Arc<str>,
        /// Opaque body.
        body: Arc<str>,
    },
    /// A port the node subscribed to was released.
    Released {
        /// The released port.
        port: Arc<str>,
        /// Why.
        reason: ReleaseReason,
    },
}

impl Push {
    /// Bytes this push is charged against the queue limit: the bytes it will take on the wire
    /// without JSON escaping (escaping may add some).
    pub fn cost(&self) -> usize {
        match self {
            // {"type":"msg","port":"","body":""},
            Push::Msg { port, body } => 35 + port.len() + body.len(),
            // {"type":"released","port":"","reason":"node_offline"},
            Push::Released { port, reason } => 42 + port.len() + reason.as_str().len(),
        }
    }

    /// Append this push as one JSON object.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Push::Msg { port, body } => {
                out.extend_from_slice(br#"{"type":"msg","port":"#);
                json_string(out, port);
                out.extend_from_slice(br#","body":"#);
                json_string(out, body);
                out.push(b'}');
            }
            Push::Released { port, reason } => {
                out.extend_from_slice(br#"{"type":"released","port":"#);
                json_string(out, port);
                out.extend_from_slice(br#","reason":""#);
                out.extend_from_slice(reason.as_str().as_bytes());
                out.extend_from_slice(b"\"}");
            }
        }
    }
}

impl Push {
    /// Read back one push as [`Push::encode`] wrote it.
    pub fn decode(bytes: &[u8]) -> Option<Push> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut r = Reader::new(text);
        let (mut kind, mut port, mut body, mut reason) = (None, None, None, None);
        r.object(|r, key| {
            let value = r.string()?;
            match &*key {
                "type" => kind = Some(value),
                "port" => port = Some(value),
                "body" => body = Some(value),
                "reason" => reason = Some(value),
                _ => {}
            }
            Ok(())
        })
        .ok()?;
        r.end().ok()?;
        let port: Arc<str> = Arc::from(&*port?);
        match (&*kind?, body, reason) {
            ("msg", Some(body), None) => Some(Push::Msg {
                port,
                body: Arc::from(&*body),
            }),
            ("released", None, Some(reason)) => Some(Push::Released {
                port,
                reason: ReleaseReason::from_name(&reason)?,
            }),
            _ => None,
        }
    }
}

/// Append `s` as a JSON string literal.
pub(crate) fn json_string(out: &mut Vec<u8>, s: &str) {
    write_string(out, s);
}

/// Connection state of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    /// Has a receiving connection.
    Online {
        /// The receiving connection.
        conn: ConnId,
    },
    /// No receiving connection.
    Offline,
}

/// One node's record.
#[derive(Debug)]
pub struct Node {
    id: Arc<str>,
    address: Arc<str>,
    state: NodeState,
    session: u64,
    lease_deadline: u64,
    queue: PushQueue,
    ports: usize,
    /// A node-less watcher, not a node.
    watcher: bool,
}

impl Node {
    /// Whether this is a node-less watcher's connection, not a node.
    pub fn is_watcher(&self) -> bool {
        self.watcher
    }
    /// The node id.
    pub fn id(&self) -> &Arc<str> {
        &self.id
    }
    /// The address the node announced.
    pub fn address(&self) -> &Arc<str> {
        &self.address
    }
    /// Online (with its receiving connection) or offline.
    pub fn state(&self) -> NodeState {
        self.state
    }
    /// The receiving connection, if online.
    pub fn conn(&self) -> Option<ConnId> {
        match self.state {
            NodeState::Online { conn } => Some(conn),
            NodeState::Offline => None,
        }
    }
    /// The current session number.
    pub fn session(&self) -> u64 {
        self.session
    }
    /// When the lease runs out (milliseconds, caller's clock).
    pub fn lease_deadline(&self) -> u64 {
        self.lease_deadline
    }
    /// Bytes queued for the receiving connection (as encoded, each push with a separator).
    pub fn queued_bytes(&self) -> usize {
        self.queue.bytes()
    }
    /// Pushes queued for the receiving connection.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
    /// Ports held (all shards).
    pub fn ports(&self) -> usize {
        self.ports
    }
}

/// Result of [`NodeRegistry::push`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    /// Queued; `first` is true when the queue was empty before (the caller should schedule a
    /// drain of this node).
    Queued {
        /// The queue was empty.
        first: bool,
    },
    /// The node has no receiving connection (or does not exist); nothing was queued.
    Offline,
    /// Queuing would exceed the byte limit; nothing was queued and the node should be
    /// disconnected as a slow consumer.
    SlowConsumer {
        /// Bytes that would have been queued.
        queued: usize,
        /// The limit.
        limit: usize,
    },
}

/// Errors of node operations.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// The node has no receiving connection.
    #[error("node {0:?} has no receiving connection (call WaitMsg first)")]
    NotOnline(String),
}

/// Result of a drain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Drained {
    /// Pushes written.
    pub pushes: usize,
    /// Pushes still queued.
    pub remaining: usize,
}

/// The node registry.
#[derive(Debug)]
pub struct NodeRegistry {
    by_id: HashMap<Arc<str>, NodeIdx>,
    by_conn: HashMap<ConnId, NodeIdx>,
    nodes: Vec<Option<Node>>,
    free: Vec<NodeIdx>,
    leases: BinaryHeap<Reverse<(u64, NodeIdx, u64)>>,
    next_session: u64,
    lease_ms: u64,
    max_queued_bytes: usize,
    online: usize,
    /// Node-less watchers connected.
    watchers: usize,
    /// The ids of the online nodes, in order (listings).
    online_ids: BTreeSet<Arc<str>>,
}

impl NodeRegistry {
    /// A registry with the given lease duration and per-node queue limit, numbering sessions
    /// from 1.
    pub fn new(lease_ms: u64, max_queued_bytes: usize) -> Self {
        Self::with_sessions_from(lease_ms, max_queued_bytes, 1)
    }

    /// A registry whose first session is `first` (a base above every session of an earlier
    /// incarnation, so that a client naming an old session is not taken for a new one).
    pub fn with_sessions_from(lease_ms: u64, max_queued_bytes: usize, first: u64) -> Self {
        NodeRegistry {
            by_id: HashMap::new(),
            by_conn: HashMap::new(),
            nodes: Vec::new(),
            free: Vec::new(),
            leases: BinaryHeap::new(),
            next_session: first.max(1),
            lease_ms,
            max_queued_bytes,
            online: 0,
            watchers: 0,
            online_ids: BTreeSet::new(),
        }
    }

    /// The lease duration in milliseconds.
    pub fn lease_ms(&self) -> u64 {
        self.lease_ms
    }

    /// Number of nodes with a receiving connection.
    pub fn online(&self) -> usize {
        self.online
    }

    /// Number of node-less watchers connected.
    pub fn watchers(&self) -> usize {
        self.watchers
    }

    /// Index of node `id`.
    pub fn lookup(&self, id: &str) -> Option<NodeIdx> {
        self.by_id.get(id).copied()
    }

    /// Node whose receiving connection is `conn`.
    pub fn by_conn(&self, conn: ConnId) -> Option<NodeIdx> {
        self.by_conn.get(&conn).copied()
    }

    /// The node at `idx`.
    pub fn get(&self, idx: NodeIdx) -> Option<&Node> {
        self.nodes.get(idx as usize).and_then(Option::as_ref)
    }

    fn get_mut(&mut self, idx: NodeIdx) -> Option<&mut Node> {
        self.nodes.get_mut(idx as usize).and_then(Option::as_mut)
    }

    /// The node's index if it is online in `session`.
    pub fn in_session(&self, idx: NodeIdx, session: u64) -> bool {
        self.get(idx)
            .is_some_and(|n| n.session == session && n.conn().is_some())
    }

    /// Indices of every online node (not the watchers), in index order.
    pub fn online_nodes(&self) -> impl Iterator<Item = NodeIdx> + '_ {
        self.nodes.iter().enumerate().filter_map(|(i, n)| {
            n.as_ref()
                .filter(|n| n.conn().is_some() && !n.watcher)
                .map(|_| i as NodeIdx)
        })
    }

    /// Up to `limit` online nodes whose ids start with `prefix`, in id order, after `after`
    /// (or from the first).
    pub fn list_online(&self, prefix: &str, after: Option<&str>, limit: usize) -> Vec<NodeIdx> {
        use std::ops::Bound;
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        self.online_ids
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|id| id.starts_with(prefix))
            .take(limit)
            .filter_map(|id| self.lookup(id))
            .collect()
    }

    /// Get or create node `id` (created offline).
    pub fn intern(&mut self, id: &str) -> NodeIdx {
        if let Some(&idx) = self.by_id.get(id) {
            return idx;
        }
        let id: Arc<str> = Arc::from(id);
        let idx = self.slot(Node {
            id: id.clone(),
            address: Arc::from(""),
            state: NodeState::Offline,
            session: 0,
            lease_deadline: 0,
            queue: PushQueue::default(),
            ports: 0,
            watcher: false,
        });
        self.by_id.insert(id, idx);
        idx
    }

    fn slot(&mut self, node: Node) -> NodeIdx {
        if let Some(idx) = self.free.pop() {
            self.nodes[idx as usize] = Some(node);
            idx
        } else {
            self.nodes.push(Some(node));
            (self.nodes.len() - 1) as NodeIdx
        }
    }

    /// Opens a node-less watcher on `conn`: an index and a session for its watches and push
    /// queue, no id, no lease (it lasts as long as its connection). Its index and session.
    pub fn open_watcher(&mut self, conn: ConnId) -> (NodeIdx, u64) {
        let session = self.next_session;
        self.next_session += 1;
        let idx = self.slot(Node {
            id: Arc::from(""),
            address: Arc::from(""),
            state: NodeState::Online { conn },
            session,
            lease_deadline: u64::MAX,
            queue: PushQueue::default(),
            ports: 0,
            watcher: true,
        });
        self.by_conn.insert(conn, idx);
        self.watchers += 1;
        (idx, session)
    }

    /// Bring `idx` online on `conn` with a new session and a fresh lease; returns the new
    /// session. The node must be offline (the caller closes a previous connection first).
    pub fn connect(&mut self, idx: NodeIdx, conn: ConnId, address: &str, now: u64) -> u64 {
        let session = self.next_session;
        self.next_session += 1;
        let deadline = now.saturating_add(self.lease_ms);
        let prev = self.get(idx).and_then(Node::conn);
        if let Some(prev) = prev {
            self.disconnect(idx);
            debug_assert_ne!(prev, conn);
        }
        let Some(node) = self.get_mut(idx) else {
            return 0;
        };
        if node.address.as_ref() != address {
            node.address = Arc::from(address);
        }
        node.state = NodeState::Online { conn };
        node.session = session;
        node.lease_deadline = deadline;
        // A session starts with no ports: those of an earlier session were released when it
        // ended (on other instances, by messages the home sent before any of this session's).
        node.ports = 0;
        let id = node.id.clone();
        self.online_ids.insert(id);
        self.online += 1;
        self.by_conn.insert(conn, idx);
        self.leases.push(Reverse((deadline, idx, session)));
        session
    }

    /// Take `idx` offline: forget its connection and drop its queue. Returns the connection it
    /// had, if it was online.
    pub fn disconnect(&mut self, idx: NodeIdx) -> Option<ConnId> {
        let node = self.get_mut(idx)?;
        let conn = node.conn()?;
        node.state = NodeState::Offline;
        node.queue = PushQueue::default();
        if node.watcher {
            self.watchers -= 1;
        } else {
            let id = node.id.clone();
            self.online_ids.remove(&id);
            self.online -= 1;
        }
        self.by_conn.remove(&conn);
        Some(conn)
    }

    /// Remove an offline node from the registry (its index may be reused). Returns false if it
    /// is online or unknown.
    pub fn forget(&mut self, idx: NodeIdx) -> bool {
        match self.get(idx) {
            Some(n) if n.conn().is_none() => {
                if !n.watcher {
                    let id = n.id.clone();
                    self.by_id.remove(&id);
                }
                self.nodes[idx as usize] = None;
                self.free.push(idx);
                true
            }
            _ => false,
        }
    }

    /// Extend the lease of an online node; returns the new deadline. `O(1)`: the node's one
    /// entry in the lease heap is moved to the new deadline only when it comes due
    /// ([`NodeRegistry::expired`]), so a relet per message costs no more than a field write.
    pub fn relet(&mut self, idx: NodeIdx, now: u64) -> Result<u64, NodeError> {
        let lease_ms = self.lease_ms;
        let Some(node) = self
            .get_mut(idx)
            .filter(|n| n.conn().is_some() && !n.watcher)
        else {
            let id = self.get(idx).map_or_else(String::new, |n| n.id.to_string());
            return Err(NodeError::NotOnline(id));
        };
        let deadline = now.saturating_add(lease_ms).max(node.lease_deadline);
        node.lease_deadline = deadline;
        Ok(deadline)
    }

    /// Online nodes whose lease ran out at `now` (deadline ≤ now). Each expiry is reported
    /// once; the caller takes them offline. A heap entry that comes due for a node that
    /// reletted since is put back at the node's deadline.
    pub fn expired(&mut self, now: u64) -> Vec<NodeIdx> {
        let mut out = Vec::new();
        while let Some(&Reverse((deadline, idx, session))) = self.leases.peek() {
            if deadline > now {
                break;
            }
            self.leases.pop();
            let Some(node) = self
                .get(idx)
                .filter(|n| n.session == session && n.conn().is_some())
            else {
                continue;
            };
            if node.lease_deadline <= now {
                out.push(idx);
            } else {
                let later = node.lease_deadline;
                self.leases.push(Reverse((later, idx, session)));
            }
        }
        out
    }

    /// The earliest lease deadline on record (possibly superseded by a later relet, then a
    /// tick at it finds nothing and re-arms it).
    pub fn next_deadline(&self) -> Option<u64> {
        self.leases
            .peek()
            .map(|Reverse((deadline, _, _))| *deadline)
    }

    /// Queue a push for an online node.
    pub fn push(&mut self, idx: NodeIdx, push: Push) -> PushOutcome {
        match push {
            Push::Msg { port, body } => self.push_msg(idx, &port, &body),
            Push::Released { port, reason } => self.push_released(idx, &port, reason),
        }
    }

    /// Queue a message push (`port` `""` for a broadcast) for an online node.
    pub fn push_msg(&mut self, idx: NodeIdx, port: &str, body: &str) -> PushOutcome {
        self.push_msg_as(idx, port, body, Escaping::Scan)
    }

    /// [`NodeRegistry::push_msg`] of a port and body whose [`Escaping`] is known.
    pub fn push_msg_as(
        &mut self,
        idx: NodeIdx,
        port: &str,
        body: &str,
        escaping: Escaping,
    ) -> PushOutcome {
        self.push_with(idx, |q, limit| q.push_msg_as(port, body, escaping, limit))
    }

    /// Queue a release notification for an online node.
    pub fn push_released(
        &mut self,
        idx: NodeIdx,
        port: &str,
        reason: ReleaseReason,
    ) -> PushOutcome {
        self.push_with(idx, |q, limit| {
            q.push_released(port, reason.as_str(), limit)
        })
    }

    /// Queue a push that `encode` writes as one JSON object (watch events) for an online
    /// node.
    pub fn push_object(&mut self, idx: NodeIdx, encode: impl FnOnce(&mut Vec<u8>)) -> PushOutcome {
        self.push_with(idx, |q, limit| q.push_object(limit, encode))
    }

    fn push_with(
        &mut self,
        idx: NodeIdx,
        push: impl FnOnce(&mut PushQueue, usize) -> Result<usize, usize>,
    ) -> PushOutcome {
        let limit = self.max_queued_bytes;
        let Some(node) = self.get_mut(idx).filter(|n| n.conn().is_some()) else {
            return PushOutcome::Offline;
        };
        let first = node.queue.is_empty();
        match push(&mut node.queue, limit) {
            Ok(_) => PushOutcome::Queued { first },
            Err(queued) => PushOutcome::SlowConsumer { queued, limit },
        }
    }

    /// Take the oldest push of a node.
    pub fn pop(&mut self, idx: NodeIdx) -> Option<Push> {
        let bytes = self.get_mut(idx)?.queue.pop_front()?;
        Push::decode(&bytes)
    }

    /// Encode the oldest pushes of a node as one JSON array into `out`, taking as many as fit in
    /// `max_bytes` (at least one, so a push larger than `max_bytes` still gets out). Nothing is
    /// written if the queue is empty.
    pub fn drain(&mut self, idx: NodeIdx, max_bytes: usize, out: &mut Vec<u8>) -> Drained {
        let Some(node) = self.get_mut(idx) else {
            return Drained::default();
        };
        match node.queue.drain_into(max_bytes, out) {
            None => Drained::default(),
            Some((pushes, _)) => Drained {
                pushes,
                remaining: node.queue.len(),
            },
        }
    }

    /// The oldest pushes of a node that fit in a frame of `max_bytes` (as [`drain`] would
    /// write them), to be copied out (e.g. straight into a stream) and then taken off the
    /// queue with [`NodeRegistry::consume`].
    ///
    /// [`drain`]: NodeRegistry::drain
    pub fn batch(&self, idx: NodeIdx, max_bytes: usize) -> Option<Batch<'_>> {
        self.get(idx)?.queue.batch(max_bytes)
    }

    /// Take the batch last returned by [`NodeRegistry::batch`] off the node's queue: its
    /// `pushes` and [`Batch::queued_bytes`].
    pub fn consume(&mut self, idx: NodeIdx, pushes: usize, bytes: usize) -> Drained {
        let Some(node) = self.get_mut(idx) else {
            return Drained::default();
        };
        node.queue.consume(pushes, bytes);
        Drained {
            pushes,
            remaining: node.queue.len(),
        }
    }

    /// Add (or with a negative delta, remove) ports to a node's count.
    pub fn add_ports(&mut self, idx: NodeIdx, delta: isize) {
        if let Some(n) = self.get_mut(idx) {
            n.ports = n.ports.saturating_add_signed(delta);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(port: &str, body: &str) -> Push {
        Push::Msg {
            port: Arc::from(port),
            body: Arc::from(body),
        }
    }

    #[test]
    fn lease_expires_once_and_relet_extends() {
        let mut r = NodeRegistry::new(1000, 1 << 20);
        let a = r.intern("a");
        let b = r.intern("b");
        r.connect(a, 1, "10.0.0.1:80", 0);
        r.connect(b, 2, "10.0.0.2:80", 0);
        assert_eq!(r.relet(b, 500), Ok(1500));
        assert_eq!(r.expired(999), Vec::<NodeIdx>::new());
        assert_eq!(r.expired(1000), vec![a]);
        assert_eq!(r.expired(1000), Vec::<NodeIdx>::new());
        assert_eq!(r.expired(1500), vec![b]);
        r.disconnect(a);
        assert_eq!(r.relet(a, 2000), Err(NodeError::NotOnline("a".into())));
    }

    #[test]
    fn a_watcher_is_no_node() {
        let mut r = NodeRegistry::new(1000, 1 << 20);
        let a = r.intern("a");
        r.connect(a, 1, "", 0);
        let (w, session) = r.open_watcher(2);
        assert_ne!(w, a);
        assert!(session > r.get(a).unwrap().session());
        assert_eq!((r.online(), r.watchers()), (1, 1));
        assert_eq!(r.online_nodes().collect::<Vec<_>>(), [a]);
        assert_eq!(r.list_online("", None, 10), [a]);
        assert_eq!(r.lookup(""), None);
        assert_eq!(r.by_conn(2), Some(w));
        assert!(r.get(w).unwrap().is_watcher());
        assert!(r.relet(w, 5).is_err(), "no lease to renew");
        assert_eq!(
            r.expired(u64::MAX - 1),
            vec![a],
            "only the node's lease runs out"
        );
        assert_eq!(
            r.push_object(w, |b| b.extend_from_slice(b"{}")),
            PushOutcome::Queued { first: true }
        );
        assert_eq!(r.disconnect(w), Some(2));
        assert!(r.forget(w));
        assert_eq!((r.online(), r.watchers()), (1, 0));
        assert_eq!(r.lookup("a"), Some(a));
    }

    #[test]
    fn queue_limit_and_drain() {
        let mut r = NodeRegistry::new(1000, 200);
        let a = r.intern("a");
        assert_eq!(r.push(a, msg("p", "x")), PushOutcome::Offline);
        r.connect(a, 1, "addr", 0);
        assert_eq!(
            r.push(a, msg("p", "x")),
            PushOutcome::Queued { first: true }
        );
        assert_eq!(
            r.push(a, msg("p", "a\"b\n")),
            PushOutcome::Queued { first: false }
        );
        let big = "y".repeat(200);
        assert!(matches!(
            r.push(a, msg("p", &big)),
            PushOutcome::SlowConsumer { limit: 200, .. }
        ));
        let mut out = Vec::new();
        let d = r.drain(a, 1 << 20, &mut out);
        assert_eq!(
            d,
            Drained {
                pushes: 2,
                remaining: 0
            }
        );
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            r#"[{"type":"msg","port":"p","body":"x"},{"type":"msg","port":"p","body":"a\"b\n"}]"#
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v[1]["body"], "a\"b\n");
        assert_eq!(r.get(a).unwrap().queued_bytes(), 0);
    }

    #[test]
    fn json_string_escapes_controls() {
        let mut out = Vec::new();
        json_string(&mut out, "a\u{1}é\\\t");
        let s = String::from_utf8(out).unwrap();
        assert_eq!(s, "\"a\\u0001é\\\\\\t\"");
        assert_eq!(serde_json::from_str::<String>(&s).unwrap(), "a\u{1}é\\\t");
    }

    #[test]
    fn cost_matches_unescaped_encoding() {
        for p in [
            msg("port", "body"),
            Push::Released {
                port: Arc::from("q"),
                reason: ReleaseReason::NodeOffline,
            },
        ] {
            let mut out = Vec::new();
            p.encode(&mut out);
            assert_eq!(out.len() + 1, p.cost());
        }
    }
}
