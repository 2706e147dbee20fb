//! Values the client returns and the events it delivers. Structs and enums are
//! `#[non_exhaustive]`: the HA and coordination work will add fields (epoch, fencing tokens,
//! watch sequence numbers) and events (epoch changes) without breaking code written today.

use serde::Serialize;

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
    pub port: Option<String>,
    /// Several targets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<String>>,
    /// Opaque body.
    pub body: String,
}

impl Message {
    /// A message to one port (`""`: broadcast).
    pub fn to(port: impl Into<String>, body: impl Into<String>) -> Message {
        Message {
            port: Some(port.into()),
            ports: None,
            body: body.into(),
        }
    }

    /// A message to several ports.
    pub fn to_many<I, S>(ports: I, body: impl Into<String>) -> Message
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
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
    /// A message pushed to this node for `port` (`""`: a broadcast).
    Push {
        /// The port it was sent to.
        port: String,
        /// Its body.
        body: String,
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
    /// `subscribe` and were free (now held).
    Reconnected {
        /// The member.
        url: String,
        /// Ports restored.
        restored: usize,
        /// Ports another node took while this one was away.
        lost: Vec<FailedPort>,
        /// Watched ports that were free and are now this node's.
        acquired: Vec<String>,
    },
}
