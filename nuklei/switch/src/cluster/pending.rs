//! What a cluster instance keeps of its operations in flight: the token that correlates an
//! operation with its completion, who a RegPort at a shard is for, and the watches, listings
//! and handovers waiting for other instances. Apart from the files that run them (shard.rs,
//! watch.rs, coord.rs), so that the instance can hold them without naming those files.

use crate::mesh::NodeRef;
use crate::ports::NodeIdx;
use crate::switch::{HandoverReply, NodePortsListing, SwitchError};
use crate::watch::Watched;

/// Caller's correlation of an operation with its completion.
pub type Token = u64;

/// Who a RegPort at a shard is for, and how.
#[derive(Clone, Copy, Debug)]
pub(super) struct Registrant<'a> {
    /// The node's id.
    pub(super) node: &'a str,
    /// The node at its home, in its session.
    pub(super) at_home: NodeRef,
    /// Its announced address.
    pub(super) address: &'a str,
    /// Subscribe to the release of ports others own.
    pub(super) subscribe: bool,
    /// Compare-and-register: the owner each port must have (`Some(None)`: free).
    pub(super) if_owner: Option<Option<&'a str>>,
}

/// A watch waiting for the replays of the other instances.
pub(super) struct WatchOp {
    pub(super) token: Token,
    pub(super) node: NodeIdx,
    pub(super) id: u64,
    pub(super) slot: u32,
    pub(super) watched: Watched,
    pub(super) waiting: usize,
    pub(super) error: Option<SwitchError>,
}

/// A node's-ports listing walking the shards in turn.
pub(super) struct NodePortsOp {
    pub(super) token: Token,
    pub(super) node: String,
    pub(super) limit: usize,
    /// The shard asked now.
    pub(super) shard: usize,
    pub(super) listing: NodePortsListing,
    pub(super) done: bool,
}

/// A handover at the giver's home, waiting for the receiver's home.
pub(super) struct GiveOp {
    pub(super) token: Token,
    pub(super) node: NodeIdx,
    pub(super) session: u64,
    pub(super) reply: Option<Result<HandoverReply, SwitchError>>,
    pub(super) answered: bool,
}

/// A handover at the receiver's home, waiting for the shards.
pub(super) struct TakeOp {
    /// Where the giver's home waits, and its op there.
    pub(super) reply_to: usize,
    pub(super) give_op: u64,
    pub(super) from: String,
    pub(super) node: NodeIdx,
    pub(super) session: u64,
    pub(super) ports: Vec<String>,
    pub(super) reserved: usize,
    pub(super) waiting: usize,
    pub(super) moved: Vec<(u32, u64)>,
    pub(super) not_owned: Vec<u32>,
    pub(super) unknown: Vec<u32>,
}
