//! The switch mesh protocol: messages between switch instances (fission), and their binary
//! encoding.
//!
//! Switch instances exchange these over the DATA frames of one stream per direction and pair
//! of instances. The byte stream is a sequence of records
//! `[len:u32][text_len:u32][text][tag:u8][fields]`, where `len` counts what follows it; a
//! record may be split across DATA frames ([`MeshReader`] reassembles). Integers are
//! little-endian; a list is `[count:u32][items]`; a string is its length `[len:u32]` among the
//! fields and its bytes in the text block, the strings of a record one after the other in
//! field order. The text block is checked as UTF-8 once per record (a batch of a thousand
//! ports or messages), not once per string. It comes first so that a record can be written
//! as its items are found: their strings straight into the outbox, their fields beside it
//! ([`DeliverWriter`], [`ResolveWriter`]; [`ResolvedWriter`] has no text). The layouts of the
//! SendMsg records are named by constants in `codec.rs` (`RESOLVE_NAME_BYTES`,
//! `RESOLVED_RUN_BYTES`, `ITEM_RUN`, `DELIVER_ENTRIES_AT`), the named-position lists' by
//! `fields::NAMED_ITEM_BYTES`. Ring order is the only ordering the protocol
//! relies on: two messages from one instance to another are handled in the order they were
//! written.

use crate::json::Escaping;
use crate::nodes::ReleaseReason;
use crate::watch::{Event, WatchKind, WatchRef, What};

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
        /// Whether `port` and `body` hold bytes JSON escapes (as the sender's parser found).
        escaping: Escaping,
    },
    /// A message for every node homed at the receiver that has a receiving connection.
    Broadcast {
        /// The body.
        body: &'a str,
    },
    /// A port of node `node` (in `session`) moved to `to` by compare-and-register: one port
    /// less, and a push telling it.
    Moved {
        /// The previous owner's index at its home.
        node: u32,
        /// Its session when it owned the port.
        session: u64,
        /// The port.
        port: &'a str,
        /// The new owner.
        to: &'a str,
        /// The move's sequence number.
        seq: u64,
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

/// The items of a [`Msg::Deliver`]: a list to send, or those of a received record, read one
/// by one as they are handled (the record was checked whole when it was decoded, so a
/// corrupt one is refused before any of its items is handled). Both print, and compare, as
/// the list of their items.
#[derive(Clone)]
pub enum Items<'a> {
    /// Items to encode.
    List(Vec<Item<'a>>),
    /// The items of a decoded record.
    Record(ItemReader<'a>),
}

impl<'a> From<Vec<Item<'a>>> for Items<'a> {
    fn from(items: Vec<Item<'a>>) -> Items<'a> {
        Items::List(items)
    }
}

impl<'a> IntoIterator for Items<'a> {
    type Item = Item<'a>;
    type IntoIter = ItemsIter<'a>;

    fn into_iter(self) -> ItemsIter<'a> {
        match self {
            Items::List(v) => ItemsIter::List(v.into_iter()),
            Items::Record(r) => ItemsIter::Record(r),
        }
    }
}

impl PartialEq for Items<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.clone().into_iter().eq(other.clone())
    }
}

impl Eq for Items<'_> {}

impl std::fmt::Debug for Items<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.clone()).finish()
    }
}

/// The items of [`Items`] in order.
#[derive(Debug)]
pub enum ItemsIter<'a> {
    /// Of a list.
    List(std::vec::IntoIter<Item<'a>>),
    /// Of a decoded record.
    Record(ItemReader<'a>),
}

impl<'a> Iterator for ItemsIter<'a> {
    type Item = Item<'a>;

    #[inline]
    fn next(&mut self) -> Option<Item<'a>> {
        match self {
            ItemsIter::List(v) => v.next(),
            ItemsIter::Record(r) => r.next(),
        }
    }
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
        /// Compare-and-register: only where the owner is this node (`Some(None)`: nobody).
        if_owner: Option<Option<&'a str>>,
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
    /// Who owns these ports (SendMsg, phase one). No positions: the sender keeps, per
    /// instance asked, the positions of the ports it listed, in order.
    Resolve {
        /// Correlation.
        op: u64,
        /// The ports.
        ports: Vec<&'a str>,
    },
    /// Reply to [`Msg::Resolve`]: the owner of each of its ports in its order (`None`: not
    /// registered), as runs of one owner, `(owner, count)`: a batch's ports mostly have one
    /// owner.
    Resolved {
        /// Correlation.
        op: u64,
        /// The runs.
        runs: Vec<(Option<NodeRef>, u32)>,
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
        /// The message pushes ask their receivers to acknowledge them ([`Msg::Acked`]).
        ack: bool,
        /// The items.
        items: Items<'a>,
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
    /// A watch starts at the sender (its home): send it the events it missed after `from` and
    /// from now on every event that matches `key`.
    WatchStart {
        /// Correlation.
        op: u64,
        /// The watch.
        watch: WatchRef,
        /// Ports or nodes.
        kind: WatchKind,
        /// Name or prefix.
        key: &'a str,
        /// Whether `key` is a prefix.
        prefix: bool,
        /// The watch's position at the receiver, if it resumes.
        from: Option<u64>,
    },
    /// Reply to [`Msg::WatchStart`]: the replay, and the position the watch then has here.
    WatchReady {
        /// Correlation.
        op: u64,
        /// The watch.
        watch: WatchRef,
        /// The receiver's last sequence: the watch continues after it.
        position: u64,
        /// `from` was ahead of `position`: not a cursor of this switch.
        ahead: bool,
        /// Events after `from` no longer in the receiver's history (inclusive range).
        missed: Option<(u64, u64)>,
        /// The events after `from` that the watch wants, with their sequences.
        events: Vec<(u64, Event<'a>)>,
    },
    /// A watch of the sender on `key` ended.
    WatchStop {
        /// Ports or nodes.
        kind: WatchKind,
        /// Name or prefix.
        key: &'a str,
        /// Whether `key` is a prefix.
        prefix: bool,
    },
    /// An event of the sender that watches at the receiver want.
    Event {
        /// Its sequence at the sender.
        seq: u64,
        /// The event.
        event: Event<'a>,
    },
    /// What the receivers at the sender did with the acknowledged pushes of a
    /// [`Msg::Deliver`] (sent once per such Deliver, when all are settled).
    Acked {
        /// Correlation (the Deliver's).
        op: u64,
        /// Acknowledged.
        acknowledged: u64,
        /// Not acknowledged.
        unacknowledged: u64,
    },
    /// Handover, from the giver's home to the receiver's: move those of `ports` that
    /// `from` owns to `to` (homed at the receiver).
    HandoverTo {
        /// Correlation at the giver's home.
        op: u64,
        /// The giver.
        from: &'a str,
        /// The receiver.
        to: &'a str,
        /// `(position, port)`.
        ports: Vec<(u32, &'a str)>,
    },
    /// From the receiver's home to a shard: move those of `ports` that `from` owns to `to`.
    Move {
        /// Correlation at the receiver's home.
        op: u64,
        /// The giver.
        from: &'a str,
        /// The receiver, at its home.
        to: NodeRef,
        /// The receiver's id.
        to_id: &'a str,
        /// Its address.
        to_address: &'a str,
        /// `(position, port)`.
        ports: Vec<(u32, &'a str)>,
    },
    /// Reply to [`Msg::Move`] (and, from the receiver's home, to [`Msg::HandoverTo`]).
    Moved {
        /// Correlation.
        op: u64,
        /// Positions moved, with their sequence numbers.
        moved: Vec<(u32, u64)>,
        /// Positions owned by another node.
        not_owned: Vec<u32>,
        /// Positions not registered.
        unknown: Vec<u32>,
        /// The handover was refused as a whole (receiver offline, limit): the reason.
        error: Option<&'a str>,
    },
    /// A page of ports by prefix from the receiver's shard.
    ListPorts {
        /// Correlation.
        op: u64,
        /// The page.
        prefix: &'a str,
        /// After this name.
        after: Option<&'a str>,
        /// At most this many.
        limit: u32,
    },
    /// Reply to [`Msg::ListPorts`]: `(port, owner, address)`, and whether more may follow.
    PortsListed {
        /// Correlation.
        op: u64,
        /// The ports.
        ports: Vec<(&'a str, &'a str, &'a str)>,
        /// The page was full.
        full: bool,
    },
    /// A page of the receiver's online nodes by prefix.
    ListNodes {
        /// Correlation.
        op: u64,
        /// The page.
        prefix: &'a str,
        /// After this id.
        after: Option<&'a str>,
        /// At most this many.
        limit: u32,
    },
    /// Reply to [`Msg::ListNodes`].
    NodesListed {
        /// Correlation.
        op: u64,
        /// `(node, info)`.
        nodes: Vec<(&'a str, HomeInfo<'a>)>,
        /// The page was full.
        full: bool,
    },
    /// A page of `node`'s ports in the receiver's shard.
    NodePorts {
        /// Correlation.
        op: u64,
        /// The node.
        node: &'a str,
        /// Start at this port (the previous page's `next`).
        start: Option<&'a str>,
        /// At most this many.
        limit: u32,
    },
    /// Reply to [`Msg::NodePorts`].
    NodePortsListed {
        /// Correlation.
        op: u64,
        /// The ports.
        ports: Vec<&'a str>,
        /// Where the next page starts in this shard.
        next: Option<&'a str>,
        /// The start had left the node.
        restarted: bool,
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

mod codec;
pub use codec::{DeliverWriter, ItemReader, ResolveWriter, ResolvedWriter};
mod coord;
mod fields;
mod outbox;
pub use outbox::{MeshOut, Outbox};
#[cfg(test)]
mod tests;

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
