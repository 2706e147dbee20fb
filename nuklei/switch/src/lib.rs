//! The switch nukleus: the application core of the BaiY Port Switch Service (BYPSS) as a
//! sans-I/O, single-threaded library.
//!
//! * [`ports`] — the compact port table of one shard ([`PortShard`]) and [`shard_of`].
//! * [`nodes`] — the node registry ("node home"): ids, addresses, receiving connections,
//!   leases, push queues ([`queue`]: each a buffer of encoded pushes).
//! * [`clock`] — lease time, which stops while the switch is stalled.
//! * [`cluster`] — one switch instance among several (fission), and [`mesh`] — the messages
//!   between them.
//! * [`switch`] — the state machine ([`Switch`]) tying them together; its module docs explain
//!   the decomposition and how per-node ordering is kept across shards.
//! * [`api`] — serde bodies of the REST and WebSocket API and a sans-I/O dispatcher.
//! * [`request`] — the requests, parsed in one pass with strings borrowed from the text
//!   ([`json`] is the reader, and the escaper of pushes).
//! * [`limits`] — size limits with one typed error each.
//! * [`auth`] — bearer tokens bound to node ids.
//! * [`gate`] — whether a cluster member may serve (the master's lease), redirects, epochs.
//! * [`nukleus`] — [`SwitchNukleus`]: the switch served over streams from http and ws.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod ack;
mod acked_send;
pub mod api;
pub mod auth;
pub mod batch;
pub mod clock;
pub mod cluster;
pub mod engine;
pub mod fuzzing;
pub mod gate;
pub mod handover;
pub mod json;
pub mod limits;
pub mod listing;
pub mod mesh;
pub mod nodes;
pub mod nukleus;
pub mod ports;
pub mod queue;
pub mod request;
pub mod switch;
pub mod watch;

pub use auth::{TokenGrant, Tokens};
pub use gate::{ClusterGateConfig, ServingGate};
pub use limits::{LimitError, Limits};
pub use nodes::{ConnId, Drained, NodeRegistry, Push, ReleaseReason};
pub use nukleus::{SwitchNukleus, SwitchNukleusConfig};
pub use ports::{shard_of, NodeIdx, PortShard};
pub use switch::{Config, Output, Switch, SwitchError};
