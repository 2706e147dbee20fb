//! The switch mesh protocol: messages between switch instances (fission), and their binary
//! encoding.
//!
//! Switch instances exchange these over the DATA frames of one stream per direction and pair
//! of instances. The byte stream is a sequence of records `[len:u32 LE][tag:u8][fields]`, where
//! `len` counts the tag and the fields; a record may be split across DATA frames
//! ([`MeshReader`] reassembles). Integers are little-endian; a string is `[len:u32][UTF-8]`; a
//! list is `[count:u32][items]`. Ring order is the only ordering the protocol relies on: two
//! messages from one instance to another are handled in the order they were written.

use crate::nodes::ReleaseReason;

/// One item delivered to a node home ([`Msg::Deliver`]), in the order the sender resolved it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item<'a> {
    /// A message for node `node` (its index at its home), if it is still in `session`.
    Unicast {
        /// Owner's index at its home.
        node: u32,
        /// Its session when the port was resolved.
        session: u64,
        /// The target port.
        port: &'a str,
        /// The body.
        body: &'a str,
    },
    /// A message for every node homed at the receiver that has a receiving connection.
    Broadcast {
        /// The body.
        body: &'a str,
    },
    /// A release notification for a subscriber, if it is still in `session`.
    Released {
        /// Subscriber's index at its home.
        node: u32,
        /// Its session when it subscribed.
        session: u64,
        /// The released port.
        port: &'a str,
        /// Why.
        reason: ReleaseReason,
    },
}

/// A node as the instances other than its home refer to it: its home, its index there and
/// its session. No strings: resolving a port and delivering a message to its owner carry
/// these 14 bytes instead of the node's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeRef {
    /// The home instance.
    pub home: u16,
    /// The node's index at its home.
    pub idx: u32,
    /// The node's session (unique across instances).
    pub session: u64,
}

/// Owner of a port as a port shard knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerInfo<'a> {
    /// Node id.
    pub node: &'a str,
    /// Its session.
    pub session: u64,
    /// Its announced address.
    pub address: &'a str,
}

/// What a node home knows of an online node ([`Msg::NodeInfos`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HomeInfo<'a> {
    /// Announced address.
    pub address: &'a str,
    /// Ports held.
    pub ports: u64,
    /// Lease deadline (ms).
    pub lease_deadline: u64,
    /// Bytes queued.
    pub queued_bytes: u64,
}

/// A mesh message. `op` correlates a request with its reply at the instance that sent the
/// request; `op` 0 asks for no reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Msg<'a> {
    /// Register `ports` (request positions and names) for `node`.
    Register {
        /// Correlation.
        op: u64,
        /// Node id.
        node: &'a str,
        /// The node's index at its home (the sender) and session.
        at_home: NodeRef,
        /// Its address.
        address: &'a str,
        /// Subscribe to the release of ports owned by others.
        subscribe: bool,
        /// `(position in the request, port)`.
        ports: Vec<(u32, &'a str)>,
    },
    /// Reply to [`Msg::Register`].
    Registered {
        /// Correlation.
        op: u64,
        /// Positions newly registered.
        new: Vec<u32>,
        /// Positions owned by another node, with the owner.
        failed: Vec<(u32, OwnerInfo<'a>)>,
        /// The shard could not take more ports.
        full: bool,
    },
    /// Release `ports` if `node` owns them.
    Unregister {
        /// Correlation (0: a rollback, no reply).
        op: u64,
        /// Node id.
        node: &'a str,
        /// `(position, port)`.
        ports: Vec<(u32, &'a str)>,
    },
    /// Reply to [`Msg::Unregister`].
    Unregistered {
        /// Correlation.
        op: u64,
        /// Released positions.
        released: Vec<u32>,
        /// Positions owned by another node.
        not_owned: Vec<u32>,
        /// Positions not registered.
        unknown: Vec<u32>,
    },
    /// Who owns these ports (SendMsg, phase one).
    Resolve {
        /// Correlation.
        op: u64,
        /// `(position, port)`.
        ports: Vec<(u32, &'a str)>,
    },
    /// Reply to [`Msg::Resolve`]: `(position, owner)`; positions without an owner are left out.
    Resolved {
        /// Correlation.
        op: u64,
        /// The owners.
        owners: Vec<(u32, NodeRef)>,
    },
    /// Reply to [`Msg::QueryPorts`].
    Owners {
        /// Correlation.
        op: u64,
        /// `(position, owner)`; positions without an owner are left out.
        owners: Vec<(u32, OwnerInfo<'a>)>,
    },
    /// Queue these items at their node home, in order (SendMsg, phase two; notifications).
    Deliver {
        /// Correlation (0: no acknowledgement).
        op: u64,
        /// The items.
        items: Vec<Item<'a>>,
    },
    /// Acknowledges [`Msg::Deliver`].
    Delivered {
        /// Correlation.
        op: u64,
        /// Pushes queued.
        delivered: u64,
        /// Items dropped (node gone, session changed, slow consumer).
        dropped: u64,
    },
    /// A node went offline (or was replaced) at its home: release its ports and forget it.
    NodeGone {
        /// Node id.
        node: &'a str,
        /// The session that ended.
        session: u64,
        /// Reason given to subscribers.
        reason: ReleaseReason,
    },
    /// Owners of ports (QueryPort); answered with [`Msg::Owners`].
    QueryPorts {
        /// Correlation.
        op: u64,
        /// `(position, port)`.
        ports: Vec<(u32, &'a str)>,
    },
    /// Online nodes (QueryNode), asked of their home.
    QueryNodes {
        /// Correlation.
        op: u64,
        /// `(position, node id)`.
        nodes: Vec<(u32, &'a str)>,
    },
    /// Counters of the receiver ([`Msg::Counters`]).
    QueryCounters {
        /// Correlation.
        op: u64,
    },
    /// Reply to [`Msg::QueryCounters`]: the switch metrics in declaration order, then exchanges
    /// opened and refused.
    Counters {
        /// Correlation.
        op: u64,
        /// The values.
        values: Vec<u64>,
    },
    /// Reply to [`Msg::QueryNodes`]; offline nodes are left out.
    NodeInfos {
        /// Correlation.
        op: u64,
        /// `(position, info)`.
        infos: Vec<(u32, HomeInfo<'a>)>,
    },
}

/// A mesh record that could not be decoded (a bug: both ends are this code).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MeshError {
    /// The record ended before its fields did.
    #[error("mesh record truncated at byte {0}")]
    Truncated(usize),
    /// Unknown record tag.
    #[error("unknown mesh record tag {0}")]
    UnknownTag(u8),
    /// A string was not UTF-8.
    #[error("mesh record string is not UTF-8")]
    Utf8,
    /// Unknown release reason code.
    #[error("unknown release reason {0}")]
    Reason(u8),
}

const REGISTER: u8 = 1;
const REGISTERED: u8 = 2;
const UNREGISTER: u8 = 3;
const UNREGISTERED: u8 = 4;
const RESOLVE: u8 = 5;
const OWNERS: u8 = 6;
const DELIVER: u8 = 7;
const DELIVERED: u8 = 8;
const NODE_GONE: u8 = 9;
const QUERY_PORTS: u8 = 10;
const QUERY_NODES: u8 = 11;
const NODE_INFOS: u8 = 12;
const QUERY_COUNTERS: u8 = 13;
const COUNTERS: u8 = 14;
const RESOLVED: u8 = 15;

const ITEM_UNICAST: u8 = 1;
const ITEM_BROADCAST: u8 = 2;
const ITEM_RELEASED: u8 = 3;

fn reason_code(r: ReleaseReason) -> u8 {
    match r {
        ReleaseReason::Unregistered => 1,
        ReleaseReason::NodeOffline => 2,
        ReleaseReason::Replaced => 3,
    }
}

fn reason_of(code: u8) -> Result<ReleaseReason, MeshError> {
    Ok(match code {
        1 => ReleaseReason::Unregistered,
        2 => ReleaseReason::NodeOffline,
        3 => ReleaseReason::Replaced,
        other => return Err(MeshError::Reason(other)),
    })
}

struct Enc<'a>(&'a mut Vec<u8>);

impl Enc<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.0.extend_from_slice(s.as_bytes());
    }
    fn positions(&mut self, v: &[u32]) {
        self.u32(v.len() as u32);
        for &p in v {
            self.u32(p);
        }
    }
    fn named(&mut self, v: &[(u32, &str)]) {
        self.u32(v.len() as u32);
        for (p, s) in v {
            self.u32(*p);
            self.str(s);
        }
    }
    fn owner(&mut self, o: &OwnerInfo<'_>) {
        self.str(o.node);
        self.u64(o.session);
        self.str(o.address);
    }
    fn node_ref(&mut self, r: &NodeRef) {
        self.0.extend_from_slice(&r.home.to_le_bytes());
        self.u32(r.idx);
        self.u64(r.session);
    }
}

struct Dec<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Dec<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], MeshError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(MeshError::Truncated(self.pos))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, MeshError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, MeshError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, MeshError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn str(&mut self) -> Result<&'a str, MeshError> {
        let n = self.u32()? as usize;
        let b = self.take(n)?;
        std::str::from_utf8(b).map_err(|_| MeshError::Utf8)
    }
    fn node_ref(&mut self) -> Result<NodeRef, MeshError> {
        let h = self.take(2)?;
        Ok(NodeRef {
            home: u16::from_le_bytes([h[0], h[1]]),
            idx: self.u32()?,
            session: self.u64()?,
        })
    }
    /// A count that cannot exceed the bytes left (each item takes at least one byte), so a
    /// corrupt count cannot make us reserve unbounded memory.
    fn count(&mut self) -> Result<usize, MeshError> {
        let n = self.u32()? as usize;
        if n > self.bytes.len() - self.pos {
            return Err(MeshError::Truncated(self.pos));
        }
        Ok(n)
    }
    fn positions(&mut self) -> Result<Vec<u32>, MeshError> {
        let n = self.count()?;
        (0..n).map(|_| self.u32()).collect()
    }
    fn named(&mut self) -> Result<Vec<(u32, &'a str)>, MeshError> {
        let n = self.count()?;
        (0..n).map(|_| Ok((self.u32()?, self.str()?))).collect()
    }
    fn owner(&mut self) -> Result<OwnerInfo<'a>, MeshError> {
        Ok(OwnerInfo {
            node: self.str()?,
            session: self.u64()?,
            address: self.str()?,
        })
    }
}

impl<'a> Msg<'a> {
    /// Appends this message as one record to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        let mut e = Enc(out);
        match self {
            Msg::Register {
                op,
                node,
                at_home,
                address,
                subscribe,
                ports,
            } => {
                e.u8(REGISTER);
                e.u64(*op);
                e.str(node);
                e.node_ref(at_home);
                e.str(address);
                e.u8(u8::from(*subscribe));
                e.named(ports);
            }
            Msg::Registered {
                op,
                new,
                failed,
                full,
            } => {
                e.u8(REGISTERED);
                e.u64(*op);
                e.positions(new);
                e.u32(failed.len() as u32);
                for (p, o) in failed {
                    e.u32(*p);
                    e.owner(o);
                }
                e.u8(u8::from(*full));
            }
            Msg::Unregister { op, node, ports } => {
                e.u8(UNREGISTER);
                e.u64(*op);
                e.str(node);
                e.named(ports);
            }
            Msg::Unregistered {
                op,
                released,
                not_owned,
                unknown,
            } => {
                e.u8(UNREGISTERED);
                e.u64(*op);
                e.positions(released);
                e.positions(not_owned);
                e.positions(unknown);
            }
            Msg::Resolve { op, ports } => {
                e.u8(RESOLVE);
                e.u64(*op);
                e.named(ports);
            }
            Msg::QueryPorts { op, ports } => {
                e.u8(QUERY_PORTS);
                e.u64(*op);
                e.named(ports);
            }
            Msg::Resolved { op, owners } => {
                e.u8(RESOLVED);
                e.u64(*op);
                e.u32(owners.len() as u32);
                for (p, r) in owners {
                    e.u32(*p);
                    e.node_ref(r);
                }
            }
            Msg::Owners { op, owners } => {
                e.u8(OWNERS);
                e.u64(*op);
                e.u32(owners.len() as u32);
                for (p, o) in owners {
                    e.u32(*p);
                    e.owner(o);
                }
            }
            Msg::Deliver { op, items } => {
                e.u8(DELIVER);
                e.u64(*op);
                e.u32(items.len() as u32);
                for item in items {
                    match item {
                        Item::Unicast {
                            node,
                            session,
                            port,
                            body,
                        } => {
                            e.u8(ITEM_UNICAST);
                            e.u32(*node);
                            e.u64(*session);
                            e.str(port);
                            e.str(body);
                        }
                        Item::Broadcast { body } => {
                            e.u8(ITEM_BROADCAST);
                            e.str(body);
                        }
                        Item::Released {
                            node,
                            session,
                            port,
                            reason,
                        } => {
                            e.u8(ITEM_RELEASED);
                            e.u32(*node);
                            e.u64(*session);
                            e.str(port);
                            e.u8(reason_code(*reason));
                        }
                    }
                }
            }
            Msg::Delivered {
                op,
                delivered,
                dropped,
            } => {
                e.u8(DELIVERED);
                e.u64(*op);
                e.u64(*delivered);
                e.u64(*dropped);
            }
            Msg::NodeGone {
                node,
                session,
                reason,
            } => {
                e.u8(NODE_GONE);
                e.str(node);
                e.u64(*session);
                e.u8(reason_code(*reason));
            }
            Msg::QueryCounters { op } => {
                e.u8(QUERY_COUNTERS);
                e.u64(*op);
            }
            Msg::Counters { op, values } => {
                e.u8(COUNTERS);
                e.u64(*op);
                e.u32(values.len() as u32);
                for v in values {
                    e.u64(*v);
                }
            }
            Msg::QueryNodes { op, nodes } => {
                e.u8(QUERY_NODES);
                e.u64(*op);
                e.named(nodes);
            }
            Msg::NodeInfos { op, infos } => {
                e.u8(NODE_INFOS);
                e.u64(*op);
                e.u32(infos.len() as u32);
                for (p, i) in infos {
                    e.u32(*p);
                    e.str(i.address);
                    e.u64(i.ports);
                    e.u64(i.lease_deadline);
                    e.u64(i.queued_bytes);
                }
            }
        }
        let len = (out.len() - start - 4) as u32;
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    }

    /// Decodes one record body (tag and fields, without the length prefix).
    pub fn decode(bytes: &'a [u8]) -> Result<Msg<'a>, MeshError> {
        let mut d = Dec { bytes, pos: 0 };
        let msg = match d.u8()? {
            REGISTER => Msg::Register {
                op: d.u64()?,
                node: d.str()?,
                at_home: d.node_ref()?,
                address: d.str()?,
                subscribe: d.u8()? != 0,
                ports: d.named()?,
            },
            REGISTERED => {
                let op = d.u64()?;
                let new = d.positions()?;
                let n = d.count()?;
                let failed = (0..n)
                    .map(|_| Ok((d.u32()?, d.owner()?)))
                    .collect::<Result<_, MeshError>>()?;
                Msg::Registered {
                    op,
                    new,
                    failed,
                    full: d.u8()? != 0,
                }
            }
            UNREGISTER => Msg::Unregister {
                op: d.u64()?,
                node: d.str()?,
                ports: d.named()?,
            },
            UNREGISTERED => Msg::Unregistered {
                op: d.u64()?,
                released: d.positions()?,
                not_owned: d.positions()?,
                unknown: d.positions()?,
            },
            RESOLVE => Msg::Resolve {
                op: d.u64()?,
                ports: d.named()?,
            },
            QUERY_PORTS => Msg::QueryPorts {
                op: d.u64()?,
                ports: d.named()?,
            },
            RESOLVED => {
                let op = d.u64()?;
                let n = d.count()?;
                let owners = (0..n)
                    .map(|_| Ok((d.u32()?, d.node_ref()?)))
                    .collect::<Result<_, MeshError>>()?;
                Msg::Resolved { op, owners }
            }
            OWNERS => {
                let op = d.u64()?;
                let n = d.count()?;
                let owners = (0..n)
                    .map(|_| Ok((d.u32()?, d.owner()?)))
                    .collect::<Result<_, MeshError>>()?;
                Msg::Owners { op, owners }
            }
            DELIVER => {
                let op = d.u64()?;
                let n = d.count()?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(match d.u8()? {
                        ITEM_UNICAST => Item::Unicast {
                            node: d.u32()?,
                            session: d.u64()?,
                            port: d.str()?,
                            body: d.str()?,
                        },
                        ITEM_BROADCAST => Item::Broadcast { body: d.str()? },
                        ITEM_RELEASED => Item::Released {
                            node: d.u32()?,
                            session: d.u64()?,
                            port: d.str()?,
                            reason: reason_of(d.u8()?)?,
                        },
                        other => return Err(MeshError::UnknownTag(other)),
                    });
                }
                Msg::Deliver { op, items }
            }
            DELIVERED => Msg::Delivered {
                op: d.u64()?,
                delivered: d.u64()?,
                dropped: d.u64()?,
            },
            NODE_GONE => Msg::NodeGone {
                node: d.str()?,
                session: d.u64()?,
                reason: reason_of(d.u8()?)?,
            },
            QUERY_COUNTERS => Msg::QueryCounters { op: d.u64()? },
            COUNTERS => {
                let op = d.u64()?;
                let n = d.count()?;
                let values = (0..n).map(|_| d.u64()).collect::<Result<_, MeshError>>()?;
                Msg::Counters { op, values }
            }
            QUERY_NODES => Msg::QueryNodes {
                op: d.u64()?,
                nodes: d.named()?,
            },
            NODE_INFOS => {
                let op = d.u64()?;
                let n = d.count()?;
                let infos = (0..n)
                    .map(|_| {
                        Ok((
                            d.u32()?,
                            HomeInfo {
                                address: d.str()?,
                                ports: d.u64()?,
                                lease_deadline: d.u64()?,
                                queued_bytes: d.u64()?,
                            },
                        ))
                    })
                    .collect::<Result<_, MeshError>>()?;
                Msg::NodeInfos { op, infos }
            }
            other => return Err(MeshError::UnknownTag(other)),
        };
        Ok(msg)
    }
}

/// Reassembles records from DATA payloads that may split them anywhere.
#[derive(Debug, Default)]
pub struct MeshReader {
    buf: Vec<u8>,
}

impl MeshReader {
    /// Appends `bytes` and calls `f` with every complete record body now available.
    pub fn feed(&mut self, bytes: &[u8], mut f: impl FnMut(&[u8])) {
        let whole = |b: &[u8]| -> Option<usize> {
            let len = u32::from_le_bytes(b.get(..4)?.try_into().ok()?) as usize;
            (b.len() >= 4 + len).then_some(4 + len)
        };
        if self.buf.is_empty() {
            // Fast path: records arrive whole, straight from the ring.
            let mut rest = bytes;
            while let Some(n) = whole(rest) {
                f(&rest[4..n]);
                rest = &rest[n..];
            }
            self.buf.extend_from_slice(rest);
            return;
        }
        self.buf.extend_from_slice(bytes);
        let mut at = 0;
        while let Some(n) = whole(&self.buf[at..]) {
            f(&self.buf[at + 4..at + n]);
            at += n;
        }
        self.buf.drain(..at);
    }

    /// Bytes held for an incomplete record.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(n: &str) -> OwnerInfo<'_> {
        OwnerInfo {
            node: n,
            session: 7,
            address: "addr:1",
        }
    }

    fn all() -> Vec<Msg<'static>> {
        vec![
            Msg::Register {
                op: 1,
                node: "n",
                at_home: NodeRef {
                    home: 2,
                    idx: 9,
                    session: 3,
                },
                address: "a:1",
                subscribe: true,
                ports: vec![(0, "p"), (5, "ü")],
            },
            Msg::Registered {
                op: 1,
                new: vec![0],
                failed: vec![(5, owner("m"))],
                full: false,
            },
            Msg::Unregister {
                op: 0,
                node: "n",
                ports: vec![(1, "q")],
            },
            Msg::Unregistered {
                op: 2,
                released: vec![1],
                not_owned: vec![],
                unknown: vec![2, 3],
            },
            Msg::Resolve {
                op: 3,
                ports: vec![(9, "x")],
            },
            Msg::Resolved {
                op: 3,
                owners: vec![(
                    9,
                    NodeRef {
                        home: 1,
                        idx: 4,
                        session: 11,
                    },
                )],
            },
            Msg::Owners {
                op: 3,
                owners: vec![(9, owner("o"))],
            },
            Msg::Deliver {
                op: 4,
                items: vec![
                    Item::Unicast {
                        node: 4,
                        session: 3,
                        port: "p",
                        body: "hello",
                    },
                    Item::Broadcast { body: "all" },
                    Item::Released {
                        node: 5,
                        session: 9,
                        port: "p",
                        reason: ReleaseReason::Replaced,
                    },
                ],
            },
            Msg::Delivered {
                op: 4,
                delivered: 2,
                dropped: 1,
            },
            Msg::NodeGone {
                node: "n",
                session: 3,
                reason: ReleaseReason::NodeOffline,
            },
            Msg::QueryPorts {
                op: 5,
                ports: vec![(0, "p")],
            },
            Msg::QueryNodes {
                op: 6,
                nodes: vec![(0, "n")],
            },
            Msg::QueryCounters { op: 7 },
            Msg::Counters {
                op: 7,
                values: vec![1, 2, 3],
            },
            Msg::NodeInfos {
                op: 6,
                infos: vec![(
                    0,
                    HomeInfo {
                        address: "a:1",
                        ports: 4,
                        lease_deadline: 10_000,
                        queued_bytes: 12,
                    },
                )],
            },
        ]
    }

    #[test]
    fn every_message_survives_a_round_trip_split_at_every_byte() {
        let msgs = all();
        let mut stream = Vec::new();
        for m in &msgs {
            m.encode(&mut stream);
        }
        let want: Vec<String> = msgs.iter().map(|m| format!("{m:?}")).collect();
        for cut in 0..=stream.len() {
            let mut reader = MeshReader::default();
            let mut got = Vec::new();
            for part in [&stream[..cut], &stream[cut..]] {
                reader.feed(part, |body| {
                    got.push(format!("{:?}", Msg::decode(body).unwrap()))
                });
            }
            assert_eq!(got, want, "split at {cut}");
            assert_eq!(reader.pending(), 0);
        }
    }

    #[test]
    fn corrupt_records_are_errors_not_panics() {
        for m in all() {
            let mut bytes = Vec::new();
            m.encode(&mut bytes);
            let body = &bytes[4..];
            for end in 0..body.len() {
                assert!(Msg::decode(&body[..end]).is_err(), "{m:?} cut at {end}");
            }
        }
        assert_eq!(Msg::decode(&[200]), Err(MeshError::UnknownTag(200)));
        // A count larger than the record cannot make the decoder reserve memory.
        let mut huge = vec![RESOLVE];
        huge.extend_from_slice(&1u64.to_le_bytes());
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(Msg::decode(&huge), Err(MeshError::Truncated(_))));
    }
}
