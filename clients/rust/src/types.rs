//! Values the client returns and the events it delivers. Structs and enums are
//! `#[non_exhaustive]`: later work adds fields (watch sequence numbers) without breaking code
//! written today.

use std::collections::HashMap;

use serde::Serialize;

use crate::shared_str::SharedStr;

/// What a cluster's master gave a port when it granted it to this node: its epoch (the term
/// it was elected in) and the reply's sequence in that epoch. Tokens of a port only grow from
/// one owner to the next (a failover included): storage that rejects a write with a lower
/// token than one it has seen cannot be overwritten by an old owner. Ordered as
/// `(epoch, sequence)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FencingToken {
    /// The master's epoch.
    pub epoch: u64,
    /// The granting reply's sequence in that epoch.
    pub sequence: u64,
}

/// A port another node owns: a failed registration names the owner (discovery).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct FailedPort {
    /// The port.
    pub port: String,
    /// Its owner's node id.
    pub owner: String,
    /// The owner's announced address, if it announced one.
    pub address: Option<String>,
}

impl FailedPort {
    /// A failed port (for tests and matching).
    pub fn new(port: &str, owner: &str, address: Option<&str>) -> FailedPort {
        FailedPort {
            port: port.into(),
            owner: owner.into(),
            address: address.map(Into::into),
        }
    }
}

/// Result of [`crate::Client::register`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Registration {
    /// Ports this node owns now (including ports it owned already).
    pub owned: Vec<String>,
    /// Ports owned by other nodes, with their owner.
    pub failed: Vec<FailedPort>,
    /// From a cluster's master: each owned port's fencing token (empty from a switch that
    /// runs alone).
    pub tokens: HashMap<String, FencingToken>,
    /// From a cluster's master: its epoch.
    pub epoch: Option<u64>,
}

impl Registration {
    /// The fencing token of an owned `port` (`None` alone, or if not owned).
    pub fn token(&self, port: &str) -> Option<FencingToken> {
        self.tokens.get(port).copied()
    }
}

/// Result of [`crate::Client::unregister`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Unregistration {
    /// Released.
    pub released: Vec<String>,
    /// Owned by another node; left alone.
    pub not_owned: Vec<String>,
    /// Not registered.
    pub unknown: Vec<String>,
}

/// Result of [`crate::Client::send_report`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SendReport {
    /// Pushes queued.
    pub delivered: u64,
    /// Targets dropped (unknown port, or owner gone).
    pub dropped: u64,
}

/// One port of [`crate::Client::query_ports`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PortOwner {
    /// The port.
    pub port: String,
    /// Owner node id; `None` if nobody owns it.
    pub owner: Option<String>,
    /// Owner address.
    pub address: Option<String>,
}

/// One node of [`crate::Client::query_nodes`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeInfo {
    /// Node id.
    pub node: String,
    /// Has a receiving connection.
    pub online: bool,
    /// Announced address.
    pub address: Option<String>,
    /// Ports held.
    pub ports: u64,
}

/// An outgoing message: to `port` (`""` broadcasts) or to every port of `ports`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Message {
    /// Single target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<SharedStr>,
    /// Several targets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<SharedStr>>,
    /// Opaque body.
    pub body: SharedStr,
}

impl Message {
    /// A message to one port (`""`: broadcast). Both convert without a copy from a
    /// `String` or a [`SharedStr`] (clone one port's `SharedStr` for many messages).
    pub fn to(port: impl Into<SharedStr>, body: impl Into<SharedStr>) -> Message {
        Message {
            port: Some(port.into()),
            ports: None,
            body: body.into(),
        }
    }

    /// A message to several ports.
    pub fn to_many<I, S>(ports: I, body: impl Into<SharedStr>) -> Message
    where
        I: IntoIterator<Item = S>,
        S: Into<SharedStr>,
    {
        Message {
            port: None,
            ports: Some(ports.into_iter().map(Into::into).collect()),
            body: body.into(),
        }
    }
}

/// What the client tells the application, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A message pushed to this node for `port` (`""`: a broadcast). Both are slices of
    /// the WebSocket message that carried a batch of pushes (no copy per message): keep
    /// them as `String`s to let go of the batch's buffer.
    Push {
        /// The port it was sent to.
        port: SharedStr,
        /// Its body.
        body: SharedStr,
    },
    /// A port this node subscribed to was released (`unregistered`, `node_offline`,
    /// `replaced`): register it to take it over.
    Released {
        /// The port.
        port: String,
        /// Why.
        reason: String,
    },
    /// The receiving connection was lost; the switch released every port of the node. Unless
    /// `fin`, the client reconnects and then sends [`Event::Reconnected`].
    Disconnected {
        /// Why.
        error: crate::Error,
        /// Ports the client held (it asks for them again on reconnect).
        held: usize,
        /// The client will not reconnect (a terminal error such as [`crate::Error::Replaced`]).
        fin: bool,
    },
    /// Connected again (to `url`) and re-registered: `restored` ports are this node's again,
    /// `lost` went to another node meanwhile (no longer held), `acquired` were asked for with
    /// `subscribe` and were free (now held). With a cluster, `epoch` is the master's epoch
    /// and `previous_epoch` the one before the connection was lost: when they differ the
    /// master changed (a failover), it started with an empty table, and every restored port
    /// has a new fencing token ([`crate::Client::fencing_token`]).
    Reconnected {
        /// The member.
        url: String,
        /// Ports restored.
        restored: usize,
        /// Ports another node took while this one was away.
        lost: Vec<FailedPort>,
        /// Watched ports that were free and are now this node's.
        acquired: Vec<String>,
        /// The master's epoch now (`None`: the switch runs alone).
        epoch: Option<u64>,
        /// The master's epoch before the connection was lost.
        previous_epoch: Option<u64>,
    },
    /// Something a watch of this node saw ([`crate::Client::watch_ports`]). Boxed: a
    /// watch event is larger than a push, and every event takes the largest variant's room.
    Watch(Box<WatchEvent>),
    /// Watch `watch` missed the events `first..=last` of switch instance `instance`: they
    /// left the switch's bounded history before the watch resumed (`instance` `None`: the
    /// switch did not know the watch's cursor at all, so anything may have been missed).
    /// List what the watch covers to know where things stand.
    Missed {
        /// The watch.
        watch: u64,
        /// The switch instance.
        instance: Option<u64>,
        /// First sequence missed.
        first: u64,
        /// Last sequence missed.
        last: u64,
    },
    /// Another node handed `port` over to this one: it is held now. Register it again for a
    /// fencing token of this node's.
    HandedOver {
        /// The port.
        port: String,
        /// Its previous owner.
        previous: String,
        /// The move's sequence number.
        seq: u64,
    },
    /// `port` moved from this node to `to` (compare-and-register with this node's
    /// authority): no longer held.
    PortMoved {
        /// The port.
        port: String,
        /// The new owner.
        to: String,
        /// The move's sequence number.
        seq: u64,
    },
}

impl Event {
    /// Whether the event came from the switch (it counts against the event buffer).
    pub fn is_push(&self) -> bool {
        !matches!(self, Event::Disconnected { .. } | Event::Reconnected { .. })
    }
}

/// An event a watch saw: `event` is `acquired`, `released` (with `reason`) or `moved` (with
/// the `previous` owner) for a port; `online`, `offline` (with `reason`) or `replaced` for a
/// node. `seq` numbers it at switch instance `instance`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WatchEvent {
    /// The watch.
    pub watch: u64,
    /// What happened.
    pub event: String,
    /// The port (port events).
    pub port: Option<String>,
    /// The node (node events).
    pub node: Option<String>,
    /// The owner (port events).
    pub owner: Option<String>,
    /// The owner's or node's address.
    pub address: Option<String>,
    /// Why (released, offline).
    pub reason: Option<String>,
    /// The previous owner (moved).
    pub previous: Option<String>,
    /// Sequence number at `instance`.
    pub seq: u64,
    /// The switch instance that numbered it.
    pub instance: u64,
}

/// Result of [`crate::Client::handover`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Handover {
    /// Moved to the receiver.
    pub moved: Vec<String>,
    /// Not this node's: left alone.
    pub not_owned: Vec<String>,
    /// Not registered.
    pub unknown: Vec<String>,
}

/// A page of a listing: its entries and the cursor of the next page (`None`: the last).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Page<T> {
    /// The entries.
    pub entries: Vec<T>,
    /// Pass as `after` for the next page.
    pub next: Option<String>,
    /// (A node's ports.) A part of the listing started again: entries may repeat.
    pub restarted: bool,
}
